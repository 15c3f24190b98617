"""HTTP front throughput: the real gateway against a bare Hypercorn app, same JSON, same run.

    .venv/bin/python benchmarks/bench_http.py [--quick] [--connections N] [--seconds S]

What runs:
- ``gateway serve`` (a subprocess, auth + operation tagging + policy + metrics + access log all
  on) over a state dir seeded with 1,000 process records;
- a bare ASGI app under Hypercorn's trio worker (a subprocess) answering the very same bytes;
- a load generator in a third process: N keep-alive HTTP/1.1 connections on loopback, each
  sending the next request as soon as the previous answer is read (closed loop).

It prints requests/s and p99 latency for ``GET /api/gateway/processes`` (1,000 records) and
``GET /health`` on both servers, and the gateway/bare throughput ratio (target >= 0.7); then
``GET /api/gateway/version``, a small answer that goes through Quart's whole request cycle
(no target: it shows what a route outside the guard's fast path costs). A bare Quart-Trio app
answering the same bytes is measured too, as the framework's own floor.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GATEWAY = str(Path(sys.executable).parent / "gateway")

BARE_APP = r"""
import sys, trio
from hypercorn.config import Config
from hypercorn.trio import serve

BODIES = {"/api/gateway/processes": open(sys.argv[2], "rb").read(),
          "/health": open(sys.argv[3], "rb").read(),
          "/api/gateway/version": open(sys.argv[4], "rb").read()}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = BODIES.get(scope["path"], b"{}")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

config = Config()
config.bind = [f"127.0.0.1:{sys.argv[1]}"]
config.accesslog = None
trio.run(serve, app, config)
"""

BARE_QUART = r"""
import sys, trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response
from quart_trio import QuartTrio

BODIES = {"/api/gateway/processes": open(sys.argv[2], "rb").read(),
          "/health": open(sys.argv[3], "rb").read(),
          "/api/gateway/version": open(sys.argv[4], "rb").read()}
app = QuartTrio("bare")

@app.get("/api/gateway/processes")
async def processes():
    return Response(BODIES["/api/gateway/processes"], content_type="application/json")

@app.get("/health")
async def health():
    return Response(BODIES["/health"], content_type="application/json")

@app.get("/api/gateway/version")
async def version():
    return Response(BODIES["/api/gateway/version"], content_type="application/json")

config = Config()
config.bind = [f"127.0.0.1:{sys.argv[1]}"]
config.accesslog = None
trio.run(serve, app, config)
"""

LOADGEN = r"""
import json, socket, sys, time, threading
port, path, token = sys.argv[1:4]
conns, seconds = int(sys.argv[4]), float(sys.argv[5])
req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Desktop-Gateway-Token: {token}\r\n\r\n").encode()
lat, errors = [], [0]
stop_at = time.perf_counter() + seconds

def read_response(sock, buf):
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk: raise ConnectionError
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length": length = int(v)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk: raise ConnectionError
        rest += chunk
    return status, rest[length:]

def connect():
    sock = socket.create_connection(("127.0.0.1", int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock

def worker():
    # A server may close a keep-alive connection after N requests (Hypercorn's default is
    # 1,000): reconnect and go on, as a browser or the CLI would.
    sock, buf, mine = connect(), b"", []
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                sock.sendall(req)
                status, buf = read_response(sock, buf)
            except (ConnectionError, OSError):
                sock.close()
                sock, buf = connect(), b""
                continue
            mine.append(time.perf_counter() - t0)
            if status != 200: errors[0] += 1
    finally:
        lat.extend(mine)
        sock.close()

threads = [threading.Thread(target=worker) for _ in range(conns)]
t0 = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
elapsed = time.perf_counter() - t0
lat.sort()
print(json.dumps({"rps": len(lat) / elapsed, "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000 if lat else None,
                  "n": len(lat), "errors": errors[0]}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_records(state: Path, n: int) -> None:
    """1,000 ended records in the process table, as a long-running gateway accumulates them."""
    import trio

    from gateway.supervisor import ProcessRecord, State, Store

    async def go() -> None:
        store = Store(state / "gateway.db")
        await store.open()
        now = time.time()
        records = [
            ProcessRecord(
                id=f"p_seed{i:06d}", kind=("symphony", "deploy", "chat", "command")[i % 4],
                argv=["claude", "-p", f"ticket {i}"], cwd=f"/work/t{i}", ticket_id=f"T-{i % 50}",
                state=State.EXITED if i % 3 else State.FAILED, pid=10000 + i, started_at=now - 100,
                ended_at=now - 50, exit_code=0 if i % 3 else 1, last_seq=i,
            )
            for i in range(n)
        ]  # fmt: skip
        await store.save_records(records)
        await store.close()

    trio.run(go)


TARGETS = {"/api/gateway/processes": "(target >= 0.70)", "/health": "(target >= 0.70)"}


def wait_http(port: int, timeout: float = 20.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1, trust_env=False)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on {port}")


def load(port: int, path: str, token: str, conns: int, seconds: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", LOADGEN, str(port), path, token, str(conns), str(seconds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (CI smoke)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args()
    seconds = args.seconds or (1.5 if args.quick else 5.0)

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        seed_records(state, args.records)
        gw_port, bare_port = free_port(), free_port()
        gateway = subprocess.Popen(
            [GATEWAY, "serve", "--state-dir", str(state), "--port", str(gw_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        bare = bare_quart = None
        try:
            wait_http(gw_port)
            token = (state / "gateway-token").read_text().strip()
            import httpx

            headers = {"X-Desktop-Gateway-Token": token}
            listing = httpx.get(f"http://127.0.0.1:{gw_port}/api/gateway/processes", headers=headers,
                                trust_env=False)  # fmt: skip
            assert listing.status_code == 200 and len(listing.json()["processes"]) == args.records
            health = httpx.get(f"http://127.0.0.1:{gw_port}/health", trust_env=False)
            (Path(tmp) / "procs.json").write_bytes(listing.content)
            (Path(tmp) / "health.json").write_bytes(health.content)
            version = httpx.get(f"http://127.0.0.1:{gw_port}/api/gateway/version", headers=headers,
                                trust_env=False)  # fmt: skip
            (Path(tmp) / "version.json").write_bytes(version.content)
            bodies = [str(Path(tmp) / n) for n in ("procs.json", "health.json", "version.json")]
            bare = subprocess.Popen(
                [sys.executable, "-c", BARE_APP, str(bare_port), *bodies],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            quart_port = free_port()
            bare_quart = subprocess.Popen(
                [sys.executable, "-c", BARE_QUART, str(quart_port), *bodies],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_http(bare_port)
            wait_http(quart_port)
            print(f"loopback, {args.connections} keep-alive connections, {seconds:g} s per run, "
                  f"{args.records} records ({len(listing.content)} bytes), "
                  f"cpus={os.cpu_count()}")  # fmt: skip
            ratios = {}
            # The first two are the targets (answered by the guard's fast path after
            # every check); /version is a small answer through Quart's full request cycle,
            # shown so the cost of a route the fast path does not cover is on record too.
            for path in ("/api/gateway/processes", "/health", "/api/gateway/version"):
                load(gw_port, path, token, args.connections, min(1.0, seconds))  # warm-up
                b = load(bare_port, path, token, args.connections, seconds)
                q = load(quart_port, path, token, args.connections, seconds)
                g = load(gw_port, path, token, args.connections, seconds)
                if g["errors"] or b["errors"]:
                    raise RuntimeError(f"non-200 answers: gateway {g['errors']}, bare {b['errors']}")
                ratios[path] = g["rps"] / b["rps"]
                print(f"GET {path:<24} gateway {g['rps']:8.0f} req/s p99 {g['p99_ms']:6.2f} ms | "
                      f"bare hypercorn {b['rps']:8.0f} req/s p99 {b['p99_ms']:6.2f} ms | "
                      f"ratio {ratios[path]:.2f} {TARGETS.get(path, '(no target)')}")  # fmt: skip
                print(f"    framework floor: bare Quart-Trio {q['rps']:8.0f} req/s p99 {q['p99_ms']:6.2f} ms "
                      f"= {q['rps'] / b['rps']:.2f}x bare hypercorn; gateway = {g['rps'] / q['rps']:.2f}x "
                      f"bare Quart-Trio")  # fmt: skip
            print("figure: " + ", ".join(f"{p} {r:.2f}x bare" for p, r in ratios.items()))
        finally:
            for proc in (gateway, bare, bare_quart):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
