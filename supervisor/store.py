"""SQLite persistence: versioned migrations, WAL, and every call but small commits off the
event loop.

One connection serialised by a trio lock and a one-thread limiter: SQLite serialises writers
anyway, and a single connection keeps WAL checkpoints and transactions simple. A commit of a
few process records (a start, an exit) runs on the event loop's thread: in WAL mode with
``synchronous=NORMAL`` it is a write to the page cache (~35 us here), while the hop to a worker
thread and back costs ~100-200 us of latency that an HTTP start waits out before it answers.
That needs two guarantees, both kept here: such a commit never checkpoints (automatic
checkpoints are off around it; writes in the worker thread still make them, and ``checkpoint``
runs there every ``CHECKPOINT_EVERY`` small commits), and it never waits for a lock (its busy
timeout is 0: only this connection writes in normal use, and readers never block a WAL
writer; should another process hold the write lock, the commit is retried in the worker
thread, which may wait for it).

Each owner registers its own tables: the engine's are applied when the store opens
(``ENGINE_SCHEMA``); the repo registry, the approval policy and Symphony call ``migrate`` with
their own ordered scripts when they are built. ``schema_versions`` records how far each owner
got, so owners evolve independently, and a database from before per-owner registration (one
global ``user_version``) is adopted without loss through ``LEGACY_VERSIONS``.
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

#: A commit of at most this many records runs on the event loop's thread (see the module doc).
INLINE_ROWS = 16
#: Small commits between two checkpoints of the WAL (each a worker-thread call).
CHECKPOINT_EVERY = 256
#: How long a write in the worker thread waits for another process's lock.
BUSY_TIMEOUT_MS = 5000
#: SQLite's default: a write in the worker thread checkpoints once the WAL holds this many pages.
AUTOCHECKPOINT_PAGES = 1000

#: The engine's own tables: the process table, then key/value settings.
ENGINE_SCHEMA: list[str] = [
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
    # 2: key/value settings (binary paths, limits)
    """
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 3: how a process's tree was killed (cgroup or /proc) and what its cgroup accounted
    """
    ALTER TABLE processes ADD COLUMN kill_method TEXT;
    ALTER TABLE processes ADD COLUMN cpu_usec INTEGER;
    ALTER TABLE processes ADD COLUMN memory_peak INTEGER;
    """,
    # 4: where each child runs: "local" or a node's name
    """
    ALTER TABLE processes ADD COLUMN node TEXT NOT NULL DEFAULT 'local';
    """,
]

#: What a database made before tables were registered per owner holds, by its old global
#: ``user_version``: for each owner, how many of its migrations were already applied.
LEGACY_VERSIONS: dict[str, tuple[int, ...]] = {
    # owner: (version at legacy 1, at 2, ... at 7)
    "engine": (1, 2, 2, 2, 2, 2, 2),
    "repos": (0, 1, 1, 1, 1, 1, 1),
    "policy": (0, 0, 1, 1, 1, 1, 1),
    "symphony": (0, 0, 0, 1, 2, 3, 4),
}


_COLUMNS = (
    "id", "kind", "ticket_id", "state", "pid", "pid_start", "argv", "cwd", "started_at",
    "ended_at", "exit_code", "signal", "restarts", "last_seq", "torn_down", "stop_reason",
    "labels", "job_id", "event_parser", "error", "kill_method", "cpu_usec", "memory_peak",
    "node",
)  # fmt: skip


class Store:
    """The gateway database at ``<state>/gateway.db``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = trio.Lock()
        self._limiter = trio.CapacityLimiter(1)
        self._versions: dict[str, int] = {}
        self._since_checkpoint = 0

    async def open(self) -> None:
        await trio.to_thread.run_sync(self._open_sync, limiter=self._limiter)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (owner TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        legacy = conn.execute("PRAGMA user_version").fetchone()[0]
        if legacy and conn.execute("SELECT COUNT(*) FROM schema_versions").fetchone()[0] == 0:
            conn.executemany(
                "INSERT INTO schema_versions (owner, version) VALUES (?, ?)",
                [
                    (owner, versions[min(legacy, len(versions)) - 1])
                    for owner, versions in LEGACY_VERSIONS.items()
                ],
            )
        _migrate(conn, "engine", ENGINE_SCHEMA)
        self._versions = dict(conn.execute("SELECT owner, version FROM schema_versions").fetchall())
        self._conn = conn

    async def migrate(self, owner: str, scripts: Sequence[str]) -> None:
        """Apply ``owner``'s scripts it has not applied yet, each in its own transaction.

        Owners call this when they are built (before serving); it is idempotent. Scripts are
        append-only: a change to a table is a new script, never an edit of an old one.
        """
        self._versions[owner] = await self.run(lambda conn: _migrate(conn, owner, scripts))

    @property
    def schema_version(self) -> int:
        """The sum of every owner's applied migrations (grows with each one; for health)."""
        return sum(self._versions.values())

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

        if len(rows) <= INLINE_ROWS:
            await self.run_inline(go)
        else:
            await self.run(go)

    async def run_inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a small write ``fn(conn)`` on the event loop's thread (see the module doc).

        Blocks the loop for the write itself (tens of microseconds); every
        ``CHECKPOINT_EVERY`` calls a WAL checkpoint follows in the worker thread. Cancellation:
        the lock is a checkpoint; once it is held, ``fn`` runs to its end.
        """
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise RuntimeError("store is closed")
            # Never wait for a lock and never checkpoint (an fsync) on the loop's thread.
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            try:
                result = fn(conn)
                locked = False
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc):
                    raise
                locked = True
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            finally:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        if locked:  # another process writes (a second gateway on this state dir): wait there
            return await self.run(fn)
        self._since_checkpoint += 1
        if self._since_checkpoint >= CHECKPOINT_EVERY:
            await self.checkpoint()
        return result

    async def checkpoint(self) -> None:
        """Copy the WAL back into the database file (a PASSIVE checkpoint: readers are never
        blocked) in the worker thread."""
        self._since_checkpoint = 0
        await self.run(lambda conn: conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())

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


def _migrate(conn: sqlite3.Connection, owner: str, scripts: Sequence[str]) -> int:
    """Apply what ``owner`` lacks of ``scripts``; its version after."""
    row = conn.execute("SELECT version FROM schema_versions WHERE owner = ?", (owner,)).fetchone()
    version = row[0] if row else 0
    for number, script in enumerate(scripts[version:], start=version + 1):
        conn.execute("BEGIN")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_versions (owner, version) VALUES (?, ?)"
                " ON CONFLICT(owner) DO UPDATE SET version = excluded.version",
                (owner, number),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return max(version, len(scripts))


def _to_row(r: ProcessRecord) -> tuple[Any, ...]:
    return (
        r.id, r.kind, r.ticket_id, r.state.value, r.pid, r.pid_start, json.dumps(r.argv), r.cwd,
        r.started_at, r.ended_at, r.exit_code, r.signal, r.restarts, r.last_seq, int(r.torn_down),
        r.stop_reason.value if r.stop_reason else None, json.dumps(r.labels), r.job_id,
        r.event_parser, r.error, r.kill_method, r.cpu_usec, r.memory_peak, r.node,
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
        kill_method=row["kill_method"],
        cpu_usec=row["cpu_usec"],
        memory_peak=row["memory_peak"],
        node=row["node"],
    )


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED (any extended code): another connection holds the lock."""
    return (exc.sqlite_errorcode & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
