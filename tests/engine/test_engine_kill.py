"""Kill and teardown reach every descendant, escalate past a SIGTERM-ignoring child, and verify."""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
import trio

from gateway.supervisor import ProcessSpec, State, StopReason, Supervisor, open_supervisor
from gateway.supervisor.cgroups import Cgroups

from support import config, marked_pids, wait_until, zombie_children


@pytest.fixture(params=["cgroup", "proc"])
async def sup(request: pytest.FixtureRequest, state_dir: Path) -> AsyncIterator[Supervisor]:
    """Every kill test runs both ways: a cgroup per child, and the /proc fallback."""
    use_cgroups = request.param == "cgroup"
    if use_cgroups:
        probe = Cgroups.open("pytest-probe")
        if probe is None:
            pytest.skip("cgroup v2 is not mounted or not writable here")
        probe.close()
    async with open_supervisor(config(state_dir, cgroups=use_cgroups)) as s:
        assert (s.cgroups is not None) is use_cgroups
        yield s

ESCAPING_TREE = 'sleep 600 & setsid sh -c "trap \\"\\" TERM; sleep 600" & wait'


async def test_kill_reaches_setsid_descendants_and_leaves_no_zombie(sup: Supervisor) -> None:
    record = await sup.start(ProcessSpec(["sh", "-c", ESCAPING_TREE], stop_grace=0.5))
    # The tree is complete once both sleeps run: the root, two shells' worth, two sleeps.
    await wait_until(lambda: len(marked_pids(record.id)) >= 4, what="tree to start")
    tree = marked_pids(record.id)
    sessions = {os.getsid(p) for p in tree}
    assert len(sessions) == 2, "one member must run in a session of its own"

    receipt = await sup.kill(record.id)

    assert marked_pids(record.id) == set()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in tree)
    # None of the tree lingers as a zombie (other tests' orphans may: this process is a subreaper).
    assert tree.isdisjoint(zombie_children())
    assert receipt.survivors == []
    assert [s.signal for s in receipt.signals] == ["SIGTERM", "SIGKILL"]
    assert set(receipt.signals[0].pids) == tree
    assert receipt.process.state is State.KILLED
    assert receipt.process.stop_reason is StopReason.KILL
    assert receipt.elapsed_ms >= 500


async def test_sigterm_ignoring_child_is_sigkilled_after_grace(sup: Supervisor) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(600)"
    )
    record = await sup.start(ProcessSpec(["python3", "-c", script], stop_grace=0.3))
    log = sup.log(record.id)
    await wait_until(lambda: log.last_seq >= 1, what="child ready")
    before = trio.current_time()
    receipt = await sup.kill(record.id)
    took = trio.current_time() - before
    assert 0.3 <= took < 3
    assert receipt.process.state is State.KILLED
    assert receipt.process.signal == "SIGKILL"
    assert receipt.process.exit_code is None
    assert [s.signal for s in receipt.signals] == ["SIGTERM", "SIGKILL"]
    texts = [line.text for line in log.read()]
    assert any("SIGKILL sent" in t for t in texts)
    assert texts[0] == "ready"


async def test_kill_of_ended_process_is_a_noop(sup: Supervisor) -> None:
    record = await sup.start(ProcessSpec(["true"]))
    ended = await sup.wait(record.id)
    assert ended.state is State.EXITED and ended.exit_code == 0
    receipt = await sup.kill(record.id)
    assert receipt.already_ended
    assert receipt.signals == []
    assert receipt.process.state is State.EXITED


async def test_concurrent_kills_share_one_kill(sup: Supervisor) -> None:
    record = await sup.start(ProcessSpec(["sleep", "600"], stop_grace=2))
    receipts = []

    async def kill() -> None:
        receipts.append(await sup.kill(record.id))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(kill)
    assert len({id(r) for r in receipts}) == 1
    assert receipts[0].process.signal == "SIGTERM"
    assert [s.signal for s in receipts[0].signals] == ["SIGTERM"]


async def test_teardown_runs_hooks_once_and_keeps_logs(sup: Supervisor) -> None:
    calls: list[str] = []

    async def hook(record) -> None:  # type: ignore[no-untyped-def]
        calls.append(record.id)

    kind_calls: list[str] = []

    async def kind_hook(record) -> None:  # type: ignore[no-untyped-def]
        kind_calls.append(record.id)

    sup.register_teardown("deploy", kind_hook)
    record = await sup.start(
        ProcessSpec(["sh", "-c", "echo up; exec sleep 600"], kind="deploy", teardown_hooks=[hook])
    )
    await wait_until(lambda: sup.log(record.id).last_seq >= 1)
    receipt = await sup.teardown(record.id)
    again = await sup.teardown(record.id)
    assert calls == [record.id] and kind_calls == [record.id]
    assert receipt.process.torn_down and again.process.torn_down
    assert receipt.process.stop_reason is StopReason.TEARDOWN
    assert receipt.process.state is State.KILLED
    texts = [line.text for line in sup.log(record.id).read()]
    assert texts[0] == "up" and texts[-1] == "[gateway] torn down"


async def test_leftovers_of_a_self_exiting_child_are_stopped(sup: Supervisor) -> None:
    record = await sup.start(ProcessSpec(["sh", "-c", "setsid sleep 600 & echo started"], stop_grace=1))
    ended = await sup.wait(record.id)
    assert ended.state is State.EXITED
    assert marked_pids(record.id) == set()
    assert any("leftover" in line.text for line in sup.log(record.id).read())


async def test_missing_binary_fails_start_with_a_clear_error(sup: Supervisor) -> None:
    import pytest

    with pytest.raises(FileNotFoundError):
        await sup.start(ProcessSpec(["/nonexistent/binary"]))
    failed = sup.table.query(state="failed")
    assert failed and "cannot start /nonexistent/binary" in (failed[0].error or "")
    assert math.isinf(ProcessSpec(["x"]).stall_timeout)


async def test_failing_teardown_hook_is_reported_and_the_rest_still_run(sup: Supervisor) -> None:
    ran: list[str] = []

    async def broken(record) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("port busy")

    async def fine(record) -> None:  # type: ignore[no-untyped-def]
        ran.append(record.id)

    record = await sup.start(ProcessSpec(["sleep", "600"], teardown_hooks=[broken, fine]))
    record.error = "agent reported an error"  # what a service records for a failed run
    receipt = await sup.teardown(record.id)
    assert ran == [record.id]
    assert receipt.process.torn_down
    assert receipt.process.error == "agent reported an error; teardown hook failed: port busy"
    assert any("teardown hook failed" in line.text for line in sup.log(record.id).read())


@pytest.mark.parametrize("backend", ["cgroup", "proc"])
async def test_a_supervisor_cancelled_during_a_kill_still_ends(state_dir: Path, backend: str) -> None:
    """A caller cancelled while a kill is under way (Ctrl-C, a failed test around a gateway):
    the kill goes on shielded and must not wait for the child's exit watcher, which the same
    cancellation stopped. It hung forever before; now it ends after the grace, tree gone."""
    use_cgroups = backend == "cgroup"
    if use_cgroups:
        probe = Cgroups.open("pytest-probe")
        if probe is None:
            pytest.skip("cgroup v2 is not mounted or not writable here")
        probe.close()
    with trio.fail_after(15):
        with trio.CancelScope() as outer:
            async with open_supervisor(config(state_dir, cgroups=use_cgroups)) as sup:
                spec = ProcessSpec(["sh", "-c", "trap '' TERM; sleep 600 & wait"], stop_grace=0.5)
                record = await sup.start(spec)
                await wait_until(lambda: len(marked_pids(record.id)) >= 2, what="the shell and its sleep")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(sup.kill, record.id)
                    await wait_until(lambda: record.state is State.STOPPING, what="the kill under way")
                    outer.cancel()
    assert outer.cancelled_caught
    assert not marked_pids(record.id)
