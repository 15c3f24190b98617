"""A real Ray cluster on loopback for the tier-2 tests: head on 127.0.0.2, workers on .3 and .4.

One CPU each, one shared temp dir, the memory monitor off, fixed ports (never 127.0.0.1, which
Ray rewrites to the host's address). Every Ray process started here carries a marker variable
in its environment; teardown ends exactly those processes, by pid: SIGTERM, then SIGKILL.

Without the ``ray`` extra the tests skip, unless ``GATEWAY_REQUIRE_CLUSTER=1`` (``.ci/run``):
then a missing Ray fails them, so the tier cannot pass by running nothing.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from support import wait_until

RAY = str(Path(sys.executable).parent / "ray")
HEAD = "127.0.0.2"
WORKERS = ("127.0.0.3", "127.0.0.4")
GCS_PORT = 46380
DASHBOARD_PORT = 48265
MARKER = "DESKTOP_GATEWAY_TEST_RAY"
NODE_MARKER = "DESKTOP_GATEWAY_TEST_RAY_NODE"


def _ports(base: int) -> list[str]:
    return [
        f"--object-manager-port={base + 1}", f"--node-manager-port={base + 2}",
        f"--min-worker-port={base + 10}", f"--max-worker-port={base + 39}",
        f"--dashboard-agent-listen-port={base + 4}", f"--dashboard-agent-grpc-port={base + 5}",
        f"--runtime-env-agent-port={base + 6}", f"--metrics-export-port={base + 7}",
    ]  # fmt: skip


@dataclass
class RayCluster:
    address: str
    temp_dir: Path
    marker: str
    env: dict[str, str]
    common: list[str]

    def restart_worker(self, ip: str, base: int) -> None:
        """A new Ray node on ``ip`` (ports from ``base``: the dead one's may still be held)."""
        start_worker(ip, base, self.env, self.common)

    async def all_alive(self) -> None:
        await wait_until(
            lambda: self.alive_nodes() == {HEAD, *WORKERS}, timeout=120, what="3 alive Ray nodes"
        )

    def alive_nodes(self) -> set[str]:
        try:
            r = httpx.get(f"{self.address}/api/v0/nodes", timeout=5, trust_env=False)
            nodes = r.json()["data"]["result"]["result"]
        except (httpx.HTTPError, ValueError, KeyError):
            return set()
        return {n["node_ip"] for n in nodes if n["state"] == "ALIVE"}


def ray_processes(marker: str, var: str = MARKER) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(var) == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def end_processes(marker: str, var: str = MARKER) -> None:
    """SIGTERM every marked process, SIGKILL what is left after 10 s; until none is left."""
    for _ in range(5):
        procs = ray_processes(marker, var)
        if not procs:
            return
        for proc in procs:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        _gone, alive = psutil.wait_procs(procs, timeout=10)
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)


def start_worker(ip: str, base: int, env: dict[str, str], common: list[str]) -> None:
    """``ray start`` a worker; once more if it failed (Ray gives a raylet a hard 30 s to join
    the GCS, which a loaded 2-core machine can miss), after ending that attempt's processes."""
    out = ""
    for attempt in range(2):
        attempt_env = {**env, NODE_MARKER: f"{ip}-{attempt}"}
        done = subprocess.run(
            [RAY, "start", f"--address={HEAD}:{GCS_PORT}", f"--node-ip-address={ip}", *common, *_ports(base)],
            env=attempt_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180,
        )  # fmt: skip
        if done.returncode == 0:
            return
        out = done.stdout.decode()[-3000:]
        end_processes(f"{ip}-{attempt}", NODE_MARKER)
    raise AssertionError(f"ray start of worker {ip} failed twice: {out}")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    if not os.path.exists(RAY):
        if os.environ.get("GATEWAY_REQUIRE_CLUSTER") == "1":
            pytest.fail("GATEWAY_REQUIRE_CLUSTER=1 but Ray is not installed (pip install -e '.[ray]')")
        pytest.skip("Ray is not installed (the `ray` extra)")
    marker = secrets.token_hex(8)
    temp_dir = Path(tempfile.mkdtemp(prefix="dgray", dir="/tmp"))  # Ray's socket paths are short
    env = {**os.environ, MARKER: marker, "RAY_memory_monitor_refresh_ms": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    common = [
        "--num-cpus=1",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        "--object-store-memory=100000000",
    ]
    cluster = RayCluster(f"http://{HEAD}:{DASHBOARD_PORT}", temp_dir, marker, env, common)
    try:
        subprocess.run(
            [RAY, "start", "--head", f"--node-ip-address={HEAD}", f"--port={GCS_PORT}",
             f"--dashboard-host={HEAD}", f"--dashboard-port={DASHBOARD_PORT}", "--include-dashboard=true",
             "--ray-client-server-port=46403", *common, *_ports(46400)],
            env=env, check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        for i, ip in enumerate(WORKERS):  # one at a time: parallel joins time out on 2 cores
            start_worker(ip, 46500 + 100 * i, env, common)
        yield cluster
    finally:
        end_processes(marker)
        shutil.rmtree(temp_dir, ignore_errors=True)
