"""The repo registry as a service: real git children under a real supervisor, real SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.supervisor import Supervisor
from gateway.supervisor.errors import BadRequest, NotFound, Unavailable
from gateway.supervisor.services.repos import Repos
from gateway.supervisor.services.worktrees import Git

from support import init_repo


def _new_repo(path: Path) -> Path:
    path.mkdir()
    (path / "README").write_text("app\n")
    return init_repo(path)


async def _repos(sup: Supervisor, which: object = None) -> Repos:
    git = Git(sup) if which is None else Git(sup, which=which)  # type: ignore[arg-type]
    repos = Repos(sup.store, git)
    await repos.open()
    return repos


async def test_register_rename_and_forget(sup: Supervisor, tmp_path: Path) -> None:
    repo = _new_repo(tmp_path / "app")
    (repo / "sub").mkdir()
    repos = await _repos(sup)
    added = await repos.add(str(repo / "sub"), None)  # a folder inside registers the top level
    assert added["path"] == str(repo) and added["name"] == "app"
    assert added["defaultBranch"] == "main"
    # Its git ran as supervised children, visible in the process table.
    assert any(r.kind == "git" and "rev-parse" in r.argv for r in sup.table.records.values())
    renamed = await repos.update(added["id"], name="App", set_branch=False)
    assert renamed["name"] == "App" and renamed["defaultBranch"] == "main"
    assert [r["id"] for r in await repos.list()] == [added["id"]]
    forgotten = await repos.delete(added["id"])
    assert forgotten["id"] == added["id"] and (repo / ".git").is_dir()  # files untouched
    with pytest.raises(NotFound) as missing:
        await repos.get(added["id"])
    assert missing.value.code == "repo_not_found"


async def test_refusals_name_the_situation(sup: Supervisor, tmp_path: Path) -> None:
    repo = _new_repo(tmp_path / "app")
    repos = await _repos(sup)
    first = await repos.add(str(repo), "app")
    with pytest.raises(BadRequest, match="Repository already configured") as dup:  # ClosedLoop's 400
        await repos.add(str(repo), "again")
    assert dup.value.code == "repo_exists" and dup.value.details == {"id": first["id"]}
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(BadRequest, match="not a git repository"):
        await repos.add(str(plain), None)
    with pytest.raises(BadRequest, match="Path does not exist") as absent:
        await repos.add(str(tmp_path / "absent"), None)
    assert absent.value.code == "path_missing"
    no_git = await _repos(sup, which=lambda _name: None)
    with pytest.raises(Unavailable) as unavailable:
        await no_git.add(str(repo), None)
    assert unavailable.value.binary == "git"
