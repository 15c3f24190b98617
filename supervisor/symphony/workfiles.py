"""The JSON files ClosedLoop keeps in a ticket's work dir and in its own state folder.

ClosedLoop's gateway keeps chat histories, review state and learnings status as JSON files:
per ticket in ``<worktree>/.closedloop-ai/work/`` and, for chats not tied to a worktree, under
its own folder (closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/
chat-history-store.ts``, ``symphony-chat-history.ts``, ``codex.ts``, ``learnings.ts``). Its web
app reads them back through the routes, and a user may switch between ClosedLoop's desktop and
this gateway on the same worktrees, so we keep the same files with the same shapes.

Unlike ClosedLoop: writes are atomic (temp file + rename, mode 0600) and read-modify-write of
one file is serialised by a per-path lock (``JsonFiles.edit``), so two turns finishing together
cannot lose a message. A missing or corrupt file reads as the caller's default, as in
ClosedLoop. File I/O runs in worker threads; cancellation while waiting for the lock or a
thread leaves the file as it was (the rename is the only commit point).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import trio

T = TypeVar("T")

WORK_DIR = Path(".closedloop-ai") / "work"
_UNSAFE = re.compile(r"[^a-zA-Z0-9\-_]")
PROVIDERS = ("claude", "codex")


def sanitize(name: str) -> str:
    """ClosedLoop's file-name rule for ticket, comment and finding ids."""
    return _UNSAFE.sub("_", name)


def work_dir(worktree: Path) -> Path:
    return worktree / WORK_DIR


def chat_history_name(provider: str | None = None) -> str:
    return f"chat-history-{provider}.json" if provider in PROVIDERS else "chat-history.json"


def read_json(path: Path, default: T) -> Any | T:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


class JsonFiles:
    """Async access to JSON state files with one lock per path."""

    def __init__(self) -> None:
        self._locks: dict[Path, trio.Lock] = {}

    def _lock(self, path: Path) -> trio.Lock:
        return self._locks.setdefault(path, trio.Lock())

    async def read(self, path: Path, default: Callable[[], T]) -> Any:
        data = await trio.to_thread.run_sync(read_json, path, None)
        return data if isinstance(data, dict) else default()

    async def write(self, path: Path, payload: Any) -> None:
        async with self._lock(path):
            await trio.to_thread.run_sync(write_json, path, payload)

    @asynccontextmanager
    async def edit(self, path: Path, default: Callable[[], dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Read, let the caller change the dict, write it back (all under the path's lock)."""
        async with self._lock(path):
            data = await trio.to_thread.run_sync(read_json, path, None)
            data = data if isinstance(data, dict) else default()
            yield data
            await trio.to_thread.run_sync(write_json, path, data)

    async def remove(self, path: Path) -> bool:
        async with self._lock(path):
            try:
                await trio.Path(path).unlink()
            except FileNotFoundError:
                return False
            return True
