"""The cloud command executor: each relayed ``desktop.command`` becomes a loopback HTTP call to
this gateway's own route, answered with ClosedLoop's numbered ``desktop.command.event``s.

A port of ``cloud-command-executor.ts`` onto trio, with three changes:

- state (commands, unacked events) is kept in SQLite (``RelayStore``), so a restart never
  runs a command twice;
- a command's ``timeoutMs`` does not count the time its request waits for a person's
  approval (ClosedLoop's header watchdog would cut a held approval after 60 s);
- cancel and timeout kill what the command started: every process the route started while
  serving it carries its id as a label (``guard.COMMAND_LABEL``), and each kill's receipt
  goes into the terminal event.

The call goes through the real front door (Host check, token, operation tagging, approval
policy, access log), with ClosedLoop's ``x-desktop-*`` headers, so a relayed command can do
exactly what a local caller holding the gateway token can, and is recorded the same way.

Scheduling: at most ``max_in_flight`` commands run at once; the first queued command whose
lock key is free runs next (different keys pass a blocked one); a key is held until its
command is terminal. Commands are dispatched only while the relay link is online; running
ones keep running through a disconnect, their events wait in the buffer.

Cancellation: each command runs in its own cancel scope inside the executor's nursery;
``desktop.cancel`` and the timeout cancel that scope (the HTTP call), then kill the children.
Cancelling the executor's nursery (gateway shutdown) leaves running commands ``running`` in
the store; the next start closes them with ``gateway_restarted``.
"""

from __future__ import annotations

import codecs
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import trio

from gateway.http.context import GatewayContext
from gateway.http.guard import COMMAND_LABEL
from gateway.http.relay.protocol import (
    Command,
    command_from_json,
    is_stream,
    is_terminal,
    map_line,
    parse_command,
    request_body,
    request_headers,
    terminal_state,
    validate,
)
from gateway.http.relay.store import EventRecord, RelayStore

log = logging.getLogger("gateway.relay")

MAX_IN_FLIGHT = 2
MAX_BUFFERED_EVENTS = 10_000
CONNECT_TIMEOUT = 10.0
ACK_FLUSH_INTERVAL = 0.05


class Link(Protocol):
    """Where events go: the relay connection, when there is one."""

    @property
    def online(self) -> bool: ...

    def post(self, name: str, payload: dict[str, Any]) -> None:
        """Queue ``payload`` (envelope added) for the live connection; dropped when offline."""


@dataclass
class Tracked:
    command: Command
    state: str  # queued | running | terminal
    received_at: float
    outcome: str | None = None
    last_sequence: int = 0
    acked_sequence: int = 0
    events: deque[EventRecord] = field(default_factory=deque)
    started_at: float | None = None
    ended_at: float | None = None
    lock: trio.Lock = field(default_factory=trio.Lock)
    scope: trio.CancelScope | None = None
    cancel_reason: str | None = None
    timed_out: bool = False
    overflowed: bool = False

    @property
    def id(self) -> str:
        return self.command.command_id

    def to_json(self) -> dict[str, Any]:
        return {
            "commandId": self.id,
            "operationId": self.command.operation_id,
            "method": self.command.method,
            "path": self.command.path,
            "state": self.state,
            "outcome": self.outcome,
            "lastSequence": self.last_sequence,
            "ackedSequence": self.acked_sequence,
        }


class GatewayAnswerError(Exception):
    """The gateway answered with a non-2xx, non-stream response."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"gateway returned {status}" + (f": {text}" if text else ""))
        self.status = status


class Executor:
    def __init__(
        self,
        gw: GatewayContext,
        store: RelayStore,
        link: Link,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_buffered: int = MAX_BUFFERED_EVENTS,
        on_stats: Callable[[], None] | None = None,
        on_analytics: Callable[[str, dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gw = gw
        self.store = store
        self.link = link
        self.max_in_flight = max(1, max_in_flight)
        self.max_buffered = max(1, max_buffered)
        self.on_stats = on_stats
        self.on_analytics = on_analytics
        self.clock = clock
        self.tracked: dict[str, Tracked] = {}
        self.queue: list[str] = []
        self.running: dict[str, Tracked] = {}
        self.lock_owners: dict[str, str] = {}
        self.executions = 0  # loopback calls made (a test reads it: nothing runs twice)
        self._dispatching = False
        self._acks: dict[str, tuple[int, int]] = {}  # command -> (acked, trimmed up to), unwritten
        self._acks_waiting = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._http: httpx.AsyncClient | None = None

    # ---- life ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the stored state, then host running commands until cancelled."""
        await self.store.open()
        await self._recover()
        timeout = httpx.Timeout(connect=CONNECT_TIMEOUT, read=None, write=60.0, pool=None)
        async with (
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{self.gw.port}", timeout=timeout, trust_env=False
            ) as http,
            trio.open_nursery() as nursery,
        ):
            self._http = http
            self._nursery = nursery
            nursery.start_soon(self._flush_acks)
            task_status.started()
            self._schedule()
            await trio.sleep_forever()

    async def _recover(self) -> None:
        """Rebuild memory from SQLite; close commands a previous gateway left running."""
        await self.store.prune(self.clock())
        for command_id, stored in (await self.store.load()).items():
            tracked = Tracked(
                command=command_from_json(stored.command),
                state=stored.state,
                received_at=stored.received_at,
                outcome=stored.outcome,
                last_sequence=stored.last_sequence,
                acked_sequence=stored.acked_sequence,
                events=deque(stored.events),
                started_at=stored.started_at,
                ended_at=stored.ended_at,
            )
            self.tracked[command_id] = tracked
            if stored.state == "queued":
                self.queue.append(command_id)
            elif stored.state == "running":
                log.warning(
                    "relay: command %s was running when the gateway stopped; not run again", command_id
                )
                await self._emit(tracked, "error", {
                    "type": "error", "terminal": True, "code": "gateway_restarted",
                    "error": "the gateway restarted while this command ran; it was not run again",
                })  # fmt: skip

    def set_dispatching(self, value: bool) -> None:
        """Run queued commands only while the relay link is online (as ClosedLoop does)."""
        self._dispatching = value
        if value:
            self._schedule()

    # ---- what the relay sends ------------------------------------------------------------

    async def enqueue(self, payload: Any) -> None:
        """A ``desktop.command``: ack it, and queue it unless this id was seen before."""
        command = parse_command(payload)
        if command is None:
            log.warning("relay: unusable desktop.command ignored")
            return
        for forgotten in await self.store.prune(self.clock()):
            self.tracked.pop(forgotten, None)
        existing = self.tracked.get(command.command_id)
        if existing is not None:
            self.link.post("desktop.command.ack", _ack(command.command_id, True))
            if existing.state == "terminal":
                self._replay(existing, 0)
            return
        reason = validate(command)
        if reason is not None:
            log.warning("relay: command %s refused: %s", command.command_id, reason)
            self.link.post("desktop.command.ack", _ack(command.command_id, False, reason))
            return
        now = self.clock()
        tracked = Tracked(command=command, state="queued", received_at=now)
        self.tracked[command.command_id] = tracked
        await self.store.add_command(command.command_id, command.to_json(), now)
        self.queue.append(command.command_id)
        self.link.post("desktop.command.ack", _ack(command.command_id, True))
        log.info("relay: command %s %s %s queued", command.command_id, command.method, command.path)
        self._schedule()

    async def cancel(self, payload: Any) -> None:
        """``desktop.cancel``: a queued command ends at once, a running one is cut."""
        if not isinstance(payload, dict) or not isinstance(payload.get("commandId"), str):
            return
        command_id = payload["commandId"].strip()
        reason = payload.get("reason") if isinstance(payload.get("reason"), str) else None
        tracked = self.tracked.get(command_id)
        if tracked is None or tracked.state == "terminal":
            return
        if tracked.state == "queued" and command_id in self.queue:
            self.queue.remove(command_id)
            await self._emit(
                tracked, "done", {"type": "done", "cancelled": True, "reason": reason or "cancelled"}
            )
            self._stats_changed()
            return
        tracked.cancel_reason = reason or "cancelled"
        if tracked.scope is not None:
            tracked.scope.cancel()

    def acknowledge(self, payload: Any) -> None:
        """``desktop.command.event.ack``: the relay stored events up to ``sequence``."""
        if not isinstance(payload, dict):
            return
        tracked = self.tracked.get(str(payload.get("commandId", "")))
        sequence = payload.get("sequence")
        if tracked is None or not isinstance(sequence, int) or isinstance(sequence, bool):
            return
        tracked.acked_sequence = max(tracked.acked_sequence, sequence)
        trim = tracked.state != "terminal"
        if trim:
            while tracked.events and tracked.events[0].sequence <= tracked.acked_sequence:
                tracked.events.popleft()
        # Written in batches (``_flush_acks``): an ack lost to a crash only means the relay
        # gets a few events again, which it acks as duplicates.
        trimmed = tracked.acked_sequence if trim else self._acks.get(tracked.id, (0, 0))[1]
        self._acks[tracked.id] = (tracked.acked_sequence, trimmed)
        self._acks_waiting.set()

    async def _flush_acks(self) -> None:
        """Write the relay's acks in batches, at most every ``ACK_FLUSH_INTERVAL`` seconds."""
        while True:
            await self._acks_waiting.wait()
            self._acks_waiting = trio.Event()
            batch, self._acks = self._acks, {}
            await self.store.acknowledge(batch)
            await trio.sleep(ACK_FLUSH_INTERVAL)

    def drop_unlisted(self, listed: set[str]) -> None:
        """After a hello: queued commands the relay no longer lists are ended unrun.

        The hello's ``resumeFromSequence`` names every command the relay still considers
        unfinished. One queued here but missing there was ended in the cloud while this
        gateway was away (cancelled, expired): running it now would be a side effect nobody
        wants. It is closed as cancelled instead (no checkpoint: before any dispatch).
        """
        for command_id in [cid for cid in self.queue if cid not in listed]:
            self.queue.remove(command_id)
            tracked = self.tracked[command_id]
            tracked.cancel_reason = "no longer listed by the relay"
            log.warning("relay: queued command %s is no longer listed by the relay; not run", command_id)
            if self._nursery is not None:
                done = {"type": "done", "cancelled": True, "reason": tracked.cancel_reason}
                self._nursery.start_soon(self._emit, tracked, "done", done)
        self._stats_changed()

    def replay_from(self, resume: dict[str, int]) -> None:
        """Resend buffered events after the relay's ``resumeFromSequence`` (no checkpoint)."""
        for command_id, sequence in resume.items():
            tracked = self.tracked.get(command_id)
            if tracked is not None:
                self._replay(tracked, sequence)

    def _replay(self, tracked: Tracked, after: int) -> None:
        for event in tracked.events:
            if event.sequence > after:
                self.link.post("desktop.command.event", event.wire(tracked.id))

    # ---- scheduling ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "activeCommands": len(self.running),
            "queueDepth": len(self.queue),
            "inFlight": [t.to_json() for t in self.running.values()],
        }

    def _stats_changed(self) -> None:
        if self.on_stats is not None:
            self.on_stats()

    def _schedule(self) -> None:
        if not self._dispatching or self._nursery is None:
            return
        started = False
        while len(self.running) < self.max_in_flight:
            pick = next(
                (cid for cid in self.queue if (key := self.tracked[cid].command.derived_lock) is None
                 or key not in self.lock_owners),
                None,
            )  # fmt: skip
            if pick is None:
                break
            self.queue.remove(pick)
            tracked = self.tracked[pick]
            key = tracked.command.derived_lock
            if key is not None:
                self.lock_owners[key] = pick
            self.running[pick] = tracked
            tracked.state = "running"
            tracked.scope = trio.CancelScope()
            self._nursery.start_soon(self._execute, tracked)
            started = True
        if started:
            self._stats_changed()

    async def _execute(self, tracked: Tracked) -> None:
        command = tracked.command
        key = command.derived_lock
        try:
            tracked.started_at = self.clock()
            await self.store.mark_running(tracked.id, tracked.started_at)
            await self._emit(
                tracked,
                "status",
                {"type": "status", "status": "running", "operationId": command.operation_id},
            )
            self._analytics("command_started", tracked)
            assert tracked.scope is not None
            error: dict[str, Any] | None = None
            watcher = trio.CancelScope()
            if command.timeout_ms and self._nursery is not None:
                self._nursery.start_soon(self._watch_timeout, tracked, command.timeout_ms / 1000, watcher)
            with tracked.scope:
                try:
                    await self._call_gateway(tracked)
                except GatewayAnswerError as exc:
                    error = {"error": str(exc), "statusCode": exc.status}
                except Exception as exc:  # any failure of the call is the command's terminal error
                    error = {"error": str(exc) or type(exc).__name__}
                finally:
                    watcher.cancel()
            await self._finish(tracked, error)
        finally:
            self.running.pop(tracked.id, None)
            if key is not None and self.lock_owners.get(key) == tracked.id:
                del self.lock_owners[key]
            tracked.scope = None
            self._stats_changed()
            self._schedule()

    async def _finish(self, tracked: Tracked, error: dict[str, Any] | None) -> None:
        """The terminal event, unless the answer itself ended the command."""
        if tracked.state == "terminal" and not (tracked.cancel_reason or tracked.timed_out):
            self._analytics("command_completed" if tracked.outcome == "done" else "command_failed", tracked)
            return
        if tracked.cancel_reason is not None or tracked.timed_out:
            killed = await self._kill_children(tracked)
            if tracked.state == "terminal":
                return  # the answer finished first; nothing is left to cut
            if tracked.cancel_reason is not None:
                data = {"type": "done", "cancelled": True, "reason": tracked.cancel_reason, "killed": killed}
                await self._emit(tracked, "done", data)
            else:
                await self._emit(tracked, "error", {
                    "type": "error", "terminal": True, "code": "timeout", "error": "command timed out",
                    "killed": killed,
                })  # fmt: skip
                self._analytics("command_failed", tracked)
            log.info(
                "relay: command %s %s", tracked.id, "cancelled" if tracked.cancel_reason else "timed out"
            )
            return
        if error is not None:
            await self._emit(tracked, "error", {"type": "error", "terminal": True, **error})
            self._analytics("command_failed", tracked)
            return
        await self._emit(tracked, "done", {"type": "done"})
        self._analytics("command_completed", tracked)

    async def _call_gateway(self, tracked: Tracked) -> None:
        assert self._http is not None
        command = tracked.command
        headers = request_headers(command, self.gw.auth.gateway_token)
        body = request_body(command, headers)
        self.executions += 1
        async with self._http.stream(
            command.method, command.path, params=command.query or None, headers=headers, content=body
        ) as response:
            content_type = response.headers.get("content-type", "")
            if is_stream(content_type):
                await self._consume_stream(tracked, response)
                return
            raw = await response.aread()
            if not response.is_success:
                raise GatewayAnswerError(response.status_code, raw.decode("utf-8", "replace"))
            data: Any
            if "application/json" in content_type.lower():
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = None
            else:
                data = raw.decode("utf-8", "replace")
            await self._emit(tracked, "result", {
                "type": "result",
                "statusCode": response.status_code,
                "success": response.is_success,
                "data": data,
            })  # fmt: skip
            await self._emit(tracked, "done", {"type": "done"})

    async def _consume_stream(self, tracked: Tracked, response: httpx.Response) -> None:
        """Every complete line of a network read becomes an event; one write per read."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        async for chunk in response.aiter_raw():
            pending += decoder.decode(chunk)
            *lines, pending = pending.split("\n")
            items = [map_line(line.strip()) for line in lines if line.strip()]
            if items:
                await self._emit_many(tracked, items)
            if tracked.state == "terminal":
                return
        tail = (pending + decoder.decode(b"", final=True)).strip()
        if tail:
            await self._emit(tracked, *map_line(tail))
        if tracked.state == "terminal":
            return
        if self.gw.shutting_down.is_set():  # the stream was ended for the shutdown, not finished
            await self._emit(tracked, "error", {
                "type": "error", "terminal": True, "code": "gateway_stopping",
                "error": "the gateway stopped while the command's stream ran",
            })  # fmt: skip
            return
        await self._emit(tracked, "done", {"type": "done"})

    async def _watch_timeout(self, tracked: Tracked, seconds: float, scope: trio.CancelScope) -> None:
        """Cut the command after ``seconds`` of its own time; time held for approval is not
        counted (a person may take longer than any client-side timeout). ``scope`` ends the
        watch when the command ends first."""
        with scope:
            await self._count_down(tracked, seconds)

    async def _count_down(self, tracked: Tracked, seconds: float) -> None:
        approvals = self.gw.approvals
        remaining = seconds
        announced = False
        while remaining > 0:
            if any(a.command_id == tracked.id for a in approvals.pending.values()):
                if not announced:
                    announced = True
                    self._analytics("approval_requested", tracked)
                await approvals.wait_for_change()
                continue
            began = trio.current_time()
            with trio.move_on_after(remaining):
                await approvals.wait_for_change()
            remaining -= trio.current_time() - began
        tracked.timed_out = True
        if tracked.scope is not None:
            tracked.scope.cancel()

    async def _kill_children(self, tracked: Tracked) -> list[dict[str, Any]]:
        """Kill every live process the command started; their receipts."""
        receipts = []
        for record in self.gw.sup.table.active():
            if record.labels.get(COMMAND_LABEL) == tracked.id:
                try:
                    receipt = await self.gw.sup.kill(record.id)
                except KeyError:
                    continue
                receipts.append(receipt.to_json())
        return receipts

    # ---- events ----------------------------------------------------------------------------

    async def _emit(self, tracked: Tracked, event_type: str, data: Any) -> None:
        await self._emit_many(tracked, [(event_type, data)])

    async def _emit_many(self, tracked: Tracked, items: Sequence[tuple[str, Any]]) -> None:
        """Number, persist (one transaction), buffer and, when online, send events in order;
        nothing after a terminal one. Past ``max_buffered`` unacked events the command
        fails with ``buffer_overflow`` and its call is cut (backpressure, not silent loss)."""
        async with tracked.lock:
            if tracked.state == "terminal":
                return
            batch: list[EventRecord] = []
            outcome: str | None = None
            for event_type, data in items:
                terminal = is_terminal(event_type, data)
                if not terminal and len(tracked.events) + len(batch) >= self.max_buffered:
                    tracked.overflowed = True
                    event_type, terminal = "error", True
                    data = {
                        "type": "error", "terminal": True, "code": "buffer_overflow",
                        "error": f"command event buffer exceeded {self.max_buffered} unacknowledged events",
                    }  # fmt: skip
                batch.append(EventRecord(tracked.last_sequence + len(batch) + 1, event_type, data))
                if terminal:
                    outcome = terminal_state(event_type, data)
                    break
            if not batch:
                return
            tracked.last_sequence = batch[-1].sequence
            now = self.clock()
            if outcome is not None:
                tracked.state, tracked.outcome, tracked.ended_at = "terminal", outcome, now
            # Shielded: once numbered, events are kept even if the command is cut meanwhile, and
            # only kept events are ever sent (a restart never reuses a sequence the relay has).
            with trio.CancelScope(shield=True):
                await self.store.add_events(tracked.id, batch, outcome, now)
            tracked.events.extend(batch)
            if self.link.online:
                for event in batch:
                    self.link.post("desktop.command.event", event.wire(tracked.id))
        if tracked.overflowed and tracked.scope is not None:
            tracked.scope.cancel()  # only now: cancelling first would cut the write above

    def _analytics(self, name: str, tracked: Tracked) -> None:
        if self.on_analytics is not None:
            self.on_analytics(name, {"commandId": tracked.id, "operationId": tracked.command.operation_id})


def _ack(command_id: str, accepted: bool, reason: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "commandId": command_id,
        "accepted": accepted,
        "state": "accepted" if accepted else "failed",
    }
    if reason is not None:
        out["reason"] = reason
    return out
