"""pm2 as a contender beside the gateway, for ``bench_peers.py`` (when npm is there).

pm2 is installed, pinned, into ``.tools/pm2`` on first use (``npm install --prefix``); without
npm every function here reports that pm2 is unavailable and ``bench_peers.py`` leaves its rows
out. Each run has its own ``PM2_HOME`` in the round's temp dir, so the user's own pm2 daemon (if
any) is never touched, and the daemon is started inside a cgroup so that what its ``stop``
leaves alive can be counted exactly, orphans and ``setsid`` children included.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gateway.supervisor.cgroups import Cgroups

PM2_VERSION = "7.0.4"
#: pm2's stop waits out ``kill_timeout`` for each tree whose shell it has not reaped (it probes
#: with ``kill(pid, 0)``, which a zombie answers): about 3.5 s a tree here, so 20, not 200.
PM2_TREES = 20
PREFIX = Path(__file__).resolve().parent.parent / ".tools" / "pm2"
PM2 = PREFIX / "node_modules" / ".bin" / "pm2"


def ensure_pm2() -> Path | None:
    """The pinned pm2, installed on first use; ``None`` when npm is not on this machine."""
    if PM2.exists():
        return PM2
    if shutil.which("npm") is None:
        return None
    PREFIX.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["npm", "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund", f"pm2@{PM2_VERSION}"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return PM2 if PM2.exists() else None


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 2 ms (another process is being watched); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.002)


class Pm2:
    """One pm2 daemon with its own home, started inside cgroup ``name`` of ``key``."""

    def __init__(self, tmp: Path, key: str, name: str) -> None:
        pm2 = ensure_pm2()
        assert pm2 is not None, "pm2 needs npm"
        self.pm2 = str(pm2)
        self.home = tmp / f"pm2-{name}"
        self.home.mkdir()
        self.env = {**os.environ, "PM2_HOME": str(self.home), "PM2_DISABLE_UPDATE_CHECK": "true"}
        cgroups = Cgroups.open(key)
        assert cgroups is not None, "cgroup v2 is not writable here"
        self.cgroups = cgroups
        self.cg = cgroups.create(f"pm2-{name}")

    def run(self, *args: str) -> None:
        subprocess.run(
            [*self.cg.join_argv(), self.pm2, *args], env=self.env, check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def daemon_pid(self) -> int:
        return int((self.home / "pm2.pid").read_text().strip())

    def close(self) -> None:
        subprocess.run([self.pm2, "kill"], env=self.env, check=False, capture_output=True)
        self.cg.kill()
        wait_for(lambda: not self.cg.populated(), 30, "pm2 cleanup")
        self.cg.remove()
        self.cgroups.close()
        shutil.rmtree(self.home, ignore_errors=True)


def logs_pm2(tmp: Path, writer: Path, mb: int, key: str) -> float:
    """Seconds from the start signal until pm2's ``out_file`` holds every byte."""
    go, out = tmp / "go-pm2", tmp / "pm2-writer.log"
    pm2 = Pm2(tmp, key, "logs")
    app = {
        "name": "writer", "script": sys.executable, "args": [str(writer), str(go), str(mb)],
        "interpreter": "none", "autorestart": False, "out_file": str(out), "error_file": "/dev/null",
    }  # fmt: skip
    eco = tmp / "pm2-logs.json"
    eco.write_text(json.dumps({"apps": [app]}))
    total = mb * 10486 * 100
    try:
        pm2.run("start", str(eco))
        time.sleep(0.3)
        t0 = time.perf_counter()
        go.touch()
        wait_for(lambda: out.exists() and out.stat().st_size >= total, 300, "pm2's log")
        return time.perf_counter() - t0
    finally:
        pm2.close()
        out.unlink(missing_ok=True)
        go.unlink(missing_ok=True)


def kill_pm2(tmp: Path, key: str, hard: str, trees: int, per_tree: int) -> tuple[float, int]:
    """pm2 stopping ``trees`` hard trees (SIGTERM, ``kill_timeout`` 5 s, its tree-kill by parent pid):
    seconds for ``pm2 stop all`` and the processes it left alive."""
    pm2 = Pm2(tmp, key, "kill")
    apps = [
        {"name": f"tree{i}", "script": "/bin/sh", "args": ["-c", hard], "interpreter": "none",
         "autorestart": False, "kill_timeout": 5000, "kill_signal": "SIGTERM",
         "out_file": "/dev/null", "error_file": "/dev/null"}
        for i in range(trees)
    ]  # fmt: skip
    eco = tmp / "pm2-kill.json"
    eco.write_text(json.dumps({"apps": apps}))
    try:
        pm2.run("start", str(eco))
        wait_for(lambda: len(pm2.cg.procs()) >= 1 + per_tree * trees, 120, "pm2's trees")
        t0 = time.perf_counter()
        pm2.run("stop", "all")
        seconds = time.perf_counter() - t0
        time.sleep(0.5)  # what pm2 reports stopped has had time to go, if it was going to
        left = len(pm2.cg.procs() - {pm2.daemon_pid()})
        return seconds, left
    finally:
        pm2.close()
