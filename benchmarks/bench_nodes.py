"""Node benchmarks: a child on a node agent against the same child on this machine, same run.

    .venv/bin/python benchmarks/bench_nodes.py [--quick]

The agent is the real ``gateway node-agent`` in its own process on 127.0.0.2; the gateway side
is a supervisor with a ``NodeManager`` in this process, so every remote figure includes the
WebSocket round trips and the log mirror.

- start:  sequential starts of ``sleep 600`` until the record is running (ms each)
- kill:   kill-to-receipt of a tree whose setsid'd grandchild ignores SIGTERM (grace 0.5 s)
- lag:    a child printing its clock 1,000 times a second; p50/p99 from the print to a
          follower of the gateway's log receiving it
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from gateway.supervisor import ProcessSpec, Supervisor, open_supervisor
from gateway.supervisor.nodes import NodeConfig, NodeManager

HOST = "127.0.0.2"
GATEWAY = str(Path(sys.executable).parent / "gateway")
HARD_TREE = 'sleep 600 & setsid sh -c "trap \\"\\" TERM; sleep 600" & wait'
CLOCK = (
    "import sys, time\n"
    "end = time.time() + {seconds}\n"
    "while time.time() < end:\n"
    "    sys.stdout.write(f'{{time.time()}}\\n'); sys.stdout.flush(); time.sleep(0.001)\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def starts(sup: Supervisor, node: str, n: int) -> list[float]:
    out, ids = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        record = await sup.start(ProcessSpec(["sleep", "600"], stop_grace=0.5), node=node)
        out.append((time.perf_counter() - t0) * 1000)
        ids.append(record.id)
    async with trio.open_nursery() as nursery:
        for record_id in ids:
            nursery.start_soon(sup.kill, record_id)
    return out


async def kills(sup: Supervisor, node: str, n: int) -> list[float]:
    ids = [
        (await sup.start(ProcessSpec(["sh", "-c", HARD_TREE], stop_grace=0.5), node=node)).id
        for _ in range(n)
    ]
    await trio.sleep(0.5)  # let every tree fork its grandchildren
    out: list[float] = []

    async def one(record_id: str) -> None:
        t0 = time.perf_counter()
        receipt = await sup.kill(record_id)
        assert not receipt.survivors
        out.append((time.perf_counter() - t0) * 1000)

    async with trio.open_nursery() as nursery:
        for record_id in ids:
            nursery.start_soon(one, record_id)
    return out


async def lag(sup: Supervisor, node: str, seconds: float) -> list[float]:
    record = await sup.start(ProcessSpec([sys.executable, "-c", CLOCK.format(seconds=seconds)]), node=node)
    out: list[float] = []
    async for batch in sup.log(record.id).follow(0):
        now = time.time()
        out += [(now - float(line.text)) * 1000 for line in batch if line.stream == "stdout"]
    return out


def start_agent(root: Path, token: Path, port: int) -> subprocess.Popen[bytes]:
    argv = [GATEWAY, "node-agent", "--state-dir", str(root / "agent"), "--listen", f"{HOST}:{port}",
            "--token-file", str(token), "--lease", "30"]  # fmt: skip
    return subprocess.Popen(argv, stderr=subprocess.DEVNULL)


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def main(quick: bool) -> None:
    n_start, n_kill, seconds = (20, 5, 1.0) if quick else (100, 20, 3.0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        token = root / "token"
        token.write_text("bench-token")
        port = free_port()
        agent = start_agent(root, token, port)
        try:
            async with open_supervisor(root / "gw") as sup:
                manager = NodeManager(sup, root / "gw", "bench-token")
                node = await manager.add(NodeConfig("n1", f"ws://{HOST}:{port}"), save=False)
                with trio.fail_after(20):
                    await node.wait_state("up")
                rows = []
                local_s, remote_s = await starts(sup, "local", n_start), await starts(sup, "n1", n_start)
                rows.append(
                    ("start, ms each (median)", statistics.median(local_s), statistics.median(remote_s))
                )
                local_k, remote_k = await kills(sup, "local", n_kill), await kills(sup, "n1", n_kill)
                rows.append(("kill to receipt, ms (max; grace 500 ms)", max(local_k), max(remote_k)))
                local_l, remote_l = await lag(sup, "local", seconds), await lag(sup, "n1", seconds)
                rows.append(("log lag p50, ms", pct(local_l, 0.5), pct(remote_l, 0.5)))
                rows.append(("log lag p99, ms", pct(local_l, 0.99), pct(remote_l, 0.99)))
                print(f"{'what':42} {'local':>10} {'remote':>10} {'ratio':>7}")
                for what, local, remote in rows:
                    print(f"{what:42} {local:10.2f} {remote:10.2f} {remote / max(local, 1e-9):7.2f}")
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    trio.run(main, parser.parse_args().quick)
