"""The process table: every record in memory, persisted write-behind in batches, watchable.

Watchers never get a queue that could fill up: each record carries the table version of its
last change, and a watcher asks for everything newer than the version it saw. Bursts coalesce,
slow watchers cost nothing, and nobody misses the latest state. What changed after a version
comes from a bounded change log, so a watcher's wake-up costs O(changes), not O(records); one
further behind than the log falls back to a scan.

The listing order (oldest first) is kept as an index beside the records, so a page after a
given record is a bisection and ``limit`` steps, however many records there are.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable

import trio

from .spec import ProcessRecord, State
from .store import INLINE_ROWS, Store

#: How many changes the log keeps; a watcher further behind re-reads by scanning the table.
CHANGE_LOG = 65536
#: A burst of changes is written once it grew no more for this long (seconds) ...
BURST_QUIET = 0.005
#: ... or once it has waited this long.
BURST_MAX = 0.05


def _version(entry: tuple[int, str, ProcessRecord | None]) -> int:
    return entry[0]


class ProcessTable:
    def __init__(self, store: Store, *, change_log: int = CHANGE_LOG) -> None:
        self.store = store
        self.records: dict[str, ProcessRecord] = {}
        self.version = 0
        self._changed = trio.Event()
        self._dirty: dict[str, ProcessRecord] = {}
        self._dirty_event = trio.Event()
        self._flushed_version = 0
        self._flushed = trio.Event()
        self._deleted: set[str] = set()
        #: (table version, record id) of records dropped by retention, newest last; streams
        #: turn them into ``removed`` lines. A watcher further behind than this re-snapshots.
        self.removed: deque[tuple[int, str]] = deque(maxlen=4096)
        #: (version, record id, record; None once removed) of every change, ascending.
        self.changes: deque[tuple[int, str, ProcessRecord | None]] = deque(maxlen=change_log)
        self._log_floor = 0  # changes at or below this version have left the log
        # The listing order: an insertion number per record, and both as sorted lists.
        self._order: dict[str, int] = {}
        self._order_nums: list[int] = []
        self._order_ids: list[str] = []
        self._next_order = 0

    async def load(self) -> list[ProcessRecord]:
        for record in await self.store.load_records():
            self.records[record.id] = record
            self._place(record.id)
        return list(self.records.values())

    def _place(self, record_id: str) -> None:
        self._order[record_id] = self._next_order
        self._order_nums.append(self._next_order)
        self._order_ids.append(record_id)
        self._next_order += 1

    def _log(self, record_id: str, record: ProcessRecord | None) -> None:
        if len(self.changes) == self.changes.maxlen:
            self._log_floor = self.changes[0][0]
        self.changes.append((self.version, record_id, record))

    def page(
        self, after: str | None, limit: int, keep: Callable[[ProcessRecord], bool] | None = None
    ) -> tuple[list[ProcessRecord], str | None]:
        """Up to ``limit`` records after record ``after`` (oldest first) that ``keep`` accepts,
        and the cursor for the next page (None when this page reached the end).

        Raises ``KeyError`` for an ``after`` that is not (or no longer) in the table.
        """
        start = 0 if after is None else bisect.bisect_right(self._order_nums, self._order[after])
        ids, records = self._order_ids, self.records
        out: list[ProcessRecord] = []
        i = start
        while i < len(ids) and len(out) < limit:
            record = records[ids[i]]
            if keep is None or keep(record):
                out.append(record)
            i += 1
        return out, (out[-1].id if out and i < len(ids) else None)

    def changes_since(self, version: int) -> list[tuple[int, ProcessRecord | str]] | None:
        """What changed after ``version``, ascending: the record (its latest state, once), or
        the id of a removed record. None if the log no longer reaches back that far."""
        if version < self._log_floor:
            return None
        log = self.changes
        i = bisect.bisect_right(log, version, key=_version)
        out: list[tuple[int, ProcessRecord | str]] = []
        for k in range(i, len(log)):
            v, record_id, record = log[k]
            if record is None:
                out.append((v, record_id))
            elif record.version == v and record_id in self.records:
                out.append((v, record))
        return out

    def get(self, record_id: str) -> ProcessRecord | None:
        return self.records.get(record_id)

    def query(
        self,
        *,
        kind: str | None = None,
        ticket_id: str | None = None,
        state: str | Iterable[str] | None = None,
        job_id: str | None = None,
    ) -> list[ProcessRecord]:
        states = {state} if isinstance(state, str) else set(state) if state is not None else None
        return [
            r
            for r in self.records.values()
            if (kind is None or r.kind == kind)
            and (ticket_id is None or r.ticket_id == ticket_id)
            and (states is None or r.state.value in states)
            and (job_id is None or r.job_id == job_id)
        ]

    def counts(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for r in self.records.values():
            out[(r.kind, r.state.value)] = out.get((r.kind, r.state.value), 0) + 1
        return out

    def touch(self, record: ProcessRecord) -> None:
        """Publish a change of ``record``: bump versions, wake watchers, queue persistence."""
        self.version += 1
        record.version = self.version
        if record.id not in self.records:
            self._place(record.id)
        self.records[record.id] = record
        self._log(record.id, record)
        self._dirty[record.id] = record
        self._dirty_event.set()
        self._changed.set()
        self._changed = trio.Event()

    def forget(self, ids: Iterable[str]) -> list[str]:
        """Drop records for good (retention): from memory now, from the database on the next
        flush; each removal gets a version, so watchers learn of it like of a change."""
        gone = []
        for record_id in ids:
            if self.records.pop(record_id, None) is None:
                continue
            self.version += 1
            self.removed.append((self.version, record_id))
            self._log(record_id, None)
            num = self._order.pop(record_id)
            i = bisect.bisect_left(self._order_nums, num)
            del self._order_nums[i], self._order_ids[i]
            self._dirty.pop(record_id, None)
            self._deleted.add(record_id)
            gone.append(record_id)
        if gone:
            self._dirty_event.set()
            self._changed.set()
            self._changed = trio.Event()
        return gone

    def removed_since(self, version: int) -> list[tuple[int, str]]:
        return [(v, rid) for v, rid in self.removed if v > version]

    async def persisted(self, record: ProcessRecord) -> None:
        """Wait until ``record``'s current version is on disk (start-up and end states)."""
        target = record.version
        while self._flushed_version < target:
            await self._flushed.wait()

    async def flusher(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write dirty records in batches until cancelled; the final flush is ``flush()``."""
        task_status.started()
        while True:
            await self._dirty_event.wait()
            await self._settle_burst()
            await self.flush()

    async def _settle_burst(self) -> None:
        """Hold a burst's batch until it stops growing (``BURST_QUIET``, at most ``BURST_MAX``).

        A change of a few records (a start, an exit) is written at once: an HTTP start waits
        for it. A burst (a bulk kill: every tree is touched as it stops, then as it ends) would
        otherwise be written two or three times over while it runs, each time converting every
        record in it on the event loop; held until it stops growing, it is written in fewer,
        larger commits (a bulk kill of 200 trees: one commit of 200 rows). Cancellation:
        a plain sleep; the batch stays in ``_dirty`` for the next (or the final) flush.
        """
        if len(self._dirty) <= INLINE_ROWS:
            return
        deadline = trio.current_time() + BURST_MAX
        size = -1
        while len(self._dirty) != size and trio.current_time() < deadline:
            size = len(self._dirty)
            await trio.sleep(BURST_QUIET)

    async def flush(self) -> None:
        self._dirty_event = trio.Event()
        if not self._dirty and not self._deleted:
            return
        batch, self._dirty = self._dirty, {}
        deleted, self._deleted = self._deleted, set()
        version = self.version
        # Shielded: the batch has left _dirty, so a cancelled save (the flusher is cancelled
        # right after the final flush, which finds _dirty empty) would lose it for good.
        with trio.CancelScope(shield=True):
            await self.store.save_records(list(batch.values()))
            await self.store.delete_records(deleted)
        self._flushed_version = max(self._flushed_version, version)
        self._flushed.set()
        self._flushed = trio.Event()

    async def watch(self, since_version: int = 0) -> AsyncIterator[list[ProcessRecord]]:
        """Yield the records changed after ``since_version``, batch by batch, forever."""
        seen = since_version
        while True:
            changed = self._changed
            if self.version > seen:
                logged = self.changes_since(seen)
                if logged is not None:
                    batch = [r for _v, r in logged if isinstance(r, ProcessRecord)]
                else:
                    batch = sorted(
                        (r for r in self.records.values() if r.version > seen), key=lambda r: r.version
                    )
                seen = self.version
                if batch:
                    yield batch
                continue
            await changed.wait()

    @property
    def changed(self) -> trio.Event:
        """The event the next ``touch`` sets; grab it before reading to miss nothing."""
        return self._changed

    def active(self) -> list[ProcessRecord]:
        return [
            r for r in self.records.values() if r.state in (State.STARTING, State.RUNNING, State.STOPPING)
        ]
