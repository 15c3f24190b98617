"""Chat sessions outside tickets: ``terminal-chat`` (an agent in a managed repo's folder) and
``run-viewer-chat`` (an agent asked about one finished run, read-only).

A session belongs to a scope (``terminal`` + repo id, or ``run-viewer`` + process id) and one
provider; each turn is a supervised child of kind ``chat`` that resumes the provider's own
session, and its reply is stored when it ends. Deleting a session kills a turn still running.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import trio

from ..agents.providers import Provider
from ..errors import BadRequest, NotFound
from ..spec import ACTIVE_STATES, ProcessRecord, iso
from .model import require_text
from .runner import Runner

SCOPES = ("terminal", "run-viewer")
_SESSION = "id, scope, scope_key, provider, provider_session_id, cwd, created_at, last_activity"


def _session_json(row: Any) -> dict[str, Any]:
    return {
        "id": row[0],
        "scope": row[1],
        "key": row[2],
        "provider": row[3],
        "providerSessionId": row[4],
        "cwd": row[5],
        "createdAt": iso(row[6]),
        "lastActivity": iso(row[7]),
    }


class ScopedChats:
    """Sessions, turns, history and deletion for the scoped chat routes."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def sessions(self, scope: str, key: str | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT {_SESSION} FROM chat_sessions WHERE scope = ?"
        args: tuple[Any, ...] = (scope,)
        if key is not None:
            sql, args = sql + " AND scope_key = ?", (scope, key)
        rows = await self.runner.store.fetchall(sql + " ORDER BY last_activity DESC", args)
        return [_session_json(r) for r in rows]

    async def session(self, scope: str, session_id: str) -> dict[str, Any]:
        row = await self.runner.store.fetchone(
            f"SELECT {_SESSION} FROM chat_sessions WHERE id = ? AND scope = ?", (session_id, scope)
        )
        if row is None:
            raise NotFound(f"sessionId: no {scope} session {session_id!r}")
        return _session_json(row)

    async def history(self, session_id: str) -> list[dict[str, Any]]:
        rows = await self.runner.store.fetchall(
            "SELECT id, role, content, process_id, created_at FROM chat_messages"
            " WHERE session_id = ? ORDER BY id",
            (session_id,),
        )
        return [
            {"id": r[0], "role": r[1], "content": r[2], "processId": r[3], "createdAt": iso(r[4])}
            for r in rows
        ]

    async def turn(
        self,
        scope: str,
        key: str,
        cwd: Path,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        session_id: str | None = None,
        context: str | None = None,
        read_only: bool = False,
        ticket_id: str | None = None,
    ) -> tuple[ProcessRecord, dict[str, Any]]:
        """Start one turn of the scope's session (resumed); the reply is stored when it ends."""
        require_text(message, "message")
        if scope not in SCOPES:
            raise BadRequest(f"scope: one of {', '.join(SCOPES)}")
        if session_id is not None:
            session = await self.session(scope, session_id)
            if session["key"] != key:
                raise BadRequest(f"sessionId: {session_id} belongs to another {scope} chat")
            prov = self.runner.provider(session["provider"])
        else:
            prov = self.runner.provider(provider)
            found = [s for s in await self.sessions(scope, key) if s["provider"] == prov.name]
            session = found[0] if found else await self._new_session(scope, key, prov, cwd)
        exe = self.runner.executable(prov)
        psid = session["providerSessionId"]
        text = message if psid or not context else f"{context}\n\n{message}"
        opts = self.runner.run_options(prov, model, read_only=read_only)
        argv = prov.resume_argv(exe, psid, text, opts) if psid else prov.run_argv(exe, text, opts)
        ticket = await self.runner.db.ticket(ticket_id) if ticket_id else None
        spec = self.runner.agent_spec(
            prov, argv, ticket, self.runner.settings.defaults, kind="chat", role=f"{scope}-chat",
            labels={"mode": f"{scope}-chat", "sessionId": session["id"], "scopeKey": key}, cwd=cwd,
        )  # fmt: skip
        await self._add_message(session["id"], "user", message, None)
        record = await self.runner.sup.start(spec)
        self.runner.post_done[record.id] = trio.Event()
        self.runner.spawn(self._store_reply, record, prov, session["id"])
        return record, session

    async def _new_session(self, scope: str, key: str, prov: Provider, cwd: Path) -> dict[str, Any]:
        now = time.time()
        session_id = f"cs_{secrets.token_hex(6)}"
        await self.runner.store.execute(
            f"INSERT INTO chat_sessions ({_SESSION}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (session_id, scope, key, prov.name, None, str(cwd), now, now),
        )
        return await self.session(scope, session_id)

    async def _add_message(self, session_id: str, role: str, content: str, process_id: str | None) -> None:
        now = time.time()
        await self.runner.store.execute(
            "INSERT INTO chat_messages (session_id, role, content, process_id, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (session_id, role, content, process_id, now),
        )
        await self.runner.store.execute(
            "UPDATE chat_sessions SET last_activity = ? WHERE id = ?", (now, session_id)
        )

    async def _store_reply(self, record: ProcessRecord, prov: Provider, session_id: str) -> None:
        done = self.runner.post_done.setdefault(record.id, trio.Event())
        try:
            final = await self.runner.sup.wait(record.id)
            summary = self.runner.conclude(final, prov)
            if summary.session_id:
                await self.runner.store.execute(
                    "UPDATE chat_sessions SET provider_session_id = COALESCE(provider_session_id, ?)"
                    " WHERE id = ?",
                    (summary.session_id, session_id),
                )
            content = self.runner.reply_text(final, summary)
            exists = await self.runner.store.fetchone(
                "SELECT 1 FROM chat_sessions WHERE id = ?", (session_id,)
            )
            if exists is not None:  # not deleted meanwhile
                await self._add_message(session_id, "assistant", content, record.id)
        finally:
            done.set()

    async def end(self, scope: str, session_id: str) -> dict[str, Any]:
        """Kill a turn still running, then forget the session and its messages."""
        await self.session(scope, session_id)
        killed = []
        for r in list(self.runner.sup.table.records.values()):
            if r.kind == "chat" and r.labels.get("sessionId") == session_id and r.state in ACTIVE_STATES:
                await self.runner.sup.kill(r.id)
                killed.append(r.id)
        for record_id in killed:
            await self.runner.settled(record_id)
        await self.runner.store.execute("DELETE FROM chat_messages WHERE session_id = ?", (session_id,))
        await self.runner.store.execute("DELETE FROM chat_sessions WHERE id = ?", (session_id,))
        return {"sessionId": session_id, "deleted": True, "killed": killed}
