"""Fixtures for the ``git/pr`` routes: the real ``gh`` against the GitHub double, a registered
repository whose ``origin`` is ``https://github.com/OWNER/REPO.git`` (pushing to a local bare
repository), and a gateway on an ephemeral port."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from github_double import OWNER, REPO, GitHubDouble
from pr_support import register

from gateway.http.serve import GatewayHandle

from support import git


@pytest.fixture
def gh_path() -> str:
    path = shutil.which("gh")
    if path is None:
        pytest.skip("gh is not installed: apt-get install gh (.ci/run does)")
    return path


@pytest.fixture
def double(tmp_path: Path, gh_path: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHubDouble]:
    """The double, and the gateway's environment (which its gh children inherit) pointing at it."""
    with GitHubDouble(tmp_path) as d:
        for name in ("GITHUB_TOKEN", "GH_ENTERPRISE_TOKEN", "GITHUB_ENTERPRISE_TOKEN", "GH_HOST", "GH_REPO"):
            monkeypatch.delenv(name, raising=False)
        for name, value in d.env(tmp_path / "gh-config").items():
            monkeypatch.setenv(name, value)
        yield d


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    return bare


@pytest.fixture
def repo(tmp_path: Path, origin: Path) -> Path:
    """A clone-alike of OWNER/REPO: origin's URL is GitHub's, its push URL the local bare repo."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test Person")
    git(path, "config", "user.email", "person@example.invalid")
    (path / "README.md").write_text("hello\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "init")
    git(path, "remote", "add", "origin", f"https://github.com/{OWNER}/{REPO}.git")
    git(path, "remote", "set-url", "--push", "origin", str(origin))
    git(path, "push", "-q", "origin", "main")
    return path


@pytest.fixture
async def gateway(gateway: GatewayHandle, repo: Path) -> GatewayHandle:
    """The shared gateway fixture, with ``repo`` registered as ``r1``."""
    await register(gateway, repo)
    return gateway


@pytest.fixture
def client(api: httpx.AsyncClient) -> httpx.AsyncClient:
    return api
