"""Restart backoff and watchdogs, on trio's autojump clock so virtual seconds cost nothing.

The clock jumps only after 50 ms of real idleness, not at once: these tests run real children,
and a process needs a few real milliseconds to die after a signal. An instant jump would carry
the clock past the kill's deadlines while the kernel is still delivering the signal. The
reaper's periodic wake-up is turned off (``reap_interval=inf``) for the same reason.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from gateway.supervisor import (
    ProcessSpec,
    RestartPolicy,
    State,
    StopReason,
    Supervisor,
    SupervisorConfig,
    open_supervisor,
)


@pytest.fixture
def autojump_clock() -> MockClock:
    return MockClock(autojump_threshold=0.05)


@pytest.fixture
async def quiet_sup(state_dir: Path) -> AsyncIterator[Supervisor]:
    async with open_supervisor(SupervisorConfig(state_dir, reap_interval=math.inf)) as s:
        yield s


async def test_restart_backoff_doubles_up_to_the_cap(
    quiet_sup: Supervisor, autojump_clock: trio.abc.Clock
) -> None:
    policy = RestartPolicy("on-failure", max_restarts=4, backoff=1.0, max_backoff=3.0)
    assert [policy.delay(n) for n in range(4)] == [1.0, 2.0, 3.0, 3.0]
    began = trio.current_time()
    record = await quiet_sup.start(ProcessSpec(["sh", "-c", "echo run; exit 3"], restart=policy))
    ended = await quiet_sup.wait(record.id)
    elapsed = trio.current_time() - began
    assert ended.state is State.FAILED and ended.exit_code == 3
    assert ended.restarts == 4
    assert 9.0 <= elapsed < 9.5  # 1 + 2 + 3 + 3 seconds of backoff, no more
    texts = [line.text for line in quiet_sup.log(record.id).read()]
    assert texts.count("run") == 5
    assert sum("restart in" in t for t in texts) == 4


async def test_no_restart_after_success_or_kill(
    quiet_sup: Supervisor, autojump_clock: trio.abc.Clock
) -> None:
    policy = RestartPolicy("on-failure", max_restarts=5, backoff=10.0)
    ok = await quiet_sup.start(ProcessSpec(["true"], restart=policy))
    assert (await quiet_sup.wait(ok.id)).restarts == 0
    looping = await quiet_sup.start(ProcessSpec(["sh", "-c", "exit 1"], restart=policy))
    # Kill it while it waits out its first backoff: it must not come back.
    while looping.state is not State.STARTING:
        await quiet_sup.table._changed.wait()
    receipt = await quiet_sup.kill(looping.id)
    assert receipt.process.state is State.KILLED
    assert receipt.process.restarts == 0


async def test_stall_watchdog(quiet_sup: Supervisor, autojump_clock: trio.abc.Clock) -> None:
    began = trio.current_time()
    record = await quiet_sup.start(
        ProcessSpec(["sh", "-c", "echo one; exec sleep 600"], stall_timeout=30, stop_grace=1)
    )
    ended = await quiet_sup.wait(record.id)
    assert ended.stop_reason is StopReason.STALLED
    assert ended.state is State.KILLED
    assert 30 <= trio.current_time() - began < 40


async def test_max_runtime_watchdog(quiet_sup: Supervisor, autojump_clock: trio.abc.Clock) -> None:
    began = trio.current_time()
    record = await quiet_sup.start(ProcessSpec(["sleep", "600"], max_runtime=120, stop_grace=1))
    ended = await quiet_sup.wait(record.id)
    assert ended.stop_reason is StopReason.TIMEOUT
    assert ended.state is State.KILLED
    assert 120 <= trio.current_time() - began < 130


async def test_result_idle_watchdog_counts_as_success(
    quiet_sup: Supervisor, autojump_clock: trio.abc.Clock
) -> None:
    script = 'echo \'{"type":"assistant"}\'; echo \'{"type":"result","is_error":false}\'; exec sleep 600'
    record = await quiet_sup.start(
        ProcessSpec(
            ["sh", "-c", script],
            result_idle_timeout=30,
            result_detector=lambda line: line.startswith(b'{"type":"result"'),
            stop_grace=1,
        )
    )
    ended = await quiet_sup.wait(record.id)
    assert ended.stop_reason is StopReason.RESULT_IDLE
    assert ended.state is State.EXITED


async def test_watchdogs_are_off_by_default_and_validated() -> None:
    spec = ProcessSpec(["true"])
    assert math.isinf(spec.stall_timeout) and math.isinf(spec.max_runtime)
    with pytest.raises(ValueError, match="stall_timeout"):
        ProcessSpec(["true"], stall_timeout=0)
    with pytest.raises(TypeError):
        ProcessSpec("rm -rf /")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RestartPolicy("always")
