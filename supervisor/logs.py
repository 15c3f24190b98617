"""The log of one process: numbered lines in a byte-bounded ring and in rotated files on disk.

Ingest works per *chunk*, not per line: each read from the child's pipe is cut at its last
newline and appended as one framed record (stream, first seq, line count, time) with
``bytes.count`` doing the counting, because building a dict per line caps ingest at a few tens
of MB/s while the pipe delivers hundreds. Line objects are only built when a reader asks. The
record is written with one ``writev`` of the very bytes the pipe read returned, inline: a
page-cache write costs less than handing the chunk to a worker thread and back.

Readers never block the writer: ``append`` writes to the file, pushes onto the ring and wakes
followers, and returns. The ring holds the newest ``ring_bytes`` (8 MiB by default) of a live
process, so a follower that reconnects after a short break reads memory. One that fell further
behind reads the same records back from disk, in a worker thread (``read_async``), through a
sparse seq -> offset index kept sorted as it grows, so it neither misses nor repeats a line.
"""

from __future__ import annotations

import bisect
import itertools
import os
import struct
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

STREAMS = ("stdout", "stderr", "system")
STREAM_CODES = {name: i for i, name in enumerate(STREAMS)}

_HEADER = struct.Struct("<2sBQIdI")
_MAGIC = b"GL"
_INDEX_EVERY = 64 * 1024
#: What a ring entry costs beyond its bytes (the chunk object, the bytes header): counted, so
#: a ring of many tiny chunks stays within its budget too.
_CHUNK_OVERHEAD = 128
#: What one follower batch may hold (plus one line): a follower is never further ahead of its
#: client than one batch, whatever the line length.
FOLLOW_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogLine:
    seq: int
    ts: float
    stream: str
    raw: bytes

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class _Chunk:
    stream: int
    first_seq: int
    count: int
    ts: float
    data: bytes

    def lines(self, since: int) -> Iterator[LogLine]:
        parts = self.data.split(b"\n")
        stream = STREAMS[self.stream]
        start = max(0, since + 1 - self.first_seq)
        for i in range(start, self.count):
            yield LogLine(self.first_seq + i, self.ts, stream, parts[i])

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1


def _first_seq(chunk: _Chunk) -> int:
    return chunk.first_seq


@dataclass(frozen=True, slots=True)
class LogLimits:
    """Per-process bounds: the ring (bytes, optionally lines), segment size, total on disk.

    ``ring_bytes`` holds for a live process; once it ended its ring shrinks to
    ``ended_ring_bytes`` (its readers are rarely followers, and an ended log may stay
    referenced for the gateway's whole life).
    """

    ring_lines: int | None = None
    ring_bytes: int = 8 * 1024 * 1024
    segment_bytes: int = 64 * 1024 * 1024
    max_bytes: int = 2 * 1024 * 1024 * 1024
    max_line: int = 256 * 1024
    ended_ring_bytes: int = 256 * 1024


class ProcessLog:
    """Append-only, numbered log of one process; safe to read while it is written."""

    def __init__(self, prefix: Path, limits: LogLimits | None = None, *, new: bool = False) -> None:
        # Segments are files "<prefix>.000001.log": flat, so starting a log costs no mkdir.
        self.prefix = prefix
        self.limits = limits or LogLimits()
        self.last_seq = 0
        self.first_seq = 1
        self.bytes_written = 0
        self.disk_reads = 0
        self.ended = False
        self._ring: deque[_Chunk] = deque()
        self._ring_lines = 0
        self._ring_bytes = 0
        self._ring_cap = self.limits.ring_bytes
        # Sparse index: (first_seq, segment number, offset) of some records, ascending, and
        # its first_seqs alone (kept alongside, so a lookup is one bisect, no list rebuilt).
        self._index: list[tuple[int, int, int]] = []
        self._index_seqs: list[int] = []
        self._segments: list[int] = []
        self._seg_size = 0
        self._since_indexed = _INDEX_EVERY
        self._fd: int | None = None
        self._changed = trio.Event()
        self._loaded = new  # a brand-new log has nothing on disk to index
        self._load_lock = threading.Lock()

    # ---- writing -------------------------------------------------------------------------

    def _open_for_append(self) -> None:
        self._ensure_loaded()
        if not self._segments:
            self._segments.append(1)
            self._seg_size = 0
        path = self._segment_path(self._segments[-1])
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._seg_size = os.fstat(self._fd).st_size

    def prepare(self) -> None:
        """Create the segment file ahead of the first line (thread-safe before any append).

        Creating a file costs a journal write on ext4 (~0.2 ms here); the engine does it in a
        worker thread right after spawning so that neither spawns nor kills wait for it.
        """
        if self._fd is None:
            self._open_for_append()

    def append(self, stream: str, data: bytes, count: int | None = None, ts: float | None = None) -> None:
        """Append complete lines (``data`` ends with a newline) as one record.

        The record is on disk (in the page cache) when this returns, then readable from the
        ring; an ``OSError`` from the write leaves the log as it was (no seq is used up).
        """
        if not data:
            return
        if count is None:
            count = data.count(b"\n")
        chunk = _Chunk(STREAM_CODES[stream], self.last_seq + 1, count, ts or time.time(), data)
        if self._fd is None:
            self._open_for_append()
        if self._seg_size >= self.limits.segment_bytes:
            self._rotate(chunk)
        assert self._fd is not None
        size = _HEADER.size + len(data)
        os.writev(self._fd, (self._header(chunk), data))
        if self._since_indexed >= _INDEX_EVERY:
            self._index.append((chunk.first_seq, self._segments[-1], self._seg_size))
            self._index_seqs.append(chunk.first_seq)
            self._since_indexed = 0
        self._since_indexed += size
        self._seg_size += size
        self.bytes_written += len(data)
        self.last_seq = chunk.last_seq
        ring = self._ring
        ring.append(chunk)
        self._ring_lines += count
        self._ring_bytes += len(data) + _CHUNK_OVERHEAD
        if self._ring_bytes > self._ring_cap or (
            self.limits.ring_lines is not None and self._ring_lines - ring[0].count >= self.limits.ring_lines
        ):
            self._trim_ring()
        if self.ended and self._fd is not None:
            # A note added after the end (teardown): don't keep a descriptor open for it.
            os.close(self._fd)
            self._fd = None
        self._wake()

    def _trim_ring(self) -> None:
        """Drop the oldest chunks over the bounds; the newest chunk always stays."""
        ring, cap, lines = self._ring, self._ring_cap, self.limits.ring_lines
        while len(ring) > 1 and (
            self._ring_bytes > cap or (lines is not None and self._ring_lines - ring[0].count >= lines)
        ):
            old = ring.popleft()
            self._ring_lines -= old.count
            self._ring_bytes -= len(old.data) + _CHUNK_OVERHEAD

    @staticmethod
    def _header(chunk: _Chunk) -> bytes:
        return _HEADER.pack(_MAGIC, chunk.stream, chunk.first_seq, chunk.count, chunk.ts, len(chunk.data))

    def system(self, text: str) -> None:
        """A line from the gateway itself (signals sent, restarts), interleaved in order."""
        self.append("system", text.replace("\n", " ").encode() + b"\n", 1)

    def close(self) -> None:
        """The process will write no more: followers drain and end; the ring shrinks."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.ended = True
        self._ring_cap = min(self.limits.ended_ring_bytes, self.limits.ring_bytes)
        self._trim_ring()
        self._wake()

    def reopen(self) -> None:
        """A restarted process continues the same log with the next seq."""
        self.ended = False
        self._ring_cap = self.limits.ring_bytes

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _segment_path(self, n: int) -> Path:
        return self.prefix.with_name(f"{self.prefix.name}.{n:06d}.log")

    def segment_files(self) -> list[Path]:
        """The log's files on disk, oldest first."""
        return [self._segment_path(n) for n in self._segments]

    def _rotate(self, chunk: _Chunk) -> None:
        """Start a new segment for ``chunk``; drop the oldest while over the byte cap.

        The newest closed segment is always kept, so a cap smaller than a few segments (or
        one huge chunk) never leaves only the segment being written. The index lists are
        replaced, never changed in place: a reader thread may be walking the old ones.
        """
        assert self._fd is not None
        os.close(self._fd)
        self._segments.append(self._segments[-1] + 1)
        self._fd = os.open(
            self._segment_path(self._segments[-1]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        self._seg_size = 0
        self._since_indexed = _INDEX_EVERY
        total = sum(self._segment_path(n).stat().st_size for n in self._segments[:-1])
        while len(self._segments) > 2 and total > self.limits.max_bytes - self.limits.segment_bytes:
            dropped = self._segments[0]
            self._segments = self._segments[1:]
            path = self._segment_path(dropped)
            total -= path.stat().st_size
            path.unlink()
            self._index = [e for e in self._index if e[1] != dropped]
            self._index_seqs = [e[0] for e in self._index]
            self.first_seq = self._index[0][0] if self._index else chunk.first_seq

    # ---- loading a log written by an earlier gateway --------------------------------------

    def _ensure_loaded(self) -> None:
        """Index the segments an earlier gateway wrote (once; any thread may be the one)."""
        if self._loaded:
            return
        with self._load_lock:
            if self._loaded:
                return
            self._load()
            self._loaded = True

    def _load(self) -> None:
        if not self.prefix.parent.is_dir():
            return
        numbers = (
            p.name[len(self.prefix.name) + 1 : -4]
            for p in self.prefix.parent.glob(f"{self.prefix.name}.*.log")
        )
        segments = sorted(int(n) for n in numbers if n.isdigit())
        index: list[tuple[int, int, int]] = []
        first = True
        for n in segments:
            since_indexed = _INDEX_EVERY
            for seq0, count, offset, size in self._scan_headers(n):
                if first:
                    self.first_seq = seq0
                    first = False
                if since_indexed >= _INDEX_EVERY:
                    index.append((seq0, n, offset))
                    since_indexed = 0
                since_indexed += size
                self.last_seq = seq0 + count - 1
        self._segments = segments
        self._index = index
        self._index_seqs = [e[0] for e in index]

    def _scan_headers(self, seg: int, offset: int = 0) -> Iterator[tuple[int, int, int, int]]:
        """(first_seq, count, offset, record size) of each whole record from ``offset`` on."""
        path = self._segment_path(seg)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below, iterated lazily
        except FileNotFoundError:
            return
        with f:
            f.seek(offset)
            while True:
                head = f.read(_HEADER.size)
                if len(head) < _HEADER.size:
                    return
                magic, _stream, seq0, count, _ts, length = _HEADER.unpack(head)
                if magic != _MAGIC:
                    return
                yield seq0, count, offset, _HEADER.size + length
                offset += _HEADER.size + length
                f.seek(offset)

    # ---- reading -------------------------------------------------------------------------

    def read(self, since: int = 0, limit: int | None = None, max_bytes: int | None = None) -> list[LogLine]:
        """Lines with seq > ``since``, oldest first, at most ``limit`` of them.

        ``max_bytes`` also ends the batch once that many bytes of lines are in it (it always
        holds at least one line). Lines behind the ring are read from disk on this thread:
        event-loop code that may reach that far back uses ``read_async``.
        """
        self._ensure_loaded()
        window = self._window(since, limit)
        if window is None:
            return []
        since, limit = window
        if self._in_ring(since):
            return _collect(self._ring_from(since), since, limit, max_bytes)
        self.disk_reads += 1
        return _collect(self._disk_chunks(since), since, limit, max_bytes)

    async def read_async(
        self, since: int = 0, limit: int | None = None, max_bytes: int | None = None
    ) -> list[LogLine]:
        """``read`` for the event loop: lines from the ring at once, from disk in a thread.

        Cancellation: a disk read already handed to the thread finishes, then the caller is
        cancelled; nothing is consumed, so the caller simply reads from the same ``since``.
        """
        if not self._loaded:
            await trio.to_thread.run_sync(self._ensure_loaded)
        window = self._window(since, limit)
        if window is None:
            return []
        since, limit = window
        if self._in_ring(since):
            return _collect(self._ring_from(since), since, limit, max_bytes)
        self.disk_reads += 1
        chunks = self._disk_chunks(since)
        return await trio.to_thread.run_sync(_collect, chunks, since, limit, max_bytes)

    def _window(self, since: int, limit: int | None) -> tuple[int, int] | None:
        since = max(since, self.first_seq - 1)
        if limit is None:
            limit = self.last_seq - since
        if limit <= 0 or since >= self.last_seq:
            return None
        return since, limit

    def _in_ring(self, since: int) -> bool:
        return bool(self._ring) and since + 1 >= self._ring[0].first_seq

    def _ring_from(self, since: int) -> Iterator[_Chunk]:
        """The ring's chunks from the one holding ``since + 1`` on (found by bisection)."""
        ring = self._ring
        if ring and ring[-1].first_seq <= since + 1:
            # A follower that is caught up wants only the newest chunk: no bisection (a
            # deque's middle is slow to index, and a ring of one-line chunks is long).
            yield ring[-1]
            return
        i = max(0, bisect.bisect_right(ring, since + 1, key=_first_seq) - 1)
        if i < len(ring) // 2:
            yield from itertools.islice(ring, i, None)
        else:  # a follower near the end: deque indexing walks from the nearer (right) end
            for k in range(i, len(ring)):
                yield ring[k]

    def tail(self, n: int) -> list[LogLine]:
        return self.read(max(0, self.last_seq - n))

    def _disk_chunks(self, since: int) -> Iterator[_Chunk]:
        """Records from disk starting with the one holding ``since + 1`` (any thread).

        Only records already evicted from the ring are looked for here, and a record leaves
        the ring only after its write returned, so a reader thread never needs the record
        being written; one it meets half-written at the end of a file ends the walk.
        """
        index, keys, segments = self._index, self._index_seqs, self._segments
        if not index:
            return
        i = max(0, bisect.bisect_right(keys, since + 1) - 1)
        _, seg, offset = index[i]
        for n in segments[segments.index(seg) :] if seg in segments else []:
            path = self._segment_path(n)
            try:
                f = open(path, "rb")  # noqa: SIM115 - generator keeps it open between yields
            except FileNotFoundError:
                continue
            with f:
                f.seek(offset)
                while True:
                    head = f.read(_HEADER.size)
                    if len(head) < _HEADER.size:
                        break
                    magic, stream, seq0, count, ts, length = _HEADER.unpack(head)
                    if magic != _MAGIC:
                        break
                    if seq0 + count - 1 <= since:
                        f.seek(length, os.SEEK_CUR)
                        continue
                    data = f.read(length)
                    if len(data) < length:
                        break
                    yield _Chunk(stream, seq0, count, ts, data)
            offset = 0

    async def follow(
        self, since: int = 0, batch: int = 1000, max_bytes: int = FOLLOW_BYTES
    ) -> AsyncIterator[list[LogLine]]:
        """Batches of new lines as they come; ends once the process ended and all was read.

        A reconnecting follower passes the last seq it saw and gets exactly the lines after it.
        Each batch is read only when the consumer asks for it, so a follower is never more
        than one batch (``batch`` lines, ``max_bytes`` bytes plus a line) ahead of it.
        """
        while True:
            changed = self._changed
            lines = await self.read_async(since, batch, max_bytes)
            if lines:
                since = lines[-1].seq
                yield lines
                continue
            if self.ended:
                return
            await changed.wait()

    @property
    def changed(self) -> trio.Event:
        """The event the next append or close sets; grab it before reading to miss nothing."""
        return self._changed


def _collect(chunks: Iterable[_Chunk], since: int, limit: int, max_bytes: int | None) -> list[LogLine]:
    """Up to ``limit`` lines after ``since`` from ``chunks``, stopping past ``max_bytes``."""
    out: list[LogLine] = []
    budget = max_bytes if max_bytes is not None else -1
    for chunk in chunks:
        if chunk.last_seq <= since:
            continue
        for line in chunk.lines(since):
            out.append(line)
            if len(out) >= limit:
                return out
            if budget >= 0:
                budget -= len(line.raw) + 1
                if budget <= 0:
                    return out
    return out
