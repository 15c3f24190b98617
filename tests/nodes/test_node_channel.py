"""The channel itself, in one process: the token is checked, and wss:// works end to end.

A real agent (``run_agent``) and a real gateway-side ``NodeManager`` over real loopback
sockets; only the processes are shared, nothing is mocked.
"""

from __future__ import annotations

import json
import ssl
import subprocess
from pathlib import Path

import pytest
import trio

from gateway.supervisor import ProcessSpec, open_supervisor
from gateway.supervisor.nodes import NodeConfig, NodeManager
from gateway.supervisor.nodes.agent import AgentOptions, run_agent, tls_context
from gateway.supervisor.placement import NodeUnavailable

HOST = "127.0.0.3"


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    crt, key = tmp_path / "agent.crt", tmp_path / "agent.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=node",
         "-addext", f"subjectAltName=IP:{HOST}", "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True,
    )  # fmt: skip
    return crt, key


async def test_a_wrong_token_is_refused_before_the_channel_opens(tmp_path: Path) -> None:
    opts = AgentOptions(state_dir=tmp_path / "agent", host=HOST, port=0, token="right-token", lease=5)
    async with trio.open_nursery() as nursery:
        _agent, port = await nursery.start(run_agent, opts)
        async with open_supervisor(tmp_path / "gw") as sup:
            manager = NodeManager(sup, tmp_path / "gw", "wrong-token")
            node = await manager.add(NodeConfig("n1", f"ws://{HOST}:{port}"), save=False)
            with trio.fail_after(10):
                while node.error is None:
                    await trio.sleep(0.02)
            assert "401" in node.error and node.state == "down"
            with pytest.raises(NodeUnavailable):
                sup.placement.pick()
        nursery.cancel_scope.cancel()


async def test_wss_with_the_agents_certificate_runs_a_child_and_mirrors_its_log(
    tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    crt, key = cert
    opts = AgentOptions(
        state_dir=tmp_path / "agent",
        host=HOST,
        port=0,
        token="t",
        lease=5,
        ssl_context=tls_context(str(crt), str(key)),
    )
    async with trio.open_nursery() as nursery:
        _agent, port = await nursery.start(run_agent, opts)
        async with open_supervisor(tmp_path / "gw") as sup:
            client_ctx = ssl.create_default_context(cafile=str(crt))
            manager = NodeManager(sup, tmp_path / "gw", "t", ssl_context=client_ctx)
            node = await manager.add(NodeConfig("n1", f"wss://{HOST}:{port}"), save=True)
            with trio.fail_after(10):
                await node.wait_state("up")
            assert sup.placement.pick() == "n1"
            record = await sup.start(ProcessSpec(["sh", "-c", "echo hello; echo oops >&2"]), node="n1")
            assert record.node == "n1"
            with trio.fail_after(10):
                done = await sup.wait(record.id)
            assert done.state.value == "exited" and done.exit_code == 0
            lines = sup.log(record.id).read(0)
            # Two pipes: their relative order is the kernel's, each stream's own order is kept.
            assert sorted((x.stream, x.text) for x in lines if x.stream != "system") == [
                ("stderr", "oops"),
                ("stdout", "hello"),
            ]
            assert done.last_seq == lines[-1].seq
            saved = json.loads((tmp_path / "gw" / "nodes.json").read_text())
            assert saved == {"nodes": [{"name": "n1", "url": f"wss://{HOST}:{port}"}]}
        nursery.cancel_scope.cancel()


async def test_a_second_gateway_is_refused_while_the_first_ones_trees_run(tmp_path: Path) -> None:
    opts = AgentOptions(state_dir=tmp_path / "agent", host=HOST, port=0, token="t", lease=30)
    async with trio.open_nursery() as nursery:
        _agent, port = await nursery.start(run_agent, opts)
        url = f"ws://{HOST}:{port}"
        async with open_supervisor(tmp_path / "gw1") as first, open_supervisor(tmp_path / "gw2") as second:
            one = await NodeManager(first, tmp_path / "gw1", "t").add(NodeConfig("n1", url), save=False)
            with trio.fail_after(10):
                await one.wait_state("up")
            record = await first.start(ProcessSpec(["sleep", "600"], stop_grace=0.5), node="n1")
            two = await NodeManager(second, tmp_path / "gw2", "t").add(NodeConfig("n1", url), save=False)
            with trio.fail_after(10):
                while "another gateway" not in (two.error or ""):
                    await trio.sleep(0.02)
            assert two.state == "down"
            assert first.table.get(record.id).state.value == "running", "its sweep never ran"
            receipt = await first.kill(record.id)
            assert receipt.process.state.value == "killed"
            with trio.fail_after(10):  # nothing of the first runs any more: the second takes over
                await two.wait_state("up")
        nursery.cancel_scope.cancel()
