"""Repositories and worktrees named by path, as ClosedLoop's clients name them, made safe.

ClosedLoop's web app sends absolute paths (``repoPath``, ``?repo=``, ``worktreePath``,
``filePath``), ``~``-prefixed for folders under the home directory, and finds a ticket's
worktree at ``<worktreeParentDir or the repo's parent>/<repoName>-<ticketId>``
(``apps/desktop/src/server/operations/symphony-utils.ts`` ``resolveWorktreeDir``).

ClosedLoop allows any path under its sandbox folder. Here a path must be a registered
repository or one of its git worktrees, or lie inside one, after resolving every symlink: a
``..`` or a symlink that leads out of them is refused. Worktrees are found from the repository's
own bookkeeping (``.git/worktrees/<name>/gitdir`` holds the path of each worktree's ``.git``
file), so no git process runs to answer "is this path allowed".

Blocking (file system calls): callers run these in a worker thread.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_UNSAFE_TICKET = re.compile(r"[^a-zA-Z0-9_-]")
MAX_PATH = 4096


class PathRefused(ValueError):
    """A path the request may not name: ``malformed`` (not an absolute path, say), or outside
    what the gateway manages. Callers turn it into ``BadRequest`` or ``Forbidden``."""

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed


def expand(raw: object, field: str) -> Path:
    """``~``-expanded absolute path (not resolved); 400 for anything else."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_PATH or "\x00" in raw:
        raise PathRefused(f"{field}: must be an absolute path", malformed=True)
    path = os.path.expanduser(raw)
    if not os.path.isabs(path):
        raise PathRefused(f"{field}: must be an absolute path", malformed=True)
    return Path(os.path.normpath(path))


def display(path: Path) -> str:
    """ClosedLoop's form of a stored path: ``~/...`` under the home directory."""
    home = Path.home()
    try:
        rel = path.relative_to(home)
    except ValueError:
        return str(path)
    return "~" if str(rel) == "." else f"~/{rel}"


def sanitize_ticket(ticket_id: str) -> str:
    return _UNSAFE_TICKET.sub("_", ticket_id)


def layout_path(repo: Path, ticket_id: str, parent: Path | None) -> Path:
    """``<parent or repo's parent>/<repoName>-<ticketId>`` with ClosedLoop's sanitising."""
    return (parent or repo.parent) / f"{repo.name}-{sanitize_ticket(ticket_id)}"


def worktrees_of(repo: Path) -> list[Path]:
    """The linked worktrees git knows for ``repo`` (existing or not), from ``.git/worktrees``."""
    admin = repo / ".git" / "worktrees"
    found: list[Path] = []
    try:
        entries = list(os.scandir(admin))
    except OSError:
        return found
    for entry in entries:
        try:
            gitfile = Path((Path(entry.path) / "gitdir").read_text(encoding="utf-8").strip())
        except OSError:
            continue
        if gitfile.is_absolute():
            found.append(gitfile.parent)
    return found


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a request's path landed: its registered repository, the worktree (or the repo
    itself) that holds it, and the resolved path."""

    repo: Path
    tree: Path
    path: Path

    @property
    def is_worktree(self) -> bool:
        return self.tree != self.repo


def resolve(raw: object, repos: Iterable[Path], field: str = "repoPath") -> Resolved:
    """Resolve ``raw`` against the registered ``repos`` (their stored top-level paths).

    Raises ``PathRefused`` (``directory not allowed``) when the resolved path is not inside
    a registered repository or one of its worktrees.
    """
    real = Path(os.path.realpath(expand(raw, field)))
    for repo in repos:
        root = Path(os.path.realpath(repo))
        if _inside(real, root):
            return Resolved(repo, repo, real)
        for tree in worktrees_of(root):
            tree_real = Path(os.path.realpath(tree))
            if _inside(real, tree_real):
                return Resolved(repo, tree_real, real)
    raise PathRefused(f"{field}: directory not allowed")


def resolve_file(tree: Path, raw: object, field: str = "filePath") -> tuple[str, Path]:
    """A repository-relative file path inside ``tree``: (the clean relative path, the real path).

    The relative form is what git is given (``HEAD:<path>``); the real path must stay inside
    ``tree`` once symlinks are resolved.
    """
    if not isinstance(raw, str) or not raw or len(raw) > MAX_PATH or "\x00" in raw:
        raise PathRefused(f"{field}: must be a path relative to the repository", malformed=True)
    rel = os.path.normpath(raw)
    if os.path.isabs(rel) or rel == ".." or rel.startswith("../") or rel == ".":
        raise PathRefused(f"{field}: must stay inside the repository")
    real = Path(os.path.realpath(tree / rel))
    if not _inside(real, Path(os.path.realpath(tree))):
        raise PathRefused(f"{field}: must stay inside the repository")
    return rel, real


#: ClosedLoop's environment override of the worktree parent folder (``symphony-utils.ts``).
PARENT_ENV = "SYMPHONY_WORKTREE_PARENT_DIR"


@dataclass
class Layout:
    """Where each registered repository's ticket worktrees go, kept by the repo registry.

    A plain in-memory map (repo id -> top-level path) plus the ``worktreeParentDir`` setting,
    so the worktree path of a ticket is known without a database read (``Worktrees.path_for``
    is synchronous).
    """

    repos: dict[str, Path] = field(default_factory=dict)
    parent: Path | None = None

    def parent_dir(self) -> Path | None:
        env = os.environ.get(PARENT_ENV, "").strip()
        return Path(os.path.expanduser(env)) if env else self.parent

    def worktree(self, repo_id: str, ticket_id: str) -> Path | None:
        """The ticket's worktree in ClosedLoop's layout, or None for an unknown repo."""
        repo = self.repos.get(repo_id)
        return None if repo is None else layout_path(repo, ticket_id, self.parent_dir())
