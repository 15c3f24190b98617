"""A running loop's heartbeats to the ClosedLoop API, recorded by its loopback double.

Derived from closedloop-ai/closedloop-electron ``apps/desktop/src/server/operations/loop-http.ts``
(``postLoopHeartbeat``: ``POST /loops/<id>/heartbeat``, Bearer, no body; ``getCloudLoopStatus``:
``GET /loops/<id>``, ``TIMED_OUT``), ``apps/desktop/src/main/loop-heartbeat.ts`` (the tick, the
30-minute ``CLOSEDLOOP_HEARTBEAT_INTERVAL_MS``, 404 disables, a live process is never finalized)
and ``loop-status-classifier.ts`` (401/404/410 terminal, 5xx transient). The interval is set
short here (the gateway's ``heartbeat_interval``); the tests wait on the double's recorded
requests and on the heartbeat task's ``done`` event, never on time.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
import trio
from agent_support import API, ClosedLoopApiDouble, Recorded, aapi, agw, cl_api, cl_repo, md, until
from test_agent_loop import REPORT, evaluate_plan

from gateway.http.serve import GatewayHandle
from gateway.supervisor.spec import State
from gateway.supervisor.symphony.cloud_loops import CloudLoop

from agents.model_double import Delay, ModelDouble, Text


@pytest.fixture
def cloud(
    cl_api: ClosedLoopApiDouble, monkeypatch: pytest.MonkeyPatch, agw: GatewayHandle
) -> ClosedLoopApiDouble:
    monkeypatch.setenv("GATEWAY_CLOSEDLOOP_API_ORIGIN", cl_api.origin)
    agw.context.services.symphony.cloud_loops.heartbeat_interval = 0.2
    return cl_api


async def start_slow_loop(
    aapi: httpx.AsyncClient, md: ModelDouble, cl_repo: Path, agw: GatewayHandle
) -> CloudLoop:
    """A loop whose agent turn takes two minutes (it is killed or times out long before)."""
    md.claude.add_turn(Text("Reading the plan"), Delay(120))
    loop_id = str(uuid.uuid4())
    r = await aapi.post(f"{API}/symphony/loop", json=evaluate_plan(cl_repo, loop_id))
    assert r.status_code == 200, r.text
    return agw.context.services.symphony.cloud_loops.loops[loop_id]


def beats(reqs: list[Recorded], loop_id: str) -> list[Recorded]:
    """The heartbeats among ``reqs`` (what ``wait_for`` hands its predicate: it holds the lock)."""
    return [q for q in reqs if q.method == "POST" and q.path == f"/loops/{loop_id}/heartbeat"]


async def test_heartbeats_while_the_loop_runs_and_stop_when_it_ends(
    aapi: httpx.AsyncClient, cloud: ClosedLoopApiDouble, md: ModelDouble, cl_repo: Path, agw: GatewayHandle
) -> None:
    loop = await start_slow_loop(aapi, md, cl_repo, agw)
    loop_id = loop.request.loop_id
    got = await trio.to_thread.run_sync(lambda: cloud.wait_for(lambda reqs: len(beats(reqs, loop_id)) >= 3))
    sent = [q for q in got if q.path == f"/loops/{loop_id}/heartbeat"]
    for q in sent:
        assert q.method == "POST" and q.body is None
        assert q.headers["Authorization"] == "Bearer loop-jwt-1"
        assert "x-loop-event-nonce" not in {k.lower() for k in q.headers}
    assert loop.record is not None and loop.record.state is State.RUNNING  # beats never touch the child
    killed = await aapi.post(f"{API}/symphony/loop/kill", json={"loopId": loop_id})
    assert killed.status_code == 200
    await until(lambda: loop.heartbeat.done.is_set(), what="the heartbeat task to end")
    assert loop.heartbeat.stopped is None  # it ended with the loop, not on the cloud's word
    # The loop's end was reported as usual.
    await trio.to_thread.run_sync(
        lambda: cloud.wait_for(lambda reqs: any(q.event_type == "error" for q in reqs))
    )
    assert [q.body["code"] for q in cloud.events(loop_id) if q.event_type == "error"] == ["CANCELLED"]


async def test_a_failing_heartbeat_never_stops_the_loop(
    aapi: httpx.AsyncClient, cloud: ClosedLoopApiDouble, md: ModelDouble, cl_repo: Path, agw: GatewayHandle
) -> None:
    """5xx is transient; 401 with the cloud still saying RUNNING keeps beating (ClosedLoop keeps
    a loop whose process is alive); the loop then completes and reports as usual."""
    md.claude.add_turn(Delay(5), Text(f"Results:\n{json.dumps(REPORT)}"))  # a turn of 5 s
    loop_id = str(uuid.uuid4())
    cloud.fail("/heartbeat", 503, 401, 503)
    r = await aapi.post(f"{API}/symphony/loop", json=evaluate_plan(cl_repo, loop_id))
    assert r.status_code == 200
    loop = agw.context.services.symphony.cloud_loops.loops[loop_id]
    await until(lambda: len(loop.heartbeat.beats) >= 4, what="four heartbeats")
    assert loop.heartbeat.beats[:4] == [503, 401, 503, 200]
    assert len(cloud.calls("GET", f"/loops/{loop_id}")) == 1  # asked once, after the 401
    got = await trio.to_thread.run_sync(
        lambda: cloud.wait_for(lambda reqs: any(q.event_type in ("completed", "error") for q in reqs))
    )
    assert [q.event_type for q in got if q.event_type in ("completed", "error")] == ["completed"]


async def test_the_heartbeat_endpoint_gone_stops_the_heartbeats_only(
    aapi: httpx.AsyncClient, cloud: ClosedLoopApiDouble, md: ModelDouble, cl_repo: Path, agw: GatewayHandle
) -> None:
    cloud.answer("POST", "/heartbeat", 404, {"error": "Not Found"})
    loop = await start_slow_loop(aapi, md, cl_repo, agw)
    await until(lambda: loop.heartbeat.done.is_set(), what="the heartbeats to stop")
    assert loop.heartbeat.stopped == "not_found" and loop.heartbeat.beats == [404]
    assert loop.record is not None and loop.record.state is State.RUNNING
    assert (
        await aapi.post(f"{API}/symphony/loop/kill", json={"loopId": loop.request.loop_id})
    ).status_code == 200


async def test_timed_out_in_the_cloud_stops_reporting_but_not_the_child(
    aapi: httpx.AsyncClient, cloud: ClosedLoopApiDouble, md: ModelDouble, cl_repo: Path, agw: GatewayHandle
) -> None:
    cloud.answer("POST", "/heartbeat", 410, {"error": "Loop is no longer active"})
    cloud.answer("GET", "", 200, {"id": "x", "status": "TIMED_OUT"})
    loop = await start_slow_loop(aapi, md, cl_repo, agw)
    loop_id = loop.request.loop_id
    await until(lambda: loop.heartbeat.done.is_set(), what="the heartbeats to stop")
    assert loop.heartbeat.stopped == "timed_out" and loop.heartbeat.beats == [410]
    asked = cloud.calls("GET", f"/loops/{loop_id}")
    assert len(asked) == 1 and asked[0].headers["Authorization"] == "Bearer loop-jwt-1"
    record = loop.record
    assert record is not None and record.labels["cloudStatus"] == "TIMED_OUT"
    assert record.state is State.RUNNING  # ClosedLoop never kills a live loop on the cloud's word
    # Killing it now reports nothing more: the cloud already finalized the loop.
    killed = await aapi.post(f"{API}/symphony/loop/kill", json={"loopId": loop_id})
    assert killed.status_code == 200 and killed.json()["survivors"] == []
    await until(lambda: loop.callbacks.drained.is_set(), what="the callbacks to drain")
    assert [q.event_type for q in cloud.events(loop_id)] == ["started"]
