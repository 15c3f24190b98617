"""Jobs run children one after another; killing a job kills its current child's tree."""

from __future__ import annotations

import trio

from gateway.supervisor import Job, ProcessSpec, State, StopReason, Supervisor

from support import marked_pids, wait_until


async def test_job_kill_during_second_child(sup: Supervisor) -> None:
    third_started = trio.Event()

    async def body(job: Job) -> None:
        first = await job.run(ProcessSpec(["sh", "-c", "echo first"], kind="symphony"))
        assert first.state is State.EXITED
        await job.run(
            ProcessSpec(["sh", "-c", "sleep 600 & setsid sleep 600 & wait"], kind="symphony", stop_grace=0.5)
        )
        third_started.set()
        await job.run(ProcessSpec(["sh", "-c", "echo third"], kind="symphony"))

    job = await sup.start_job("symphony_loop", body, ticket_id="T-1")
    await wait_until(lambda: len(job.children) == 2 and job.current is not None, what="second child")
    second = job.children[1]
    await wait_until(lambda: len(marked_pids(second)) >= 3, what="second child's tree")

    receipt = await sup.kill(job.id)

    assert receipt.process.id == job.id
    assert receipt.process.state is State.KILLED
    assert receipt.process.stop_reason is StopReason.KILL
    assert [s.signal for s in receipt.signals][:1] == ["SIGTERM"]
    assert marked_pids(second) == set()
    assert sup.table.get(second).state is State.KILLED
    assert not third_started.is_set()
    assert len(job.children) == 2
    assert [r.id for r in sup.table.query(job_id=job.id)] == job.children
    assert (await sup.kill(job.id)).already_ended


async def test_job_that_finishes_and_one_that_fails(sup: Supervisor) -> None:
    async def ok(job: Job) -> None:
        await job.run(ProcessSpec(["true"]))
        job.note("iteration 1 passed")

    async def broken(job: Job) -> None:
        raise RuntimeError("judge crashed")

    done = await sup.start_job("plan_loop", ok, ticket_id="T-2")
    assert (await sup.wait(done.id)).state is State.EXITED
    assert any("iteration 1 passed" in line.text for line in sup.log(done.id).read())
    failed = await sup.start_job("plan_loop", broken)
    record = await sup.wait(failed.id)
    assert record.state is State.FAILED
    assert record.error == "RuntimeError: judge crashed"
