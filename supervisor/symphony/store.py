"""Symphony's tables (migration 4 of ``store.py``): tickets, verdicts, plans, sessions, chat.

All of Symphony's SQL lives here, so the service modules read as behaviour and the schema can
be checked in one place. Methods answer the contract's JSON shapes (camelCase, ISO times).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from ..engine import new_id
from ..services.repos import REPOS_SCHEMA
from ..spec import iso
from ..store import Store
from .model import Ticket, Verdict

#: Symphony's tables (owner ``symphony``): tickets, verdicts, plans, sessions and chat; then
#: learnings; then review findings and verdicts; then scoped chat sessions.
SYMPHONY_SCHEMA: list[str] = [
    """
    CREATE TABLE symphony_tickets (
        ticket_id TEXT PRIMARY KEY,
        repo_id TEXT NOT NULL,
        worktree TEXT NOT NULL,
        branch TEXT NOT NULL,
        base_ref TEXT,
        provider TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE symphony_verdicts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id TEXT NOT NULL,
        job_id TEXT,
        process_id TEXT,
        iteration INTEGER NOT NULL,
        name TEXT NOT NULL,
        passed INTEGER NOT NULL,
        score REAL NOT NULL,
        threshold REAL NOT NULL,
        justification TEXT NOT NULL DEFAULT '',
        duration_ms INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX symphony_verdicts_ticket ON symphony_verdicts(ticket_id, id);
    CREATE TABLE symphony_plans (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id TEXT NOT NULL,
        job_id TEXT,
        process_id TEXT,
        version INTEGER NOT NULL,
        plan TEXT NOT NULL,
        feedback TEXT,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX symphony_plans_ticket ON symphony_plans(ticket_id, id);
    CREATE TABLE symphony_sessions (
        id TEXT PRIMARY KEY,
        ticket_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        provider_session_id TEXT,
        title TEXT,
        created_at REAL NOT NULL,
        last_activity REAL NOT NULL,
        unread INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX symphony_sessions_ticket ON symphony_sessions(ticket_id, provider);
    CREATE TABLE symphony_chat (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id TEXT NOT NULL,
        session_id TEXT,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        provider TEXT,
        process_id TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX symphony_chat_ticket ON symphony_chat(ticket_id, id);
    CREATE TABLE symphony_comment_chat (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        comment_id TEXT NOT NULL,
        ticket_id TEXT,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        provider TEXT,
        provider_session_id TEXT,
        process_id TEXT,
        resolved INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX symphony_comment_chat_comment ON symphony_comment_chat(comment_id, id);
    """,
    """
    CREATE TABLE learnings (
        id TEXT PRIMARY KEY,
        ticket_id TEXT NOT NULL,
        repo_id TEXT,
        source_process_id TEXT NOT NULL,
        extractor_process_id TEXT,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
        uses INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        decided_at REAL,
        last_used_at REAL
    );
    CREATE INDEX learnings_status ON learnings(status, created_at);
    CREATE INDEX learnings_ticket ON learnings(ticket_id);
    """,
    """
    CREATE TABLE review_findings (
        id TEXT PRIMARY KEY,
        ticket_id TEXT NOT NULL,
        review_process_id TEXT NOT NULL,
        file TEXT,
        line INTEGER,
        severity TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        duplicate_of TEXT,
        argument TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX review_findings_ticket ON review_findings(ticket_id, created_at);
    CREATE TABLE review_verdicts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ticket_id TEXT NOT NULL,
        verdict TEXT NOT NULL,
        source TEXT NOT NULL,
        reason TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX review_verdicts_ticket ON review_verdicts(ticket_id, id);
    """,
    """
    CREATE TABLE chat_sessions (
        id TEXT PRIMARY KEY,
        scope TEXT NOT NULL,
        scope_key TEXT NOT NULL,
        provider TEXT NOT NULL,
        provider_session_id TEXT,
        cwd TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_activity REAL NOT NULL
    );
    CREATE INDEX chat_sessions_scope ON chat_sessions(scope, scope_key, last_activity);
    CREATE TABLE chat_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        process_id TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX chat_messages_session ON chat_messages(session_id, id);
    """,
]


def session_json(row: Any) -> dict[str, Any]:
    return {
        "id": row[0],
        "ticketId": row[1],
        "provider": row[2],
        "providerSessionId": row[3],
        "title": row[4],
        "createdAt": iso(row[5]),
        "lastActivity": iso(row[6]),
        "unreadCount": int(row[7]),
    }


_SESSION_COLUMNS = "id, ticket_id, provider, provider_session_id, title, created_at, last_activity, unread"


class SymphonyStore:
    """Reads and writes Symphony's rows through the gateway's ``Store``."""

    def __init__(self, store: Store) -> None:
        self.db = store

    async def open(self) -> None:
        """Create or migrate Symphony's tables, after the ``repos`` table they refer to."""
        await self.db.migrate("repos", REPOS_SCHEMA)
        await self.db.migrate("symphony", SYMPHONY_SCHEMA)

    # ---- repos and tickets --------------------------------------------------------------

    async def repo_path(self, repo_id: str) -> Path | None:
        row = await self.db.fetchone("SELECT path FROM repos WHERE id = ?", (repo_id,))
        return Path(row[0]) if row else None

    async def repos(self) -> list[tuple[str, Path]]:
        """Every registered repository as ``(id, path)`` (lookups by path)."""
        rows = await self.db.fetchall("SELECT id, path FROM repos ORDER BY created_at")
        return [(row[0], Path(row[1])) for row in rows]

    async def ticket(self, ticket_id: str) -> Ticket | None:
        row = await self.db.fetchone(
            "SELECT ticket_id, repo_id, worktree, branch, base_ref, provider FROM symphony_tickets"
            " WHERE ticket_id = ?",
            (ticket_id,),
        )
        return Ticket(row[0], row[1], Path(row[2]), row[3], row[4], row[5]) if row else None

    async def save_ticket(self, ticket: Ticket) -> None:
        """Insert or update; a later run without ``baseRef`` keeps the first one's, and a
        worktree opened without a provider (``POST /git/worktree``) keeps the last run's."""
        now = time.time()
        await self.db.execute(
            "INSERT INTO symphony_tickets (ticket_id, repo_id, worktree, branch, base_ref, provider,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(ticket_id) DO UPDATE SET repo_id = excluded.repo_id,"
            " worktree = excluded.worktree, branch = excluded.branch,"
            " base_ref = COALESCE(excluded.base_ref, symphony_tickets.base_ref),"
            " provider = COALESCE(excluded.provider, symphony_tickets.provider),"
            " updated_at = excluded.updated_at",
            (
                ticket.ticket_id, ticket.repo_id, str(ticket.worktree), ticket.branch, ticket.base_ref,
                ticket.provider, now, now,
            ),
        )  # fmt: skip

    # ---- verdicts -----------------------------------------------------------------------

    async def save_verdict(self, ticket_id: str, v: Verdict) -> None:
        await self.db.execute(
            "INSERT INTO symphony_verdicts (ticket_id, job_id, process_id, iteration, name, passed, score,"
            " threshold, justification, duration_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ticket_id, v.job_id, v.process_id, v.iteration, v.name, int(v.passed), v.score,
                v.threshold, v.justification, v.duration_ms, v.created_at,
            ),
        )  # fmt: skip

    async def verdicts(self, ticket_id: str, job_id: str | None) -> list[Verdict]:
        rows = await self.db.fetchall(
            "SELECT iteration, name, passed, score, threshold, justification, duration_ms, process_id,"
            " job_id, created_at FROM symphony_verdicts WHERE ticket_id = ? AND (? IS NULL OR job_id = ?)"
            " ORDER BY id",
            (ticket_id, job_id, job_id),
        )
        return [Verdict(r[0], r[1], bool(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9]) for r in rows]

    # ---- plans --------------------------------------------------------------------------

    async def add_plan(self, ticket_id: str, job_id: str, process_id: str, version: int, plan: str) -> None:
        now = time.time()
        await self.db.execute(
            "INSERT INTO symphony_plans (ticket_id, job_id, process_id, version, plan, feedback, status,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, NULL, 'awaiting-feedback', ?, ?)",
            (ticket_id, job_id, process_id, version, plan, now, now),
        )

    async def set_plan_status(
        self, job_id: str, version: int, status: str, feedback: str | None = None
    ) -> None:
        await self.db.execute(
            "UPDATE symphony_plans SET status = ?, feedback = COALESCE(?, feedback), updated_at = ?"
            " WHERE job_id = ? AND version = ?",
            (status, feedback, time.time(), job_id, version),
        )

    async def plans(self, ticket_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT version, plan, feedback, status, job_id, process_id, created_at, updated_at"
            " FROM symphony_plans WHERE ticket_id = ? ORDER BY id",
            (ticket_id,),
        )
        return [
            {
                "version": r[0], "plan": r[1], "feedback": r[2], "status": r[3], "jobId": r[4],
                "processId": r[5], "createdAt": iso(r[6]), "updatedAt": iso(r[7]),
            }
            for r in rows
        ]  # fmt: skip

    # ---- sessions -----------------------------------------------------------------------

    async def note_session(
        self, ticket_id: str, provider: str, session_id: str | None, unread: int
    ) -> dict[str, Any]:
        """Create or touch the ticket's session for ``provider``; add ``unread`` replies."""
        now = time.time()
        row = await self.db.fetchone(
            "SELECT id FROM symphony_sessions WHERE ticket_id = ? AND provider = ?", (ticket_id, provider)
        )
        if row is None:
            sid = new_id("s")
            await self.db.execute(
                "INSERT INTO symphony_sessions (id, ticket_id, provider, provider_session_id, title,"
                " created_at, last_activity, unread) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (sid, ticket_id, provider, session_id, None, now, now, unread),
            )
        else:
            sid = row[0]
            await self.db.execute(
                "UPDATE symphony_sessions SET provider_session_id = COALESCE(?, provider_session_id),"
                " last_activity = ?, unread = unread + ? WHERE id = ?",
                (session_id, now, unread, sid),
            )
        session = await self.session(sid)
        assert session is not None
        return session

    async def session(self, sid: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(f"SELECT {_SESSION_COLUMNS} FROM symphony_sessions WHERE id = ?", (sid,))
        return session_json(row) if row else None

    async def session_for(self, ticket_id: str, provider: str) -> dict[str, Any] | None:
        row = await self.db.fetchone(
            "SELECT id FROM symphony_sessions WHERE ticket_id = ? AND provider = ?", (ticket_id, provider)
        )
        return await self.session(row[0]) if row else None

    async def sessions(self, ticket_id: str | None) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            f"SELECT {_SESSION_COLUMNS} FROM symphony_sessions WHERE (? IS NULL OR ticket_id = ?)"
            " ORDER BY last_activity DESC",
            (ticket_id, ticket_id),
        )
        return [session_json(r) for r in rows]

    async def set_session_title(self, sid: str, title: str) -> None:
        await self.db.execute("UPDATE symphony_sessions SET title = ? WHERE id = ?", (title, sid))

    async def matching_sessions(self, session_id: str | None, ticket_id: str | None) -> list[tuple[str, str]]:
        """(session id, ticket id) of the session ``session_id`` or all of ``ticket_id``'s."""
        rows = await self.db.fetchall(
            "SELECT id, ticket_id FROM symphony_sessions WHERE id = ? OR ticket_id = ?",
            (session_id, ticket_id),
        )
        return [(r[0], r[1]) for r in rows]

    async def delete_sessions(self, session_id: str | None, ticket_id: str | None) -> None:
        await self.db.execute(
            "DELETE FROM symphony_sessions WHERE id = ? OR ticket_id = ?", (session_id, ticket_id)
        )

    async def mark_read(self, ticket_id: str) -> None:
        await self.db.execute("UPDATE symphony_sessions SET unread = 0 WHERE ticket_id = ?", (ticket_id,))

    async def unread_by_ticket(self) -> dict[str, int]:
        rows = await self.db.fetchall(
            "SELECT ticket_id, SUM(unread) FROM symphony_sessions GROUP BY ticket_id"
        )
        return {r[0]: int(r[1] or 0) for r in rows}

    # ---- chat history -------------------------------------------------------------------

    async def add_chat(
        self,
        ticket_id: str,
        role: str,
        content: str,
        provider: str | None,
        process_id: str | None,
        session_id: str | None,
    ) -> dict[str, Any]:
        now = time.time()

        def go(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO symphony_chat (ticket_id, session_id, role, content, provider, process_id,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ticket_id, session_id, role, content, provider, process_id, now),
            )
            return int(cur.lastrowid or 0)

        mid = await self.db.run(go)
        return {
            "id": mid, "ticketId": ticket_id, "role": role, "content": content, "provider": provider,
            "processId": process_id, "createdAt": iso(now),
        }  # fmt: skip

    async def chat(self, ticket_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT id, role, content, provider, process_id, created_at FROM symphony_chat"
            " WHERE ticket_id = ? ORDER BY id",
            (ticket_id,),
        )
        return [
            {
                "id": r[0], "ticketId": ticket_id, "role": r[1], "content": r[2], "provider": r[3],
                "processId": r[4], "createdAt": iso(r[5]),
            }
            for r in rows
        ]  # fmt: skip

    async def clear_chat(self, ticket_id: str) -> int:
        return await self.db.execute("DELETE FROM symphony_chat WHERE ticket_id = ?", (ticket_id,))

    # ---- review comment threads ---------------------------------------------------------

    async def comment_thread(self, comment_id: str) -> dict[str, Any]:
        rows = await self.db.fetchall(
            "SELECT id, ticket_id, role, content, provider, process_id, resolved, created_at, updated_at,"
            " provider_session_id FROM symphony_comment_chat WHERE comment_id = ? ORDER BY id",
            (comment_id,),
        )
        messages = [
            {
                "id": r[0], "ticketId": r[1], "role": r[2], "content": r[3], "provider": r[4],
                "processId": r[5], "createdAt": iso(r[7]), "updatedAt": iso(r[8]),
            }
            for r in rows
        ]  # fmt: skip
        return {
            "commentId": comment_id,
            "ticketId": rows[-1][1] if rows else None,
            "resolved": bool(rows and rows[-1][6]),
            "providerSessionId": next((r[9] for r in reversed(rows) if r[9]), None),
            "messages": messages,
        }

    async def add_comment(
        self,
        comment_id: str,
        ticket_id: str | None,
        role: str,
        content: str,
        provider: str | None,
        psid: str | None,
        process_id: str | None,
    ) -> None:
        now = time.time()
        await self.db.execute(
            "INSERT INTO symphony_comment_chat (comment_id, ticket_id, role, content, provider,"
            " provider_session_id, process_id, resolved, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (comment_id, ticket_id, role, content, provider, psid, process_id, now, now),
        )

    async def resolve_comment_thread(self, comment_id: str, resolved: bool) -> None:
        await self.db.execute(
            "UPDATE symphony_comment_chat SET resolved = ?, updated_at = ? WHERE comment_id = ?",
            (int(resolved), time.time(), comment_id),
        )

    async def edit_comment(self, comment_id: str, message_id: int, content: str) -> int:
        return await self.db.execute(
            "UPDATE symphony_comment_chat SET content = ?, updated_at = ? WHERE comment_id = ? AND id = ?",
            (content, time.time(), comment_id, message_id),
        )

    async def delete_comment_thread(self, comment_id: str) -> int:
        return await self.db.execute("DELETE FROM symphony_comment_chat WHERE comment_id = ?", (comment_id,))
