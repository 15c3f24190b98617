"""Repos named by path and tickets' worktrees in ClosedLoop's layout.

ClosedLoop's web app and cloud executor name a repository by its absolute path (``?repo=`` or
``repoPath``, ``~`` allowed) and find a ticket's worktree at
``<worktree parent>/<repo folder name>-<ticket id with [^a-zA-Z0-9-_] as _>``, the parent being
``$SYMPHONY_WORKTREE_PARENT_DIR`` or the repo's own parent folder (closedloop-ai/closedloop-ai
``apps/desktop/src/server/operations/symphony-utils.ts`` ``resolveWorktreeDir``). The work
files of a ticket live in that worktree's ``.closedloop-ai/work``.

Security is ours: a path names a repo only if it *is* a registered repository once symlinks are
resolved (ClosedLoop allows anything under its sandbox folder); anything else is ``Forbidden``
with ClosedLoop's message, ``directory not allowed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trio

from ..errors import Forbidden, NotFound
from ..services.paths import Layout, layout_path
from ..services.worktrees import Git
from .store import SymphonyStore


@dataclass(frozen=True, slots=True)
class RepoRef:
    """A registered repository, as a request named it and as it is on disk."""

    repo_id: str
    path: Path  # the registered (real) path
    given: str  # the path as the client sent it (echoed back in answers, as ClosedLoop does)


def worktree_parent(repo: Path, layout: Layout | None = None) -> Path:
    """Where ``repo``'s ticket worktrees go: the registry's layout (the environment override,
    else the ``worktreeParentDir`` setting), else the repository's own parent folder."""
    parent = layout.parent_dir() if layout is not None else Layout().parent_dir()
    return parent or repo.parent


def worktree_dir(repo: Path, ticket_id: str, layout: Layout | None = None) -> Path:
    """The ticket's worktree in ClosedLoop's layout (it may not exist); the same path
    ``Worktrees.path_for`` creates, since both ask the registry's layout."""
    return layout_path(repo, ticket_id, worktree_parent(repo, layout))


def _real(raw: str) -> str:
    return os.path.realpath(os.path.expanduser(raw))


async def resolve_repo(db: SymphonyStore, raw: str | None) -> RepoRef:
    """The registered repository ``raw`` names, else ``Forbidden`` (``directory not allowed``)."""
    if not raw or "\x00" in raw or len(raw) > 4096:
        raise Forbidden("directory not allowed", code="directory_not_allowed")
    real = await trio.to_thread.run_sync(_real, raw)
    for repo_id, path in await db.repos():
        if await trio.to_thread.run_sync(_real, str(path)) == real:
            if not await trio.to_thread.run_sync(os.path.isdir, real):
                raise NotFound(f"repository folder {real} is gone", code="repo_not_found")
            return RepoRef(repo_id, Path(real), raw)
    raise Forbidden("directory not allowed", code="directory_not_allowed")


EXCLUDE_LINE = "/.closedloop-ai/"
_excluded: set[str] = set()


async def exclude_work_files(git: Git, where: Path) -> None:
    """Keep ``.closedloop-ai/`` (ClosedLoop's work files: chat histories, review state) out of
    git in the repo ``where`` belongs to: one line in its shared ``info/exclude``, so neither
    ``git status`` nor a commit of the worktree ever picks them up. Best effort, once per repo."""
    result = await git.run(["rev-parse", "--git-common-dir"], where, check=False)
    if not result.ok:
        return
    common = Path(result.stdout.strip())
    common = common if common.is_absolute() else where / common
    exclude = common / "info" / "exclude"
    if str(exclude) in _excluded:
        return

    def add() -> None:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        text = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
        if EXCLUDE_LINE not in text.splitlines():
            with open(exclude, "a", encoding="utf-8") as f:
                f.write(("" if not text or text.endswith("\n") else "\n") + EXCLUDE_LINE + "\n")

    await trio.to_thread.run_sync(add)
    _excluded.add(str(exclude))
