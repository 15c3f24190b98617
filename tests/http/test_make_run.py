"""``make run`` as a newcomer types it: the gateway starts, finds the agent CLIs ``make agents``
installed into ``.tools/``, and says how to open the dashboard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
AGENT_BIN = REPO / ".tools" / "node" / "node_modules" / ".bin"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
@pytest.mark.skipif(not (AGENT_BIN / "claude").exists(), reason="make agents has not run")
def test_make_run_finds_the_agent_clis_and_prints_the_dashboard_command(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # PATH without .tools: only make run can put the CLIs there.
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if ".tools" not in p)
    log = (tmp_path / "make.log").open("wb")
    make = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"ARGS=--state-dir {state} --port 0"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "PATH": path}, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # the first make run may install the runtime packages
        while not (state / "gateway.json").exists():
            assert make.poll() is None, (tmp_path / "make.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "make.log").read_text()[-3000:]
            time.sleep(0.1)  # polling for a file another process writes, bounded by the deadline
        port = json.loads((state / "gateway.json").read_text())["port"]
        token = (state / "gateway-token").read_text().strip()
        headers = {"X-Desktop-Gateway-Token": token}
        url = f"http://127.0.0.1:{port}/api/gateway/settings/binary-paths"
        binaries: dict = {}
        while not (binaries.get("claude") or {}).get("version"):  # probed in the background
            assert time.monotonic() < deadline, binaries
            binaries = httpx.get(url, headers=headers, trust_env=False).json()["binaries"]
            time.sleep(0.1)
        for name in ("claude", "codex"):
            assert binaries[name]["path"] == str(AGENT_BIN / name), binaries[name]
            assert binaries[name]["source"] == "PATH"
    finally:
        os.killpg(make.pid, signal.SIGTERM)  # make and the gateway it started (its own session)
        make.wait(30)
        log.close()
    output = (tmp_path / "make.log").read_text()
    assert f"{REPO}/.venv/bin/gateway open" in output
