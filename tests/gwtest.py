"""Helpers for the HTTP front tests: a real gateway on a free loopback port, in-process or as a
subprocess (``gateway serve``), and clients that talk to it over real HTTP.

Nothing is mocked: the supervisor, SQLite and sockets are the real ones. The only test knob is
a manual wall clock for expiry rules (challenges, sessions, always-allow rules), so a test can
step past 60 s or 7 days without sleeping.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from gateway.http.serve import GatewayHandle

GATEWAY_BIN = str(Path(sys.executable).parent / "gateway")
DATA = Path(__file__).resolve().parent / "data"


class ManualClock:
    """A wall clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def token_of(handle: GatewayHandle) -> str:
    return handle.context.auth.gateway_token


async def new_session(api: httpx.AsyncClient) -> str:
    """Mint a challenge with the gateway token and trade it for a session token."""
    challenge = (await api.post("/api/gateway/auth/challenge")).json()["challengeToken"]
    response = await api.post(
        "/gateway-auth/exchange",
        json={"challengeToken": challenge},
        headers={"X-Desktop-Gateway-Token": "", "Origin": str(api.base_url).rstrip("/")},
    )
    assert response.status_code == 200, response.text
    return response.json()["sessionToken"]


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.01) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` (sync or async) until true or fail at the deadline."""
    with trio.fail_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return
            await trio.sleep(interval)


async def start_process(api: httpx.AsyncClient, argv: list[str], **extra: object) -> dict:
    response = await api.post("/api/gateway/processes", json={"argv": argv, **extra})
    assert response.status_code == 201, response.text
    return response.json()


async def wait_ended(api: httpx.AsyncClient, process_id: str, timeout: float = 20.0) -> dict:
    record: dict = {}

    async def ended() -> bool:
        nonlocal record
        record = (await api.get(f"/api/gateway/processes/{process_id}")).json()
        return record["state"] in ("exited", "failed", "killed", "lost")

    await wait_until(ended, timeout, 0.02)
    return record


def free_port_block(n: int) -> int:
    """A base port with ``n`` consecutive free ports (best effort, checked by binding)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + n > 65000:
            continue
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


@dataclass
class ServeProcess:
    """A real ``gateway serve`` child process."""

    proc: subprocess.Popen[bytes]
    state_dir: Path
    stderr_path: Path

    @property
    def info(self) -> dict:
        return json.loads((self.state_dir / "gateway.json").read_text())

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def token(self) -> str:
        return (self.state_dir / "gateway-token").read_text().strip()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def launch_serve(state_dir: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> ServeProcess:
    full_env = {**os.environ, **(env or {})}
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [GATEWAY_BIN, "serve", "--state-dir", str(state_dir), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=full_env,
        )
    return ServeProcess(proc, state_dir, log)


def wait_serving(sp: ServeProcess, timeout: float = 15.0) -> None:
    """Until gateway.json exists and /health answers (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sp.proc.poll() is not None:
            raise AssertionError(f"gateway exited {sp.proc.returncode}: {sp.stderr()}")
        try:
            if httpx.get(f"{sp.url}/health", timeout=1, trust_env=False).status_code == 200:
                return
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(0.02)  # polling a separate process with a deadline
    raise AssertionError(f"gateway did not start: {sp.stderr()}")


