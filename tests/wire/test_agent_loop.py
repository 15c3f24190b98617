"""The loop protocol: ``POST symphony/loop`` as ClosedLoop's cloud executor relays it, and the
callbacks ClosedLoop's cloud expects (recorded by a loopback double of its API).

Derived from closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/symphony-loop.ts``
(``handleLoopRequest``, ``handleLoopKill``, ``handleProcessCompletion``),
``symphony-loop-request.ts``, ``loop-http.ts`` (``postLoopEvent``, ``uploadArtifacts``),
``output-tailer.ts``, ``packages/loops-api/src/{commands,events,error-codes}.ts``, the desktop's
own ``apps/desktop/test/symphony-loop-evaluate-plan.test.ts`` and the executor's headers
(``apps/desktop/src/main/cloud-command-executor.ts``).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import trio
from agent_support import API, ClosedLoopApiDouble, aapi, agw, cl_api, cl_repo, error_text, md, until

from gateway.http.serve import GatewayHandle

from agents.model_double import Delay, ModelDouble, Text

REPORT = {
    "report_id": "r-1",
    "timestamp": "2026-12-02T08:00:00Z",
    "stats": [
        {
            "type": "case_score",
            "case_id": "completeness",
            "final_status": 3,
            "metrics": [
                {"metric_name": "completeness", "threshold": 0.7, "score": 0.9, "justification": "ok"}
            ],
        }
    ],
}


def evaluate_plan(repo: Path, loop_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """The body ClosedLoop's cloud sends for EVALUATE_PLAN (``LoopRequestBody``)."""
    return {
        "loopId": loop_id or str(uuid.uuid4()),
        "command": "EVALUATE_PLAN",
        "closedLoopAuthToken": "loop-jwt-1",
        "apiBaseUrl": "https://attacker.invalid",  # ignored: callbacks go to the configured origin
        "artifacts": [
            {"id": "a1", "type": "PRD", "title": "PRD", "content": "Users can export reports as CSV."},
            {
                "id": "a2",
                "type": "IMPLEMENTATION_PLAN",
                "title": "Plan",
                "content": "1. Add an export button.",
            },
        ],
        "repo": {"fullName": "acme/app", "branch": "main"},
        "localRepoPath": str(repo),
        "primaryArtifactId": "a2",
        **extra,
    }


@pytest.fixture
def origin(cl_api: ClosedLoopApiDouble, monkeypatch: pytest.MonkeyPatch) -> ClosedLoopApiDouble:
    monkeypatch.setenv("GATEWAY_CLOSEDLOOP_API_ORIGIN", cl_api.origin)
    return cl_api


async def test_no_api_origin_is_503(
    aapi: httpx.AsyncClient, cl_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_CLOSEDLOOP_API_ORIGIN", raising=False)
    r = await aapi.post(f"{API}/symphony/loop", json=evaluate_plan(cl_repo))
    assert r.status_code == 503 and error_text(r.json()) == "API origin not configured"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"loopId": None}, "Missing required fields: loopId, command, closedLoopAuthToken"),
        ({"command": "CHAT"}, "Invalid command: CHAT"),
        ({"loopId": "loop-1"}, "loopId must be a valid UUID"),
        ({"artifacts": "none"}, "artifacts must be an array"),
        ({"artifacts": []}, "EVALUATE_PLAN requires artifacts in the context pack"),
        (
            {"artifacts": [{"id": "p", "type": "IMPLEMENTATION_PLAN", "title": "", "content": "x"}]},
            "EVALUATE_PLAN requires a PRD artifact (or prompt) and an implementation plan artifact",
        ),
        (
            {"localRepoPath": None, "repo": None},
            "EVALUATE_PLAN requires a repository (repo.fullName or localRepoPath)",
        ),
        (
            {"supportingArtifacts": [{"id": "s"}]},
            "supportingArtifacts is malformed: 0.content: expected string",
        ),
    ],
)
async def test_bad_bodies_get_closedloops_400(
    aapi: httpx.AsyncClient, origin: ClosedLoopApiDouble, cl_repo: Path, change: dict[str, Any], message: str
) -> None:
    body = {k: v for k, v in {**evaluate_plan(cl_repo), **change}.items() if v is not None}
    r = await aapi.post(f"{API}/symphony/loop", json=body)
    assert r.status_code == 400 and error_text(r.json()) == message
    assert origin.requests == []  # nothing was reported for a request that never became a loop


async def test_evaluate_plan_runs_with_the_agent_and_reports_in_order(
    aapi: httpx.AsyncClient, origin: ClosedLoopApiDouble, md: ModelDouble, cl_repo: Path, agw: GatewayHandle
) -> None:
    md.claude.reply(f"Here are the results:\n{json.dumps(REPORT)}")
    loop_id = str(uuid.uuid4())
    r = await aapi.post(
        f"{API}/symphony/loop",
        json=evaluate_plan(cl_repo, loop_id),
        headers={"x-desktop-command-id": str(uuid.uuid4())},
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["success"] is True and answer["loopId"] == loop_id and answer["worktreePath"] is None
    assert isinstance(answer["pid"], int)
    got = await trio.to_thread.run_sync(
        lambda: origin.wait_for(lambda reqs: any(q.event_type in ("completed", "error") for q in reqs))
    )
    kinds = [q.event_type or "upload" for q in got]
    assert kinds[0] == "started" and kinds[-2:] == ["upload", "completed"], kinds
    assert set(kinds[1:-2]) <= {"output"}
    for q in got:
        assert q.headers["Authorization"] == "Bearer loop-jwt-1"
        assert q.headers["Content-Type"] == "application/json"
    events = [q for q in got if q.path == f"/loops/{loop_id}/events"]
    assert len(events) == len(got) - 1
    nonces = [q.headers["x-loop-event-nonce"] for q in events]
    assert len(set(nonces)) == len(nonces) and all(uuid.UUID(n) for n in nonces)
    assert all(re.match(r"^\d{4}-\d\d-\d\dT[\d:.]+Z$", q.body["timestamp"]) for q in events)
    upload = got[-2]
    assert upload.path == f"/loops/{loop_id}/upload-artifacts" and "x-loop-event-nonce" not in upload.headers
    assert upload.body["artifacts"] == {"planJudges": REPORT}
    completed = got[-1].body
    assert completed["result"]["subtype"] == "evaluate_plan" and completed["result"]["exitCode"] == 0
    assert completed["loopId"] == loop_id and completed["tokensUsed"]["input"] > 0
    # The agent saw the artifacts; the report is kept in the loop's work dir.
    asked = json.dumps(md.requests_for("claude")[-1].body)
    assert "Users can export reports as CSV." in asked and "Evaluate the plan artifact" in asked
    state = agw.context.state.root
    assert json.loads((state / "loops" / loop_id / "work" / "plan-judges.json").read_text()) == REPORT
    # The loop was a supervised record: in the table, ended, its log kept.
    record = agw.context.sup.table.get(answer["processId"])
    assert record is not None and record.kind == "symphony_loop" and record.labels["loopId"] == loop_id


async def test_plan_needs_closedloops_plugin_and_says_so(
    aapi: httpx.AsyncClient, origin: ClosedLoopApiDouble, cl_repo: Path
) -> None:
    loop_id = str(uuid.uuid4())
    body = {**evaluate_plan(cl_repo, loop_id), "command": "PLAN"}
    r = await aapi.post(f"{API}/symphony/loop", json=body)
    assert (
        r.status_code == 500
        and "run-loop.sh" in error_text(r.json())
        and "claude-plugins" in error_text(r.json())
    )
    got = await trio.to_thread.run_sync(lambda: origin.wait_for(lambda reqs: len(reqs) >= 1))
    assert got[0].body["type"] == "error" and got[0].body["code"] == "SCRIPT_NOT_FOUND"
    # The loopId is free again.
    r2 = await aapi.post(f"{API}/symphony/loop", json=body)
    assert r2.status_code == 500


async def test_unregistered_repo_is_403_with_a_repo_not_allowed_event(
    aapi: httpx.AsyncClient, origin: ClosedLoopApiDouble, cl_repo: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = await aapi.post(f"{API}/symphony/loop", json=evaluate_plan(cl_repo, localRepoPath=str(elsewhere)))
    assert r.status_code == 403
    got = await trio.to_thread.run_sync(lambda: origin.wait_for(lambda reqs: len(reqs) >= 1))
    assert got[0].body["code"] == "REPO_NOT_ALLOWED"


async def test_kill_mid_run_leaves_nothing_and_reports_cancelled_once(
    aapi: httpx.AsyncClient, origin: ClosedLoopApiDouble, md: ModelDouble, cl_repo: Path, agw: GatewayHandle
) -> None:
    md.claude.add_turn(Text("Reading the plan"), Delay(120))
    loop_id = str(uuid.uuid4())
    r = await aapi.post(f"{API}/symphony/loop", json=evaluate_plan(cl_repo, loop_id))
    assert r.status_code == 200
    pid = r.json()["pid"]
    dup = await aapi.post(f"{API}/symphony/loop", json=evaluate_plan(cl_repo, loop_id))
    assert dup.status_code == 409 and error_text(dup.json()) == "Loop is already running on this machine"
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    await until(lambda: len(md.requests_for("claude")) >= 1, what="the agent asked the model")
    killed = await aapi.post(f"{API}/symphony/loop/kill", json={"loopId": loop_id})
    assert killed.status_code == 200
    assert killed.json()["success"] is True and killed.json()["message"] == "Loop process terminated"
    assert killed.json()["survivors"] == []
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    got = await trio.to_thread.run_sync(
        lambda: origin.wait_for(lambda reqs: any(q.event_type == "error" for q in reqs))
    )
    await until(
        lambda: loop_id not in agw.context.services.symphony.cloud_loops.loops, what="the loop released"
    )
    cancelled = [q for q in origin.requests if q.event_type == "error"]
    assert (
        len(cancelled) == 1
        and cancelled[0].body["code"] == "CANCELLED"
        and cancelled[0].body["message"] == "Loop cancelled"
    )
    assert got[0].event_type == "started"
    assert not [q for q in origin.requests if q.event_type == "completed"]
    gone = await aapi.post(f"{API}/symphony/loop/kill", json={"loopId": loop_id})
    assert gone.status_code == 404 and error_text(gone.json()) == "No running process found for this loop"
    assert (await aapi.post(f"{API}/symphony/loop/kill", json={})).status_code == 400
