"""The git family's rules of our own, over real HTTP: the worktree lock and the configured git
binary. ClosedLoop's requests and answers are tested in ``tests/wire/test_git.py``."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from symphony_support import API, register_repo

from gateway.http.serve import GatewayHandle

from agents.model_double import Hang, ModelDouble
from support import gateway_client, git

GIT = "/api/gateway/git"




@pytest.fixture
def origin(tmp_path: Path, repo: Path) -> Path:
    """A bare ``origin`` the repo's ``main`` tracks; commits in the repo get an identity."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(repo, "config", "user.name", "Test Person")
    git(repo, "config", "user.email", "person@example.invalid")
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "-u", "origin", "main")
    return bare


@pytest.fixture
async def repo_gateway(gateway: GatewayHandle, repo: Path, origin: Path) -> GatewayHandle:
    """The shared gateway with ``repo`` (which has an ``origin``) registered as ``r1``."""
    await register_repo(gateway.context.sup, repo)
    return gateway


@pytest.fixture
async def client(repo_gateway: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(repo_gateway, timeout=60) as c:
        yield c


async def test_the_worktree_lock_refuses_a_commit_while_an_agent_works(
    api: httpx.AsyncClient, md: ModelDouble, gw: GatewayHandle, repo: Path
) -> None:
    """While an agent runs in the ticket's worktree, commits and pulls there are 409."""
    git(repo, "config", "user.name", "Test Person")
    git(repo, "config", "user.email", "person@example.invalid")
    md.claude.add_turn(Hang(120))
    r = await api.post(f"{API}/launch", json={"ticketId": "T-9", "repoId": "r1", "prompt": "work"})
    assert r.status_code == 201, r.text
    wt = Path(r.json()["ticket"]["worktree"])
    (wt / "x.txt").write_text("x\n")
    body = {"action": "commit", "repoPath": str(wt), "message": "mid-run"}
    busy = await api.post(GIT, json=body)
    assert busy.status_code == 409 and "busy" in busy.json()["error"]
    reading = await api.post(GIT, json={"action": "status", "repoPath": str(wt)})
    assert reading.status_code == 200  # reads are fine
    killed = await api.post(f"{API}/kill", json={"ticketId": "T-9"})
    assert killed.status_code == 200, killed.text
    done = await api.post(GIT, json=body)
    assert done.status_code == 200, done.text
    svc = gw.context.services.symphony
    assert (await svc.git.run(["rev-parse", "HEAD"], wt)).stdout.strip().startswith(done.json()["commit"])



async def test_git_routes_use_the_configured_git_binary(
    client: httpx.AsyncClient, gateway: GatewayHandle, tmp_path: Path, repo: Path
) -> None:
    """``PATCH /settings/binary-paths {"git": ...}`` applies to the very next git call."""
    real = shutil.which("git")
    assert real is not None
    wrapper = tmp_path / "bin" / "git-wrapper"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.txt"}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    r = await client.patch("/api/gateway/settings/binary-paths", json={"git": str(wrapper)})
    assert r.status_code == 200, r.text
    status = await client.post(GIT, json={"action": "status", "repoPath": str(repo)})
    assert status.status_code == 200 and status.json()["currentBranch"] == "main"
    assert "status --porcelain" in (tmp_path / "calls.txt").read_text()
    argv0 = {r.argv[0] for r in gateway.context.sup.table.records.values() if r.kind == "git"}
    assert str(wrapper) in argv0
