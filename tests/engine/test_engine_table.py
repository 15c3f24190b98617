"""The process table's paging index and change log: pages after a cursor that stay right while
records come and go, and watchers that learn what changed without scanning the table."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from gateway.supervisor import ProcessRecord, State, Store
from gateway.supervisor.store import INLINE_ROWS
from gateway.supervisor.table import BURST_QUIET, ProcessTable


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "gateway.db")
    await s.open()
    yield s
    await s.close()


def record(n: int, kind: str = "command", state: State = State.EXITED) -> ProcessRecord:
    return ProcessRecord(id=f"p_{n:06d}", kind=kind, argv=["true"], cwd=None, state=state)


async def test_pages_follow_the_listing_order_through_removals(store: Store) -> None:
    table = ProcessTable(store)
    for n in range(5000):
        table.touch(record(n, kind="git" if n % 2 else "command"))
    seen: list[str] = []
    after = None
    while True:
        page, after = table.page(after, 300)
        seen += [r.id for r in page]
        if after is None:
            break
    assert seen == [r.id for r in table.records.values()] and len(seen) == 5000

    # A filtered page skips what does not match and still hands on a cursor.
    gits, cursor = table.page(None, 10, lambda r: r.kind == "git")
    assert [r.id for r in gits] == [f"p_{n:06d}" for n in range(1, 20, 2)]
    assert cursor == "p_000019"

    # Retention removes records under a reader's feet: the next page starts after the cursor.
    table.forget([f"p_{n:06d}" for n in range(20, 30)])
    nxt, _ = table.page("p_000019", 3)
    assert [r.id for r in nxt] == ["p_000030", "p_000031", "p_000032"]
    with pytest.raises(KeyError):
        table.page("p_000025", 3)  # a removed cursor is refused, never silently restarted
    table.touch(record(9999))  # a new record goes last
    last, end = table.page("p_004999", 10)
    assert [r.id for r in last] == ["p_009999"] and end is None


async def test_changes_since_is_the_latest_state_once_and_removals(store: Store) -> None:
    table = ProcessTable(store, change_log=8)
    a, b, c = record(1), record(2), record(3)
    for r in (a, b, c):
        table.touch(r)
    mark = table.version
    b.state = State.KILLED
    table.touch(b)
    table.touch(a)
    table.touch(b)  # b twice after the mark: reported once, in its latest version
    table.forget([c.id])
    got = table.changes_since(mark)
    assert got is not None
    assert [(v, x if isinstance(x, str) else x.id) for v, x in got] == [
        (a.version, a.id),
        (b.version, b.id),
        (table.version, c.id),
    ]
    assert table.changes_since(table.version) == []
    for _ in range(10):  # past the log's length: the watcher must scan instead
        table.touch(a)
    assert table.changes_since(mark) is None


async def test_a_watcher_far_behind_the_log_still_gets_every_record(store: Store) -> None:
    table = ProcessTable(store, change_log=4)
    records = [record(n, state=State.RUNNING) for n in range(20)]
    for r in records:
        table.touch(r)
    watcher = table.watch(0)
    batch = await anext(watcher)
    assert sorted(r.id for r in batch) == sorted(r.id for r in records)
    records[5].state = State.EXITED
    table.touch(records[5])
    with trio.fail_after(5):
        assert [r.id for r in await anext(watcher)] == [records[5].id]
    await watcher.aclose()


def _ids_on_disk(store: Store) -> set[str]:
    """What another connection reads, synchronously: no await, so the mock clock stands still."""
    conn = sqlite3.connect(store.path)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM processes")}
    finally:
        conn.close()


async def test_a_change_is_written_at_once_and_a_burst_once_it_stops_growing(
    store: Store, autojump_clock: trio.testing.MockClock
) -> None:
    """A start (one record) is on disk without delay: an HTTP start waits for it. A burst (a
    bulk kill touches every tree) is held while it grows, then written in one go."""
    table = ProcessTable(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(table.flusher)
        began = trio.current_time()
        single = record(0, state=State.RUNNING)
        table.touch(single)
        await table.persisted(single)
        assert trio.current_time() - began < BURST_QUIET, "a small change does not wait"
        assert _ids_on_disk(store) == {single.id}

        burst = [record(n, state=State.STOPPING) for n in range(1, 3 * INLINE_ROWS)]
        first, rest = burst[: INLINE_ROWS + 1], burst[INLINE_ROWS + 1 :]
        for r in first:  # more at once than a small commit takes: a burst
            table.touch(r)
        for step in range(0, len(rest), 4):  # four more every 0.9 of a quiet period
            await trio.sleep(BURST_QUIET * 0.9)
            assert _ids_on_disk(store) == {single.id}, "not written while it grows"
            for r in rest[step : step + 4]:
                table.touch(r)
        await table.persisted(burst[-1])
        assert _ids_on_disk(store) == {single.id} | {r.id for r in burst}
        nursery.cancel_scope.cancel()
