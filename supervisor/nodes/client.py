"""The gateway's side of a node: a ``placement.NodeBackend`` over one WebSocket.

A ``RemoteNode`` keeps one connection to its agent, reconnecting with a short backoff. Every
record it started lives in the gateway's process table (``node`` = the node's name) and has a
log in the gateway's state dir that *mirrors* the agent's: the agent's lines are appended in
order and nothing else is written to it while the record runs, so the gateway's seq of a line
is the agent's seq. After a gateway restart (or a reconnect) the mirror resumes from the last
seq on disk: a follower resuming from N gets N+1, never a gap or a repeat. The gateway's own
notes (node lost, receipts collected, torn down) come only after the record ended.

What cannot travel as data stays here and works on the mirror: a spec's result detector runs
over the mirrored stdout lines, and once it recognised the final result the gateway gives the
record ``result_idle_timeout`` to end before it kills it on the node (``result-idle``, which
counts as success as on this machine); the spec's teardown hooks are the supervisor's (it
runs them here on teardown). A gateway restart forgets both (they lived in its process); the
resumed record keeps only what travelled as data.

On every (re)connect it first collects the receipts of trees the agent killed on its own
(crash sweep, expired lease), then asks the agent to sweep every running tree the gateway does
not claim, then resumes the mirrors of the records it claims. A node unreachable for longer
than its lease is ``lost``: its running records become ``lost`` (the agent, if alive, killed
them when its lease ran out) and are never placed again; the receipts come when it is back.

Cancellation: ``run`` is a supervisor service; cancelling it closes the connection and leaves
the records as they are (the next gateway resumes them, or the agent's lease ends them).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from ..cgroups import CgroupError
from ..engine import KillReceipt, Supervisor, spawn_labels
from ..errors import AgentFailed, BadRequest, Conflict
from ..logs import LogLine, ProcessLog
from ..placement import LOCAL, NodeUnavailable
from ..spec import ProcessRecord, ProcessSpec, ResultDetector, State, StopReason
from . import wire
from .config import NodeConfig

log = logging.getLogger("gateway.nodes")

#: Fields of the gateway's copy of a remote record that the agent never overwrites.
_OURS = frozenset({"id", "node", "last_seq", "torn_down", "job_id", "labels"})
_BACKOFF_MAX = 1.0
_DRAIN_TIMEOUT = 10.0
DEFAULT_LEASE = 30.0


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


class RemoteError(AgentFailed):
    """The node agent refused a request (502 ``node_error``); ``remote_code`` is its reason."""

    code = "node_error"

    def __init__(self, remote_code: str, remote_message: str, *, node: str | None = None) -> None:
        super().__init__(f"node {node}: {remote_message}", details={"node": node, "nodeCode": remote_code})
        self.remote_code = remote_code
        self.remote_message = remote_message


class RemoteStartError(OSError):
    """The agent could not start the program (missing binary, bad cwd)."""


class RemoteNode:
    """One node agent, as seen from the gateway."""

    def __init__(
        self,
        sup: Supervisor,
        config: NodeConfig,
        token: str,
        *,
        owner: str,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.sup = sup
        self.owner = owner
        self.name = config.name
        self.url = config.url
        self._token = token
        self._ssl = ssl_context
        self.state = "down"
        self.last_heartbeat: float | None = None
        self.lease = DEFAULT_LEASE
        self.heartbeat = DEFAULT_LEASE / 4
        self._capacity = 0
        self.error: str | None = None
        self.agent_pid: int | None = None
        self._ws: WebSocketConnection | None = None
        self._nursery: trio.Nursery | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._send_lock = trio.Lock()
        self._finished: dict[str, trio.Event] = {}
        #: The running mirror of each record (cancelled when the record is declared lost).
        self._mirrors: dict[str, trio.CancelScope] = {}
        self._down_since = trio.current_time()
        self._changed = trio.Event()
        self._dropped = False
        self._revived = trio.Event()
        #: Result detectors of running records not yet seen to print their result, and the
        #: event each sets when it does (see ``_result_watch``).
        self._detectors: dict[str, ResultDetector] = {}
        self._results: dict[str, trio.Event] = {}
        self._watch: trio.Nursery | None = None

    # ---- what placement and the routes read ------------------------------------------------

    @property
    def up(self) -> bool:
        return self.state == "up"

    @property
    def capacity(self) -> int:
        return self._capacity

    def records(self) -> list[ProcessRecord]:
        return [r for r in self.sup.table.records.values() if r.node == self.name]

    def active(self) -> list[ProcessRecord]:
        return [r for r in self.records() if not r.state.ended]

    @property
    def load(self) -> int:
        return len(self.active())

    def describe(self) -> dict[str, Any]:
        from ..spec import iso

        return {
            "name": self.name,
            "address": self.url,
            "state": self.state,
            "lastHeartbeat": iso(self.last_heartbeat),
            "running": self.load,
            "capacity": self._capacity,
            "lease": self.lease,
            "agentPid": self.agent_pid,
            "error": self.error,
        }

    async def wait_state(self, state: str) -> None:
        """Until the node is in ``state`` (tests and start-up)."""
        while self.state != state:
            await self._changed.wait()

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._changed.set()
            self._changed = trio.Event()

    # ---- the connection ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep connected until cancelled; mark the node lost after a lease of silence.

        The result watchers live as long as this (across reconnects) and end with it.
        """
        async with trio.open_nursery() as watch:
            self._watch = watch
            task_status.started()
            try:
                await self._keep_connected()
            finally:
                self._watch = None

    async def _keep_connected(self) -> None:
        backoff = 0.05
        while True:
            if self._dropped:
                await self._revived.wait()
            try:
                async with self._connect() as ws:
                    backoff = 0.05
                    await self._session(ws)
            except* _LINK_ERRORS as group:
                first = _leaves(group)[0]
                if not self._dropped:  # the cluster's verdict stays the node's error
                    self.error = f"{type(first).__name__}: {first}"[:300]
            self._disconnected()
            if trio.current_time() - self._down_since > self.lease:
                self._lose_all("unreachable for longer than its lease")
            await trio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[WebSocketConnection]:
        headers = [(b"authorization", f"Bearer {self._token}".encode())]
        async with open_websocket_url(
            self.url,
            self._ssl,
            extra_headers=headers,
            max_message_size=wire.MAX_MESSAGE,
            connect_timeout=min(5.0, max(self.lease / 2, 0.5)),
            disconnect_timeout=1.0,
        ) as ws:
            yield ws

    async def _session(self, ws: WebSocketConnection) -> None:
        async with trio.open_nursery() as nursery:
            self._ws = ws
            self._nursery = nursery
            nursery.start_soon(self._reader, ws, nursery.cancel_scope)
            hello = await self.request("hello", owner=self.owner)
            self.lease = float(hello.get("lease", DEFAULT_LEASE))
            self.heartbeat = float(hello.get("heartbeat", self.lease / 4))
            self._capacity = int(hello.get("capacity", 1))
            self.agent_pid = hello.get("pid")
            await self._settle(nursery)
            self.error = None
            self.last_heartbeat = time.time()
            self._down_since = math.inf
            self._set_state("up")
            while True:
                await trio.sleep(self.heartbeat)
                with trio.move_on_after(self.lease) as late:
                    await self.request("ping")
                if late.cancelled_caught:
                    raise ConnectionClosed(None)

    async def _settle(self, nursery: trio.Nursery) -> None:
        """Receipts, then a sweep of unclaimed trees, then the mirrors of claimed records."""
        answer = await self.request("receipts")
        keys = []
        for data in answer.get("receipts", []):
            await self._record_receipt(data, str(data.get("cause", "agent")))
            keys.append(data.get("key"))
        if keys:
            await self.request("ack", keys=keys)
        claimed = [r.id for r in self.active()]
        swept = await self.request("sweep", keep=claimed)
        for data in swept.get("receipts", []):
            await self._record_receipt(data, "sweep")
        status = await self.request("status", ids=claimed)
        records = status.get("records", {})
        for record_id in claimed:
            record = self.sup.table.get(record_id)
            if record is None or record.state.ended:
                continue
            if records.get(record_id) is None:
                self._lose(record, "the node no longer knows this process")
            elif record_id not in self._mirrors:
                nursery.start_soon(self._mirror, record)

    async def _reader(self, ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        try:
            while True:
                raw = await ws.get_message()
                self.last_heartbeat = time.time()
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                req_id = msg.get("id") if isinstance(msg, dict) else None
                channel = self._pending.get(req_id) if isinstance(req_id, int) else None
                if channel is not None:
                    try:
                        channel.send_nowait(msg)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self._pending.pop(req_id, None)  # type: ignore[arg-type]
        except ConnectionClosed:
            pass
        finally:
            scope.cancel()

    def _disconnected(self) -> None:
        self._ws = None
        self._nursery = None
        self._mirrors.clear()  # their tasks ended with the session
        for channel in self._pending.values():
            channel.close()
        self._pending.clear()
        if self.state == "up":
            self._down_since = trio.current_time()
            self._set_state("down")

    async def _send(self, obj: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            raise NodeUnavailable(f"node {self.name} is {self.state}", node=self.name)
        async with self._send_lock:
            await ws.send_message(wire.dumps(obj))

    def _open(self) -> tuple[int, trio.MemoryReceiveChannel[dict[str, Any]]]:
        req_id = next(self._ids)
        send, receive = trio.open_memory_channel[dict[str, Any]](math.inf)
        self._pending[req_id] = send
        return req_id, receive

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """One request, its answer; RemoteError if refused, NodeUnavailable if the link broke."""
        req_id, receive = self._open()
        try:
            try:
                await self._send({"id": req_id, "op": op, **fields})
            except ConnectionClosed:
                raise NodeUnavailable(f"node {self.name} disconnected", node=self.name) from None
            try:
                answer = await receive.receive()
            except trio.EndOfChannel:
                raise NodeUnavailable(f"node {self.name} disconnected", node=self.name) from None
        finally:
            self._pending.pop(req_id, None)
        if answer.get("ok") is False:
            raise RemoteError(str(answer.get("code")), str(answer.get("error")), node=self.name)
        return answer

    # ---- NodeBackend -------------------------------------------------------------------------

    def _require_up(self) -> trio.Nursery:
        nursery = self._nursery
        if self.state != "up" or nursery is None:
            raise NodeUnavailable(f"node {self.name} is {self.state}", node=self.name)
        return nursery

    async def start(self, spec: ProcessSpec, *, job_id: str | None = None) -> ProcessRecord:
        nursery = self._require_up()
        try:
            answer = await self.request("start", spec=wire.spec_to_wire(spec))
        except RemoteError as exc:
            if exc.remote_code == "spawn_failed":
                # "cannot start PROGRAM: REASON": the route says the first half itself.
                raise RemoteStartError(0, exc.remote_message.split(": ", 1)[-1]) from None
            if exc.remote_code == "limits_unavailable":
                raise CgroupError(f"node {self.name}: {exc.remote_message}") from None
            raise
        record = wire.record_from_wire(answer["record"], self.name)
        record.last_seq = 0
        record.job_id = job_id
        record.labels = {**record.labels, **dict(spawn_labels.get())}
        self.sup.table.touch(record)
        await self.sup.table.persisted(record)
        mirror_log = self.sup.log(record.id)
        mirror_log.reopen()
        watch = self._watch
        if spec.result_detector is not None and spec.result_idle_timeout != math.inf and watch is not None:
            self._detectors[record.id] = spec.result_detector
            watch.start_soon(self._result_watch, record.id, spec.result_idle_timeout)
        nursery.start_soon(self._mirror, record)
        return record

    async def kill(self, record_id: str, reason: StopReason, *, grace: float | None = None) -> KillReceipt:
        record = self.sup.table.get(record_id)
        if record is None:
            raise KeyError(record_id)
        if record.state.ended:
            return KillReceipt(process=record, already_ended=True)
        self._require_up()
        answer = await self.request("kill", process=record_id, reason=reason.value, grace=grace)
        # The receipt is the node's; the record is ours, once its log is complete here.
        with trio.move_on_after(_DRAIN_TIMEOUT):
            await self._finished_event(record_id).wait()
        return wire.receipt_from_wire(answer["receipt"], record)

    async def wait(self, record_id: str) -> ProcessRecord:
        record = self.sup.table.get(record_id)
        if record is None:
            raise KeyError(record_id)
        if not record.state.ended:
            await self._finished_event(record_id).wait()
        return record

    async def shutdown(self) -> None:
        """Kill this node's running children (gateway shutdown); a node that is down keeps
        them until its lease runs out."""
        if self.state != "up":
            return
        async with trio.open_nursery() as nursery:
            for record in self.active():
                nursery.start_soon(self._kill_quietly, record.id)

    async def _kill_quietly(self, record_id: str, reason: StopReason = StopReason.SHUTDOWN) -> None:
        try:
            await self.kill(record_id, reason)
        except (NodeUnavailable, RemoteError, KeyError) as exc:
            log.warning("node %s: %s kill of %s failed: %s", self.name, reason.value, record_id, exc)

    def _result_event(self, record_id: str) -> trio.Event:
        return self._results.setdefault(record_id, trio.Event())

    async def _result_watch(self, record_id: str, idle: float) -> None:
        """The result-idle watchdog of a remote record, run here against its mirror.

        Once the detector saw the final result line (``_append``), the record has ``idle``
        seconds to end; then it is killed on the node with reason ``result-idle``. Ends with
        the record. Cancellation (the node's service stopping) leaves the record alone; a
        kill already sent completes on the node.
        """
        finished, seen = self._finished_event(record_id), self._result_event(record_id)
        try:
            async with trio.open_nursery() as first:

                async def until(event: trio.Event) -> None:
                    await event.wait()
                    first.cancel_scope.cancel()

                first.start_soon(until, finished)
                first.start_soon(until, seen)
            if finished.is_set():
                return
            with trio.move_on_after(idle):
                await finished.wait()
                return
            await self._kill_quietly(record_id, StopReason.RESULT_IDLE)
        finally:
            self._detectors.pop(record_id, None)
            self._results.pop(record_id, None)

    def _finished_event(self, record_id: str) -> trio.Event:
        event = self._finished.get(record_id)
        if event is None:
            event = self._finished[record_id] = trio.Event()
            record = self.sup.table.get(record_id)
            if record is not None and record.state.ended:
                event.set()
        return event

    # ---- mirroring a record ------------------------------------------------------------------

    async def _mirror(self, record: ProcessRecord) -> None:
        """Copy the agent's log lines and record changes here until the record ends."""
        scope = self._mirrors[record.id] = trio.CancelScope()
        req_id, receive = self._open()
        try:
            with scope:
                await self._follow(record, req_id, receive)
        except ConnectionClosed:
            return
        finally:
            self._pending.pop(req_id, None)
            if self._mirrors.get(record.id) is scope:
                del self._mirrors[record.id]

    async def _follow(
        self, record: ProcessRecord, req_id: int, receive: trio.MemoryReceiveChannel[dict[str, Any]]
    ) -> None:
        mirror = self.sup.log(record.id)
        if mirror.ended:
            mirror.reopen()
        # Reads what an earlier gateway wrote, so ``last_seq`` is the resume point.
        await trio.to_thread.run_sync(mirror.prepare)
        await self._send({"id": req_id, "op": "follow", "process": record.id, "since": mirror.last_seq})
        async for msg in receive:
            kind = msg.get("type")
            if msg.get("ok") is False:
                self._lose(record, f"the node cannot follow it: {msg.get('error')}")
                return
            if kind == "lines":
                self._append(record, mirror, msg["lines"])
            elif kind == "status" and msg.get("process"):
                data = msg["process"]
                if not State(data["state"]).ended:
                    wire.apply_record(record, data, keep=_OURS)
                    self.sup.table.touch(record)
            elif kind == "end":
                if msg.get("process"):
                    wire.apply_record(record, msg["process"], keep=_OURS)
                else:
                    record.state = State.LOST
                    record.stop_reason = StopReason.LOST
                    record.ended_at = time.time()
                mirror.close()
                record.last_seq = mirror.last_seq
                self.sup.table.touch(record)
                self._finished_event(record.id).set()
                return

    def _append(self, record: ProcessRecord, mirror: ProcessLog, lines: list[list[Any]]) -> None:
        """Append the agent's lines, skipping any already here, grouped by stream.

        A record with a result detector has its stdout lines checked as they arrive here.
        """
        detector = self._detectors.get(record.id)
        if detector is not None:
            for _seq, _ts, stream, text in lines:
                if stream == "stdout" and detector(str(text).encode()):
                    del self._detectors[record.id]
                    self._result_event(record.id).set()
                    break
        group: list[LogLine] = []
        for seq, ts, stream, text in lines:
            if seq <= mirror.last_seq + len(group):
                continue
            if group and (group[-1].stream != stream):
                self._flush(mirror, group)
                group = []
            group.append(LogLine(int(seq), float(ts), str(stream), str(text).encode()))
        self._flush(mirror, group)
        record.last_seq = mirror.last_seq

    @staticmethod
    def _flush(mirror: ProcessLog, group: list[LogLine]) -> None:
        if group:
            data = b"\n".join(line.raw.replace(b"\n", b" ") for line in group) + b"\n"
            mirror.append(group[0].stream, data, len(group), group[0].ts)

    # ---- losing records and recording receipts -----------------------------------------------

    def _lose(self, record: ProcessRecord, why: str) -> None:
        if record.state.ended:
            return
        scope = self._mirrors.pop(record.id, None)
        if scope is not None:
            scope.cancel()  # no agent line may follow the gateway's note
        record.state = State.LOST
        record.stop_reason = StopReason.LOST
        record.ended_at = time.time()
        record.error = f"node {self.name}: {why}"
        mirror = self.sup.log(record.id)
        mirror.prepare()  # loads an earlier gateway's log first: the note gets the next seq
        mirror.system(f"[gateway] node {self.name} lost: {why}")
        mirror.close()
        record.last_seq = mirror.last_seq
        self.sup.table.touch(record)
        self._finished_event(record.id).set()

    def drop(self, why: str) -> None:
        """The cluster says this node is gone: lost now, its running records with it.

        Its records are never placed again, so an agent that is still reachable is asked to
        kill every tree it runs (the receipts are kept), then left alone: no heartbeat renews
        its lease any more. ``revive`` lets the node be used again.
        """
        self._dropped = True
        self._revived = trio.Event()
        self.error = why
        self._lose_all(why)
        nursery = self._nursery
        if nursery is not None:
            nursery.start_soon(self._sweep_and_leave, nursery.cancel_scope)

    def revive(self) -> None:
        """The cluster lists the node alive again: connect as to a new node."""
        if self._dropped:
            self._dropped = False
            self._revived.set()

    async def _sweep_and_leave(self, session: trio.CancelScope) -> None:
        try:
            with trio.move_on_after(self.lease):
                swept = await self.request("sweep", keep=[])
                for data in swept.get("receipts", []):
                    await self._record_receipt(data, "dropped")
        finally:
            session.cancel()

    def _lose_all(self, why: str) -> None:
        if self.state != "lost":
            self._set_state("lost")
        for record in self.active():
            self._lose(record, why)

    async def _record_receipt(self, data: dict[str, Any], cause: str) -> None:
        """Keep a receipt the agent made on its own; note it in the record's log if ended."""
        process = data.get("process") or {}
        record_id = str(process.get("id") or "")
        record = self.sup.table.get(record_id) if record_id else None
        if record is not None and record.node != self.name:
            record = None
        stored = {**{k: v for k, v in data.items() if k != "key"}, "cause": cause, "node": self.name}
        await self.sup.store.execute(
            "INSERT INTO node_receipts (node, process_id, receipt, created_at) VALUES (?, ?, ?, ?)",
            (self.name, record_id or None, wire.dumps(stored), time.time()),
        )
        if record is not None and record.state.ended:
            pids = sorted({p for s in data.get("signals", []) for p in s.get("pids", [])})
            note = self.sup.log(record.id)
            note.prepare()
            note.system(
                f"[gateway] node {self.name} {cause}: stopped {len(pids)} leftover process(es) "
                f"{pids}; survivors {data.get('survivors', [])}"
            )
            record.last_seq = note.last_seq
            self.sup.table.touch(record)


_LINK_ERRORS = (
    ConnectionClosed, HandshakeError, OSError, RemoteError, NodeUnavailable, trio.BrokenResourceError,
    KeyError, ValueError,
)  # fmt: skip


#: The receipts of trees node agents killed on their own (crash sweep, lease), per node.
NODES_SCHEMA = [
    """
    CREATE TABLE node_receipts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        node TEXT NOT NULL,
        process_id TEXT,
        receipt TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX node_receipts_node ON node_receipts(node, id);
    """,
]


class NodeManager:
    """The gateway's nodes: each a ``RemoteNode`` registered with placement and running as a
    supervisor service; the list is saved in ``<state>/nodes.json``."""

    def __init__(
        self,
        sup: Supervisor,
        state_dir: Path,
        token: str | None,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.sup = sup
        self.state_dir = state_dir
        #: Who this gateway is to its agents: its state dir's fingerprint.
        self.owner = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]
        self.token = token
        self.ssl_context = ssl_context
        self.nodes: dict[str, RemoteNode] = {}

    async def open(self, configs: list[NodeConfig]) -> None:
        """Start the configured nodes; records of nodes no longer configured become lost."""
        await self.sup.store.migrate("nodes", NODES_SCHEMA)
        names = {c.name for c in configs}
        for record in list(self.sup.table.records.values()):
            if record.node == LOCAL or record.state.ended:
                continue
            if record.node in names:
                # Still running there as far as we know: a follower must wait for the mirror,
                # not find the log of an earlier gateway run ended.
                self.sup.log(record.id).reopen()
            else:
                record.state = State.LOST
                record.stop_reason = StopReason.LOST
                record.ended_at = time.time()
                record.error = f"node {record.node} is no longer configured"
                self.sup.table.touch(record)
        for config in configs:
            await self.add(config, save=False)

    async def add(self, config: NodeConfig, *, save: bool = True) -> RemoteNode:
        from .config import save_nodes

        if config.name in self.nodes:
            raise Conflict(f"node {config.name} already exists", code="node_exists")
        if not self.token:
            raise BadRequest("no node token: start the gateway with --node-token-file", code="no_node_token")
        node = RemoteNode(self.sup, config, self.token, owner=self.owner, ssl_context=self.ssl_context)
        self.nodes[config.name] = node
        self.sup.placement.add(node)
        if save:
            save_nodes(self.state_dir, [NodeConfig(n.name, n.url) for n in self.nodes.values()])
        await self.sup.start_service(node.run)
        return node

    def describe(self) -> list[dict[str, Any]]:
        return [n.describe() for n in self.nodes.values()]

    async def receipts(self, name: str, limit: int = 200) -> list[dict[str, Any]]:
        rows = await self.sup.store.fetchall(
            "SELECT receipt, created_at FROM node_receipts WHERE node = ? ORDER BY id DESC LIMIT ?",
            (name, limit),
        )
        return [json.loads(row["receipt"]) for row in rows]
