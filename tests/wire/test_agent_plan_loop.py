"""``symphony/plan-loop/:ticketId/{prepare,confirm,cancel}`` as ClosedLoop's web app calls them.

Derived from closedloop-ai/closedloop-electron ``apps/desktop/src/server/operations/
symphony-plan-loop.ts`` (the three handlers, ``resolveLoopWorktreeDir``, ``resolveRepoFullName``)
and ``symphony-utils.ts`` (``writeLaunchMetadata``); the bodies are the ones closedloop-ai/
closedloop-ai's ``apps/app/hooks/engineer/use-start-plan-loop.ts`` sends (``gatewayPrepare``:
``{repoPath, baseBranch?}``; ``gatewayConfirm``: ``{repoPath, loopId, artifactId, artifactSlug,
featureId, outcome, ticketTitle?}``, reading ``worktreeDir``) and the engineer page's
``handleStopSymphony`` (``{repoPath, loopId}``, reading ``cancelled``, ``warning``, ``error``).
The loop being cancelled is started as the cloud does (``symphony/loop``, see
``test_agent_loop.py``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
import trio
from agent_support import (  # fixtures are imported by name
    API,
    TICKET,
    ClosedLoopApiDouble,
    aapi,
    agw,
    cl_api,
    cl_repo,
    error_text,
    git,
    md,
    ticket_worktree,
    until,
)
from test_agent_loop import evaluate_plan

from gateway.http.serve import GatewayHandle

from agents.model_double import Delay, ModelDouble, Text

API_KEY = "sk_live_desktop"


@pytest.fixture
def cloud(cl_api: ClosedLoopApiDouble, monkeypatch: pytest.MonkeyPatch) -> ClosedLoopApiDouble:
    monkeypatch.setenv("GATEWAY_CLOSEDLOOP_API_ORIGIN", cl_api.origin)
    monkeypatch.setenv("GATEWAY_CLOSEDLOOP_API_KEY", API_KEY)
    return cl_api


def url(step: str, ticket: str = TICKET) -> str:
    return f"{API}/symphony/plan-loop/{ticket}/{step}"


# ---- prepare --------------------------------------------------------------------------------


async def test_prepare_answers_the_worktree_and_the_repos_remote(
    aapi: httpx.AsyncClient, cl_repo: Path
) -> None:
    git(cl_repo, "remote", "set-url", "origin", "git@github.com:acme/app.git")
    r = await aapi.post(url("prepare"), json={"repoPath": str(cl_repo)})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "repoPath": str(cl_repo),
        "worktreeDir": str(cl_repo.parent / f"app-{TICKET}"),
        "repo": {"fullName": "acme/app", "branch": "main"},
    }
    # baseBranch wins over the current branch; the select-artifact path is the same handler.
    body = {"repoPath": str(cl_repo), "baseBranch": "release/2"}
    picked = await aapi.post(url("select-artifact/prepare"), json=body)
    assert picked.status_code == 200 and picked.json()["repo"]["branch"] == "release/2"
    assert not (cl_repo.parent / f"app-{TICKET}").exists()  # prepare writes nothing


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "repoPath is required"),
        ({"repoPath": "  "}, 400, "repoPath is required"),
        ({"repoPath": "/etc"}, 403, "directory not allowed"),
    ],
)
async def test_prepare_refuses_what_closedloop_refuses(
    aapi: httpx.AsyncClient, cl_repo: Path, body: dict[str, str], status: int, message: str
) -> None:
    r = await aapi.post(url("prepare"), json=body)
    assert r.status_code == status and error_text(r.json()) == message
    bad = await aapi.post(url("prepare"), content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and error_text(bad.json()) == "Invalid JSON body"


# ---- confirm --------------------------------------------------------------------------------


async def test_confirm_answers_the_loop_worktree_and_keeps_the_metadata(
    aapi: httpx.AsyncClient, cl_repo: Path, agw: GatewayHandle
) -> None:
    loop_id = str(uuid.uuid4())
    body = {
        "repoPath": str(cl_repo),
        "loopId": loop_id,
        "artifactId": "art-1",
        "artifactSlug": "Add CSV Export!",
        "featureId": "feat-1",
        "outcome": "launched",
        "ticketTitle": "Export reports",
    }
    r = await aapi.post(url("confirm"), json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "worktreeDir": str(cl_repo.parent / "app-loop-add-csv-export-")}
    state = agw.context.state.root
    meta = json.loads((state / "loops" / loop_id / "launch-metadata.json").read_text())
    assert meta == {"ticketTitle": "Export reports", "artifactId": "art-1", "loopId": loop_id}
    assert not (cl_repo.parent / "app-loop-add-csv-export-").exists()  # git creates it, not us
    known = agw.context.services.symphony.plan_loop_wire.confirmed[loop_id]
    assert known.status == "QUEUED" and known.ticket_id == TICKET
    # A second confirm of a known loop changes nothing; "already-running" records RUNNING.
    again = str(uuid.uuid4())
    r = await aapi.post(
        url("select-artifact/confirm"), json={**body, "loopId": again, "outcome": "already-running"}
    )
    assert r.status_code == 200
    assert agw.context.services.symphony.plan_loop_wire.confirmed[again].status == "RUNNING"


async def test_confirm_without_a_slug_writes_into_the_existing_ticket_worktree(
    aapi: httpx.AsyncClient, cl_repo: Path, ticket_worktree: Path
) -> None:
    loop_id = str(uuid.uuid4())
    body = {"repoPath": str(cl_repo), "loopId": loop_id, "artifactId": "art-2", "outcome": "launched"}
    r = await aapi.post(url("confirm"), json=body)
    assert r.status_code == 200 and r.json()["worktreeDir"] == str(ticket_worktree)
    meta = json.loads((ticket_worktree / ".closedloop-ai" / "work" / "launch-metadata.json").read_text())
    assert meta == {"artifactId": "art-2", "loopId": loop_id}
    assert (await aapi.post(url("confirm"), json={"loopId": loop_id})).status_code == 400


async def test_a_loop_id_that_is_not_a_uuid_never_names_a_folder(
    aapi: httpx.AsyncClient, cl_repo: Path, agw: GatewayHandle
) -> None:
    # Stricter than ClosedLoop (its confirm takes any string): the loopId names a folder under the
    # state dir, so a traversal must be refused before anything is written.
    state = agw.context.state.root
    escape = "../../escaped"
    body = {"repoPath": str(cl_repo), "loopId": escape, "artifactId": "a", "outcome": "launched"}
    for step in ("confirm", "cancel"):
        r = await aapi.post(url(step), json=body)
        assert r.status_code == 400 and r.json()["error"] == "loopId must be a valid UUID", r.text
    assert not (state / "loops" / escape).resolve().exists()
    assert not (state / "loops").exists()


# ---- cancel ---------------------------------------------------------------------------------


async def test_cancel_deletes_the_cloud_loop_then_kills_the_local_one(
    aapi: httpx.AsyncClient, cloud: ClosedLoopApiDouble, md: ModelDouble, cl_repo: Path, agw: GatewayHandle
) -> None:
    md.claude.add_turn(Text("Reading the plan"), Delay(120))
    loop_id = str(uuid.uuid4())
    started = await aapi.post(f"{API}/symphony/loop", json=evaluate_plan(cl_repo, loop_id))
    assert started.status_code == 200, started.text
    pid = started.json()["pid"]
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    await until(lambda: len(md.requests_for("claude")) >= 1, what="the agent asked the model")

    r = await aapi.post(url("cancel"), json={"repoPath": str(cl_repo), "loopId": loop_id})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["cancelled"] is True and "warning" not in answer
    assert answer["survivors"] == [] and answer["process"]["state"] == "killed"
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    deletes = cloud.calls("DELETE", f"/loops/{loop_id}")
    assert len(deletes) == 1 and deletes[0].headers["Authorization"] == f"Bearer {API_KEY}"
    # The cloud loop was deleted before the kill, and the kill reports CANCELLED once.
    await trio.to_thread.run_sync(
        lambda: cloud.wait_for(lambda reqs: any(q.event_type == "error" for q in reqs))
    )
    cancelled = [q for q in cloud.events(loop_id) if q.event_type == "error"]
    assert len(cancelled) == 1 and cancelled[0].body["code"] == "CANCELLED"
    assert cloud.requests.index(deletes[0]) < cloud.requests.index(cancelled[0])


async def test_cancel_with_nothing_running_says_process_unknown(
    aapi: httpx.AsyncClient, cloud: ClosedLoopApiDouble, cl_repo: Path, agw: GatewayHandle
) -> None:
    loop_id = str(uuid.uuid4())
    confirm = {"repoPath": str(cl_repo), "loopId": loop_id, "artifactId": "a", "outcome": "launched"}
    assert (await aapi.post(url("confirm"), json=confirm)).status_code == 200
    r = await aapi.post(url("cancel"), json={"repoPath": str(cl_repo), "loopId": loop_id})
    assert r.status_code == 200 and r.json() == {"cancelled": True, "warning": "process-unknown"}
    known = agw.context.services.symphony.plan_loop_wire.confirmed[loop_id]
    assert known.status == "CANCEL_PENDING" and known.warning == "process-unknown"
    # A loop the cloud no longer knows (404) is cancelled all the same.
    cloud.answer("DELETE", f"/loops/{loop_id}", 404, {"error": "Loop not found"})
    again = await aapi.post(url("cancel"), json={"repoPath": str(cl_repo), "loopId": loop_id})
    assert again.status_code == 200 and again.json()["cancelled"] is True


async def test_cancel_keeps_the_clouds_refusal(
    aapi: httpx.AsyncClient, cloud: ClosedLoopApiDouble, cl_repo: Path
) -> None:
    loop_id = str(uuid.uuid4())
    cloud.answer("DELETE", f"/loops/{loop_id}", 403, {"error": "forbidden"})
    r = await aapi.post(url("cancel"), json={"repoPath": str(cl_repo), "loopId": loop_id})
    assert r.status_code == 403 and error_text(r.json()).startswith("DB cancel failed: ")
    assert "forbidden" in error_text(r.json())


@pytest.mark.parametrize(
    ("body", "message"),
    [({"loopId": "l"}, "repoPath is required"), ({"repoPath": "x"}, "loopId is required")],
)
async def test_cancel_needs_repo_path_and_loop_id(
    aapi: httpx.AsyncClient, cloud: ClosedLoopApiDouble, body: dict[str, str], message: str
) -> None:
    r = await aapi.post(url("cancel"), json=body)
    assert r.status_code == 400 and error_text(r.json()) == message
    assert cloud.requests == []


async def test_cancel_without_an_api_key_or_a_reachable_api(
    aapi: httpx.AsyncClient, cloud: ClosedLoopApiDouble, cl_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"repoPath": str(cl_repo), "loopId": str(uuid.uuid4())}
    monkeypatch.delenv("GATEWAY_CLOSEDLOOP_API_KEY")
    r = await aapi.post(url("cancel"), json=body)
    assert r.status_code == 503 and error_text(r.json()) == "API key not configured"
    monkeypatch.setenv("GATEWAY_CLOSEDLOOP_API_KEY", API_KEY)
    monkeypatch.setenv("GATEWAY_CLOSEDLOOP_API_ORIGIN", "http://127.0.0.1:9")  # nothing listens
    r = await aapi.post(url("cancel"), json=body)
    assert r.status_code == 502 and error_text(r.json()).startswith("Failed to reach API: ")
    assert cloud.requests == []


async def test_the_older_action_routes_still_answer(aapi: httpx.AsyncClient) -> None:
    """``plan-loop/<action>`` (ours) and ``plan-loop/<ticketId>/<step>`` live side by side."""
    r = await aapi.post(f"{API}/symphony/plan-loop/nope", json={"ticketId": "P-1"})
    assert r.status_code == 404
    assert (await aapi.post(f"{API}/symphony/plan-loop/kill", json={})).status_code == 400
