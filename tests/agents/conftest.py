"""Fixtures driving the real claude/codex CLIs against a scripted model double.

The CLIs come from ``scripts/install-agent-clis.sh`` (``.tools/node``) or PATH; tests that need
one are skipped, with the reason, when it is not installed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import clis
import pytest
from model_double import ModelDouble

INSTALL_HINT = "run scripts/install-agent-clis.sh"


@pytest.fixture
def model_double() -> Iterator[ModelDouble]:
    """A started ModelDouble on 127.0.0.1 (stopped after the test)."""
    with ModelDouble() as md:
        yield md


@pytest.fixture
def claude_bin() -> str:
    path = clis.find_cli("claude")
    if path is None:
        pytest.skip(f"claude CLI (@anthropic-ai/claude-code) not installed: {INSTALL_HINT}")
    return path


@pytest.fixture
def codex_bin() -> str:
    path = clis.find_cli("codex")
    if path is None:
        pytest.skip(f"codex CLI (@openai/codex) not installed: {INSTALL_HINT}")
    return path


@pytest.fixture
def claude_home(tmp_path: Path) -> Path:
    home = tmp_path / "claude-home"
    home.mkdir()
    return home


@pytest.fixture
def codex_home(tmp_path: Path) -> Path:
    home = tmp_path / "codex-home"
    home.mkdir()
    return home


@pytest.fixture
def claude_env(claude_bin: str, model_double: ModelDouble, claude_home: Path) -> dict[str, str]:
    """Environment for the real ``claude`` pointed at ``model_double`` (HOME = claude_home)."""
    return clis.claude_env(model_double, claude_home)


@pytest.fixture
def codex_env(codex_bin: str, model_double: ModelDouble, codex_home: Path) -> dict[str, str]:
    """Environment for the real ``codex`` pointed at ``model_double`` (CODEX_HOME = codex_home)."""
    return clis.codex_env(model_double, codex_home)


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """An empty git repository with one commit, to use as the agent's cwd."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "HOME": str(tmp_path),
    }
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    (repo / "README").write_text("test repo\n")
    subprocess.run(["git", "add", "README"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True, env=env)
    return repo
