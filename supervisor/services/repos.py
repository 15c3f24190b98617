"""The repository registry: which local git work trees the gateway manages.

ClosedLoop's clients name a repository by its path (``repoPath``, ``?repo=``, ``~/...`` under the
home folder) and read the registry as ``{repos: [{path, description?, deployment?, addedAt}],
settings: {worktreeParentDir, worktreeParentDirConfirmed}}`` (``apps/desktop/src/server/
operations/repos-config.ts``); our own routes also know a repo by its id. Both name one row.

A repo is registered by its top level (``git rev-parse --show-toplevel``), found by supervised
git children like every other git call, so a hung git is killed at its time limit and shows in
the process table. The files are never touched: forgetting a repo only drops the row.

The registry also keeps the ``Layout`` (repo id -> path, and the worktree parent setting) that
puts a ticket's worktree where ClosedLoop's web app looks for it, and ``resolve`` is the one
check every path from a request passes: a registered repository or one of its worktrees, with
symlinks resolved (``paths.resolve``).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import trio

from ..errors import BadRequest, Forbidden, NotFound, Timeout, Unavailable
from ..spec import iso
from ..store import Store
from .git_wire import full_name
from .paths import Layout, PathRefused, Resolved, display, expand, resolve
from .worktrees import Git

#: The ``settings`` row holding ClosedLoop's repos settings (``worktreeParentDir`` ...).
SETTINGS_KEY = "repos_settings"

#: The ``repos`` table (owner ``repos``; registered by ``Repos.open``).
REPOS_SCHEMA: list[str] = [
    """
    CREATE TABLE repos (
        id TEXT PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        default_branch TEXT,
        created_at REAL NOT NULL
    );;
    """,
    """
    ALTER TABLE repos ADD COLUMN description TEXT;;
    ALTER TABLE repos ADD COLUMN deployment TEXT;;
    """,
]


def not_allowed(field: str = "repoPath") -> Forbidden:
    """ClosedLoop's 403 for a path outside what the gateway manages (``git-action.ts``)."""
    details = {"category": "repo_not_allowed", "field": field}
    return Forbidden("directory not allowed", code="REPO_NOT_ALLOWED", details=details)


def repo_json(row: Any) -> dict[str, Any]:
    """ClosedLoop's ``ConfiguredRepo`` (``path`` in ``~/`` form, ``addedAt``) plus our fields."""
    out: dict[str, Any] = {"path": display(Path(row["path"])), "name": row["name"]}
    if row["description"]:
        out["description"] = row["description"]
    if row["deployment"]:
        out["deployment"] = json.loads(row["deployment"])
    out |= {
        "addedAt": iso(row["created_at"]),
        "id": row["id"],
        "defaultBranch": row["default_branch"],
        "createdAt": iso(row["created_at"]),
    }
    return out


def check_parent(raw: object) -> None:
    """A ``worktreeParentDir``: absolute (``~`` allowed), inside the home folder, not a file."""
    try:
        path = Path(os.path.realpath(expand(raw, "worktreeParentDir")))
    except PathRefused as exc:
        raise BadRequest(str(exc), code="invalid_request") from None
    home = Path(os.path.realpath(Path.home()))
    if path != home and home not in path.parents:
        raise BadRequest("worktreeParentDir: must be inside the home folder", code="invalid_request")
    if path.is_file():
        raise BadRequest("worktreeParentDir: is a file", code="invalid_request")


class Repos:
    """Register, rename and forget managed repositories (the ``repos`` table)."""

    def __init__(self, store: Store, git: Git) -> None:
        self.store = store
        self.git = git
        self.layout = Layout()
        self.settings: dict[str, Any] = {}

    async def open(self) -> None:
        """Create or migrate the ``repos`` table and load the layout (once, before serving)."""
        await self.store.migrate("repos", REPOS_SCHEMA)
        row = await self.store.fetchone("SELECT value FROM settings WHERE key = ?", (SETTINGS_KEY,))
        self.settings = json.loads(row[0]) if row is not None else {}
        await self._refresh()

    async def _refresh(self) -> None:
        rows = await self.store.fetchall("SELECT id, path FROM repos")
        self.layout.repos = {r["id"]: Path(r["path"]) for r in rows}
        parent = self.settings.get("worktreeParentDir")
        if isinstance(parent, str) and parent:
            self.layout.parent = Path(os.path.expanduser(parent))  # noqa: ASYNC240 - no I/O
        else:
            self.layout.parent = None

    # ---- ClosedLoop's registry: by path ----------------------------------------------------

    async def wire_list(self) -> dict[str, Any]:
        """``GET /repos`` as ClosedLoop answers it."""
        return {"repos": await self.list(), "settings": dict(self.settings)}

    async def ids(self) -> list[tuple[str, Path]]:
        rows = await self.store.fetchall("SELECT id, path FROM repos ORDER BY created_at")
        return [(r["id"], Path(r["path"])) for r in rows]

    async def paths(self) -> list[Path]:
        rows = await self.store.fetchall("SELECT path FROM repos ORDER BY created_at")
        return [Path(r["path"]) for r in rows]

    async def resolve(self, raw: object, field: str = "repoPath") -> Resolved:
        """A path from a request: inside a registered repo or one of its worktrees, else 403."""
        repos = await self.paths()
        try:
            return await trio.to_thread.run_sync(lambda: resolve(raw, repos, field))
        except PathRefused as exc:
            if exc.malformed:
                raise BadRequest(str(exc), code="invalid_request") from None
            raise not_allowed(field) from None

    async def by_path(self, raw: object, field: str = "path") -> Any:
        """The row of the registered repo at ``raw`` (its top level), or None."""
        try:
            path = expand(raw, field)
        except PathRefused as exc:
            raise BadRequest(str(exc), code="invalid_request") from None
        rows = await self.store.fetchall("SELECT * FROM repos ORDER BY created_at")

        def find() -> Any:
            wanted = os.path.realpath(path)
            return next((r for r in rows if os.path.realpath(r["path"]) == wanted), None)

        return await trio.to_thread.run_sync(find)

    async def by_full_name(self, name: str) -> Any:
        """The first registered repo whose ``origin`` is ``owner/repo`` (``git-helpers.ts``)."""
        for row in await self.store.fetchall("SELECT * FROM repos ORDER BY created_at"):
            result = await self.git.run(["remote", "get-url", "origin"], row["path"], check=False)
            if result.ok and full_name(result.stdout) == name:
                return row
        return None

    async def remove_path(self, raw: object) -> None:
        """``DELETE /repos?path=``: forget it, or ClosedLoop's 400 ``Repository not found``."""
        row = await self.by_path(raw)
        if row is None:
            raise BadRequest("Repository not found", code="repo_not_found")
        await self.delete(row["id"])

    async def update_settings(self, changes: dict[str, Any]) -> None:
        """``PATCH /repos`` with ``worktreeParentDir`` and/or ``worktreeParentDirConfirmed``.

        Stricter than ClosedLoop: the folder must be absolute (``~`` allowed) and inside the
        home folder, and may not be a file."""
        parent = changes.get("worktreeParentDir")
        if parent is not None:
            await trio.to_thread.run_sync(check_parent, parent)
        self.settings = {**self.settings, **changes}
        await self.store.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (SETTINGS_KEY, json.dumps(self.settings)),
        )
        await self._refresh()

    @staticmethod
    def deployment_of(row: Any) -> dict[str, Any] | None:
        """The stored ``deployment`` of a repo row, or None."""
        value = json.loads(row["deployment"]) if row["deployment"] else None
        return value if isinstance(value, dict) else None

    async def set_deployment(self, repo_id: str, config: dict[str, Any] | None) -> None:
        """Remember (or forget) how the repo runs, as ClosedLoop's ``deployment`` field."""
        value = json.dumps(config) if config is not None else None
        await self.store.execute("UPDATE repos SET deployment = ? WHERE id = ?", (value, repo_id))

    async def _git(self, *args: str) -> tuple[int, str]:
        if not self.git.available():
            raise Unavailable(
                "git is not installed; set its path with PATCH /api/gateway/settings/binary-paths "
                '{"git": "/abs/path/to/git"}',
                "git",
            )
        result = await self.git.run(list(args), os.getcwd(), check=False)
        if result.code is None:
            raise Timeout(f"git {args[0] if args else ''} timed out", code="git_timeout")
        return result.code, result.stdout.strip()

    async def list(self) -> list[dict[str, Any]]:
        rows = await self.store.fetchall("SELECT * FROM repos ORDER BY created_at")
        return [repo_json(r) for r in rows]

    async def get(self, repo_id: str) -> Any:
        """The row, or ``NotFound`` (code ``repo_not_found``)."""
        row = await self.store.fetchone("SELECT * FROM repos WHERE id = ?", (repo_id,))
        if row is None:
            raise NotFound(f"no repo {repo_id[:100]}", code="repo_not_found")
        return row

    async def add(self, raw_path: str, name: str | None, description: str | None = None) -> dict[str, Any]:
        """Register a local git work tree (its top level), with ClosedLoop's refusals
        (``repos-config-utils.ts`` ``addRepo``): 400 ``Path does not exist``, ``Path must be a
        directory``, ``Repository already configured``; ours: it must be a git work tree."""
        path = os.path.abspath(os.path.expanduser(raw_path))  # noqa: ASYNC240 - no I/O
        if not await trio.to_thread.run_sync(os.path.exists, path):
            raise BadRequest("Path does not exist", code="path_missing", details={"path": path[:300]})
        if not await trio.to_thread.run_sync(os.path.isdir, path):
            raise BadRequest("Path must be a directory", code="not_a_directory", details={"path": path[:300]})
        rc, top = await self._git("-C", path, "rev-parse", "--show-toplevel")
        if rc != 0 or not top:
            raise BadRequest(
                "Path is not a git repository", code="not_a_git_repo", details={"path": path[:300]}
            )
        _rc, branch = await self._git("-C", top, "symbolic-ref", "--quiet", "--short", "HEAD")
        repo_id = f"r_{secrets.token_hex(6)}"
        try:
            await self.store.execute(
                "INSERT INTO repos (id, path, name, default_branch, created_at, description)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (repo_id, top, name or Path(top).name, branch or None, time.time(), description),
            )
        except sqlite3.IntegrityError:
            row = await self.store.fetchone("SELECT id FROM repos WHERE path = ?", (top,))
            raise BadRequest(
                "Repository already configured", code="repo_exists", details={"id": row[0] if row else None}
            ) from None
        await self._refresh()
        return repo_json(await self.get(repo_id))

    async def update(
        self, repo_id: str, *, name: str | None = None, default_branch: str | None = None, set_branch: bool
    ) -> dict[str, Any]:
        """Rename and/or set the default branch (``set_branch``: even to null)."""
        await self.get(repo_id)
        if name is not None:
            await self.store.execute("UPDATE repos SET name = ? WHERE id = ?", (name, repo_id))
        if set_branch:
            await self.store.execute(
                "UPDATE repos SET default_branch = ? WHERE id = ?", (default_branch, repo_id)
            )
        return repo_json(await self.get(repo_id))

    async def delete(self, repo_id: str) -> dict[str, Any]:
        """Forget a repo; the files are not touched."""
        row = await self.get(repo_id)
        await self.store.execute("DELETE FROM repos WHERE id = ?", (repo_id,))
        await self._refresh()
        return repo_json(row)
