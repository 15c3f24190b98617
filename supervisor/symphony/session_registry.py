"""ClosedLoop's session registry: the worktrees its web app has open, in ``<state>/sessions.json``.

ClosedLoop's ``symphony/sessions`` is not a list of agent sessions but of *worktree sessions*
the web app registers (``{ticketId, repoPath, worktreePath, pid?, contextRepoPaths?,
baseBranch?, parentTicketId?, loopId?, artifactId?, startedAt, lastAccessedAt}``, upserted by
ticket), and ``sessions/unread-count`` counts those whose chat history ends with an assistant
message (closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/symphony-sessions.ts``).
Paths are checked as ours are: the repo must be registered and the worktree one of its worktrees
in ClosedLoop's layout (``directory not allowed`` otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import trio

from ..errors import BadRequest, Forbidden
from .addressing import resolve_repo, worktree_parent
from .runner import Runner
from .workchat import now_iso
from .workfiles import PROVIDERS, JsonFiles, chat_history_name, read_json, work_dir

_OPTIONAL = ("pid", "contextRepoPaths", "baseBranch", "parentTicketId", "loopId", "artifactId")


class SessionRegistry:
    def __init__(self, runner: Runner, files: JsonFiles) -> None:
        self.runner = runner
        self.files = files

    @property
    def path(self) -> Path:
        return self.runner.sup.state_dir / "sessions.json"

    async def listing(self) -> list[dict[str, Any]]:
        """The registered sessions whose worktree still exists (the others are dropped)."""
        async with self.files.edit(self.path, lambda: {"sessions": []}) as config:
            sessions = [s for s in config.get("sessions", []) if isinstance(s, dict)]
            alive = [s for s in sessions if await trio.to_thread.run_sync(_is_dir, s.get("worktreePath"))]
            config["sessions"] = alive
        return alive

    async def has(self, ticket_id: str) -> bool:
        config = await self.files.read(self.path, lambda: {"sessions": []})
        return any(isinstance(s, dict) and s.get("ticketId") == ticket_id for s in config.get("sessions", []))

    async def upsert(self, body: dict[str, Any]) -> dict[str, Any]:
        ticket, repo_raw, wt_raw = body.get("ticketId"), body.get("repoPath"), body.get("worktreePath")
        if not (isinstance(ticket, str) and ticket and isinstance(repo_raw, str) and isinstance(wt_raw, str)):
            raise BadRequest("ticketId, repoPath, and worktreePath are required", code="invalid_request")
        repo = await resolve_repo(self.runner.db, repo_raw)
        wt = Path(await trio.to_thread.run_sync(lambda: os.path.realpath(os.path.expanduser(wt_raw))))
        if not (
            wt == repo.path
            or (
                wt.parent == worktree_parent(repo.path, self.runner.worktrees.layout)
                and wt.name.startswith(f"{repo.path.name}-")
            )
        ):
            raise Forbidden("directory not allowed", code="directory_not_allowed")
        for other in body.get("contextRepoPaths") or []:
            await resolve_repo(self.runner.db, other if isinstance(other, str) else None)
        fields = {k: body[k] for k in _OPTIONAL if body.get(k) is not None}
        now = now_iso()
        async with self.files.edit(self.path, lambda: {"sessions": []}) as config:
            sessions = [s for s in config.get("sessions", []) if isinstance(s, dict)]
            for s in sessions:
                if s.get("ticketId") == ticket:
                    s.update({"repoPath": repo_raw, "worktreePath": wt_raw, **fields, "lastAccessedAt": now})
                    break
            else:
                sessions.append(
                    {"ticketId": ticket, "repoPath": repo_raw, "worktreePath": wt_raw, **fields,
                     "startedAt": now, "lastAccessedAt": now}
                )  # fmt: skip
            config["sessions"] = sessions
        return {"success": True}

    async def remove(self, ticket_id: str) -> dict[str, Any]:
        async with self.files.edit(self.path, lambda: {"sessions": []}) as config:
            config["sessions"] = [
                s
                for s in config.get("sessions", [])
                if isinstance(s, dict) and s.get("ticketId") != ticket_id
            ]
        return {"success": True}

    async def unread(self) -> int:
        """Sessions whose chat history (first of the three files that exists) ends with a reply."""
        count = 0
        for s in await self.listing():
            raw = str(s.get("worktreePath"))
            work = work_dir(Path(raw.replace("~", str(Path.home()), 1) if raw.startswith("~") else raw))
            names = [chat_history_name(), *(chat_history_name(p) for p in PROVIDERS)]
            for name in names:
                history = await trio.to_thread.run_sync(read_json, work / name, None)
                if isinstance(history, dict):
                    messages = history.get("messages")
                    if isinstance(messages, list) and messages and messages[-1].get("role") == "assistant":
                        count += 1
                    break
        return count


def _is_dir(raw: Any) -> bool:
    return isinstance(raw, str) and os.path.isdir(os.path.expanduser(raw))
