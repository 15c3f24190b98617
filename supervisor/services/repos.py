"""The repository registry: which local git work trees the gateway manages, by id.

A repo is registered by its top level (``git rev-parse --show-toplevel``), found by supervised
git children like every other git call, so a hung git is killed at its time limit and shows in
the process table. The files are never touched: forgetting a repo only drops the row.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import trio

from ..errors import BadRequest, Conflict, NotFound, Timeout, Unavailable
from ..spec import iso
from ..store import Store
from .worktrees import Git

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
]


def repo_json(row: Any) -> dict[str, Any]:
    """The API's view of a ``repos`` row."""
    return {
        "id": row["id"],
        "path": row["path"],
        "name": row["name"],
        "defaultBranch": row["default_branch"],
        "createdAt": iso(row["created_at"]),
    }


class Repos:
    """Register, rename and forget managed repositories (the ``repos`` table)."""

    def __init__(self, store: Store, git: Git) -> None:
        self.store = store
        self.git = git

    async def open(self) -> None:
        """Create or migrate the ``repos`` table (call once, before serving)."""
        await self.store.migrate("repos", REPOS_SCHEMA)

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

    async def add(self, raw_path: str, name: str | None) -> dict[str, Any]:
        """Register a local git work tree (its top level); ``Conflict`` if already registered."""
        path = os.path.abspath(os.path.expanduser(raw_path))  # noqa: ASYNC240 - no I/O
        if not await trio.to_thread.run_sync(os.path.isdir, path):
            raise BadRequest(f"path: {path[:300]} is not a directory", code="invalid_request")
        rc, top = await self._git("-C", path, "rev-parse", "--show-toplevel")
        if rc != 0 or not top:
            raise BadRequest(f"path: {path[:300]} is not a git work tree", code="invalid_request")
        _rc, branch = await self._git("-C", top, "symbolic-ref", "--quiet", "--short", "HEAD")
        repo_id = f"r_{secrets.token_hex(6)}"
        try:
            await self.store.execute(
                "INSERT INTO repos (id, path, name, default_branch, created_at) VALUES (?, ?, ?, ?, ?)",
                (repo_id, top, name or Path(top).name, branch or None, time.time()),
            )
        except sqlite3.IntegrityError:
            row = await self.store.fetchone("SELECT id FROM repos WHERE path = ?", (top,))
            raise Conflict(
                f"{top} is already registered", code="repo_exists", details={"id": row[0] if row else None}
            ) from None
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
        return repo_json(row)
