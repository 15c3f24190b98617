"""What a remote child's spec cannot carry as data still works: its teardown hooks and its
result detector run on the gateway; and the agent reads a long log off the event loop.

A real agent (``run_agent``) on 127.0.0.3 and a real gateway-side ``NodeManager`` over real
loopback sockets, in one process; the children are real process trees.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from gateway.supervisor import ProcessRecord, ProcessSpec, open_supervisor
from gateway.supervisor.nodes import NodeConfig, NodeManager
from gateway.supervisor.nodes.agent import AgentOptions, run_agent
from gateway.supervisor.placement import AUTO, LOCAL, NoSuchNode
from gateway.supervisor.spec import State, StopReason

from support import marked_pids

HOST = "127.0.0.3"
TOKEN = "t0k3n"


async def test_a_remote_childs_result_detector_and_teardown_hooks_run_on_the_gateway(tmp_path: Path) -> None:
    opts = AgentOptions(state_dir=tmp_path / "agent", host=HOST, port=0, token=TOKEN, lease=10)
    async with trio.open_nursery() as nursery:
        _agent, port = await nursery.start(run_agent, opts)
        async with open_supervisor(tmp_path / "gw") as sup:
            manager = NodeManager(sup, tmp_path / "gw", TOKEN)
            node = await manager.add(NodeConfig("n1", f"ws://{HOST}:{port}"), save=False)
            with trio.fail_after(10):
                await node.wait_state("up")

            # The agent CLI that prints its final result and then hangs: stopped after the idle
            # time, as a success, by the gateway watching its mirror.
            seen: list[bytes] = []

            def is_result(line: bytes) -> bool:
                seen.append(line)
                return line == b'{"type":"result"}'

            hanging = ProcessSpec(
                ["sh", "-c", 'echo working; echo \'{"type":"result"}\'; sleep 600'],
                result_detector=is_result,
                result_idle_timeout=0.5,
                stop_grace=0.5,
            )
            record = await sup.start(hanging, node="n1")
            assert record.node == "n1"
            with trio.fail_after(15):
                done = await sup.wait(record.id)
            assert done.state is State.EXITED and done.stop_reason is StopReason.RESULT_IDLE, done
            assert b"working" in seen, "the detector saw the mirrored stdout lines"
            assert marked_pids(record.id) == set()

            # A child whose result line never comes is not stopped by the detector.
            quiet = ProcessSpec(
                ["sh", "-c", "echo nothing; exit 3"], result_detector=is_result, result_idle_timeout=0.2
            )
            other = await sup.start(quiet, node="n1")
            with trio.fail_after(15):
                failed = await sup.wait(other.id)
            assert failed.state is State.FAILED and failed.exit_code == 3 and failed.stop_reason is None

            # The spec's own teardown hook runs here, once, with the gateway's record.
            calls: list[ProcessRecord] = []

            async def hook(rec: ProcessRecord) -> None:
                calls.append(rec)

            spec = ProcessSpec(["sleep", "600"], teardown_hooks=[hook], stop_grace=0.5)
            sleeper = await sup.start(spec, node="n1")
            receipt = await sup.teardown(sleeper.id)
            assert receipt.process.node == "n1" and receipt.process.state is State.KILLED
            assert [c.id for c in calls] == [sleeper.id] and calls[0].node == "n1"
            assert sup.table.get(sleeper.id).torn_down  # type: ignore[union-attr]
            await sup.teardown(sleeper.id)
            assert len(calls) == 1, "a second teardown runs no hook again"
            texts = [line.text for line in sup.log(sleeper.id).read()]
            assert texts[-1] == "[gateway] torn down"
            assert marked_pids(sleeper.id) == set()
        nursery.cancel_scope.cancel()


async def test_choose_resolves_a_default_auto_and_unknown_nodes(tmp_path: Path) -> None:
    opts = AgentOptions(state_dir=tmp_path / "agent", host=HOST, port=0, token=TOKEN, lease=10)
    async with trio.open_nursery() as nursery:
        _agent, port = await nursery.start(run_agent, opts)
        async with open_supervisor(tmp_path / "gw") as sup:
            placement = sup.placement
            assert placement.choose(None) == LOCAL and placement.choose(AUTO) == LOCAL  # no node yet
            node = await NodeManager(sup, tmp_path / "gw", TOKEN).add(
                NodeConfig("n1", f"ws://{HOST}:{port}"), save=False
            )
            with trio.fail_after(10):
                await node.wait_state("up")
            assert placement.choose(None) == LOCAL, "without a configured default: this machine"
            assert placement.choose(AUTO) == "n1" and placement.choose("n1") == "n1"
            placement.default = AUTO
            assert placement.choose(None) == "n1" and placement.choose(LOCAL) == LOCAL
            placement.default = "gone"
            try:
                placement.choose(None)
            except NoSuchNode as exc:
                assert exc.code == "node_not_found" and "--default-node" in str(exc)
            else:
                raise AssertionError("a default naming no node must be refused")
        nursery.cancel_scope.cancel()


async def test_the_agent_serves_a_follow_far_behind_its_ring_from_disk_without_a_gap(tmp_path: Path) -> None:
    """An ended record's ring is small (256 KiB): following 2.4 MB of it from seq 0 goes to
    disk, which the agent reads with ``read_async`` (a worker thread); every line comes once."""
    opts = AgentOptions(state_dir=tmp_path / "agent", host=HOST, port=0, token=TOKEN, lease=10)
    lines_wanted = 20_000
    async with trio.open_nursery() as nursery:
        agent, port = await nursery.start(run_agent, opts)
        headers = [(b"authorization", f"Bearer {TOKEN}".encode())]
        async with open_websocket_url(
            f"ws://{HOST}:{port}", extra_headers=headers, max_message_size=32 * 1024 * 1024
        ) as ws:

            async def ask(msg: dict[str, Any]) -> dict[str, Any]:
                await ws.send_message(json.dumps(msg))
                while True:
                    answer = json.loads(await ws.get_message())
                    if answer.get("id") == msg["id"]:
                        return dict(answer)

            assert (await ask({"id": 1, "op": "hello", "owner": "test-gateway"}))["ok"]
            argv = ["sh", "-c", f"yes {'x' * 120} | head -n {lines_wanted}"]
            started = await ask({"id": 2, "op": "start", "spec": {"argv": argv}})
            record_id = started["record"]["id"]
            with trio.fail_after(20):
                await agent.sup.wait(record_id)
            log = agent.sup.log(record_id)
            assert log.last_seq > lines_wanted  # and the engine's note of the exit
            reads_before = log.disk_reads

            await ws.send_message(json.dumps({"id": 3, "op": "follow", "process": record_id, "since": 0}))
            seqs: list[int] = []
            with trio.fail_after(30):
                while True:
                    msg = json.loads(await ws.get_message())
                    if msg.get("id") != 3:
                        continue
                    if msg["type"] == "lines":
                        seqs += [line[0] for line in msg["lines"]]
                    elif msg["type"] == "end":
                        assert msg["process"]["state"] == "exited"
                        break
            assert seqs == list(range(1, log.last_seq + 1))
            assert log.disk_reads > reads_before, "the early lines came from disk, not the ring"
        nursery.cancel_scope.cancel()
