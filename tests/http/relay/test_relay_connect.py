"""Connect, authenticate, hello and presence; a refused key is degraded and retried with
backoff while the gateway keeps serving; plain and NDJSON routes relayed."""

from __future__ import annotations

import socket
import uuid
from functools import partial

import httpx
import trio
from conftest import FAST, KEY
from gwtest import wait_until as poll
from relay_double import RelayDouble

from gateway.http.operations import OPERATIONS
from gateway.http.relay import RelayClient, RelayConfig, run_relay
from gateway.http.relay.client import backoff_delay
from gateway.http.serve import GatewayHandle

from support import wait_until


def _types(events: list[dict]) -> list[str]:
    return [e["eventType"] for e in events]


async def test_connects_says_hello_and_goes_online(
    relay: RelayClient, double: RelayDouble, api: httpx.AsyncClient
) -> None:
    hello = double.hellos[0]
    assert hello["platform"] == "linux" and hello["machineName"]
    assert hello["supportedOperations"] == list(OPERATIONS)
    assert hello["maxInFlightCommands"] >= 2
    assert len(hello["allowedDirectoriesHash"]) == 64
    await wait_until(lambda: double.received_named("desktop.presence"), 5, "presence")
    assert double.received_named("desktop.presence")[0]["state"] == "online"
    assert double.envelope_errors == []

    health = (await api.get("/health")).json()
    assert health["relay"]["state"] == "connected"
    assert health["relay"]["computeTargetId"] == double.target_id
    assert "inFlight" not in health["relay"]  # the public answer names no commands
    checked = (await api.get("/api/gateway/health-check")).json()
    assert checked["relay"]["state"] == "connected" and checked["relay"]["url"] == double.url


async def test_a_refused_key_is_degraded_and_retried_with_backoff(
    gateway: GatewayHandle, double: RelayDouble, api: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    client: RelayClient = await nursery.start(
        partial(run_relay, gateway.context, RelayConfig(double.url, "wrong-key"), **FAST)
    )
    await wait_until(lambda: double.refusals >= 4, 10, "four refused connects")
    health = (await api.get("/health")).json()  # the HTTP server never stops for the relay
    assert health["status"] == "ok"
    assert health["relay"]["state"] == "degraded"
    assert "authentication failed" in health["relay"]["lastError"]
    assert "Unauthorized" in health["relay"]["lastError"]
    gaps = [b - a for a, b in zip(double.connect_attempts, double.connect_attempts[1:], strict=False)]
    # base 0.05 s doubling: the waits grow (jitter takes at most half of each one away)
    assert gaps[0] >= 0.025 and gaps[2] >= 0.1, gaps
    assert all(gap < 5 for gap in gaps), gaps  # capped (0.4 s here, plus the connect), no stall

    double.keys.add("wrong-key")  # the key is accepted now: the next retry connects
    await wait_until(lambda: client.state == "connected", 10, "the client to connect")
    assert client.last_error is None and client.attempts == 0
    await wait_until(lambda: double.received_named("desktop.telemetry"), 5, "telemetry")
    assert "authentication failed" in double.received_named("desktop.telemetry")[0]["message"]

    async def health_says_connected() -> bool:  # /health is cached for up to a second
        return bool((await api.get("/health")).json()["relay"]["state"] == "connected")

    await poll(health_says_connected, 5)


async def test_pings_are_answered_and_the_link_stays_up(
    gateway: GatewayHandle, nursery: trio.Nursery
) -> None:
    with RelayDouble(keys={KEY}, ping_interval=1, ping_timeout=1) as double:
        client: RelayClient = await nursery.start(
            partial(run_relay, gateway.context, RelayConfig(double.url, KEY), **FAST)
        )
        await wait_until(lambda: client.state == "connected", 10, "connected")
        await trio.sleep(3.5)  # three pings; an unanswered one ends the session after 2 s
        assert client.state == "connected" and client.connects == 1
        assert double.disconnects == 0 and len(double.connect_attempts) == 1


async def test_a_hello_nack_is_degraded_and_retried(
    gateway: GatewayHandle, double: RelayDouble, nursery: trio.Nursery
) -> None:
    double.nack = "compute_target_register_failed"
    client: RelayClient = await nursery.start(
        partial(run_relay, gateway.context, RelayConfig(double.url, KEY), **FAST)
    )
    await wait_until(lambda: len(double.received_named("desktop.hello")) >= 3, 10, "three hellos")
    assert client.state == "degraded" and "compute_target_register_failed" in (client.last_error or "")
    assert client.connects == 0
    double.nack = None
    await wait_until(lambda: client.state == "connected", 10, "accepted at last")


async def test_an_unreachable_relay_is_degraded_and_retried(
    gateway: GatewayHandle, nursery: trio.Nursery
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    client: RelayClient = await nursery.start(
        partial(run_relay, gateway.context, RelayConfig(url, KEY), **FAST)
    )
    await wait_until(lambda: client.attempts >= 3, 10, "three failed attempts")
    assert client.state == "degraded" and "cannot connect" in (client.last_error or "")
    assert client.retry_at is not None and client.connects == 0


async def test_a_relay_that_stops_pinging_is_left_and_reconnected(
    gateway: GatewayHandle, nursery: trio.Nursery
) -> None:
    with RelayDouble(keys={KEY}, ping_interval=1, ping_timeout=1) as double:
        client: RelayClient = await nursery.start(
            partial(run_relay, gateway.context, RelayConfig(double.url, KEY), **FAST)
        )
        await wait_until(lambda: client.state == "connected", 10, "connected")
        double.freeze(3.5)  # silent for longer than ping interval + timeout (2 s)
        await wait_until(lambda: client.state == "degraded", 10, "the dead link noticed")
        assert "no ping from the server for 2 s" in (client.last_error or "")
        await wait_until(lambda: client.connects == 2 and client.state == "connected", 15, "back")


def test_backoff_doubles_with_jitter_capped_at_30_s() -> None:
    no_jitter = [backoff_delay(n, rand=lambda: 0.0) for n in range(8)]
    assert no_jitter == [1, 2, 4, 8, 16, 30, 30, 30]
    full_jitter = [backoff_delay(n, rand=lambda: 1.0) for n in range(8)]
    assert full_jitter == [0.5, 1, 2, 4, 8, 15, 15, 15]
    assert backoff_delay(1000) <= 30


async def test_a_plain_route_is_relayed_as_result_then_done(
    relay: RelayClient, double: RelayDouble, gateway: GatewayHandle
) -> None:
    cid = await trio.to_thread.run_sync(
        partial(double.dispatch, operationId="health_check", path="/api/gateway/version")
    )
    await wait_until(lambda: double.terminal(cid), 10, "the command to end")
    events = double.events(cid)
    assert _types(events) == ["status", "result", "done"]
    assert [e["sequence"] for e in events] == [1, 2, 3]
    assert events[0]["data"] == {"type": "status", "status": "running", "operationId": "health_check"}
    result = events[1]["data"]
    assert result["statusCode"] == 200 and result["success"] is True
    assert result["data"]["version"]
    assert double.stored(cid).acks[0]["accepted"] is True
    assert double.envelope_errors == []


async def test_a_sequence_gap_is_healed_by_a_replay(relay: RelayClient, double: RelayDouble) -> None:
    cid = str(uuid.uuid4())
    double.lose.add((cid, 2))  # the result is lost on the way: the done arrives after a gap
    await trio.to_thread.run_sync(
        partial(double.dispatch, commandId=cid, operationId="health_check", path="/api/gateway/version")
    )
    await wait_until(lambda: double.terminal(cid), 10, "the command to end")
    assert _types(double.events(cid)) == ["status", "result", "done"]
    assert double.stored(cid).gaps == 1


async def test_a_failing_route_ends_in_a_terminal_error_without_done(
    relay: RelayClient, double: RelayDouble
) -> None:
    cid = await trio.to_thread.run_sync(
        partial(double.dispatch, operationId="process_table", path="/api/gateway/processes/p_nope")
    )
    await wait_until(lambda: double.terminal(cid), 10, "the command to end")
    events = double.events(cid)
    assert _types(events) == ["status", "error"]
    error = events[1]["data"]
    assert error["terminal"] is True and error["statusCode"] == 404
    assert error["error"].startswith("gateway returned 404: ")


async def test_a_command_outside_the_gateway_api_is_refused(relay: RelayClient, double: RelayDouble) -> None:
    cid = await trio.to_thread.run_sync(
        partial(double.dispatch, operationId="health_check", path="/api/gateway/../health")
    )
    await wait_until(lambda: double.stored(cid).acks, 10, "the ack")
    ack = double.stored(cid).acks[0]
    assert ack["accepted"] is False and ack["state"] == "failed" and "dot segments" in ack["reason"]
    assert relay.executor.executions == 0


async def test_an_ndjson_route_streams_chunks_then_done(
    relay: RelayClient, double: RelayDouble, api: httpx.AsyncClient
) -> None:
    started = (await api.post("/api/gateway/processes", json={"argv": ["printf", "one\\ntwo\\n"]})).json()
    record = relay.gw.sup.table.get(started["id"])
    assert record is not None
    await wait_until(lambda: record.state.ended, 10, "the process to end")
    cid = await trio.to_thread.run_sync(
        partial(
            double.dispatch,
            operationId="process_table",
            path=f"/api/gateway/processes/{started['id']}/logs",
            query={"follow": "0"},
        )
    )
    await wait_until(lambda: double.terminal(cid), 10, "the stream to end")
    events = double.events(cid)
    kinds = _types(events)
    assert kinds[0] == "status" and kinds[-1] == "done" and set(kinds[1:-1]) == {"chunk"}
    chunks = [e["data"] for e in events if e["eventType"] == "chunk"]
    lines = [c["text"] for c in chunks if c["type"] == "log"]
    assert lines[:2] == ["one", "two"]
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
