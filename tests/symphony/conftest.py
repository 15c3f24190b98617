"""Fixtures for Symphony: a git repo registered with the gateway, the service on a fresh state
dir, and the real claude/codex CLIs pointed at a ModelDouble (from ``tests/agents``)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import trio
from symphony_support import Harness, cli_paths, make_settings, register_repo

from gateway.http.serve import GatewayHandle, ServeOptions, open_services, run_gateway
from gateway.supervisor import StateDir, open_supervisor
from gateway.supervisor.agents.providers import ClaudeProvider, CodexProvider, ProviderRegistry
from gateway.supervisor.symphony import Symphony

from agents.model_double import ModelDouble
from support import GIT_ENV, gateway_client


@pytest.fixture
def md() -> Iterator[ModelDouble]:
    with ModelDouble() as double:
        yield double


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository on branch ``main`` with one commit."""
    path = tmp_path / "repo"
    path.mkdir()
    env = {**GIT_ENV, "HOME": str(tmp_path)}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    (path / "README").write_text("test repo\n")
    subprocess.run(["git", "add", "README"], cwd=path, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True, env=env)
    return path


@pytest.fixture
def binaries() -> dict[str, str | None]:
    paths = cli_paths()
    if paths["claude"] is None:
        pytest.skip("claude CLI not installed: run scripts/install-agent-clis.sh")
    return paths


@pytest.fixture
async def harness(tmp_path: Path, md: ModelDouble, repo: Path, binaries: dict) -> AsyncIterator[Harness]:
    settings = make_settings(md, tmp_path)
    registry = ProviderRegistry(
        [ClaudeProvider(), CodexProvider(settings.codex_sandbox)], binary_path=binaries.get
    )
    async with open_supervisor(tmp_path / "state") as sup:
        await register_repo(sup, repo)
        state = StateDir(tmp_path / "state")
        async with open_services(sup, state, binaries.get, registry=registry, settings=settings) as services:
            yield Harness(sup, services.symphony, md, repo)


@pytest.fixture
async def gw(
    tmp_path: Path, md: ModelDouble, repo: Path, binaries: dict, nursery: trio.Nursery
) -> AsyncIterator[GatewayHandle]:
    """A gateway on an ephemeral port whose Symphony runs the real CLIs against ``md``."""
    opts = ServeOptions(state_dir=tmp_path / "state", port=0, probe_binaries=False)
    handle: GatewayHandle = await nursery.start(run_gateway, opts)
    ctx = handle.context
    svc = ctx.services.symphony
    assert isinstance(svc, Symphony)
    svc.settings = make_settings(md, tmp_path)
    ctx.binaries.overrides.update({k: v for k, v in binaries.items() if v})
    await register_repo(ctx.sup, repo)
    yield handle
    handle.request_shutdown()


@pytest.fixture
async def api(gw: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gw, timeout=60) as client:
        yield client
