"""Tables per owner: each owner migrates its own, and a database from before that keeps all rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.http.policy import POLICY_SCHEMA
from gateway.supervisor import Store
from gateway.supervisor.services.repos import REPOS_SCHEMA
from gateway.supervisor.store import ENGINE_SCHEMA
from gateway.supervisor.symphony.store import SYMPHONY_SCHEMA


def _legacy_db(path: Path) -> None:
    """A database as the single global migration list left it, at ``user_version`` 7."""
    steps = [
        ENGINE_SCHEMA[0],
        ENGINE_SCHEMA[1] + REPOS_SCHEMA[0],
        POLICY_SCHEMA[0],
        *SYMPHONY_SCHEMA[:4],  # the four Symphony steps of the old global list (4-7)
    ]
    conn = sqlite3.connect(path)
    for script in steps:
        conn.executescript(script)
    conn.execute("INSERT INTO repos VALUES ('r1', '/src/app', 'app', 'main', 1.0)")
    conn.execute("INSERT INTO settings VALUES ('k', '\"v\"')")
    conn.execute(
        "INSERT INTO symphony_tickets VALUES"
        " ('T-1', 'r1', '/wt/T-1', 'symphony/T-1', 'main', 'claude', 1.0, 1.0)"
    )
    conn.execute(f"PRAGMA user_version = {len(steps)}")
    conn.commit()
    conn.close()


async def test_a_legacy_database_is_adopted_without_loss(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    _legacy_db(path)
    store = Store(path)
    await store.open()
    try:
        # Every owner's scripts are already applied: migrating again creates nothing twice.
        await store.migrate("repos", REPOS_SCHEMA)
        await store.migrate("policy", POLICY_SCHEMA)
        await store.migrate("symphony", SYMPHONY_SCHEMA)
        assert (await store.fetchone("SELECT path FROM repos WHERE id = 'r1'"))[0] == "/src/app"
        assert (await store.fetchone("SELECT value FROM settings WHERE key = 'k'"))[0] == '"v"'
        row = await store.fetchone("SELECT worktree FROM symphony_tickets WHERE ticket_id = 'T-1'")
        assert row[0] == "/wt/T-1"
        versions = dict(await store.fetchall("SELECT owner, version FROM schema_versions"))
        # The engine's scripts after the legacy ones (kill method, cgroup use, node) are applied on open.
        # Adopted at the old global version, then brought up to date owner by owner.
        assert versions == {
            "engine": len(ENGINE_SCHEMA),
            "repos": len(REPOS_SCHEMA),
            "policy": len(POLICY_SCHEMA),
            "symphony": len(SYMPHONY_SCHEMA),
        }
        assert store.schema_version == sum(versions.values())
        await store.fetchone("SELECT kill_method, cpu_usec, memory_peak, node FROM processes")
    finally:
        await store.close()


async def test_each_owner_migrates_its_own_tables(tmp_path: Path) -> None:
    store = Store(tmp_path / "gateway.db")
    await store.open()
    try:
        tables = {r[0] for r in await store.fetchall("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"processes", "settings"} <= tables and "repos" not in tables
        await store.migrate("repos", REPOS_SCHEMA)
        await store.migrate("repos", REPOS_SCHEMA)  # idempotent
        tables = {r[0] for r in await store.fetchall("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "repos" in tables and "symphony_tickets" not in tables
        assert store.schema_version == len(ENGINE_SCHEMA) + len(REPOS_SCHEMA)
    finally:
        await store.close()
