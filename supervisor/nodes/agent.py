"""``gateway node-agent``: the engine on one machine, driven by a gateway over a WebSocket.

The agent is a supervisor with no HTTP front. It listens on one address for one kind of
channel (trio-websocket), checks the bearer token in the handshake, and answers the gateway's
requests: start a spec, kill with a receipt, follow a log from a seq, status, sweep, and hand
over the receipts of trees it killed on its own.

It kills trees on its own in two cases. At start, the engine's crash sweep stops whatever an
earlier agent on the same state dir left behind (its receipts are kept for the gateway). And
it holds a *lease*: when no message came from a gateway for longer than the lease, it assumes
the gateway is gone for good and kills every tree it runs, so that a dead gateway never leaves
agent loops running on other machines. Those receipts are kept too, in
``<state>/node-receipts.json``, until a gateway collects them (``receipts`` then ``ack``).

Cancellation: leaving ``run_agent`` (SIGINT/SIGTERM) stops the server, then every child, like a
gateway's shutdown.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import os
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, serve_websocket

from ..cgroups import CgroupError
from ..engine import KillReceipt, Supervisor, SupervisorConfig, open_supervisor
from ..logs import ProcessLog
from ..spec import StopReason
from . import wire

RECEIPTS_FILE = "node-receipts.json"
OWNER_FILE = "node-owner"


class AgentError(Exception):
    """A reason not to start, as one line for the user."""


def default_capacity() -> int:
    return max(os.cpu_count() or 1, 1) * 4


@dataclass
class AgentOptions:
    state_dir: Path
    host: str
    port: int
    token: str
    lease: float = 30.0
    capacity: int = field(default_factory=default_capacity)
    ssl_context: ssl.SSLContext | None = None


class NodeAgent:
    """The agent's state shared by every connection: lease clock and uncollected receipts."""

    def __init__(self, sup: Supervisor, opts: AgentOptions) -> None:
        self.sup = sup
        self.opts = opts
        self.boot = secrets.token_hex(8)
        self.last_contact = trio.current_time()
        self._contact = trio.Event()
        self._receipts_path = opts.state_dir / RECEIPTS_FILE
        self._owner_path = opts.state_dir / OWNER_FILE
        try:
            self.owner: str | None = self._owner_path.read_text().strip() or None
        except OSError:
            self.owner = None
        self.receipts: list[dict[str, Any]] = self._load_receipts()
        for receipt in sup.recovered:
            self._keep(receipt, "crash-sweep")
        self._save_receipts()

    # ---- receipts kept for the gateway ---------------------------------------------------

    def _load_receipts(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self._receipts_path.read_text())
        except (OSError, ValueError):
            return []
        return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []

    def _save_receipts(self) -> None:
        tmp = self._receipts_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.receipts))
        os.replace(tmp, self._receipts_path)

    def _keep(self, receipt: KillReceipt, cause: str) -> None:
        self.receipts.append(
            {"key": secrets.token_hex(8), "cause": cause, "at": time.time(), **wire.receipt_to_wire(receipt)}
        )

    def ack(self, keys: list[str]) -> int:
        before = len(self.receipts)
        gone = set(keys)
        self.receipts = [r for r in self.receipts if r.get("key") not in gone]
        self._save_receipts()
        return before - len(self.receipts)

    def claim(self, owner: str) -> bool:
        """One gateway per agent: another one would sweep (and lease-kill) the first's trees.

        The first gateway to say hello owns the agent; a different one is refused while any of
        the owner's trees runs, and takes over once none does.
        """
        if owner != self.owner:
            if self.owner is not None and self.sup.table.active():
                return False
            self.owner = owner
            self._owner_path.write_text(owner + "\n")
        return True

    # ---- the lease -----------------------------------------------------------------------

    def touch(self) -> None:
        self.last_contact = trio.current_time()
        self._contact.set()
        self._contact = trio.Event()

    async def lease_watch(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Kill every tree once no gateway spoke for longer than the lease (then wait again)."""
        task_status.started()
        while True:
            deadline = self.last_contact + self.opts.lease
            if trio.current_time() < deadline:
                with trio.move_on_at(deadline):
                    await trio.sleep_forever()
                continue
            active = [r.id for r in self.sup.table.active() if not r.job_id]
            if active:
                receipts = await self.kill_all(active)
                for receipt in receipts:
                    self._keep(receipt, "lease-expired")
                self._save_receipts()
            await self._contact.wait()

    async def kill_all(self, ids: list[str]) -> list[KillReceipt]:
        out: list[KillReceipt] = []

        async def one(record_id: str) -> None:
            out.append(await self.sup.kill(record_id, StopReason.LOST))

        async with trio.open_nursery() as nursery:
            for record_id in ids:
                nursery.start_soon(one, record_id)
        return out

    # ---- the channel ---------------------------------------------------------------------

    def authorized(self, request: WebSocketRequest) -> bool:
        expected = f"Bearer {self.opts.token}".encode()
        for name, value in request.headers:
            if name.lower() == b"authorization":
                return hmac.compare_digest(value, expected)
        return False

    async def handler(self, request: WebSocketRequest) -> None:
        if not self.authorized(request):
            await request.reject(401, body=b"bad or missing token\n")
            return
        ws = await request.accept()
        self.touch()
        await Session(self, ws).run()


class Session:
    """One gateway connection: a reader loop, one task per request, ordered sends."""

    def __init__(self, agent: NodeAgent, ws: WebSocketConnection) -> None:
        self.agent = agent
        self.sup = agent.sup
        self.ws = ws
        self._send_lock = trio.Lock()
        self._follows: dict[Any, trio.CancelScope] = {}
        #: Set by an accepted ``hello``; until then no other request is served and the
        #: connection does not count as the gateway's presence for the lease.
        self.hello_done = False

    async def send(self, obj: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_message(wire.dumps(obj))

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    raw = await self.ws.get_message()
                except ConnectionClosed:
                    break
                if self.hello_done:
                    self.agent.touch()
                try:
                    msg = json.loads(raw)
                    if not isinstance(msg, dict):
                        raise ValueError("not an object")
                except ValueError:
                    nursery.start_soon(self.send, {"id": None, "ok": False, "code": "bad_message",
                                                   "error": "messages are JSON objects"})  # fmt: skip
                    continue
                op = msg.get("op")
                if op == "hello" or not self.hello_done:
                    await self.dispatch(msg)  # in order: nothing runs before the hello
                    continue
                if op == "unfollow":
                    scope = self._follows.pop(msg.get("target"), None)
                    if scope is not None:
                        scope.cancel()
                    continue
                nursery.start_soon(self.dispatch, msg)
            nursery.cancel_scope.cancel()

    async def dispatch(self, msg: dict[str, Any]) -> None:
        req_id = msg.get("id")
        op = msg.get("op")
        handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]] = {
            "hello": self.op_hello,
            "ping": self.op_ping,
            "start": self.op_start,
            "kill": self.op_kill,
            "status": self.op_status,
            "sweep": self.op_sweep,
            "receipts": self.op_receipts,
            "ack": self.op_ack,
            "follow": partial(self.op_follow, req_id),
        }
        handler = handlers.get(str(op))
        try:
            if handler is None:
                raise _Refused("unknown_op", f"unknown op {str(op)[:50]!r}")
            if not self.hello_done and op != "hello":
                raise _Refused("hello_first", "say hello first")
            answer = await handler(msg)
        except _Refused as exc:
            answer = {"ok": False, "code": exc.code, "error": str(exc)}
        except ConnectionClosed:
            return
        if answer is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await self.send({"id": req_id, **answer})

    async def op_hello(self, msg: dict[str, Any]) -> dict[str, Any]:
        owner = str(msg.get("owner") or "")
        if not owner:
            raise _Refused("invalid_request", "hello needs the gateway's owner id")
        if not self.agent.claim(owner):
            raise _Refused("owned_by_another_gateway", "another gateway's trees run on this node")
        self.hello_done = True
        self.agent.touch()
        lease = self.agent.opts.lease
        return {"ok": True, "protocol": wire.PROTOCOL, "boot": self.agent.boot, "lease": lease,
                "heartbeat": max(lease / 4, 0.05), "capacity": self.agent.opts.capacity,
                "pid": os.getpid()}  # fmt: skip

    async def op_ping(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "running": len(self.sup.table.active())}

    async def op_start(self, msg: dict[str, Any]) -> dict[str, Any]:
        try:
            spec = wire.spec_from_wire(msg["spec"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _Refused("invalid_spec", f"invalid spec: {exc}") from None
        try:
            record = await self.sup.start(spec)
        except CgroupError as exc:
            raise _Refused("limits_unavailable", str(exc)) from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise _Refused("spawn_failed", f"cannot start {spec.argv[0][:200]}: {reason}") from None
        except RuntimeError as exc:
            raise _Refused("shutting_down", str(exc)) from None
        return {"ok": True, "record": wire.record_to_wire(record)}

    async def op_kill(self, msg: dict[str, Any]) -> dict[str, Any]:
        record_id = str(msg.get("process"))
        try:
            reason = StopReason(msg.get("reason") or "kill")
        except ValueError:
            raise _Refused("invalid_request", "unknown stop reason") from None
        grace = msg.get("grace")
        try:
            receipt = await self.sup.kill(record_id, reason, grace=float(grace) if grace else None)
        except KeyError:
            raise _Refused("process_not_found", f"no process {record_id[:100]}") from None
        return {"ok": True, "receipt": wire.receipt_to_wire(receipt)}

    async def op_status(self, msg: dict[str, Any]) -> dict[str, Any]:
        ids = msg.get("ids")
        table = self.sup.table
        if isinstance(ids, list):
            records = {str(i): table.get(str(i)) for i in ids}
            listed = {i: wire.record_to_wire(r) if r is not None else None for i, r in records.items()}
        else:
            listed = {r.id: wire.record_to_wire(r) for r in table.active()}
        return {"ok": True, "records": listed, "running": len(table.active()),
                "capacity": self.agent.opts.capacity, "receipts": len(self.agent.receipts)}  # fmt: skip

    async def op_sweep(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Kill every running tree the gateway does not claim (``keep``); their receipts."""
        keep = {str(i) for i in msg.get("keep") or ()}
        doomed = [r.id for r in self.sup.table.active() if r.id not in keep and not r.job_id]
        receipts = await self.agent.kill_all(doomed)
        return {"ok": True, "receipts": [wire.receipt_to_wire(r) for r in receipts]}

    async def op_receipts(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "receipts": list(self.agent.receipts)}

    async def op_ack(self, msg: dict[str, Any]) -> dict[str, Any]:
        keys = [str(k) for k in msg.get("keys") or ()]
        return {"ok": True, "dropped": self.agent.ack(keys)}

    async def op_follow(self, req_id: Any, msg: dict[str, Any]) -> dict[str, Any] | None:
        """Stream lines after ``since``, the record's changes, then ``end`` once it ended."""
        record_id = str(msg.get("process"))
        since = int(msg.get("since") or 0)
        try:
            log = self.sup.log(record_id)
        except KeyError:
            raise _Refused("process_not_found", f"no process {record_id[:100]}") from None
        scope = trio.CancelScope()
        self._follows[req_id] = scope
        try:
            with scope:
                await self._follow(req_id, record_id, log, since)
        finally:
            self._follows.pop(req_id, None)
        return None

    async def _follow(self, req_id: Any, record_id: str, log: ProcessLog, since: int) -> None:
        """Send batches until the record ended and its log was read to the end.

        Lines come through ``read_async``: a follower far behind the ring (a gateway resuming a
        long log) reads from disk in a worker thread, never on the event loop, so one large log
        cannot stall the agent's heartbeats and other children. Cancellation (an ``unfollow``,
        the connection closing) stops between batches; nothing is consumed on the agent side.
        """
        table = self.sup.table
        sent_version = -1
        while True:
            log_changed, table_changed = log.changed, table.changed
            lines = await log.read_async(since, 2000, wire.BATCH_BYTES)
            if lines:
                batch: list[list[Any]] = []
                size = 0
                for line in lines:
                    text = line.text
                    batch.append([line.seq, line.ts, line.stream, text])
                    size += len(text) + 40
                    if size >= wire.BATCH_BYTES:
                        break
                since = batch[-1][0]
                await self.send({"id": req_id, "type": "lines", "lines": batch})
                continue
            record = table.get(record_id)
            if record is None:
                await self.send({"id": req_id, "type": "end", "process": None})
                return
            if record.version != sent_version:
                sent_version = record.version
                await self.send({"id": req_id, "type": "status", "process": wire.record_to_wire(record)})
            if log.ended and record.state.ended:
                await self.send({"id": req_id, "type": "end", "process": wire.record_to_wire(record)})
                return
            await wait_any(log_changed, table_changed)


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def wait_any(*events: trio.Event) -> None:
    """Return once any of ``events`` is set."""
    async with trio.open_nursery() as nursery:

        async def one(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(one, event)


def tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    """A server context for ``wss://`` (TLS 1.2 at least)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise AgentError(f"cannot load the TLS certificate {cert}: {exc}") from None
    return context


def lock_state_dir(root: Path) -> int:
    """One agent per state dir: a second would sweep the first one's children."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "node-agent.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AgentError(f"a node agent already runs on {root}") from None
    return fd


async def run_agent(
    opts: AgentOptions, *, task_status: trio.TaskStatus[tuple[NodeAgent, int]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled; ``task_status`` gets the agent and the port it listens on."""
    if not opts.token:
        raise AgentError("the token file is empty")
    if opts.lease <= 0:
        raise AgentError("--lease must be positive")
    lock_fd = lock_state_dir(opts.state_dir)
    try:
        async with open_supervisor(SupervisorConfig(opts.state_dir)) as sup:
            agent = NodeAgent(sup, opts)
            async with trio.open_nursery() as nursery:
                await nursery.start(agent.lease_watch)
                try:
                    server = await nursery.start(
                        partial(serve_websocket, agent.handler, opts.host, opts.port, opts.ssl_context,
                                handler_nursery=nursery, max_message_size=wire.MAX_MESSAGE)
                    )  # fmt: skip
                except OSError as exc:
                    raise AgentError(f"cannot listen on {opts.host}:{opts.port}: {exc.strerror}") from None
                task_status.started((agent, server.port))
    finally:
        os.close(lock_fd)


async def agent_forever(opts: AgentOptions, on_ready: Callable[[int], None]) -> None:
    """The ``gateway node-agent`` body: run until SIGINT/SIGTERM, then stop every child."""
    import signal

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            _agent, port = await nursery.start(partial(run_agent, opts))
            on_ready(port)
            async for _signum in signals:
                nursery.cancel_scope.cancel()
                break
