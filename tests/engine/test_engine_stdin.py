"""``ProcessSpec.stdin``: bytes fed to the child's stdin then closed; /dev/null without it.

The reason it exists: a prompt longer than Linux's 128 KiB ``MAX_ARG_STRLEN`` cannot be one argv
element, so agent CLIs get it on stdin. The feed must never hang the gateway: not on a child
that never reads, not on one that exits before reading, not on a kill.
"""

from __future__ import annotations

import hashlib
import sys

import pytest
import trio

from gateway.supervisor import ProcessSpec, State, StopReason, Supervisor

from support import wait_until

READ_ALL = (
    "import hashlib, sys; data = sys.stdin.buffer.read(); "
    "print(len(data), hashlib.sha256(data).hexdigest(), flush=True)"
)


def stdout_of(sup: Supervisor, record_id: str) -> str:
    return "\n".join(line.text for line in sup.log(record_id).read() if line.stream == "stdout")


async def test_the_child_reads_all_of_a_large_stdin_then_eof(sup: Supervisor) -> None:
    data = (b"0123456789abcdef" * 20_000) + "é".encode()  # 320 KiB: more than a pipe holds
    record = await sup.start(ProcessSpec([sys.executable, "-c", READ_ALL], stdin=data))
    final = await sup.wait(record.id)
    assert final.state is State.EXITED and final.exit_code == 0
    assert stdout_of(sup, record.id) == f"{len(data)} {hashlib.sha256(data).hexdigest()}"


async def test_without_stdin_the_child_gets_dev_null(sup: Supervisor) -> None:
    record = await sup.start(ProcessSpec([sys.executable, "-c", READ_ALL]))
    final = await sup.wait(record.id)
    assert final.state is State.EXITED
    assert stdout_of(sup, record.id) == f"0 {hashlib.sha256(b'').hexdigest()}"


async def test_a_child_that_exits_without_reading_is_not_an_error(sup: Supervisor) -> None:
    record = await sup.start(ProcessSpec(["true"], stdin=b"x" * (4 << 20)))
    with trio.fail_after(10):
        final = await sup.wait(record.id)
    assert final.state is State.EXITED and final.exit_code == 0


async def test_killing_a_child_that_never_reads_ends_the_feed(sup: Supervisor) -> None:
    record = await sup.start(ProcessSpec(["sleep", "600"], stdin=b"x" * (4 << 20), stop_grace=0.5))
    await wait_until(lambda: sup.table.get(record.id).state is State.RUNNING, what="running")  # type: ignore[union-attr]
    with trio.fail_after(10):
        receipt = await sup.kill(record.id)
        final = await sup.wait(record.id)
    assert receipt.survivors == []
    assert final.state is State.KILLED and final.stop_reason is StopReason.KILL


def test_stdin_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        ProcessSpec(["cat"], stdin="text")  # type: ignore[arg-type]


def test_stdin_travels_to_node_agents() -> None:
    """A spec sent to a node agent keeps its stdin (base64 in the JSON message)."""
    from gateway.supervisor.nodes.wire import spec_from_wire, spec_to_wire

    data = bytes(range(256)) * 3
    assert spec_from_wire(spec_to_wire(ProcessSpec(["cat"], stdin=data))).stdin == data
    assert spec_from_wire(spec_to_wire(ProcessSpec(["cat"]))).stdin is None
