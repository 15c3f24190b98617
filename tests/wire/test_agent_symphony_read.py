"""Symphony's read routes as ClosedLoop's web app calls them (``response.json()``, no ok check).

Derived from closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/symphony-status.ts``,
``metadata-routes.ts`` (``status?workDir=``), ``symphony-logs.ts``, ``symphony-plan.ts``,
``symphony-judges.ts`` and the web client ``apps/app/lib/engineer/queries/symphony.ts``
(``symphonyStatusOptions``, ``symphonyLogsOptions`` with ``lines=1000``, ``symphonyPlanOptions``,
``symphonyJudgesOptions``).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from agent_support import API, TICKET, aapi, agw, cl_repo, error_text, frames, md, ticket_worktree

from agents.model_double import ModelDouble


async def test_nothing_yet_is_200_with_exists_false(aapi: httpx.AsyncClient, cl_repo: Path) -> None:
    params = {"repo": str(cl_repo)}
    status = await aapi.get(f"{API}/symphony/status/{TICKET}", params=params)
    assert status.status_code == 200
    assert status.json() == {"exists": False, "phase": None, "status": None, "message": "Worktree not found"}
    logs = await aapi.get(f"{API}/symphony/logs/{TICKET}", params={**params, "lines": "1000"})
    assert logs.status_code == 200 and logs.headers["content-type"].startswith("application/json")
    assert logs.json() == {"exists": False, "format": "text", "content": "", "lines": 0}
    plan = await aapi.get(f"{API}/symphony/plan/{TICKET}", params=params)
    assert plan.status_code == 404 and error_text(plan.json()) == "Worktree not found"
    judges = await aapi.get(f"{API}/symphony/judges/{TICKET}", params=params)
    assert judges.status_code == 404 and error_text(judges.json()) == "Worktree not found"
    workdir = await aapi.get(f"{API}/symphony/status", params={"workDir": str(cl_repo)})
    assert workdir.json() == {"isRunning": False, "reason": "state.json not found"}
    outside = await aapi.get(f"{API}/symphony/status/{TICKET}", params={"repo": "/etc"})
    assert outside.status_code == 403 and error_text(outside.json()) == "directory not allowed"


async def test_worktree_without_a_run_reads_as_starting_and_awaiting_judges(
    aapi: httpx.AsyncClient, cl_repo: Path, ticket_worktree: Path
) -> None:
    params = {"repo": str(cl_repo)}
    status = (await aapi.get(f"{API}/symphony/status/{TICKET}", params=params)).json()
    assert status["exists"] is True and status["stateExists"] is False
    assert status["status"] == "STARTING" and status["phase"] == "Initializing"
    judges = (await aapi.get(f"{API}/symphony/judges/{TICKET}", params=params)).json()
    assert judges == {
        "exists": False,
        "isMock": False,
        "message": "Awaiting LLM judges feedback",
        "worktreeDir": str(ticket_worktree),
    }
    plan = await aapi.get(f"{API}/symphony/plan/{TICKET}", params=params)
    assert plan.status_code == 404 and error_text(plan.json()) == "Plan not found yet"
    # A plan.json written by ClosedLoop's own plugin in the work dir is read as ClosedLoop reads it.
    work = ticket_worktree / ".closedloop-ai" / "work"
    work.mkdir(parents=True)
    (work / "plan.json").write_text('{"title": "T", "content": "# Plan\\\\nstep", "tasks": [{"id": "1"},],}')
    plan = (await aapi.get(f"{API}/symphony/plan/{TICKET}", params=params)).json()
    assert plan["exists"] is True and plan["planExists"] is True and plan["content"] == "# Plan\nstep"
    assert plan["worktreeDir"] == str(ticket_worktree)


async def test_status_and_logs_follow_a_chat_turn_record(
    aapi: httpx.AsyncClient, md: ModelDouble, cl_repo: Path, ticket_worktree: Path
) -> None:
    md.claude.reply("done")
    async with aapi.stream(
        "POST", f"{API}/symphony/chat/{TICKET}?repo={cl_repo}", json={"message": "hi"}
    ) as r:
        assert frames((await r.aread()).decode())[-1] == {"type": "done"}
    # A chat turn is not a run: the ticket's status still has no run of its own.
    params = {"repo": str(cl_repo), "lines": "1000"}
    logs = (await aapi.get(f"{API}/symphony/logs/{TICKET}", params=params)).json()
    assert logs["exists"] is False
    # The latest of any record (our ticket form) shows ClosedLoop's jsonl view too.
    mine = (await aapi.get(f"{API}/symphony/logs/{TICKET}")).json()
    assert mine["exists"] is True and mine["format"] == "jsonl"
    parsed = [json.loads(line) for line in mine["lines"]]
    assert parsed[0]["type"] == "system" and parsed[-1]["type"] == "result"
    assert mine["totalLines"] == mine["returnedLines"] == len(parsed)
    two = (await aapi.get(f"{API}/symphony/logs/{TICKET}", params={"lines": "2"})).json()
    assert two["returnedLines"] == 2 and two["lines"] == mine["lines"][-2:]
    # Our NDJSON cursor stream is still there behind Accept / follow / since.
    nd = await aapi.get(f"{API}/symphony/logs/{TICKET}", headers={"Accept": "application/x-ndjson"})
    assert nd.headers["content-type"].startswith("application/x-ndjson")
    assert frames(nd.text)[-1]["type"] == "end"
