"""Shared fixtures: a supervisor on a fresh state dir, and the one gateway fixture.

``gateway`` is a real gateway on a free loopback port, in-process (``run_gateway``, the same
composition root as ``gateway serve``); ``serve_process`` is the same as a ``gateway serve``
child. Every family's tests start from these (Symphony's ``gw`` configures this one for the
real agent CLIs). Nothing is mocked: the supervisor, SQLite and sockets are the real ones.
The only test knob is a manual wall clock for expiry rules (challenges, sessions,
always-allow rules), so a test can step past 60 s or 7 days without sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import trio
from gwtest import ManualClock, ServeProcess, launch_serve, wait_serving

from gateway.http.serve import GatewayHandle, ServeOptions, run_gateway
from gateway.supervisor import Supervisor, open_supervisor

from support import gateway_client


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def sup(state_dir: Path) -> AsyncIterator[Supervisor]:
    async with open_supervisor(state_dir) as s:
        yield s


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def serve_options(tmp_path: Path, clock: ManualClock) -> ServeOptions:
    return ServeOptions(
        state_dir=tmp_path / "state",
        port=0,  # explicit port 0: the kernel picks a free one
        clock=clock,
        approval_timeout=10.0,
        heartbeat=15.0,
        probe_binaries=False,
    )


@pytest.fixture
async def gateway(serve_options: ServeOptions, nursery: trio.Nursery) -> AsyncIterator[GatewayHandle]:
    handle: GatewayHandle = await nursery.start(run_gateway, serve_options)
    yield handle
    handle.request_shutdown()


@pytest.fixture
async def api(gateway: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client (gateway token)."""
    async with gateway_client(gateway, timeout=30) as client:
        yield client


@pytest.fixture
async def anon(gateway: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gateway, timeout=30, authenticated=False) as client:
        yield client


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[ServeProcess]:
    """A running ``gateway serve`` on a kernel-chosen port (--port 0)."""
    sp = launch_serve(tmp_path / "state", tmp_path / "serve.log", "--port", "0")
    try:
        wait_serving(sp)
        yield sp
    finally:
        if sp.proc.poll() is None:
            sp.stop()
