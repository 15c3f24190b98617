"""``spawn_labels``: labels from the caller's context go on every record it starts (the relay
client finds a relayed command's children by them), and nowhere else."""

from __future__ import annotations

import trio

from gateway.supervisor import Job, ProcessSpec, Supervisor, spawn_labels


async def test_context_labels_mark_what_the_context_starts(sup: Supervisor) -> None:
    plain = await sup.start(ProcessSpec(["true"], labels={"own": "1"}))
    token = spawn_labels.set((("relay.commandId", "c-1"),))
    try:
        marked = await sup.start(ProcessSpec(["true"], labels={"own": "2", "relay.commandId": "forged"}))

        async def body(job: Job) -> None:
            await job.run(ProcessSpec(["true"]))

        job = await sup.start_job("test_job", body)
    finally:
        spawn_labels.reset(token)
    after = await sup.start(ProcessSpec(["true"]))

    assert plain.labels == {"own": "1"}
    assert marked.labels == {"own": "2", "relay.commandId": "c-1"}  # the context wins
    assert job.record.labels == {"relay.commandId": "c-1"}
    with trio.fail_after(10):
        await sup.wait(job.id)
    assert sup.table.get(job.children[0]).labels == {"relay.commandId": "c-1"}  # type: ignore[union-attr]
    assert after.labels == {}
