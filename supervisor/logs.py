"""The log of one process: numbered lines in a bounded ring and in rotated files on disk.

Ingest works per *chunk*, not per line: each read from the child's pipe is cut at its last
newline and appended as one framed record (stream, first seq, line count, time) with
``bytes.count`` doing the counting, because building a dict per line caps ingest at a few tens
of MB/s while the pipe delivers hundreds. Line objects are only built when a reader asks.

Readers never block the writer: ``append`` writes to the file, pushes onto the ring and wakes
followers, and returns. A follower that falls behind the ring reads the same records back from
disk through a sparse seq -> offset index, so it neither misses nor repeats a line.
"""

from __future__ import annotations

import bisect
import os
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

STREAMS = ("stdout", "stderr", "system")
STREAM_CODES = {name: i for i, name in enumerate(STREAMS)}

_HEADER = struct.Struct("<2sBQIdI")
_MAGIC = b"GL"
_INDEX_EVERY = 64 * 1024
_THREAD_WRITE = 128 * 1024
_BACKLOG = 16 * 1024 * 1024


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


@dataclass(frozen=True, slots=True)
class LogLimits:
    """Per-process bounds: ring size in lines and bytes, segment size, total kept on disk."""

    ring_lines: int = 1000
    ring_bytes: int = 2 * 1024 * 1024
    segment_bytes: int = 64 * 1024 * 1024
    max_bytes: int = 2 * 1024 * 1024 * 1024
    max_line: int = 256 * 1024


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
        # Sparse index: (first_seq, segment number, offset) of some records, ascending.
        self._index: list[tuple[int, int, int]] = []
        self._segments: list[int] = []
        self._seg_size = 0
        self._since_indexed = _INDEX_EVERY
        self._fd: int | None = None
        self.written_seq = 0
        self._pending: deque[_Chunk] = deque()
        self._pending_bytes = 0
        self._writer_wake: trio.Event | None = None
        self._space: trio.Event | None = None
        self._changed = trio.Event()
        self._loaded = new  # a brand-new log has nothing on disk to index

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

        The lines are numbered and readable at once (the ring); the disk write follows in order,
        inline, or through the ``writer`` task while one runs (the engine runs one per child).
        """
        if not data:
            return
        if count is None:
            count = data.count(b"\n")
        chunk = _Chunk(STREAM_CODES[stream], self.last_seq + 1, count, ts or time.time(), data)
        self.last_seq = chunk.last_seq
        self._ring.append(chunk)
        self._ring_lines += count
        self._ring_bytes += len(data)
        self._pending.append(chunk)
        self._pending_bytes += len(data)
        if self._writer_wake is None:
            self._write_pending_inline()
        else:
            self._writer_wake.set()
        self._wake()

    def _write_pending_inline(self) -> None:
        while self._pending:
            chunk = self._pending[0]
            self._before_write(chunk)
            assert self._fd is not None
            os.writev(self._fd, (self._header(chunk), chunk.data))
            self._after_write(chunk)
        if self.ended and self._fd is not None:
            # A note added after the end (teardown): don't keep a descriptor open for it.
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def _header(chunk: _Chunk) -> bytes:
        return _HEADER.pack(_MAGIC, chunk.stream, chunk.first_seq, chunk.count, chunk.ts, len(chunk.data))

    def _before_write(self, chunk: _Chunk) -> None:
        if self._fd is None:
            self._open_for_append()
        if self._seg_size >= self.limits.segment_bytes:
            self._rotate(chunk)

    def _after_write(self, chunk: _Chunk) -> None:
        """Book-keeping on the event loop's side once ``chunk`` is in the file."""
        size = _HEADER.size + len(chunk.data)
        if self._since_indexed >= _INDEX_EVERY:
            self._index.append((chunk.first_seq, self._segments[-1], self._seg_size))
            self._since_indexed = 0
        self._since_indexed += size
        self._seg_size += size
        self.bytes_written += len(chunk.data)
        self.written_seq = chunk.last_seq
        self._pending.popleft()
        self._pending_bytes -= len(chunk.data)
        # Only lines already on disk may leave the ring: a reader behind it reads them there.
        ring = self._ring
        while (
            len(ring) > 1
            and ring[0].last_seq <= self.written_seq
            and (
                self._ring_lines - ring[0].count >= self.limits.ring_lines
                or self._ring_bytes > self.limits.ring_bytes
            )
        ):
            old = ring.popleft()
            self._ring_lines -= old.count
            self._ring_bytes -= len(old.data)
        if self._space is not None and self._pending_bytes <= _BACKLOG // 2:
            self._space.set()
            self._space = None

    async def writer(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write queued records in order until cancelled; large ones from a worker thread.

        A big chunk's disk write then overlaps the next pipe read (two cores: ingest runs at
        the speed of the slower of the two, not their sum), while a small one is written inline
        because a thread hop would cost more than the write. On exit, whatever is still queued
        is written inline, so cancellation never loses a line.
        """
        self._writer_wake = trio.Event()
        task_status.started()
        try:
            while True:
                while self._pending:
                    chunk = self._pending[0]
                    self._before_write(chunk)
                    fd = self._fd
                    assert fd is not None
                    if len(chunk.data) >= _THREAD_WRITE:
                        header = self._header(chunk)
                        # Shielded: once handed to the thread the write happens, and its
                        # book-keeping must follow, or the final inline drain would repeat it.
                        with trio.CancelScope(shield=True):
                            await trio.to_thread.run_sync(os.writev, fd, (header, chunk.data))
                    else:
                        os.writev(fd, (self._header(chunk), chunk.data))
                    self._after_write(chunk)
                self._writer_wake = trio.Event()
                await self._writer_wake.wait()
        finally:
            self._writer_wake = None
            self._write_pending_inline()

    async def wait_for_space(self) -> None:
        """Back-pressure for the pump: wait while more than the backlog waits for the disk."""
        if self._pending_bytes > _BACKLOG:
            if self._space is None:
                self._space = trio.Event()
            await self._space.wait()

    def system(self, text: str) -> None:
        """A line from the gateway itself (signals sent, restarts), interleaved in order."""
        self.append("system", text.replace("\n", " ").encode() + b"\n", 1)

    def close(self) -> None:
        """The process will write no more: followers drain and end."""
        self._write_pending_inline()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.ended = True
        self._wake()

    def reopen(self) -> None:
        """A restarted process continues the same log with the next seq."""
        self.ended = False

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
        one huge chunk) never leaves only the segment being written.
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
            dropped = self._segments.pop(0)
            path = self._segment_path(dropped)
            total -= path.stat().st_size
            path.unlink()
            self._index = [e for e in self._index if e[1] != dropped]
            self.first_seq = self._index[0][0] if self._index else chunk.first_seq

    # ---- loading a log written by an earlier gateway --------------------------------------

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not self.prefix.parent.is_dir():
            return
        numbers = (
            p.name[len(self.prefix.name) + 1 : -4]
            for p in self.prefix.parent.glob(f"{self.prefix.name}.*.log")
        )
        self._segments = sorted(int(n) for n in numbers if n.isdigit())
        first = True
        for n in self._segments:
            since_indexed = _INDEX_EVERY
            for seq0, count, offset, size in self._scan_headers(n):
                if first:
                    self.first_seq = seq0
                    first = False
                if since_indexed >= _INDEX_EVERY:
                    self._index.append((seq0, n, offset))
                    since_indexed = 0
                since_indexed += size
                self.last_seq = self.written_seq = seq0 + count - 1

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

    def read(self, since: int = 0, limit: int | None = None) -> list[LogLine]:
        """Lines with seq > ``since``, oldest first, at most ``limit`` of them."""
        self._ensure_loaded()
        since = max(since, self.first_seq - 1)
        if limit is None:
            limit = self.last_seq - since
        out: list[LogLine] = []
        if limit <= 0 or since >= self.last_seq:
            return out
        if self._ring and since + 1 >= self._ring[0].first_seq:
            chunks: Iterator[_Chunk] = iter(self._ring)
        else:
            self.disk_reads += 1
            chunks = self._disk_chunks(since)
        for chunk in chunks:
            if chunk.last_seq <= since:
                continue
            for line in chunk.lines(since):
                out.append(line)
                if len(out) >= limit:
                    return out
        return out

    def tail(self, n: int) -> list[LogLine]:
        return self.read(max(0, self.last_seq - n))

    def _disk_chunks(self, since: int) -> Iterator[_Chunk]:
        """Records from disk starting with the one holding ``since + 1``."""
        keys = [e[0] for e in self._index]
        i = max(0, bisect.bisect_right(keys, since + 1) - 1)
        if not self._index:
            return
        _, seg, offset = self._index[i]
        for n in self._segments[self._segments.index(seg) :] if seg in self._segments else []:
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

    async def follow(self, since: int = 0, batch: int = 1000) -> AsyncIterator[list[LogLine]]:
        """Batches of new lines as they come; ends once the process ended and all was read.

        A reconnecting follower passes the last seq it saw and gets exactly the lines after it.
        """
        while True:
            changed = self._changed
            lines = self.read(since, batch)
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
