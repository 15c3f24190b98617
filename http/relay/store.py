"""The relay's memory in the gateway database: every relayed command and its unacked events.

ClosedLoop's desktop keeps this in memory only, so a restarted desktop runs a re-dispatched
command a second time. Here each command is written before it is acked to the relay, and each
event before it is sent, so after a restart:

- a command seen before is recognised (acked, replayed, never run again);
- a command that was *running* when the gateway stopped is closed with a terminal error
  (``gateway_restarted``) instead of being run again: its side effects may have happened;
- a command that was only *queued* runs, because nothing of it ran yet.

The tables belong to the relay (``Store.migrate("relay", ...)``: versioned per owner). Every
call goes through the one database thread of ``Store``.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from gateway.supervisor import Store

COMPONENT = "relay"
SCHEMA: list[str] = [
    # 1: relayed commands and the events not yet acked by the relay (all of a terminal one's)
    """
    CREATE TABLE relay_commands (
        command_id TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'terminal')),
        outcome TEXT CHECK (outcome IN ('done', 'failed', 'cancelled')),
        last_sequence INTEGER NOT NULL DEFAULT 0,
        acked_sequence INTEGER NOT NULL DEFAULT 0,
        received_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL
    );
    CREATE INDEX relay_commands_state ON relay_commands(state, ended_at);
    CREATE TABLE relay_events (
        command_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (command_id, sequence)
    ) WITHOUT ROWID;
    """,
]

#: Terminal commands are remembered this long (ClosedLoop: 10 minutes) ...
RETENTION = 24 * 3600.0
#: ... and at most this many of them (ClosedLoop: 200).
MAX_TERMINAL = 1000


@dataclass(slots=True)
class EventRecord:
    sequence: int
    event_type: str
    data: Any

    def wire(self, command_id: str) -> dict[str, Any]:
        return {
            "commandId": command_id,
            "sequence": self.sequence,
            "eventType": self.event_type,
            "data": self.data,
        }


@dataclass(slots=True)
class StoredCommand:
    command: dict[str, Any]
    state: str
    outcome: str | None
    last_sequence: int
    acked_sequence: int
    received_at: float
    started_at: float | None
    ended_at: float | None
    events: list[EventRecord] = field(default_factory=list)


class RelayStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def open(self) -> None:
        await self.store.migrate(COMPONENT, SCHEMA)

    async def load(self) -> dict[str, StoredCommand]:
        """Every remembered command with its buffered events, oldest first."""

        def go(conn: sqlite3.Connection) -> dict[str, StoredCommand]:
            out: dict[str, StoredCommand] = {}
            for row in conn.execute(
                "SELECT command_id, command, state, outcome, last_sequence, acked_sequence,"
                " received_at, started_at, ended_at FROM relay_commands ORDER BY received_at"
            ):
                out[row[0]] = StoredCommand(json.loads(row[1]), *tuple(row)[2:])
            for row in conn.execute(
                "SELECT command_id, sequence, event_type, data FROM relay_events"
                " ORDER BY command_id, sequence"
            ):
                stored = out.get(row[0])
                if stored is not None:
                    stored.events.append(EventRecord(row[1], row[2], json.loads(row[3])))
            return out

        return await self.store.run(go)

    async def add_command(self, command_id: str, command: dict[str, Any], now: float) -> None:
        await self.store.execute(
            "INSERT OR IGNORE INTO relay_commands (command_id, command, state, received_at)"
            " VALUES (?, ?, 'queued', ?)",
            (command_id, json.dumps(command), now),
        )

    async def mark_running(self, command_id: str, now: float) -> None:
        await self.store.execute(
            "UPDATE relay_commands SET state = 'running', started_at = ? WHERE command_id = ?",
            (now, command_id),
        )

    async def add_events(
        self, command_id: str, events: list[EventRecord], outcome: str | None, now: float
    ) -> None:
        """Keep the events; with ``outcome`` the command also becomes terminal (one transaction)."""
        rows = [(command_id, e.sequence, e.event_type, json.dumps(e.data)) for e in events]
        last = events[-1].sequence

        def go(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO relay_events (command_id, sequence, event_type, data)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )
                if outcome is None:
                    conn.execute(
                        "UPDATE relay_commands SET last_sequence = ? WHERE command_id = ?", (last, command_id)
                    )
                else:
                    conn.execute(
                        "UPDATE relay_commands SET last_sequence = ?, state = 'terminal', outcome = ?,"
                        " ended_at = ? WHERE command_id = ?",
                        (last, outcome, now, command_id),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self.store.run(go)

    async def acknowledge(self, acks: dict[str, tuple[int, int]]) -> None:
        """Record the relay's acks (command -> (acked sequence, events dropped up to)), in one
        transaction for the batch."""

        def go(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN")
            try:
                for command_id, (sequence, trimmed) in acks.items():
                    conn.execute(
                        "UPDATE relay_commands SET acked_sequence = MAX(acked_sequence, ?)"
                        " WHERE command_id = ?",
                        (sequence, command_id),
                    )
                    if trimmed:
                        conn.execute(
                            "DELETE FROM relay_events WHERE command_id = ? AND sequence <= ?",
                            (command_id, trimmed),
                        )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self.store.run(go)

    async def prune(self, now: float) -> list[str]:
        """Forget terminal commands older than ``RETENTION`` or beyond ``MAX_TERMINAL``."""

        def go(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT command_id FROM relay_commands WHERE state = 'terminal'"
                " AND (ended_at < ? OR command_id NOT IN (SELECT command_id FROM relay_commands"
                " WHERE state = 'terminal' ORDER BY ended_at DESC LIMIT ?))",
                (now - RETENTION, MAX_TERMINAL),
            ).fetchall()
            ids = [(r[0],) for r in rows]
            if ids:
                conn.execute("BEGIN")
                conn.executemany("DELETE FROM relay_events WHERE command_id = ?", ids)
                conn.executemany("DELETE FROM relay_commands WHERE command_id = ?", ids)
                conn.execute("COMMIT")
            return [i[0] for i in ids]

        return await self.store.run(go)
