"""The contract suite's world: a real gateway on loopback, a home folder, and a real repository
with an ``origin`` remote, a feature branch and a ClosedLoop-layout worktree.

Requests in ``tests/wire`` are shaped exactly as ClosedLoop's clients shape them (each test names
the file it derives from). ``web`` is ClosedLoop's web app in LocalElectron mode: requests to
``http://localhost:<port>`` with ``Origin: https://app.closedloop.ai`` and a session token from a
cloud-verified exchange (``apps/app/lib/engineer/local-gateway-session.ts``,
``web-surface-routing-adapter.ts``). ``relay`` is ClosedLoop's cloud command executor
(``apps/desktop/src/main/cloud-command-executor.ts``): ``http://127.0.0.1:<port>`` with the
gateway token, ``x-desktop-source: cloud-socket`` and a command id.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import trio
from closedloop_double import ClosedLoopApiDouble
from wire_support import TICKET, WEB_ORIGIN, World, exchange

from gateway.http.serve import GatewayHandle, ServeOptions, run_gateway

from support import git


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SYMPHONY_WORKTREE_PARENT_DIR", raising=False)
    return home


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClosedLoopApiDouble]:
    with ClosedLoopApiDouble() as double:
        monkeypatch.setenv("GATEWAY_CLOSEDLOOP_API_ORIGIN", double.origin)
        monkeypatch.setenv("GATEWAY_CLOSEDLOOP_API_KEY", double.api_key)
        yield double


@pytest.fixture
async def gw(
    home: Path, tmp_path: Path, cloud: ClosedLoopApiDouble, nursery: trio.Nursery
) -> AsyncIterator[GatewayHandle]:
    options = ServeOptions(state_dir=tmp_path / "state", port=0, probe_binaries=False)
    handle: GatewayHandle = await nursery.start(run_gateway, options)
    yield handle
    handle.request_shutdown()


@pytest.fixture
async def relay(gw: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    """The cloud command executor's requests (``executeViaGateway``)."""
    headers = {
        "x-desktop-gateway-token": gw.context.auth.gateway_token,
        "x-desktop-source": "cloud-socket",
        "x-desktop-command-id": str(uuid.uuid4()),
    }
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gw.port}", headers=headers, timeout=30, trust_env=False
    ) as client:
        yield client


@pytest.fixture
async def web(gw: GatewayHandle, cloud: ClosedLoopApiDouble) -> AsyncIterator[httpx.AsyncClient]:
    """The web app in LocalElectron mode (``buildLocalhostRequest``)."""
    token = await exchange(gw, cloud)
    headers = {"Origin": WEB_ORIGIN, "x-desktop-session-token": token}
    async with httpx.AsyncClient(
        base_url=f"http://localhost:{gw.port}", headers=headers, timeout=30, trust_env=False
    ) as client:
        yield client


@pytest.fixture
async def world(home: Path, tmp_path: Path, relay: httpx.AsyncClient) -> World:
    """``~/work/proj`` cloned from a bare ``origin`` (main + a pushed feature branch), registered
    the way the web app registers it, with the ticket's worktree made through the gateway."""
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "README.md").write_text("hello\n")
    (seed / "src").mkdir()
    (seed / "src" / "app.ts").write_text("export const x = 1;\n")
    git(seed, "init", "-q", "-b", "main")
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "init")
    remote = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))
    repo = home / "work" / "proj"
    git(home / "work", "clone", "-q", str(remote), str(repo))
    feature = "feature/login"
    git(repo, "config", "user.name", "Wire Test")
    git(repo, "config", "user.email", "wire@example.invalid")
    git(repo, "checkout", "-q", "-b", feature)
    (repo / "src" / "login.ts").write_text("export const login = true;\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "login")
    git(repo, "push", "-q", "origin", feature)
    git(repo, "checkout", "-q", "main")
    added = await relay.post("/api/gateway/repos", json={"path": "~/work/proj"})
    assert added.status_code == 200, added.text
    made = await relay.post("/api/gateway/git/worktree", json={"repoPath": str(repo), "ticketId": TICKET})
    assert made.status_code in (200, 201), made.text
    worktree = home / "work" / f"proj-{TICKET}"
    assert made.json()["path"] == str(worktree)
    return World(home, remote, repo, worktree, feature)
