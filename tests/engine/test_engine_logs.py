"""Lossless logs: followers that fall behind the ring read from disk, missing and repeating nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import trio
import trio.lowlevel

from gateway.supervisor import LogLimits, ProcessLog, ProcessSpec, State, open_supervisor
from gateway.supervisor.engine import has_long_line

N = 100_000


async def collect(log: ProcessLog, since: int = 0, *, slow: bool = False) -> list[int]:
    seqs: list[int] = []
    async for batch in log.follow(since, batch=500):
        seqs.extend(line.seq for line in batch)
        assert all(line.stream in ("stdout", "system") for line in batch)
        if slow:
            await trio.sleep(0.001)
    return seqs


async def test_100k_lines_through_a_ring_of_1000(state_dir: Path) -> None:
    limits = LogLimits(ring_lines=1000)
    writer = (
        "import sys\n"
        f"for i in range(1, {N + 1}):\n"
        "    sys.stdout.write(f'line {i}\\n')\n"
        "    if i % 5000 == 0: sys.stdout.flush()\n"
    )
    async with open_supervisor(state_dir, log_limits=limits) as sup:
        record = await sup.start(ProcessSpec([sys.executable, "-c", writer]))
        log = sup.log(record.id)
        slow: list[int] = []

        async def slow_follower() -> None:
            slow.extend(await collect(log, 0, slow=True))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_follower)
            ended = await sup.wait(record.id)
        assert ended.state is State.EXITED
        expected = list(range(1, log.last_seq + 1))
        assert log.last_seq == N + 1  # every line plus the gateway's "process ended" note
        assert slow == expected
        assert log.disk_reads > 0, "the slow follower must have fallen behind the ring"
        # The ring is bounded at chunk granularity: all but its oldest chunk fit in 1,000 lines.
        counts = [c.count for c in log._ring]
        assert sum(counts) - counts[0] < 1000

        late = await collect(log, 0)
        assert late == expected
        lines = log.read(0, N)
        assert [line.text for line in lines[:3]] == ["line 1", "line 2", "line 3"]
        assert lines[-1].text == f"line {N}"
        # Reconnect in the middle: exactly the lines after the last one seen.
        assert [line.seq for line in log.read(54_321, 3)] == [54_322, 54_323, 54_324]
        assert log.tail(2)[0].text == f"line {N}"


async def test_logs_survive_a_restart_of_the_gateway(state_dir: Path) -> None:
    async with open_supervisor(state_dir) as sup:
        record = await sup.start(ProcessSpec(["sh", "-c", "seq 1 3000"]))
        await sup.wait(record.id)
        before = [(line.seq, line.text) for line in sup.log(record.id).read()]
    async with open_supervisor(state_dir) as sup:
        again = sup.table.get(record.id)
        assert again is not None and again.state is State.EXITED and again.last_seq == 3001
        log = sup.log(record.id)
        assert [(line.seq, line.text) for line in log.read()] == before
        assert [line.seq for line in log.read(2990, 5)] == [2991, 2992, 2993, 2994, 2995]


async def test_invalid_utf8_and_split_long_lines(state_dir: Path) -> None:
    limits = LogLimits(max_line=1000)
    writer = (
        "import sys; sys.stdout.buffer.write("
        "b'ok \\xff\\xfe end\\n' + b'x' * 2500 + b'\\ntail-without-newline')"
    )
    async with open_supervisor(state_dir, log_limits=limits) as sup:
        record = await sup.start(ProcessSpec([sys.executable, "-c", writer]))
        await sup.wait(record.id)
        lines = [line for line in sup.log(record.id).read() if line.stream == "stdout"]
        assert lines[0].text == "ok \ufffd\ufffd end"
        assert [len(line.raw) for line in lines[1:4]] == [1000, 1000, 500]
        assert lines[4].text == "tail-without-newline"


async def test_rotation_keeps_the_newest_within_the_cap(state_dir: Path) -> None:
    limits = LogLimits(segment_bytes=64 * 1024, max_bytes=256 * 1024)
    writer = "import sys\nfor i in range(1, 40001): print(f'{i:08d}' + 'y' * 40)\n"
    async with open_supervisor(state_dir, log_limits=limits) as sup:
        record = await sup.start(ProcessSpec([sys.executable, "-c", writer]))
        await sup.wait(record.id)
        log = sup.log(record.id)
        on_disk = sum(p.stat().st_size for p in log.segment_files())
        # The cap is kept to within a segment plus one chunk (a read is at most 256 KiB).
        assert on_disk <= 256 * 1024 + 64 * 1024 + 256 * 1024
        kept = log.read()
        assert kept[0].seq == log.first_seq > 1
        assert [line.seq for line in kept] == list(range(log.first_seq, log.last_seq + 1))
        assert kept[-2].text.startswith("00040000")


async def test_200mb_of_long_lines_all_persisted_with_bounded_memory(state_dir: Path) -> None:
    line_len, lines = 1_000_000, 200
    writer = (
        "import sys\n"
        f"row = b'z' * {line_len} + b'\\n'\n"
        f"for _ in range({lines}): sys.stdout.buffer.write(row)\n"
    )
    me = psutil.Process()
    rss_before = me.memory_info().rss
    peak = rss_before
    async with open_supervisor(state_dir) as sup:
        record = await sup.start(ProcessSpec([sys.executable, "-c", writer]))
        with trio.move_on_after(120):
            while not (await _ended(sup, record.id)):
                peak = max(peak, me.memory_info().rss)
                await trio.sleep(0.05)
        log = sup.log(record.id)
        total = 0
        count = 0
        since = 0
        while True:
            batch = log.read(since, 64)
            if not batch:
                break
            for line in batch:
                if line.stream == "stdout":
                    total += len(line.raw)
                    count += 1
            since = batch[-1].seq
        per_line = -(-line_len // log.limits.max_line)
        assert count == lines * per_line
        assert total == lines * line_len
    assert peak - rss_before < 80 * 1024 * 1024, f"RSS grew by {(peak - rss_before) >> 20} MiB"


async def _ended(sup, record_id: str) -> bool:  # type: ignore[no-untyped-def]
    record = sup.table.get(record_id)
    await trio.lowlevel.checkpoint()
    return record is not None and record.state.ended


def test_only_lines_over_the_limit_count_as_long() -> None:
    """The pump's check: a chunk longer than the limit is split only if a *line* is."""
    limit = 100
    short = (b"y" * 99 + b"\n") * 50  # 5,000 bytes of lines under the limit
    assert not has_long_line(short, limit)
    assert not has_long_line(b"x" * limit + b"\n" + short, limit)  # exactly the limit is fine
    assert has_long_line(short + b"x" * (limit + 1) + b"\n" + short, limit)
    assert has_long_line(b"x" * (limit + 1) + b"\n", limit)
    assert not has_long_line(b"\n" * 1000, limit)


async def test_a_flood_of_short_lines_is_never_split(state_dir: Path) -> None:
    """Chunks are far longer than ``max_line``; no line is, so every line stays whole."""
    limits = LogLimits(max_line=1000)
    writer = (
        "import sys\n"
        "row = b'%05d' + b'v' * 94 + b'\\n'\n"
        "sys.stdout.buffer.write(b''.join(row % i for i in range(50000)))\n"
    )
    async with open_supervisor(state_dir, log_limits=limits) as sup:
        record = await sup.start(ProcessSpec([sys.executable, "-c", writer]))
        await sup.wait(record.id)
        lines = [line for line in sup.log(record.id).read() if line.stream == "stdout"]
        assert len(lines) == 50_000
        assert all(len(line.raw) == 99 for line in lines)
        assert lines[-1].text.startswith("49999")


async def test_the_ring_is_sized_in_bytes_and_shrinks_when_the_process_ends(state_dir: Path) -> None:
    """A reconnect within the newest ``ring_bytes`` reads memory; older lines come from disk."""
    limits = LogLimits(ring_bytes=1024 * 1024, ended_ring_bytes=64 * 1024)
    writer = "import sys\nfor i in range(1, 60001): sys.stdout.write(f'{i:07d}' + 'r' * 92 + '\\n')\n"
    async with open_supervisor(state_dir, log_limits=limits) as sup:
        record = await sup.start(ProcessSpec([sys.executable, "-c", writer]))
        log = sup.log(record.id)
        with trio.fail_after(30):
            while log.last_seq < 60_000:
                await log.changed.wait()
        # ~6 MB written: the ring holds the newest ~1 MiB, at most one chunk over.
        held = sum(len(c.data) for c in log._ring)
        assert 512 * 1024 < held <= limits.ring_bytes + 256 * 1024
        reads = log.disk_reads
        recent = await log.read_async(log.last_seq - 5000, 10)
        assert [line.seq for line in recent] == list(range(log.last_seq - 4999, log.last_seq - 4989))
        assert log.disk_reads == reads, "5,000 lines back (~500 KB) must come from the ring"
        old = await log.read_async(100, 3)
        assert [line.text[:7] for line in old] == ["0000101", "0000102", "0000103"]
        assert log.disk_reads == reads + 1
        await sup.wait(record.id)
        assert sum(len(c.data) for c in log._ring) <= 64 * 1024 + 128 * 1024


async def test_disk_reads_leave_the_event_loop_running(state_dir: Path) -> None:
    """A follower far behind the ring reads from disk in a worker thread: other tasks (other
    followers, the pumps) keep running while it does."""
    limits = LogLimits(ring_bytes=64 * 1024)
    writer = (
        "import sys\nrow = b'd' * 199 + b'\\n'\nfor _ in range(200): sys.stdout.buffer.write(row * 1000)\n"
    )
    async with open_supervisor(state_dir, log_limits=limits) as sup:
        record = await sup.start(ProcessSpec([sys.executable, "-c", writer]))
        await sup.wait(record.id)
        log = sup.log(record.id)
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.lowlevel.checkpoint()
            before = ticks
            lines = await log.read_async(0)  # 40 MB from disk
            done = True
        assert len(lines) == log.last_seq
        assert ticks > before, "the loop must have run other tasks during the disk read"
        assert [line.seq for line in lines] == list(range(1, log.last_seq + 1))


async def test_reconnecting_followers_never_lose_or_repeat_a_line(state_dir: Path) -> None:
    """Followers that drop after every batch and come back with the last seq they saw, while
    the ring (tiny here) evicts under them and segments rotate: exactly every line, in order."""
    limits = LogLimits(ring_bytes=32 * 1024, segment_bytes=256 * 1024)
    writer = (
        "import sys\n"
        "for i in range(1, 40001):\n"
        "    sys.stdout.write(f'{i}' + 'f' * (i % 300) + '\\n')\n"
        "    if i % 700 == 0: sys.stdout.flush()\n"
    )
    async with open_supervisor(state_dir, log_limits=limits) as sup:
        record = await sup.start(ProcessSpec([sys.executable, "-c", writer]))
        log = sup.log(record.id)
        results: list[list[int]] = [[] for _ in range(6)]

        async def reconnecting(out: list[int], batch: int, max_bytes: int) -> None:
            since = 0
            while True:
                follower = log.follow(since, batch=batch, max_bytes=max_bytes)
                got = await anext(follower, None)
                await follower.aclose()
                if got is None:
                    return
                assert sum(len(line.raw) + 1 for line in got[:-1]) < max_bytes
                out.extend(line.seq for line in got)
                since = got[-1].seq

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for i, out in enumerate(results):
                    nursery.start_soon(reconnecting, out, 50 + 300 * i, 4096 * (i + 1))
        expected = list(range(1, log.last_seq + 1))
        assert log.last_seq == 40_001
        for out in results:
            assert out == expected
        assert log.disk_reads > 0
