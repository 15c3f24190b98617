"""A gateway killed with SIGKILL leaves trees behind; the next start finds, kills and marks them."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import trio

from gateway.supervisor import State, StopReason, open_supervisor

from support import marked_pids, wait_until

ENGINE = """
import sys, trio
from gateway.supervisor import open_supervisor, ProcessSpec

TREE = 'sleep 600 & setsid sh -c "trap \\\\"\\\\" TERM; sleep 600" & wait'

async def main():
    async with open_supervisor(sys.argv[1]) as sup:
        record = await sup.start(ProcessSpec(["sh", "-c", TREE], kind="symphony", ticket_id="T-9"))
        print(record.id, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


async def read_line(stream: trio.abc.ReceiveStream) -> str:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        assert chunk, "engine process ended early"
        buf += chunk
    return buf.decode().strip()


async def test_sigkilled_engine_leaves_a_tree_that_the_next_start_kills(state_dir: Path) -> None:
    proc = await trio.lowlevel.open_process([sys.executable, "-c", ENGINE, str(state_dir)], stdout=-1)
    try:
        assert proc.stdout is not None
        with trio.fail_after(20):
            record_id = await read_line(proc.stdout)
        await wait_until(lambda: len(marked_pids(record_id)) >= 4, what="tree to start")
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    # PR_SET_PDEATHSIG takes the direct child; the setsid'd part outlives the engine.
    await wait_until(lambda: 0 < len(marked_pids(record_id)) < 4, what="direct child to die")
    survivors = marked_pids(record_id)

    async with open_supervisor(state_dir) as sup:
        record = sup.table.get(record_id)
        assert record is not None
        assert record.state is State.LOST
        assert record.stop_reason is StopReason.LOST
        assert marked_pids(record_id) == set()
        receipt = next(r for r in sup.recovered if r.process.id == record_id)
        assert set(receipt.signals[0].pids) >= survivors
        assert receipt.survivors == []
        assert "gateway crash" in sup.log(record_id).read()[-1].text
        assert sup.table.query(ticket_id="T-9")[0].id == record_id
