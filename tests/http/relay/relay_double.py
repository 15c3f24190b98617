"""A relay double: python-socketio's ``AsyncServer`` (a real Socket.IO v5 server no one here
wrote) under Hypercorn's asyncio worker, in a thread, speaking ClosedLoop's relay protocol as
``apps/relay/src/index.ts`` and the API behind it (``socket-event/service.ts``,
``desktop-command-store.ts``) do:

- the ``/desktop-gateway`` namespace, websocket only; the connect middleware takes
  ``auth.token``, then ``auth.apiKey``, then ``Authorization: Bearer``, and refuses anything
  else with ``Error("Unauthorized")`` (a CONNECT_ERROR);
- ``desktop.hello`` needs ``machineName`` and ``platform`` (else disconnect) and the API's
  fields (else ``desktop.hello.nack``); the ack carries ``resumeFromSequence`` for every
  non-terminal command (only when non-empty), then every non-terminal command is re-emitted;
- ``desktop.command.event`` is ingested strictly per command: ``last + 1`` is stored and
  acked, ``<= last`` is a duplicate (acked, ignored), a gap gets a new ``desktop.hello.ack``
  with ``resumeFromSequence: {command: last}``;
- events are handled one at a time, in order (``async_handlers=False``), as the relay's
  per-socket queue does; ``desktop.analytics`` is acked ``{accepted: true}``.

The tests drive it from trio through blocking calls (``trio.to_thread.run_sync``) and read
what it stored under a lock.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import socketio
from hypercorn.asyncio import serve
from hypercorn.config import Config

NS = "/desktop-gateway"
HELLO_FIELDS = ("machineName", "platform", "pluginVersion", "supportedOperations", "maxInFlightCommands")


@dataclass
class StoredCommand:
    """The API's desktop command row."""

    command: dict[str, Any]
    last_sequence_acked: int = 0
    terminal: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)  # stored, in sequence order
    acks: list[dict[str, Any]] = field(default_factory=list)  # desktop.command.ack payloads
    duplicates: int = 0
    gaps: int = 0


class RelayDouble:
    def __init__(self, keys: set[str], ping_interval: int = 25, ping_timeout: int = 20) -> None:
        self.keys = set(keys)
        self.lock = threading.Lock()
        self.target_id = str(uuid.uuid4())
        self.commands: dict[str, StoredCommand] = {}
        self.received: list[tuple[str, Any]] = []  # every event from the desktop, in order
        self.envelope_errors: list[str] = []
        self.hellos: list[dict[str, Any]] = []
        self.connect_attempts: list[float] = []  # monotonic times of namespace connects
        self.refusals = 0
        self.sid: str | None = None  # the registered desktop socket
        self.online = False  # hello acked on the current socket
        self.disconnects = 0
        self.nack: str | None = None  # set: every hello is refused with this reason
        self.lose: set[tuple[str, int]] = set()  # (command, sequence) lost in transit, once
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            transports=["websocket"],
            async_handlers=False,
            cors_allowed_origins=[],
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )
        self._register()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- server side -------------------------------------------------------------------------

    def _register(self) -> None:
        sio = self.sio

        @sio.on("connect", namespace=NS)
        async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
            with self.lock:
                self.connect_attempts.append(time.monotonic())
            auth = auth if isinstance(auth, dict) else {}
            key = auth.get("token") if isinstance(auth.get("token"), str) else auth.get("apiKey")
            header = environ.get("HTTP_AUTHORIZATION", "")
            if not isinstance(key, str) and header.startswith("Bearer "):
                key = header[7:].strip()
            if key not in self.keys:
                with self.lock:
                    self.refusals += 1
                raise socketio.exceptions.ConnectionRefusedError("Unauthorized")

        @sio.on("disconnect", namespace=NS)
        async def disconnect(sid: str, *args: Any) -> None:
            with self.lock:
                self.disconnects += 1
                if sid == self.sid:
                    self.sid = None
                    self.online = False

        @sio.on("desktop.hello", namespace=NS)
        async def hello(sid: str, data: Any) -> None:
            self._record("desktop.hello", data)
            if not (isinstance(data, dict) and isinstance(data.get("machineName"), str)
                    and isinstance(data.get("platform"), str)):  # fmt: skip
                await sio.disconnect(sid, namespace=NS)
                return
            reason = self.nack or (None if self._hello_valid(data) else "internal_error")
            if reason is not None:
                await sio.emit("desktop.hello.nack", _env({"reason": reason}), to=sid, namespace=NS)
                await sio.disconnect(sid, namespace=NS)
                return
            with self.lock:
                self.hellos.append(data)
                old, self.sid = self.sid, sid
                pending = [(cid, c) for cid, c in self.commands.items() if not c.terminal]
                resume = {cid: c.last_sequence_acked for cid, c in pending}
            if old is not None and old != sid:
                await sio.disconnect(old, namespace=NS)  # takeover
            ack: dict[str, Any] = {"computeTargetId": self.target_id, "sessionId": str(uuid.uuid4()),
                                   "serverTime": _now()}  # fmt: skip
            if resume:
                ack["resumeFromSequence"] = resume
            await sio.emit("desktop.hello.ack", _env(ack), to=sid, namespace=NS)
            with self.lock:
                self.online = True
            for _cid, stored in pending:
                await sio.emit("desktop.command", _env(stored.command), to=sid, namespace=NS)

        @sio.on("desktop.command.ack", namespace=NS)
        async def command_ack(sid: str, data: Any) -> None:
            self._record("desktop.command.ack", data)
            with self.lock:
                stored = self.commands.get(data.get("commandId", "")) if isinstance(data, dict) else None
                if stored is not None:
                    stored.acks.append(data)

        @sio.on("desktop.command.event", namespace=NS)
        async def command_event(sid: str, data: Any) -> None:
            self._record("desktop.command.event", data)
            await self._ingest(sid, data)

        for name in ("desktop.presence", "desktop.telemetry"):
            sio.on(name, namespace=NS)(self._recorder(name))

        @sio.on("desktop.analytics", namespace=NS)
        async def analytics(sid: str, data: Any) -> dict[str, Any]:
            self._record("desktop.analytics", data)
            return {"accepted": True}

    def _recorder(self, name: str) -> Any:
        async def handler(sid: str, data: Any = None) -> None:
            self._record(name, data)

        return handler

    @staticmethod
    def _hello_valid(data: dict[str, Any]) -> bool:
        ops = data.get("supportedOperations")
        n = data.get("maxInFlightCommands")
        return (isinstance(data.get("pluginVersion"), str) and isinstance(ops, list)
                and all(isinstance(o, str) for o in ops) and isinstance(n, int) and n >= 1)  # fmt: skip

    def _record(self, name: str, data: Any) -> None:
        with self.lock:
            self.received.append((name, data))
            if not isinstance(data, dict):
                self.envelope_errors.append(f"{name}: payload is not an object")
                return
            if data.get("protocolVersion") != "1":
                self.envelope_errors.append(f"{name}: protocolVersion {data.get('protocolVersion')!r}")
            try:
                uuid.UUID(str(data.get("messageId")))
            except ValueError:
                self.envelope_errors.append(f"{name}: messageId {data.get('messageId')!r}")
            if not isinstance(data.get("timestamp"), str) or "T" not in data["timestamp"]:
                self.envelope_errors.append(f"{name}: timestamp {data.get('timestamp')!r}")

    async def _ingest(self, sid: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        command_id, sequence = data.get("commandId"), data.get("sequence")
        if not isinstance(sequence, int) or sequence < 1:
            return
        emit: tuple[str, dict[str, Any]] | None = None
        with self.lock:
            if (command_id, sequence) in self.lose:
                self.lose.discard((command_id, sequence))  # type: ignore[arg-type]
                return
            stored = self.commands.get(command_id)  # type: ignore[arg-type]
            if stored is None:
                return
            last = stored.last_sequence_acked
            if sequence == last + 1:
                stored.events.append(data)
                stored.last_sequence_acked = sequence
                kind, payload = data.get("eventType"), data.get("data")
                ends = kind == "error" and isinstance(payload, dict) and payload.get("terminal")
                if kind == "done" or ends:
                    stored.terminal = True
                emit = ("desktop.command.event.ack", {"commandId": command_id, "sequence": sequence})
            elif sequence <= last:
                stored.duplicates += 1
                emit = ("desktop.command.event.ack", {"commandId": command_id, "sequence": sequence})
            else:
                stored.gaps += 1
                emit = ("desktop.hello.ack", {
                    "computeTargetId": self.target_id, "sessionId": str(uuid.uuid4()), "serverTime": _now(),
                    "resumeFromSequence": {command_id: last},
                })  # fmt: skip
        await self.sio.emit(emit[0], _env(emit[1]), to=sid, namespace=NS)

    # ---- the thread ----------------------------------------------------------------------------

    def __enter__(self) -> RelayDouble:
        ready = threading.Event()

        def main() -> None:
            async def run() -> None:
                self.loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                config = Config()
                config.bind = [f"fd://{self._sock.detach()}"]
                config.accesslog = None
                config.errorlog = None
                config.graceful_timeout = 1
                app = socketio.ASGIApp(self.sio)
                ready.set()
                await serve(app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

            asyncio.run(run())

        self._thread = threading.Thread(target=main, name="relay-double", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # ---- what a test does (blocking: call through trio.to_thread.run_sync) ------------------

    def dispatch(self, **command: Any) -> str:
        """Store a command (as the API does) and emit it to the desktop; its id."""
        command.setdefault("commandId", str(uuid.uuid4()))
        command.setdefault("method", "GET")
        with self.lock:
            self.commands[command["commandId"]] = StoredCommand(command)
            sid = self.sid
        if sid is not None:
            self._call(self.sio.emit("desktop.command", _env(command), to=sid, namespace=NS))
        return str(command["commandId"])

    def redispatch(self, command_id: str) -> None:
        """Emit a known command again (the relay does so after each hello for non-terminal ones)."""
        with self.lock:
            command, sid = self.commands[command_id].command, self.sid
        assert sid is not None
        self._call(self.sio.emit("desktop.command", _env(command), to=sid, namespace=NS))

    def cancel(self, command_id: str, reason: str = "user cancelled") -> None:
        with self.lock:
            sid = self.sid
        assert sid is not None
        payload = _env({"commandId": command_id, "reason": reason})
        self._call(self.sio.emit("desktop.cancel", payload, to=sid, namespace=NS))

    def freeze(self, seconds: float) -> None:
        """Block the server's event loop (no pings, no answers): a relay that hangs."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    def end_in_cloud(self, command_id: str) -> None:
        """The cloud ends a command on its own (a user's cancel while the desktop is away)."""
        with self.lock:
            self.commands[command_id].terminal = True

    def drop(self) -> None:
        """The relay ends the desktop's socket (a server-side disconnect)."""
        with self.lock:
            sid = self.sid
        assert sid is not None
        self._call(self.sio.disconnect(sid, namespace=NS))

    # ---- what a test reads -------------------------------------------------------------------

    def events(self, command_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.commands[command_id].events)

    def stored(self, command_id: str) -> StoredCommand:
        with self.lock:
            return self.commands[command_id]

    def terminal(self, command_id: str) -> bool:
        with self.lock:
            return self.commands[command_id].terminal

    def received_named(self, name: str) -> list[Any]:
        with self.lock:
            return [data for n, data in self.received if n == name]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _env(payload: dict[str, Any]) -> dict[str, Any]:
    """The API's ``toEnvelope``."""
    return {"protocolVersion": "1", "messageId": str(uuid.uuid4()), "timestamp": _now(), **payload}
