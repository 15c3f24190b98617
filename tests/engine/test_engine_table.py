"""The process table's paging index and change log: pages after a cursor that stay right while
records come and go, and watchers that learn what changed without scanning the table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from gateway.supervisor import ProcessRecord, State, Store
from gateway.supervisor.table import ProcessTable


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
