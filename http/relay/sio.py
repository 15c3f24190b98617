"""A Socket.IO v5 client over Engine.IO v4, websocket transport only, on trio-websocket.

PyPI has no trio Socket.IO client (python-socketio's is asyncio-only), and the relay needs a
small subset of the protocol, so it lives here:

- the Engine.IO open packet ``0{...}`` (ping interval and timeout),
- the namespace connect ``40/ns,{auth}`` answered by ``40/ns,{sid}`` or refused by
  ``44/ns,{"message"}``,
- ping ``2`` answered by pong ``3``; silence longer than interval + timeout is a dead link,
- events ``42/ns,[name, data]``, events that want an ack ``42/ns,<id>[...]`` answered by
  ``43/ns,<id>[...]``, and our own acked emits,
- the server's namespace disconnect ``41/ns,`` and Engine.IO close ``1``.

Binary packets (``45``/``46``) are ignored: the relay never sends them.

Cancellation: :func:`connect_socketio` owns a reader task in its own nursery; leaving the
``async with`` (normally or by cancellation) closes the websocket. Every wait here is a trio
checkpoint, so an outer cancel scope ends a connection attempt at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

CONNECT_TIMEOUT = 10.0  # socket.io-client's default ``timeout``
MAX_MESSAGE = 16 * 1024 * 1024

# Engine.IO v4 packet types
EIO_OPEN, EIO_CLOSE, EIO_PING, EIO_PONG, EIO_MESSAGE, EIO_NOOP = "0", "1", "2", "3", "4", "6"
# Socket.IO v5 packet types (inside an Engine.IO message)
SIO_CONNECT, SIO_DISCONNECT, SIO_EVENT, SIO_ACK, SIO_CONNECT_ERROR = "0", "1", "2", "3", "4"


class SocketIOError(Exception):
    """The link failed: handshake, transport, timeout or protocol. Retrying may help."""


class Refused(SocketIOError):
    """The server refused the namespace connect (``44``); ``message`` is its reason."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    @property
    def is_auth(self) -> bool:
        """As ClosedLoop's ``looksLikeAuthError``: a 401/403 status or an auth keyword."""
        if isinstance(self.data, dict):
            status = self.data.get("statusCode", self.data.get("status"))
            if status in (401, 403):
                return True
        text = self.message.lower()
        return "unauthorized" in text or "forbidden" in text


class Disconnected(SocketIOError):
    """The server ended the session (namespace disconnect, Engine.IO close, socket closed)."""


def engine_url(origin: str) -> str:
    """``https://relay.example`` -> ``wss://relay.example/socket.io/?EIO=4&transport=websocket``."""
    parts = urlsplit(origin)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"relay URL must be http(s)://host[:port], not {origin[:200]!r}")
    path = parts.path.rstrip("/") + "/socket.io/"
    return urlunsplit((scheme, parts.netloc, path, "EIO=4&transport=websocket", ""))


@dataclass(slots=True)
class Packet:
    """One decoded Socket.IO packet."""

    type: str
    namespace: str
    ack_id: int | None
    data: Any


def decode(text: str) -> Packet:
    """Decode a Socket.IO packet (the Engine.IO ``4`` prefix already removed)."""
    if not text:
        raise SocketIOError("empty Socket.IO packet")
    kind, rest = text[0], text[1:]
    if kind in ("5", "6"):  # binary event/ack: attachments follow "<n>-"
        _count, _, rest = rest.partition("-")
    namespace = "/"
    if rest.startswith("/"):
        namespace, _, rest = rest.partition(",")
    digits = 0
    while digits < len(rest) and rest[digits].isdigit():
        digits += 1
    ack_id = int(rest[:digits]) if digits else None
    payload = rest[digits:]
    try:
        data = json.loads(payload) if payload else None
    except ValueError as exc:
        raise SocketIOError(f"bad Socket.IO payload: {exc}") from None
    return Packet(kind, namespace, ack_id, data)


def encode(kind: str, namespace: str, data: Any = None, ack_id: int | None = None) -> str:
    """Encode a Socket.IO packet inside an Engine.IO message (``4`` + packet)."""
    ns = "" if namespace == "/" else f"{namespace},"
    ack = "" if ack_id is None else str(ack_id)
    body = "" if data is None else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"{EIO_MESSAGE}{kind}{ns}{ack}{body}"


@dataclass(slots=True)
class Event:
    """An event the server sent; ``ack_id`` is set when the server wants an answer."""

    name: str
    args: list[Any]
    ack_id: int | None = None


@dataclass
class SocketIO:
    """A connected namespace. Use :meth:`emit`, :meth:`call` and iterate :meth:`events`."""

    ws: WebSocketConnection
    namespace: str
    sid: str
    ping_interval: float
    ping_timeout: float
    _events_in: trio.MemorySendChannel[Event] = field(repr=False)
    _events_out: trio.MemoryReceiveChannel[Event] = field(repr=False)
    _acks: dict[int, trio.MemorySendChannel[list[Any]]] = field(default_factory=dict, repr=False)
    _next_ack: int = 0
    _send_lock: trio.Lock = field(default_factory=trio.Lock, repr=False)
    closed_reason: str | None = None

    async def _send(self, text: str) -> None:
        try:
            async with self._send_lock:
                await self.ws.send_message(text)
        except ConnectionClosed as exc:
            raise Disconnected(f"socket closed: {exc.reason}") from None

    async def emit(self, name: str, data: Any) -> None:
        """Send an event; raises :class:`Disconnected` if the link is gone."""
        await self._send(encode(SIO_EVENT, self.namespace, [name, data]))

    async def call(self, name: str, data: Any, timeout: float) -> list[Any] | None:
        """Send an event that wants an ack; its arguments, or None after ``timeout``."""
        ack_id = self._next_ack
        self._next_ack += 1
        send, receive = trio.open_memory_channel[list[Any]](1)
        self._acks[ack_id] = send
        try:
            await self._send(encode(SIO_EVENT, self.namespace, [name, data], ack_id))
            with trio.move_on_after(timeout):
                return await receive.receive()
            return None
        finally:
            self._acks.pop(ack_id, None)

    async def ack(self, ack_id: int, *args: Any) -> None:
        await self._send(encode(SIO_ACK, self.namespace, list(args), ack_id))

    def events(self) -> trio.MemoryReceiveChannel[Event]:
        """Server events in arrival order; the channel ends when the link does."""
        return self._events_out

    async def _read(self) -> None:
        """The reader: pongs, acks and events until the link ends.

        The end of the link closes the event channel after the events that came before it,
        so a consumer handles everything the server said (a ``desktop.hello.nack`` and the
        disconnect right behind it) before it learns why the link ended (``closed_reason``).
        """
        silence = self.ping_interval + self.ping_timeout
        try:
            while self.closed_reason is None:
                with trio.move_on_after(silence) as scope:
                    message = await self.ws.get_message()
                if scope.cancelled_caught:
                    self.closed_reason = f"no ping from the server for {silence:g} s"
                elif isinstance(message, str) and message:  # binary: attachments never asked for
                    await self._handle(message)
        except ConnectionClosed as exc:
            self.closed_reason = f"socket closed: {exc.reason}"
        finally:
            self._events_in.close()

    async def _handle(self, message: str) -> None:
        kind = message[0]
        if kind == EIO_PING:
            await self._send(EIO_PONG + message[1:])
        elif kind == EIO_CLOSE:
            self.closed_reason = "server closed the Engine.IO session"
        elif kind == EIO_MESSAGE:
            await self._dispatch(decode(message[1:]))

    async def _dispatch(self, packet: Packet) -> None:
        if packet.namespace != self.namespace:
            return
        if packet.type == SIO_DISCONNECT:
            self.closed_reason = "server disconnected the namespace"
        elif packet.type == SIO_EVENT and isinstance(packet.data, list) and packet.data:
            name = packet.data[0]
            if isinstance(name, str):
                await self._events_in.send(Event(name, packet.data[1:], packet.ack_id))
        elif packet.type == SIO_ACK and packet.ack_id is not None:
            waiter = self._acks.pop(packet.ack_id, None)
            if waiter is not None:
                waiter.send_nowait(packet.data if isinstance(packet.data, list) else [packet.data])


async def _handshake(
    ws: WebSocketConnection, namespace: str, auth: dict[str, Any]
) -> tuple[str, float, float]:
    """Open packet, then the namespace connect; (sid, ping interval s, ping timeout s)."""
    opened = await ws.get_message()
    if not isinstance(opened, str) or not opened.startswith(EIO_OPEN):
        raise SocketIOError(f"expected the Engine.IO open packet, got {str(opened)[:80]!r}")
    info = json.loads(opened[1:])
    interval = float(info.get("pingInterval", 25000)) / 1000
    timeout = float(info.get("pingTimeout", 20000)) / 1000
    await ws.send_message(encode(SIO_CONNECT, namespace, auth))
    while True:
        message = await ws.get_message()
        if not isinstance(message, str) or not message:
            continue
        if message[0] == EIO_PING:
            await ws.send_message(EIO_PONG + message[1:])
            continue
        if message[0] == EIO_CLOSE:
            raise Disconnected("server closed the Engine.IO session during connect")
        if message[0] != EIO_MESSAGE:
            continue
        packet = decode(message[1:])
        if packet.namespace != namespace:
            continue
        if packet.type == SIO_CONNECT:
            sid = packet.data.get("sid", "") if isinstance(packet.data, dict) else ""
            return str(sid), interval, timeout
        if packet.type == SIO_CONNECT_ERROR:
            data = packet.data if isinstance(packet.data, dict) else {"message": str(packet.data)}
            raise Refused(str(data.get("message", "refused")), data.get("data"))
        raise SocketIOError(f"unexpected packet type {packet.type} during connect")


@asynccontextmanager
async def connect_socketio(
    origin: str,
    namespace: str,
    auth: dict[str, Any],
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> AsyncIterator[SocketIO]:
    """Connect to ``namespace`` at ``origin``; yields once the namespace accepted us.

    Raises :class:`Refused` for a ``44`` and :class:`SocketIOError` for anything else that
    stops the connect. Inside the block, the end of the link is the end of
    :meth:`SocketIO.events` (after every event that came before it), with the reason in
    ``closed_reason``; a send on a dead link raises :class:`Disconnected`.
    """
    url = engine_url(origin)
    try:
        async with open_websocket_url(
            url, connect_timeout=connect_timeout, disconnect_timeout=2, max_message_size=MAX_MESSAGE
        ) as ws:
            with trio.fail_after(connect_timeout):
                sid, interval, timeout = await _handshake(ws, namespace, auth)
            send, receive = trio.open_memory_channel[Event](math.inf)
            sio = SocketIO(ws, namespace, sid, interval, timeout, send, receive)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sio._read)
                try:
                    yield sio
                finally:
                    nursery.cancel_scope.cancel()
    except (HandshakeError, ConnectionClosed, OSError, trio.TooSlowError) as exc:
        raise SocketIOError(f"cannot connect to {url}: {type(exc).__name__}: {exc}") from None
