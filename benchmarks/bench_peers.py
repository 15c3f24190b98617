"""The gateway beside supervisord and the machine's own limits, interleaved in one run.

    .venv/bin/python benchmarks/bench_peers.py [--quick] [--repeat 3]

Needs supervisord (``pip install -e '.[bench]'``, which ``make bench`` does) and a writable
cgroup v2 for the kill limit (root here). Every figure is the median of ``--repeat`` rounds,
with its range; each round runs every contender once, one after another, so load that comes
and goes hits all of them alike. The 1-minute load average is printed with each figure.

- logs:    a child writes N MB of 100-byte lines; done when all of it is on disk.
           ``writer | cat > file`` (the limit), supervisord (``stdout_logfile``), pm2
           (``out_file``, when npm is there), the gateway.
- kill:    200 hard trees (5 processes each: a sleep, a ``setsid`` shell with its sleep, an
           ``env -i setsid`` sleep), all honouring SIGTERM. ``cgroup.kill`` per tree (the
           limit: no grace, no verification), SIGTERM to every member and wait (the limit of a
           graceful kill), the engine in process, the gateway over HTTP (one
           bulk ``POST /processes/kill``), supervisord (``stop all``, stopasgroup/killasgroup),
           with the processes each one left alive; pm2 (when npm is there) on 20 trees only,
           because its stop waits out ``kill_timeout`` for every tree (see peers_pm2.py).
- start:   200 ``sleep`` children: the engine in process, ``POST /processes`` one by one
           through ``http.client`` on one keep-alive connection, and through ``httpx`` (with
           each client's own cost per request, measured on a GET the guard answers itself);
           the kill round also notes the rate of POSTing its 200 hard trees.
- follow:  20 children x 1,000 lines/s, p50/p99 from the write to a follower's receipt.
- listing: ``GET /processes?limit=100&after=...`` over HTTP from 50,000 records, 10 of them live.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from gateway.supervisor import ProcessRecord, ProcessSpec, State, Store, open_supervisor
from gateway.supervisor.cgroups import Cgroup, Cgroups
from gateway.supervisor.heap import settle_heap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import bench_follow
from peers_pm2 import PM2_TREES, ensure_pm2, kill_pm2, logs_pm2, wait_for

N_TREES = 200
_JSON = {"Content-Type": "application/json"}
HARD = 'sleep 600 & setsid sh -c "sleep 600 & wait" & env -i setsid sleep 600 & wait'
PER_TREE = 5
GATEWAY = str(Path(sys.executable).parent / "gateway")
SUPERVISORD = str(Path(sys.executable).parent / "supervisord")
SUPERVISORCTL = str(Path(sys.executable).parent / "supervisorctl")

WRITER = """
import os, sys, time
go, mb = sys.argv[1], int(sys.argv[2])
while not os.path.exists(go):
    time.sleep(0.001)
block = (b'x' * 99 + b'\\n') * 10486
for _ in range(mb):
    sys.stdout.buffer.write(block)
"""


def load1() -> float:
    return os.getloadavg()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- logs ----------------------------------------------------------------------------------


def logs_cat(tmp: Path, writer: Path, mb: int) -> float:
    go, out = tmp / "go-cat", tmp / "cat.out"
    proc = subprocess.Popen(["sh", "-c", f'"{sys.executable}" "{writer}" "{go}" {mb} | cat > "{out}"'])
    time.sleep(0.2)
    t0 = time.perf_counter()
    go.touch()
    proc.wait()
    seconds = time.perf_counter() - t0
    out.unlink()
    go.unlink()  # the next round's writer must wait for its own start signal
    return seconds


def supervisord_conf(tmp: Path, programs: str) -> Path:
    conf = tmp / "supervisord.conf"
    conf.write_text(
        f"[supervisord]\nnodaemon=true\nlogfile={tmp}/supervisord.log\npidfile={tmp}/sd.pid\n"
        f"childlogdir={tmp}\n[unix_http_server]\nfile={tmp}/sd.sock\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=unix://{tmp}/sd.sock\n{programs}"
    )
    return conf


def logs_supervisord(tmp: Path, writer: Path, mb: int) -> float:
    go, out = tmp / "go-sd", tmp / "sd-writer.log"
    program = (
        f"[program:writer]\ncommand={sys.executable} {writer} {go} {mb}\nautorestart=false\n"
        f"startsecs=0\nstdout_logfile={out}\nstdout_logfile_maxbytes=0\nredirect_stderr=true\n"
    )
    conf = supervisord_conf(tmp, program)
    sd = subprocess.Popen([SUPERVISORD, "-c", str(conf)], stdout=subprocess.DEVNULL)
    total = mb * 10486 * 100
    try:
        wait_for(lambda: (tmp / "sd.sock").exists(), 20, "supervisord")
        time.sleep(0.3)
        t0 = time.perf_counter()
        go.touch()
        wait_for(lambda: out.exists() and out.stat().st_size >= total, 300, "supervisord's log")
        return time.perf_counter() - t0
    finally:
        sd.send_signal(signal.SIGTERM)
        sd.wait()
        out.unlink(missing_ok=True)
        go.unlink(missing_ok=True)


async def logs_ours(tmp: Path, writer: Path, mb: int) -> float:
    go = tmp / "go-gw"
    async with open_supervisor(tmp / "gw-logs") as sup:
        record = await sup.start(ProcessSpec([sys.executable, str(writer), str(go), str(mb)]))
        await trio.sleep(0.2)
        t0 = time.perf_counter()
        go.touch()
        ended = await sup.wait(record.id)
        seconds = time.perf_counter() - t0
        assert ended.state is State.EXITED
        assert sup.log(record.id).bytes_written >= mb * 10486 * 100
    shutil.rmtree(tmp / "gw-logs")
    go.unlink()
    return seconds


# ---- kill ----------------------------------------------------------------------------------


def _join(cgroup: Cgroup) -> list[str]:
    return cgroup.join_argv()


async def kill_limit(key: str, graceful: bool = False) -> tuple[float, int]:
    """The machine's limit: ``cgroup.kill`` per tree; ``graceful``: SIGTERM to every member
    (what the engine must send first) and wait for every cgroup to empty, nothing else."""
    cgroups = Cgroups.open(key)
    assert cgroups is not None, "cgroup v2 is not writable here"
    groups = [cgroups.create(f"t{i}") for i in range(N_TREES)]
    procs = [
        await trio.lowlevel.open_process([*_join(g), "sh", "-c", HARD], start_new_session=True)
        for g in groups
    ]
    while sum(len(g.procs()) for g in groups) < PER_TREE * N_TREES:
        await trio.sleep(0.02)
    t0 = time.perf_counter()
    for g in groups:
        if graceful:
            g.signal(g.procs(), signal.SIGTERM)
        else:
            g.kill()
    for p in procs:
        await p.wait()
    while any(g.populated() for g in groups):
        await trio.sleep(0.001)
    seconds = time.perf_counter() - t0
    left = sum(len(g.procs()) for g in groups)
    for g in groups:
        g.remove()
    cgroups.close()
    return seconds, left


async def kill_engine(tmp: Path) -> tuple[float, int]:
    async with open_supervisor(tmp / "gw-kill") as sup:
        assert sup.cgroups is not None
        records = [await sup.start(ProcessSpec(["sh", "-c", HARD], stop_grace=5)) for _ in range(N_TREES)]
        groups = [sup.cgroups.get(r.id) for r in records]
        while sum(len(g.procs()) for g in groups) < PER_TREE * N_TREES:
            await trio.sleep(0.02)
        t0 = time.perf_counter()
        receipts = await sup.kill_many([r.id for r in records])
        seconds = time.perf_counter() - t0
        left = sum(len(r.survivors) for r in receipts)
    shutil.rmtree(tmp / "gw-kill")
    return seconds, left


class Served:
    """``gateway serve`` in a subprocess, with a client."""

    def __init__(self, state: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [GATEWAY, "serve", "--state-dir", str(state), "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for(lambda: (state / "gateway-token").exists() and self._up(), 30, "gateway serve")
        self.token = token = (state / "gateway-token").read_text().strip()
        self.http = httpx.Client(
            base_url=self.base, headers={"X-Desktop-Gateway-Token": token}, timeout=120, trust_env=False
        )

    def _up(self) -> bool:
        try:
            return httpx.get(self.base + "/health", timeout=1, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def start_http(tmp: Path, client: str = "http.client") -> float:
    """The HTTP start rate of what ``start_engine`` starts (200 ``sleep``s), one POST at a
    time, like for like with the engine in process; then one bulk kill clears them.

    ``client``: the standard library's ``http.client`` on one keep-alive connection (a lean
    client: what the gateway's own path costs), or ``httpx`` (what a client that costs more per
    request sees; see ``client_cost``)."""
    served = Served(tmp / "gw-start-http")
    body = json.dumps({"argv": ["sleep", "600"], "stopGrace": 1})
    try:
        # One start before the clock, on each side: a fresh server's first requests pay for
        # what it loads and caches on first use (~20 ms over the first two here).
        assert served.http.post("/api/gateway/processes", content=body, headers=_JSON).status_code == 201
        if client == "httpx":
            t0 = time.perf_counter()
            for _ in range(N_TREES):
                r = served.http.post("/api/gateway/processes", content=body, headers=_JSON)
                assert r.status_code == 201, r.text
        else:
            conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=120)
            headers = {**_JSON, "X-Desktop-Gateway-Token": served.token}
            t0 = time.perf_counter()
            for _ in range(N_TREES):
                conn.request("POST", "/api/gateway/processes", body=body, headers=headers)
                answer = conn.getresponse()
                text = answer.read()
                assert answer.status == 201, text
            conn.close()
        rate = N_TREES / (time.perf_counter() - t0)
        served.http.post("/api/gateway/processes/kill", json={"all": True})
        return rate
    finally:
        served.close()
        shutil.rmtree(tmp / "gw-start-http")


def client_cost(tmp: Path) -> dict[str, float]:
    """Microseconds per request of a GET the guard answers itself (a page of one record),
    through each client: the difference is the client's own cost, not the gateway's."""
    served = Served(tmp / "gw-client")
    path = "/api/gateway/processes?limit=1"
    try:
        out = {}
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
        headers = {"X-Desktop-Gateway-Token": served.token}
        t0 = time.perf_counter()
        for _ in range(1000):
            conn.request("GET", path, headers=headers)
            conn.getresponse().read()
        out["http.client"] = (time.perf_counter() - t0) * 1000
        conn.close()
        t0 = time.perf_counter()
        for _ in range(1000):
            served.http.get(path)
        out["httpx"] = (time.perf_counter() - t0) * 1000
        return out
    finally:
        served.close()
        shutil.rmtree(tmp / "gw-client")


def kill_http(tmp: Path) -> tuple[float, int, float]:
    """Bulk kill over HTTP; also the HTTP start rate of the 200 hard trees (sequential POSTs:
    each tree forks four more processes while the next POSTs arrive, so this rate is lower
    than ``start_http``'s)."""
    served = Served(tmp / "gw-http")
    try:
        t0 = time.perf_counter()
        ids = []
        for _ in range(N_TREES):
            r = served.http.post("/api/gateway/processes", json={"argv": ["sh", "-c", HARD], "stopGrace": 5})
            ids.append(r.json()["id"])
        start_rate = N_TREES / (time.perf_counter() - t0)
        time.sleep(1.0)  # every tree forked its members
        t0 = time.perf_counter()
        got = served.http.post("/api/gateway/processes/kill", json={"all": True}).json()
        seconds = time.perf_counter() - t0
        assert got["count"] == N_TREES, got
        left = sum(len(r["survivors"]) for r in got["receipts"])
        return seconds, left, start_rate
    finally:
        served.close()
        shutil.rmtree(tmp / "gw-http")


def kill_supervisord(tmp: Path, key: str) -> tuple[float, int]:
    """supervisord stopping the same trees (stopasgroup, killasgroup); what stays alive is
    counted in a cgroup that supervisord itself runs in."""
    program = (
        f"[program:tree]\ncommand=sh -c '{HARD}'\nnumprocs={N_TREES}\n"
        "process_name=%(program_name)s_%(process_num)d\n"
        "autorestart=false\nstartsecs=0\nstopasgroup=true\nkillasgroup=true\nstopwaitsecs=5\n"
        "stdout_logfile=NONE\nstderr_logfile=NONE\n"
    )
    conf = supervisord_conf(tmp, program)
    cgroups = Cgroups.open(key)
    assert cgroups is not None
    cg = cgroups.create("supervisord")
    sd = subprocess.Popen([*_join(cg), SUPERVISORD, "-c", str(conf)], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(cg.procs()) >= 1 + PER_TREE * N_TREES, 120, "supervisord's trees")
        t0 = time.perf_counter()
        subprocess.run(
            [SUPERVISORCTL, "-c", str(conf), "stop", "all"], stdout=subprocess.DEVNULL, check=False
        )
        seconds = time.perf_counter() - t0
        time.sleep(0.5)
        left = len(cg.procs() - {sd.pid})
        return seconds, left
    finally:
        sd.send_signal(signal.SIGTERM)
        sd.wait()
        cg.kill()
        wait_for(lambda: not cg.populated(), 30, "cleanup")
        cg.remove()
        cgroups.close()


async def start_engine(tmp: Path) -> float:
    async with open_supervisor(tmp / "gw-start") as sup:
        await sup.start(ProcessSpec(["sleep", "600"], stop_grace=1))  # warm, as start_http
        t0 = time.perf_counter()
        for _ in range(N_TREES):
            await sup.start(ProcessSpec(["sleep", "600"], stop_grace=1))
        rate = N_TREES / (time.perf_counter() - t0)
    shutil.rmtree(tmp / "gw-start")
    return rate


# ---- listing -------------------------------------------------------------------------------


def seed(state: Path, n: int) -> None:
    async def go() -> None:
        store = Store(state / "gateway.db")
        await store.open()
        now = time.time()
        records = [
            ProcessRecord(
                id=f"p_seed{i:06d}", kind=("symphony", "deploy", "chat", "command")[i % 4],
                argv=["claude", "-p", f"ticket {i}"], cwd=f"/work/t{i}", ticket_id=f"T-{i % 50}",
                state=State.EXITED, pid=10000 + i, started_at=now - 100, ended_at=now - 50,
                exit_code=0, last_seq=i,
            )
            for i in range(n)
        ]  # fmt: skip
        await store.save_records(records)
        await store.close()

    trio.run(go)


def listing(tmp: Path, n: int) -> dict[str, float]:
    state = tmp / "gw-list"
    state.mkdir()
    seed(state, n)
    served = Served(state)
    try:
        live = [served.http.post("/api/gateway/processes", json={"argv": ["sleep", "600"]}).json()["id"]
                for _ in range(10)]  # fmt: skip
        after = f"p_seed{n // 2:06d}"
        latencies = []
        for _ in range(200):
            t0 = time.perf_counter()
            r = served.http.get("/api/gateway/processes", params={"limit": 100, "after": after})
            latencies.append(time.perf_counter() - t0)
            assert len(r.json()["processes"]) == 100
        last = served.http.get(
            "/api/gateway/processes", params={"limit": 100, "after": f"p_seed{n - 50:06d}"}
        )
        assert sum(p["id"] in live for p in last.json()["processes"]) == 10
        t0 = time.perf_counter()
        whole = served.http.get("/api/gateway/processes")
        whole_s = time.perf_counter() - t0
        latencies.sort()
        return {
            "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
            "whole_ms": whole_s * 1000,
            "whole_mb": len(whole.content) / 1e6,
        }
    finally:
        served.close()
        shutil.rmtree(state)


# ---- the run -------------------------------------------------------------------------------


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} (range {min(values):.3g}-{max(values):.3g})"


def main(quick: bool, repeat: int, only: set[str]) -> None:
    mb = 50 if quick else 300
    rows: dict[str, list[float]] = {}
    loads: dict[str, list[float]] = {}

    def note(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)
        loads.setdefault(name, []).append(load1())

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as raw:
        tmp = Path(raw)
        writer = tmp / "writer.py"
        writer.write_text(WRITER)
        key = f"bench-{os.getpid()}"
        for i in range(repeat):
            print(f"-- round {i + 1} of {repeat} (load {load1():.2f})", flush=True)
            size = mb * 10486 * 100 / 1e6
            if "logs" in only:
                note("logs cat>file MB/s", size / logs_cat(tmp, writer, mb))
                note("logs supervisord MB/s", size / logs_supervisord(tmp, writer, mb))
                note("logs gateway MB/s", size / trio.run(logs_ours, tmp, writer, mb))
                if ensure_pm2():
                    note("logs pm2 MB/s", size / logs_pm2(tmp, writer, mb, key))
            if "kill" in only:
                kill_round(tmp, key, note)
            if "start" in only:
                start_round(tmp, note)
            if "follow" in only:
                follow = trio.run(bench_follow, tmp / f"follow{i}", 20, 1.0 if quick else 3.0)
                note("follow p50 ms", follow["p50_ms"])
                note("follow p99 ms", follow["p99_ms"])
            if "listing" in only:
                got = listing(tmp, 5000 if quick else 50_000)
                note("listing page p50 ms", got["p50_ms"])
                note("listing page p99 ms", got["p99_ms"])
                note("listing whole ms", got["whole_ms"])
        print()
        for name, values in rows.items():
            print(f"{name:24s} {summary(values):32s} load {summary(loads[name])}")
        med = {name: statistics.median(values) for name, values in rows.items()}
        ratios: list[tuple[str, str, str, str]] = [
            ("logs: gateway / supervisord", "logs gateway MB/s", "logs supervisord MB/s", ">= 1.0"),
            ("logs: gateway / cat>file", "logs gateway MB/s", "logs cat>file MB/s", ""),
            ("logs: gateway / pm2", "logs gateway MB/s", "logs pm2 MB/s", ""),
            ("kill: engine / cgroup.kill", "kill engine s", "kill cgroup.kill s", "<= 1.5"),
            ("kill: engine / SIGTERM+wait", "kill engine s", "kill SIGTERM+wait s", ""),
            ("kill: HTTP bulk / engine", "kill HTTP bulk s", "kill engine s", "<= 3"),
            ("start: HTTP / engine", "start HTTP /s", "start engine /s", ">= 0.7"),
            ("start: HTTP httpx / engine", "start HTTP httpx /s", "start engine /s", ""),
        ]
        print()
        for name, top, bottom, target in ratios:
            if top in med and bottom in med:
                print(f"{name:30s} {med[top] / med[bottom]:6.2f}   target {target}")


def start_round(tmp: Path, note: Callable[[str, float], None]) -> None:
    """The engine's start rate and the HTTP one through both clients, one after another."""
    note("start engine /s", trio.run(start_engine, tmp))
    note("start HTTP /s", start_http(tmp))
    note("start HTTP httpx /s", start_http(tmp, "httpx"))
    cost = client_cost(tmp)
    note("GET us http.client", cost["http.client"])
    note("GET us httpx", cost["httpx"])


def kill_round(tmp: Path, key: str, note: Callable[[str, float], None]) -> None:
    """Every kill contender once, and the HTTP start rate of the hard trees."""
    seconds, left = trio.run(kill_limit, key)
    note("kill cgroup.kill s", seconds)
    note("kill cgroup.kill left", left)
    seconds, left = trio.run(kill_limit, key, True)
    note("kill SIGTERM+wait s", seconds)
    note("kill SIGTERM+wait left", left)
    seconds, left = trio.run(kill_engine, tmp)
    note("kill engine s", seconds)
    note("kill engine left", left)
    seconds, left, start_rate = kill_http(tmp)
    note("kill HTTP bulk s", seconds)
    note("kill HTTP left", left)
    note("start HTTP hard trees /s", start_rate)
    if shutil.which(SUPERVISORD):
        seconds, left = kill_supervisord(tmp, key)
        note("kill supervisord s", seconds)
        note("kill supervisord left", left)
    if ensure_pm2():
        seconds, left = kill_pm2(tmp, key, HARD, PM2_TREES, PER_TREE)
        note(f"kill pm2 s ({PM2_TREES} trees)", seconds)
        note("kill pm2 left", left)


def _args() -> Any:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are shown")
    parser.add_argument(
        "--only", default="logs,kill,start,follow,listing", help="comma list of the figures to run"
    )
    parser.add_argument(
        "--heap", choices=("settled", "raw", "nogc"), default="settled",
        help="this process's heap: settled as `gateway serve` does (default), left as it is, or no GC",
    )  # fmt: skip
    return parser.parse_args()


if __name__ == "__main__":
    args = _args()
    if args.heap == "settled":
        settle_heap()  # as `gateway serve` does once it listens: the engine runs in this process
    elif args.heap == "nogc":
        gc.disable()
    main(args.quick, max(1, args.repeat), set(args.only.split(",")))
