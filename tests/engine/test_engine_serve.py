"""``gateway serve`` as a user runs it: SIGKILL mid-run, start again, nothing of the old tree left.

The real console script runs as a subprocess on a free loopback port with a tmp state dir; the
tree is started through the process routes, so everything between the HTTP request and the
kernel is the shipped code.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from support import marked_pids, wait_until

GATEWAY = str(Path(sys.executable).parent / "gateway")
TREE = 'sleep 600 & setsid sh -c "trap \\"\\" TERM; sleep 600" & wait'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, state: Path, log: Path) -> None:
        self.state = state
        self.port = free_port()
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [GATEWAY, "serve", "--state-dir", str(state), "--port", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.log = log

    def info(self) -> dict | None:
        try:
            return json.loads((self.state / "gateway.json").read_text())
        except (OSError, ValueError):
            return None

    def client(self) -> httpx.AsyncClient:
        token = (self.state / "gateway-token").read_text().strip()
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"X-Desktop-Gateway-Token": token},
            trust_env=False,
            timeout=30,
        )

    async def ready(self) -> None:
        def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            info = self.info()
            return info is not None and info.get("pid") == self.proc.pid

        await wait_until(up, timeout=20, what="gateway.json of the new gateway")


async def test_sigkilled_gateway_then_restart_marks_lost_and_sigterm_leaves_nothing(tmp_path: Path) -> None:
    state, log = tmp_path / "state", tmp_path / "gateway.log"
    first = Gateway(state, log)
    try:
        await first.ready()
        async with first.client() as api:
            r = await api.post("/api/gateway/processes", json={"argv": ["sh", "-c", TREE], "stopGrace": 0.5})
            assert r.status_code == 201, r.text
            old = r.json()["id"]
        await wait_until(lambda: len(marked_pids(old)) >= 4, what="the tree under the first gateway")
    finally:
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
    await wait_until(lambda: 0 < len(marked_pids(old)) < 4, what="the direct child's parent-death signal")

    second = Gateway(state, log)
    try:
        await second.ready()
        assert marked_pids(old) == set(), "the restart must kill the old tree"
        async with second.client() as api:
            record = (await api.get(f"/api/gateway/processes/{old}")).json()
            assert record["state"] == "lost" and record["stopReason"] == "lost"
            r = await api.post("/api/gateway/processes", json={"argv": ["sh", "-c", TREE], "stopGrace": 0.5})
            new = r.json()["id"]
        await wait_until(lambda: len(marked_pids(new)) >= 4, what="the tree under the second gateway")
    finally:
        second.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            code = await trio.to_thread.run_sync(second.proc.wait)
    assert code == 0, log.read_text()
    assert marked_pids(new) == set()
    assert not (state / "gateway.json").exists()
    assert (state / "gateway.db").is_file()
