"""The guard in front of Quart, driven over raw loopback sockets where a client library would
hide what matters: chunked bodies over the limit, bodies that never finish, keep-alive reuse
after refusals, WebSocket handshakes, and the fast path agreeing with the Quart view.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import pytest
import trio
import trio_websocket

from gateway.http.serve import GatewayHandle, ServeOptions


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


class RawConnection:
    """One HTTP/1.1 keep-alive connection, bytes in and out, nothing normalised."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def _fill(self) -> bool:
        chunk = await self.stream.receive_some(65536)
        self.buf += chunk
        return bool(chunk)

    async def read_answer(self) -> RawAnswer:
        while b"\r\n\r\n" not in self.buf:
            if not await self._fill():
                raise ConnectionError("closed before an answer")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            if not await self._fill():
                raise ConnectionError("closed mid-body")
        body, self.buf = self.buf[:length], self.buf[length:]
        return RawAnswer(int(lines[0].split(" ", 2)[1]), headers, body)

    async def closed_by_peer(self) -> bool:
        """True once the gateway closes its side (bounded by the test's own timeout)."""
        while await self._fill():
            pass
        return True


async def connect(handle: GatewayHandle) -> RawConnection:
    return RawConnection(await trio.open_tcp_stream("127.0.0.1", handle.port))


def request(handle: GatewayHandle, method: str, path: str, *extra: str, token: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{handle.port}"]
    if token:
        lines.append(f"X-Desktop-Gateway-Token: {handle.context.auth.gateway_token}")
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


async def test_chunked_body_over_the_limit_is_413_and_closes(gateway: GatewayHandle) -> None:
    conn = await connect(gateway)
    head = request(gateway, "POST", "/api/gateway/processes", "Content-Type: application/json",
                   "Transfer-Encoding: chunked")  # fmt: skip
    await conn.stream.send_all(head)
    chunk = b"x" * 65536
    answer: RawAnswer | None = None
    async with trio.open_nursery() as nursery:

        async def feed() -> None:
            # No Content-Length: the limit can only be enforced while counting. Keep sending
            # until the gateway answers or hangs up (it may close while we still write).
            try:
                for _ in range(64):  # 4 MiB, far past the 1 MiB limit
                    await conn.stream.send_all(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except trio.BrokenResourceError:
                pass

        nursery.start_soon(feed)
        answer = await conn.read_answer()
        nursery.cancel_scope.cancel()
    assert answer.status == 413
    assert json.loads(answer.body)["error"]["code"] == "payload_too_large"
    assert answer.headers.get("connection") == "close"


@pytest.fixture
def serve_options(serve_options: ServeOptions) -> ServeOptions:
    serve_options.body_timeout = 0.5
    return serve_options


async def test_a_body_that_never_finishes_is_408(gateway: GatewayHandle) -> None:
    conn = await connect(gateway)
    head = request(gateway, "POST", "/api/gateway/processes", "Content-Type: application/json",
                   "Content-Length: 100")  # fmt: skip
    await conn.stream.send_all(head + b'{"argv": [')
    with trio.fail_after(10):
        answer = await conn.read_answer()
        assert answer.status == 408
        assert json.loads(answer.body)["error"]["code"] == "request_timeout"
        assert answer.headers.get("connection") == "close"
        assert await conn.closed_by_peer()
    assert not gateway.context.sup.table.query(kind=None, ticket_id=None, state=None)


async def test_keep_alive_survives_refusals_over_unread_bodies(gateway: GatewayHandle) -> None:
    """401, 403 and policy refusals answer before routing; the body was read first anyway,
    so the very next request on the same connection is understood."""
    conn = await connect(gateway)
    body = json.dumps({"argv": ["true"]}).encode()
    unauthorised = request(gateway, "POST", "/api/gateway/processes", "Content-Type: application/json",
                           f"Content-Length: {len(body)}", token=False) + body  # fmt: skip
    foreign = request(gateway, "POST", "/api/gateway/processes", "Content-Type: application/json",
                      "Origin: https://evil.example", f"Content-Length: {len(body)}") + body  # fmt: skip
    listing = request(gateway, "GET", "/api/gateway/processes")
    await conn.stream.send_all(unauthorised + foreign + listing)  # pipelined on one connection
    with trio.fail_after(10):
        first, second, third = [await conn.read_answer() for _ in range(3)]
    assert first.status == 401 and json.loads(first.body)["error"]["code"] == "unauthorized"
    assert second.status == 403 and json.loads(second.body)["error"]["code"] == "origin_not_allowed"
    assert third.status == 200 and json.loads(third.body)["processes"] == []


async def test_fast_path_agrees_with_the_quart_view(api: httpx.AsyncClient) -> None:
    """Plain GETs of the listing and /health are answered in the guard; HEAD goes through Quart's
    view of the same bytes. Both must describe the same answer, errors included."""
    started = await api.post("/api/gateway/processes", json={"argv": ["true"], "kind": "adhoc"})
    assert started.status_code == 201, started.text
    with trio.fail_after(10):  # an ended record's JSON is stable; a live one's lastSeq moves
        while (await api.get(f"/api/gateway/processes/{started.json()['id']}")).json()["endedAt"] is None:
            await trio.sleep(0.02)
    for path in ("/api/gateway/processes", "/api/gateway/processes?kind=adhoc", "/health"):
        got, head = await api.get(path), await api.head(path)
        assert got.status_code == head.status_code == 200
        assert got.headers["content-type"] == head.headers["content-type"] == "application/json"
        if path != "/health":  # health carries uptime; the listing is byte-stable between calls
            assert got.headers["content-length"] == head.headers["content-length"]
    filtered = (await api.get("/api/gateway/processes", params={"kind": "nothing-like-this"})).json()
    assert filtered["processes"] == []
    # The first of a repeated parameter wins, as in Quart's request.args.
    first_wins = await api.get("/api/gateway/processes?kind=adhoc&kind=nothing-like-this")
    assert len(first_wins.json()["processes"]) == 1
    bad = await api.get("/api/gateway/processes", params={"state": "sleeping"})
    assert bad.status_code == 400
    assert bad.json()["error"] == {
        "code": "invalid_query",
        "message": "state: unknown 'sleeping'",
        "operation": "process_table",
    }


async def test_websocket_handshakes_are_refused(gateway: GatewayHandle) -> None:
    """No route speaks WebSocket, so no upgrade may slip past the HTTP checks."""
    with trio.fail_after(10), pytest.raises(trio_websocket.HandshakeError):
        async with trio_websocket.open_websocket_url(
            f"ws://127.0.0.1:{gateway.port}/api/gateway/processes/stream",
            extra_headers=[("X-Desktop-Gateway-Token", gateway.context.auth.gateway_token)],
        ):
            pass


async def read_to_close(conn: RawConnection, seconds: float = 5.0) -> bytes:
    """Everything until the gateway closes its side; fails if it keeps the socket open."""
    with trio.fail_after(seconds):
        await conn.closed_by_peer()
    return conn.buf


@pytest.mark.parametrize(
    ("version", "extra"),
    [("HTTP/1.0", ()), ("HTTP/1.1", ("Connection: close",))],
    ids=["http10", "connection-close"],
)
@pytest.mark.parametrize(
    "path",
    [
        "/api/gateway/version",  # a Quart view
        "/api/gateway/nothing-here",  # Quart's own 404
        "/api/gateway/processes",  # the guard's fast path
        "/api/gateway/processes/p_missing/logs",  # a Quart error answer
    ],
)
async def test_the_last_answer_on_a_connection_closes_it(
    gateway: GatewayHandle, path: str, version: str, extra: tuple[str, ...]
) -> None:
    """A client that reads until close must not hang, whatever route answered it."""
    conn = await connect(gateway)
    head = request(gateway, "GET", path, *extra).replace(b" HTTP/1.1\r\n", f" {version}\r\n".encode(), 1)
    await conn.stream.send_all(head)
    data = await read_to_close(conn)
    assert data.startswith(f"{version} ".encode()) or data.startswith(b"HTTP/1.1 ")
    assert b"\r\n\r\n" in data


async def test_a_finished_ndjson_stream_closes_its_connection(
    api: httpx.AsyncClient, gateway: GatewayHandle
) -> None:
    started = await api.post("/api/gateway/processes", json={"argv": ["echo", "hi"], "kind": "adhoc"})
    pid = started.json()["id"]
    with trio.fail_after(10):
        await gateway.context.sup.wait(pid)
    conn = await connect(gateway)
    await conn.stream.send_all(request(gateway, "GET", f"/api/gateway/processes/{pid}/logs?follow=1",
                                       "Connection: close"))  # fmt: skip
    data = await read_to_close(conn)
    assert b'"hi' in data  # the line itself, then the socket closed
