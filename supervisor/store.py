"""SQLite persistence: versioned migrations, WAL, and every call off the event loop.

One connection serialised by a trio lock and a one-thread limiter: SQLite serialises writers
anyway, and a single connection keeps WAL checkpoints and transactions simple. Domain services
add their own tables through ``MIGRATIONS`` so the whole state dir has one schema version.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import trio

from .spec import ProcessRecord, State, StopReason

T = TypeVar("T")

MIGRATIONS: list[str] = [
    # 1: the process table
    """
    CREATE TABLE processes (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        ticket_id TEXT,
        state TEXT NOT NULL,
        pid INTEGER,
        pid_start REAL,
        argv TEXT NOT NULL,
        cwd TEXT,
        started_at REAL,
        ended_at REAL,
        exit_code INTEGER,
        signal TEXT,
        restarts INTEGER NOT NULL DEFAULT 0,
        last_seq INTEGER NOT NULL DEFAULT 0,
        torn_down INTEGER NOT NULL DEFAULT 0,
        stop_reason TEXT,
        labels TEXT NOT NULL DEFAULT '{}',
        job_id TEXT,
        event_parser TEXT,
        error TEXT
    );
    CREATE INDEX processes_ticket ON processes(ticket_id);
    CREATE INDEX processes_state ON processes(state);
    """,
    # 2: key/value settings and managed repositories
    """
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE repos (
        id TEXT PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        default_branch TEXT,
        created_at REAL NOT NULL
    );
    """,
    # 3: approval policy rules (gateway.http.policy): deny and expiring always-allow
    """
    CREATE TABLE policy_rules (
        id TEXT PRIMARY KEY,
        effect TEXT NOT NULL,
        principal TEXT,
        operation TEXT,
        method TEXT,
        path_prefix TEXT,
        created_at REAL NOT NULL,
        expires_at REAL
    );
    """,
    # 4: symphony (gateway.supervisor.symphony): tickets, judge verdicts, plans, sessions, chat
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
    # 5: learnings an agent extracted from finished runs, pending a person's decision
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
    # 6: code review findings (codex review) and review verdicts
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
    # 7: chat sessions outside tickets (terminal-chat, run-viewer-chat)
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
    # 8: where each child runs, and the receipts of trees that node agents killed on their own
    """
    ALTER TABLE processes ADD COLUMN node TEXT NOT NULL DEFAULT 'local';
    CREATE TABLE node_receipts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        node TEXT NOT NULL,
        process_id TEXT,
        receipt TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX node_receipts_node ON node_receipts(node, id);
    """,
]

_COLUMNS = (
    "id", "kind", "ticket_id", "state", "pid", "pid_start", "argv", "cwd", "started_at",
    "ended_at", "exit_code", "signal", "restarts", "last_seq", "torn_down", "stop_reason",
    "labels", "job_id", "event_parser", "error", "node",
)  # fmt: skip


class Store:
    """The gateway database at ``<state>/gateway.db``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = trio.Lock()
        self._limiter = trio.CapacityLimiter(1)

    async def open(self) -> None:
        await trio.to_thread.run_sync(self._open_sync, limiter=self._limiter)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            conn.execute("BEGIN")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self._conn = conn

    @property
    def schema_version(self) -> int:
        return len(MIGRATIONS)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(conn.close, limiter=self._limiter)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in the database thread; the one way to touch the connection."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("store is closed")
        async with self._lock:
            return await trio.to_thread.run_sync(fn, conn, limiter=self._limiter)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        def go(conn: sqlite3.Connection) -> int:
            return conn.execute(sql, params).rowcount

        return await self.run(go)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await self.run(lambda conn: conn.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return await self.run(lambda conn: conn.execute(sql, params).fetchone())

    # ---- the process table ------------------------------------------------------------

    async def save_records(self, records: Iterable[ProcessRecord]) -> None:
        rows = [_to_row(r) for r in records]
        if not rows:
            return
        placeholders = ",".join("?" for _ in _COLUMNS)
        sql = f"INSERT OR REPLACE INTO processes ({','.join(_COLUMNS)}) VALUES ({placeholders})"

        def go(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")

        await self.run(go)

    async def delete_records(self, ids: Iterable[str]) -> None:
        rows = [(i,) for i in ids]
        if not rows:
            return

        def go(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN")
            conn.executemany("DELETE FROM processes WHERE id = ?", rows)
            conn.execute("COMMIT")

        await self.run(go)

    async def load_records(self) -> list[ProcessRecord]:
        rows = await self.fetchall(f"SELECT {','.join(_COLUMNS)} FROM processes ORDER BY rowid")
        return [_from_row(row) for row in rows]

    async def ping(self) -> bool:
        row = await self.fetchone("SELECT 1")
        return row is not None and row[0] == 1


def _to_row(r: ProcessRecord) -> tuple[Any, ...]:
    return (
        r.id, r.kind, r.ticket_id, r.state.value, r.pid, r.pid_start, json.dumps(r.argv), r.cwd,
        r.started_at, r.ended_at, r.exit_code, r.signal, r.restarts, r.last_seq, int(r.torn_down),
        r.stop_reason.value if r.stop_reason else None, json.dumps(r.labels), r.job_id,
        r.event_parser, r.error, r.node,
    )  # fmt: skip


def _from_row(row: sqlite3.Row) -> ProcessRecord:
    return ProcessRecord(
        id=row["id"],
        kind=row["kind"],
        argv=json.loads(row["argv"]),
        cwd=row["cwd"],
        ticket_id=row["ticket_id"],
        state=State(row["state"]),
        pid=row["pid"],
        pid_start=row["pid_start"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        exit_code=row["exit_code"],
        signal=row["signal"],
        restarts=row["restarts"],
        last_seq=row["last_seq"],
        torn_down=bool(row["torn_down"]),
        stop_reason=StopReason(row["stop_reason"]) if row["stop_reason"] else None,
        labels=json.loads(row["labels"]),
        job_id=row["job_id"],
        event_parser=row["event_parser"],
        error=row["error"],
        node=row["node"],
    )
