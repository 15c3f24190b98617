"""The relay connection's lifecycle, as ClosedLoop's ``cloud-socket.ts`` runs it, on trio.

One outbound Socket.IO connection to ``<relay>/desktop-gateway`` with ``auth: {apiKey}``:

1. connect; emit ``desktop.hello`` and wait up to 10 s for ``desktop.hello.ack`` (hello is
   re-sent once; after two silent waits the socket is recycled);
2. on the ack: replay buffered events from ``resumeFromSequence``, go online, send
   ``desktop.presence {state: online}``, and let the executor dispatch;
3. serve ``desktop.command`` / ``desktop.cancel`` / ``desktop.command.event.ack`` (and a later
   ``desktop.hello.ack``, which the relay sends on a sequence gap) until the link ends;
4. reconnect after an exponential backoff with jitter (1 s doubling to 30 s), reset by a
   successful ack. A refused key is ``degraded`` with the reason, and retried the same way.

The gateway's HTTP server never depends on any of this: the client is one task in the
gateway's nursery, and every failure of the link is caught here, logged and retried.

Cancellation: cancelling :meth:`RelayClient.run` closes the socket and stops the executor
(running commands are cut; the store closes them after the next start).
"""

from __future__ import annotations

import logging
import math
import random
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import trio

import gateway.supervisor as engine
from gateway.http.context import GatewayContext
from gateway.http.operations import OPERATIONS
from gateway.http.relay.config import KEY_SETTING, RelayConfig
from gateway.http.relay.executor import MAX_BUFFERED_EVENTS, MAX_IN_FLIGHT, Executor
from gateway.http.relay.protocol import (
    NAMESPACE,
    allowed_directories_hash,
    envelope,
    now_iso,
    parse_hello_ack,
)
from gateway.http.relay.sio import Disconnected, Refused, SocketIO, connect_socketio
from gateway.http.relay.store import RelayStore

log = logging.getLogger("gateway.relay")

GATEWAY_PROTOCOL_VERSION = "0.1.0"  # ClosedLoop's gateway wire version (shared/contracts.ts)
HELLO_ACK_TIMEOUT = 10.0
MAX_HELLO_ACK_TIMEOUTS = 2
BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0
ANALYTICS_ACK_TIMEOUT = 1.5
TELEMETRY_QUEUE = 200
TARGET_SETTING = "relay.computeTargetId"


def backoff_delay(attempt: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX,
                  rand: Callable[[], float] = random.random) -> float:  # fmt: skip
    """Delay before retry ``attempt`` (0-based): ``base * 2**attempt`` capped at ``cap``, then
    jittered down by up to half (socket.io-client's randomization factor 0.5), so a fleet
    of gateways refused at once does not come back in step. Never below ``base / 2``."""
    delay = min(cap, base * float(2 ** min(attempt, 30)))
    return max(base / 2, delay * (1 - 0.5 * rand()))


class HelloTimeout(Exception):
    """The relay did not answer ``desktop.hello``: recycle the socket."""


class HelloRefused(Exception):
    """``desktop.hello.nack``: the relay will disconnect; reconnect after a backoff."""


class RelayClient:
    """The relay link and its executor; ``status()`` is what ``/health`` shows."""

    def __init__(
        self,
        gw: GatewayContext,
        config: RelayConfig,
        *,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
        hello_timeout: float = HELLO_ACK_TIMEOUT,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_buffered: int = MAX_BUFFERED_EVENTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gw = gw
        self.config = config
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.hello_timeout = hello_timeout
        self.clock = clock
        self.state = "connecting"
        self.last_error: str | None = config.problem
        self.target_id: str | None = None
        self.session_id: str | None = None
        self.connected_since: float | None = None
        self.attempts = 0  # consecutive failed attempts (the backoff exponent)
        self.connects = 0  # successful hello.acks, for the dashboard and tests
        self.refusals = 0  # namespace connects refused by the relay
        self.retry_at: float | None = None
        self._online = False
        self._outbox: trio.MemorySendChannel[tuple[str, dict[str, Any]]] | None = None
        self._telemetry: trio.MemorySendChannel[tuple[str, dict[str, Any]]] | None = None
        self.executor = Executor(
            gw,
            RelayStore(gw.sup.store),
            self,
            max_in_flight=max_in_flight,
            max_buffered=max_buffered,
            on_stats=self._send_presence,
            on_analytics=self.analytics,
            clock=clock,
        )

    # ---- the executor's link --------------------------------------------------------------

    @property
    def online(self) -> bool:
        return self._online

    def post(self, name: str, payload: dict[str, Any]) -> None:
        """Queue an event for the live connection, in order; dropped while offline (the
        executor's buffer replays command events after the next hello.ack)."""
        if self._online and self._outbox is not None:
            self._outbox.send_nowait((name, envelope(payload)))

    def analytics(self, event: str, properties: dict[str, Any]) -> None:
        """``desktop.analytics``, best effort: dropped offline or when its queue is full."""
        payload = {"event": event, "properties": properties, "occurredAt": now_iso()}
        self._best_effort("desktop.analytics", payload)

    def telemetry(self, severity: str, category: str, message: str) -> None:
        """``desktop.telemetry``, fire and forget."""
        payload = {"severity": severity, "category": category, "message": message,
                   "schemaVersion": 1, "timestamp": now_iso()}  # fmt: skip
        self._best_effort("desktop.telemetry", payload)

    def _best_effort(self, name: str, payload: dict[str, Any]) -> None:
        if self._online and self._telemetry is not None:
            try:
                self._telemetry.send_nowait((name, envelope(payload)))
            except trio.WouldBlock:
                pass  # a slow relay loses telemetry, never a command event

    def _send_presence(self) -> None:
        if self._online:
            stats = self.executor.stats()
            self.post("desktop.presence", {
                "state": "online",
                "activeCommands": stats["activeCommands"],
                "queueDepth": stats["queueDepth"],
            })  # fmt: skip

    # ---- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        stats = self.executor.stats()
        return {
            "state": self.state,
            "url": self.config.url,
            "lastError": self.last_error,
            "computeTargetId": self.target_id,
            "connectedSince": engine.iso(self.connected_since) if self.connected_since else None,
            "retryAt": engine.iso(self.retry_at) if self.retry_at and self.state != "connected" else None,
            "connects": self.connects,
            **stats,
        }

    # ---- the loop -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.executor.run)
            row = await self.gw.sup.store.fetchone(
                "SELECT value FROM settings WHERE key = ?", (TARGET_SETTING,)
            )
            self.target_id = row[0] if row is not None else None
            task_status.started()
            if self.config.problem is not None:
                self.state = "degraded"
                log.error("relay: not connecting: %s", self.config.problem)
                return  # the executor keeps its state for a later, corrected start
            await self._connect_forever()

    async def _connect_forever(self) -> None:
        assert self.config.url is not None and self.config.api_key is not None
        while True:
            self.state = "connecting" if self.attempts == 0 else "degraded"
            try:
                await self._session(self.config.url, self.config.api_key)
            except Exception as exc:  # every link failure is retried; the gateway keeps serving
                self._failed(exc)
            finally:
                self._offline()
            delay = backoff_delay(self.attempts, self.backoff_base, self.backoff_max)
            self.attempts += 1
            self.retry_at = self.clock() + delay
            await trio.sleep(delay)

    def _failed(self, exc: BaseException) -> None:
        exc = _first(exc)
        if isinstance(exc, Refused) and exc.is_auth:
            self.refusals += 1
            self.last_error = f"authentication failed: verify {KEY_SETTING} (relay said: {exc.message})"
        elif isinstance(exc, Refused):
            self.refusals += 1
            self.last_error = f"relay refused the connection: {exc.message}"
        else:
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        self.state = "degraded"
        log.warning("relay: %s", self.last_error)

    def _offline(self) -> None:
        self._online = False
        self._outbox = None
        self._telemetry = None
        self.connected_since = None
        self.executor.set_dispatching(False)

    async def _session(self, url: str, api_key: str) -> None:
        async with (
            connect_socketio(url, NAMESPACE, {"apiKey": api_key}) as sio,
            trio.open_nursery() as nursery,
        ):
            outbox, outgoing = trio.open_memory_channel[tuple[str, dict[str, Any]]](math.inf)
            telemetry, telemetry_out = trio.open_memory_channel[tuple[str, dict[str, Any]]](TELEMETRY_QUEUE)
            self._outbox, self._telemetry = outbox, telemetry
            nursery.start_soon(self._sender, sio, outgoing)
            nursery.start_soon(self._telemetry_sender, sio, telemetry_out)
            acked = trio.Event()
            nursery.start_soon(self._hello, sio, acked)
            async for event in sio.events():
                args = event.args
                payload = args[0] if args else None
                if event.name == "desktop.hello.ack":
                    if self._on_hello_ack(payload, acked):
                        await self._persist_target()
                elif event.name == "desktop.hello.nack":
                    reason = payload.get("reason") if isinstance(payload, dict) else None
                    raise HelloRefused(f"relay refused desktop.hello: {reason or 'no reason'}")
                elif event.name == "desktop.command":
                    await self.executor.enqueue(payload)
                elif event.name == "desktop.cancel":
                    await self.executor.cancel(payload)
                elif event.name == "desktop.command.event.ack":
                    self.executor.acknowledge(payload)
                if event.ack_id is not None:
                    await sio.ack(event.ack_id)
            nursery.cancel_scope.cancel()
        raise Disconnected(sio.closed_reason or "the relay closed the connection")

    async def _hello(self, sio: SocketIO, acked: trio.Event) -> None:
        """Send hello; resend once after a silent wait; recycle the socket after two."""
        for _ in range(MAX_HELLO_ACK_TIMEOUTS):
            await sio.emit("desktop.hello", envelope(await self._hello_payload()))
            with trio.move_on_after(self.hello_timeout):
                await acked.wait()
                return
            log.warning("relay: no desktop.hello.ack within %g s", self.hello_timeout)
        raise HelloTimeout(f"relay did not answer desktop.hello within {self.hello_timeout:g} s, twice")

    async def _hello_payload(self) -> dict[str, Any]:
        rows = await self.gw.sup.store.fetchall("SELECT path FROM repos")
        hello: dict[str, Any] = {
            "machineName": socket.gethostname(),
            "platform": sys.platform,
            "pluginVersion": engine.__version__,
            "desktopClientVersion": engine.__version__,
            "gatewayProtocolVersion": GATEWAY_PROTOCOL_VERSION,
            "supportedOperations": list(OPERATIONS),
            "maxInFlightCommands": self.executor.max_in_flight,
            "allowedDirectoriesHash": allowed_directories_hash([r[0] for r in rows]),
            "capabilities": {"durableCommandState": True},
        }
        if self.target_id:
            hello["computeTargetId"] = self.target_id
        return hello

    def _on_hello_ack(self, payload: Any, acked: trio.Event) -> bool:
        """Go online; True when the compute target id changed (the caller saves it).

        No checkpoint from here to dispatching: replayed events precede any new one.
        """
        ack = parse_hello_ack(payload)
        if ack is None:
            log.warning("relay: desktop.hello.ack without computeTargetId ignored")
            return False
        first = not acked.is_set()
        acked.set()
        changed = ack.compute_target_id != self.target_id
        self.target_id = ack.compute_target_id
        self.session_id = ack.session_id
        self._online = True
        self.executor.replay_from(ack.resume_from_sequence)
        if first:  # a later ack (after a sequence gap) lists only the command it is about
            self.executor.drop_unlisted(set(ack.resume_from_sequence))
            previous_error = self.last_error
            self.state = "connected"
            self.last_error = None
            self.attempts = 0
            self.retry_at = None
            self.connects += 1
            self.connected_since = self.clock()
            log.info("relay: online as compute target %s", ack.compute_target_id)
            self._send_presence()
            if previous_error is not None:
                self.telemetry("warning", "connection", f"relay link restored after: {previous_error}")
            self.analytics(
                "desktop_connection_established" if self.connects == 1 else "desktop_reconnection_resumed", {}
            )
        self.executor.set_dispatching(True)
        return changed

    async def _sender(
        self, sio: SocketIO, outgoing: trio.MemoryReceiveChannel[tuple[str, dict[str, Any]]]
    ) -> None:
        async for name, payload in outgoing:
            await sio.emit(name, payload)

    async def _persist_target(self) -> None:
        await self.gw.sup.store.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (TARGET_SETTING, self.target_id),
        )

    async def _telemetry_sender(
        self, sio: SocketIO, outgoing: trio.MemoryReceiveChannel[tuple[str, dict[str, Any]]]
    ) -> None:
        async for name, payload in outgoing:
            if name == "desktop.analytics":
                await sio.call(name, payload, ANALYTICS_ACK_TIMEOUT)
            else:
                await sio.emit(name, payload)


def _first(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (trio wraps a nursery's failures)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
