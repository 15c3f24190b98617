"""Real node agents and a real gateway as subprocesses on 127.0.0.2-4, for the node tests.

Every process is the shipped console script (``gateway node-agent`` / ``gateway serve``) with
its own tmp state dir; the tests talk to the gateway over real HTTP. Teardown ends every
process it started by pid: SIGTERM, then SIGKILL if it does not stop in time.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from support import wait_until

GATEWAY = str(Path(sys.executable).parent / "gateway")
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
NAMES = ("n1", "n2", "n3")
#: A child, a grandchild in a session of its own that ignores SIGTERM, and the child waits.
HARD_TREE = 'sleep 600 & setsid sh -c "trap \\"\\" TERM; sleep 600" & wait'
#: The same grandchild, orphaned: its parent subshell exits at once.
ORPHAN_TREE = '(setsid sh -c "trap \\"\\" TERM; sleep 600" &); sleep 600'
#: The entrypoint exits 0 and leaves the grandchild running.
EXITING_TREE = 'setsid sh -c "trap \\"\\" TERM; sleep 600" & echo started'


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Proc:
    """A console-script subprocess whose stderr goes to a file the failure messages show."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv = argv
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text()[-4000:]
        except OSError:
            return ""

    def sigkill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL after ``timeout``. The exit code (None if it was killed)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc is not None else None
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(timeout):
            return await trio.to_thread.run_sync(proc.wait)
        proc.kill()
        await trio.to_thread.run_sync(proc.wait)
        return None


class Agent(Proc):
    def __init__(self, root: Path, name: str, host: str, token_file: Path, lease: float) -> None:
        self.name, self.host = name, host
        self.state = root / f"agent-{name}"
        self.port = free_port(host)
        self.url = f"ws://{host}:{self.port}"
        argv = [GATEWAY, "node-agent", "--state-dir", str(self.state), "--listen", f"{host}:{self.port}",
                "--token-file", str(token_file), "--lease", str(lease)]  # fmt: skip
        super().__init__(argv, root / f"agent-{name}.log")

    async def ready(self) -> None:
        def up() -> bool:
            assert self.alive(), self.output()
            return _listening(self.host, self.port)

        await wait_until(up, timeout=20, what=f"node agent {self.name} listening")

    def receipts_file(self) -> list[dict[str, Any]]:
        try:
            return list(json.loads((self.state / "node-receipts.json").read_text()))
        except (OSError, ValueError):
            return []


class Gateway(Proc):
    def __init__(
        self, root: Path, agents: list[Agent], token_file: Path, extra: tuple[str, ...] = ()
    ) -> None:
        self.state = root / "gateway"
        self.port = free_port("127.0.0.1")
        argv = [GATEWAY, "serve", "--state-dir", str(self.state), "--port", str(self.port),
                "--node-token-file", str(token_file), *extra]  # fmt: skip
        for agent in agents:
            argv += ["--node", f"{agent.name}={agent.url}"]
        super().__init__(argv, root / "gateway.log")

    def restart_argv(self) -> None:
        """A new port for the next start (the old one may linger in TIME_WAIT)."""
        self.port = free_port("127.0.0.1")
        i = self.argv.index("--port")
        self.argv[i + 1] = str(self.port)

    def client(self, timeout: float = 30) -> httpx.AsyncClient:
        token = (self.state / "gateway-token").read_text().strip()
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"X-Desktop-Gateway-Token": token},
            trust_env=False,
            timeout=timeout,
        )

    async def ready(self) -> None:
        def up() -> bool:
            assert self.alive(), self.output()
            try:
                info = json.loads((self.state / "gateway.json").read_text())
            except (OSError, ValueError):
                return False
            return info.get("pid") == self.pid

        await wait_until(up, timeout=30, what="gateway.json of the gateway")


async def nodes_in(
    api: httpx.AsyncClient, state: str, names: tuple[str, ...] = NAMES, timeout: float = 20
) -> None:
    """Until every node in ``names`` reports ``state``."""
    with trio.move_on_after(timeout):
        while True:
            nodes = {n["name"]: n for n in (await api.get("/api/gateway/nodes")).json()["nodes"]}
            if all(nodes.get(name, {}).get("state") == state for name in names):
                return
            await trio.sleep(0.05)
    raise AssertionError(f"nodes {names} not all {state}: {nodes}")


async def record_of(api: httpx.AsyncClient, process_id: str) -> dict[str, Any]:
    r = await api.get(f"/api/gateway/processes/{process_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def wait_state(
    api: httpx.AsyncClient, process_id: str, states: set[str], timeout: float = 20
) -> dict[str, Any]:
    record: dict[str, Any] = {}
    with trio.move_on_after(timeout):
        while True:
            record = await record_of(api, process_id)
            if record["state"] in states:
                return record
            await trio.sleep(0.05)
    raise AssertionError(f"{process_id} not in {states}: {record}")


class Cluster:
    def __init__(self, root: Path, lease: float, extra: tuple[str, ...] = ()) -> None:
        self.root = root
        self.token_file = root / "node-token"
        self.token_file.write_text("t0k3n-" + "x" * 32 + "\n")
        self.token_file.chmod(0o600)
        self.agents = [Agent(root, n, h, self.token_file, lease) for n, h in zip(NAMES, HOSTS, strict=True)]
        self.gateway = Gateway(root, self.agents, self.token_file, extra)

    def agent(self, name: str) -> Agent:
        return next(a for a in self.agents if a.name == name)


@asynccontextmanager
async def cluster(root: Path, *, lease: float = 5.0, extra: tuple[str, ...] = ()) -> AsyncIterator[Cluster]:
    """Three agents and a gateway with all three as nodes, every node up (``extra``: more
    ``gateway serve`` flags)."""
    c = Cluster(root, lease, extra)
    try:
        for agent in c.agents:
            agent.start()
        c.gateway.start()
        for agent in c.agents:
            await agent.ready()
        await c.gateway.ready()
        async with c.gateway.client() as api:
            await nodes_in(api, "up")
        yield c
    finally:
        with trio.CancelScope(shield=True):
            await c.gateway.stop()
            async with trio.open_nursery() as nursery:
                for agent in c.agents:
                    nursery.start_soon(agent.stop)
