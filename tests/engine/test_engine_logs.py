"""Lossless logs: followers that fall behind the ring read from disk, missing and repeating nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import trio
import trio.lowlevel

from gateway.supervisor import LogLimits, ProcessLog, ProcessSpec, State, open_supervisor

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
