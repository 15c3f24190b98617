"""Fixtures for Symphony: a git repo registered with the gateway, the service on a fresh state
dir, and the real claude/codex CLIs pointed at a ModelDouble (from ``tests/agents``)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from symphony_support import Harness, cli_paths, make_settings, register_repo

from gateway.http.serve import GatewayHandle, open_services
from gateway.supervisor import StateDir, open_supervisor
from gateway.supervisor.agents.providers import ClaudeProvider, CodexProvider, ProviderRegistry

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
    gateway: GatewayHandle, tmp_path: Path, md: ModelDouble, repo: Path, binaries: dict
) -> GatewayHandle:
    """The shared ``gateway``, its Symphony running the real CLIs against ``md``."""
    ctx = gateway.context
    ctx.services.symphony.settings = make_settings(md, tmp_path)
    ctx.binaries.overrides.update({k: v for k, v in binaries.items() if v})
    await register_repo(ctx.sup, repo)
    return gateway


@pytest.fixture
async def api(gw: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gw, timeout=60) as client:
        yield client
