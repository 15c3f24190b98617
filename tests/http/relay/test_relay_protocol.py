"""The pure parts: Socket.IO packet codec, ClosedLoop's command parsing, headers, lock keys and
NDJSON mapping (the rules ``cloud-command-executor.ts`` and ``cloud-socket.ts`` state)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from gateway.http.relay.protocol import (
    allowed_directories_hash,
    envelope,
    is_terminal,
    map_line,
    parse_command,
    parse_hello_ack,
    request_body,
    request_headers,
    terminal_state,
)
from gateway.http.relay.sio import Refused, SocketIOError, decode, encode, engine_url
from gateway.http.relay.store import RETENTION, SCHEMA, EventRecord, RelayStore
from gateway.supervisor import Store

NS = "/desktop-gateway"


def test_socketio_packets_round_trip() -> None:
    assert encode("2", NS, ["desktop.hello", {"a": 1}]) == '42/desktop-gateway,["desktop.hello",{"a":1}]'
    assert encode("2", NS, ["x", {}], ack_id=12) == '42/desktop-gateway,12["x",{}]'
    assert encode("0", NS, {"apiKey": "k"}) == '40/desktop-gateway,{"apiKey":"k"}'
    event = decode('2/desktop-gateway,7["desktop.command",{"commandId":"c"}]')
    assert (event.type, event.namespace, event.ack_id) == ("2", NS, 7)
    assert event.data == ["desktop.command", {"commandId": "c"}]
    refused = decode('4/desktop-gateway,{"message":"Unauthorized"}')
    assert refused.type == "4" and refused.data == {"message": "Unauthorized"}
    assert decode("1/desktop-gateway,").type == "1"
    assert decode('3/desktop-gateway,3[{"accepted":true}]').ack_id == 3
    assert decode('51-/desktop-gateway,["b",{"_placeholder":true,"num":0}]').data[0] == "b"
    assert decode('2["root"]').namespace == "/"
    with pytest.raises(SocketIOError):
        decode("2/desktop-gateway,[not json")


def test_engine_url() -> None:
    assert (
        engine_url("https://relay.closedloop.ai")
        == "wss://relay.closedloop.ai/socket.io/?EIO=4&transport=websocket"
    )
    assert engine_url("http://127.0.0.1:9/") == "ws://127.0.0.1:9/socket.io/?EIO=4&transport=websocket"
    with pytest.raises(ValueError):
        engine_url("relay.closedloop.ai")


def test_refusals_that_are_auth_errors() -> None:
    assert Refused("Unauthorized").is_auth
    assert Refused("Forbidden: key revoked").is_auth
    assert Refused("nope", {"statusCode": 401}).is_auth
    assert not Refused("Service unavailable").is_auth


def test_commands_are_parsed_as_the_desktop_does() -> None:
    cid = str(uuid.uuid4())
    base = {"commandId": cid, "operationId": "git_action", "method": "post", "path": "/api/gateway/git"}
    command = parse_command({**base, "query": {"a": "1", "b": ["2", "3"], "c": 4}, "timeoutMs": 1500.7})
    assert command is not None and command.method == "POST"
    assert command.query == {"a": "1", "b": ["2", "3"]} and command.timeout_ms == 1500
    assert parse_command({**base, "path": "/api/engineer/git"}) is None  # the legacy prefix is dropped
    assert parse_command({**base, "method": "TRACE"}) is None
    assert parse_command({**base, "commandId": " "}) is None
    assert parse_command(["not", "an", "object"]) is None


def test_lock_keys() -> None:
    base = {"commandId": "c", "operationId": "git_action", "method": "POST", "path": "/api/gateway/git"}
    assert parse_command({**base, "lockKey": "  repo-1 "}).derived_lock == "repo-1"  # type: ignore[union-attr]
    with_repo = parse_command({**base, "body": {"worktreePath": "/w", "path": "/p"}})
    assert with_repo is not None and with_repo.derived_lock == "git_action:/w"
    assert parse_command({**base, "body": {"message": "x"}}).derived_lock is None  # type: ignore[union-attr]


def test_loopback_headers_and_body() -> None:
    cid = str(uuid.uuid4())
    command = parse_command({
        "commandId": cid, "operationId": "deploy", "method": "POST", "path": "/api/gateway/deploy",
        "requiresApproval": True, "approvalReason": "ship it", "body": {"ticketId": "t1"},
        "headers": {"X-Desktop-Gateway-Token": "forged", "Host": "evil", "X-Trace": "abc", "X-Bad": "a\r\nb",
                    "X-Desktop-Anything": "no", "Cookie": "c=1"},
    })  # fmt: skip
    assert command is not None
    headers = request_headers(command, "the-token")
    assert headers == {
        "X-Trace": "abc",
        "x-desktop-gateway-token": "the-token",
        "x-desktop-source": "cloud-socket",
        "x-desktop-command-id": cid,
        "x-desktop-operation-id": "deploy",
        "x-desktop-force-approval": "1",
        "x-desktop-approval-reason": "ship it",
    }
    assert request_body(command, headers) == b'{"ticketId":"t1"}'
    assert headers["content-type"] == "application/json"
    get = parse_command({"commandId": "not-a-uuid", "operationId": "op\nx", "method": "GET",
                         "path": "/api/gateway/version", "body": {"ignored": True}})  # fmt: skip
    assert get is not None
    get_headers = request_headers(get, "t")
    assert "x-desktop-command-id" not in get_headers and "x-desktop-operation-id" not in get_headers
    assert request_body(get, get_headers) is None


def test_ndjson_lines_map_to_events() -> None:
    assert map_line('{"type":"log","text":"hi"}') == ("chunk", {"type": "log", "text": "hi"})
    assert map_line('{"type":"status","state":"x"}')[0] == "status"
    assert map_line("plain text") == ("chunk", {"type": "text", "content": "plain text"})
    assert is_terminal("done", {}) and not is_terminal("error", {"type": "error"})
    assert is_terminal("error", {"terminal": True}) and is_terminal("result", {"terminal": True})
    assert terminal_state("done", {"cancelled": True}) == "cancelled"
    assert terminal_state("error", {"terminal": True}) == "failed"


def test_envelope_hello_ack_and_directory_hash() -> None:
    env = envelope({"state": "online"})
    assert env["protocolVersion"] == "1" and uuid.UUID(env["messageId"]) and env["timestamp"].endswith("Z")
    assert env["state"] == "online"
    assert parse_hello_ack({"sessionId": "s"}) is None
    ack = parse_hello_ack({"computeTargetId": "t", "resumeFromSequence": {"a": 3, "b": "x"}})
    assert ack is not None and ack.resume_from_sequence == {"a": 3, "b": 0}
    expected = hashlib.sha256(b'["/a","/b"]').hexdigest()  # JSON.stringify(["/a","/b"])
    assert allowed_directories_hash(["/b", "/a"]) == expected


async def test_the_store_forgets_old_terminal_commands_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "gateway.db")
    await store.open()
    try:
        relay_store = RelayStore(store)
        await relay_store.open()
        await relay_store.open()  # idempotent: the component's version is recorded
        now = 1_000_000.0
        for cid, ended in (("old", now - RETENTION - 1), ("recent", now - 10)):
            await relay_store.add_command(cid, {"commandId": cid}, ended - 1)
            await relay_store.add_events(cid, [EventRecord(1, "done", {"type": "done"})], "done", ended)
        await relay_store.add_command("queued", {"commandId": "queued"}, now - RETENTION - 5)
        assert await relay_store.prune(now) == ["old"]
        loaded = await relay_store.load()
        assert set(loaded) == {"recent", "queued"}
        assert loaded["recent"].events[0].event_type == "done" and loaded["queued"].state == "queued"
        row = await store.fetchone("SELECT version FROM schema_versions WHERE owner = 'relay'")
        assert row is not None and row[0] == len(SCHEMA)
    finally:
        await store.close()
