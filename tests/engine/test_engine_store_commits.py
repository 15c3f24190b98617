"""Small commits on the event loop: never a checkpoint there, never a wait for another's lock."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import trio

from gateway.supervisor import ProcessRecord, Store
from gateway.supervisor import store as store_module


def _record(i: int) -> ProcessRecord:
    return ProcessRecord(id=f"p{i:04d}", kind="process", argv=["sleep", str(i)], cwd=None)


def _ids_in_main_file(path: Path, tmp: Path) -> set[str]:
    """The records the database file itself holds, without its WAL: what a checkpoint copied."""
    copy = tmp / "main-only.db"
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM processes")}
    finally:
        conn.close()


async def test_small_commits_reach_the_file_through_periodic_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CHECKPOINT_EVERY", 4)
    path = tmp_path / "gateway.db"
    store = Store(path)
    await store.open()
    try:
        await store.checkpoint()  # the schema into the file: what follows is the rows
        for i in range(3):
            await store.save_records([_record(i)])
        # Committed (a second connection reads them through the WAL), not yet checkpointed.
        reader = sqlite3.connect(path)
        assert {r[0] for r in reader.execute("SELECT id FROM processes")} == {"p0000", "p0001", "p0002"}
        reader.close()
        assert _ids_in_main_file(path, tmp_path) == set()
        await store.save_records([_record(3)])  # the fourth: a checkpoint follows
        assert _ids_in_main_file(path, tmp_path) == {"p0000", "p0001", "p0002", "p0003"}
    finally:
        await store.close()


async def test_a_commit_never_waits_on_the_loop_for_another_writer(tmp_path: Path) -> None:
    """Another process holding the write lock: the loop keeps running, the commit lands after."""
    path = tmp_path / "gateway.db"
    store = Store(path)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock, as a second writer would hold it
        saved = trio.Event()

        async def save() -> None:
            await store.save_records([_record(1)])
            saved.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(save)
            ticks = 0
            began = time.monotonic()
            while time.monotonic() - began < 0.3:  # the loop turns while the save waits
                await trio.sleep(0.01)
                ticks += 1
            assert ticks >= 10 and not saved.is_set()
            other.execute("COMMIT")
            with trio.fail_after(10):
                await saved.wait()
        row = await store.fetchone("SELECT id FROM processes")
        assert row is not None and row[0] == "p0001"
    finally:
        other.close()
        await store.close()
