"""``symphony/sessions`` (ClosedLoop's worktree registry) and ``symphony/kill`` in its forms.

Derived from closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/symphony-sessions.ts``
(upsert by ticket, pruned listing, ``unread-count`` as ``{count}``) and ``symphony-kill.ts``
(``{pid}`` or ``{ticketId, repoPath}``, ``{success, message, pid}``).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psutil
from agent_support import API, TICKET, aapi, agw, cl_repo, error_text, frames, md, ticket_worktree, until

from gateway.http.serve import GatewayHandle

from agents.model_double import ModelDouble
from support import descendant_runs


async def test_sessions_register_worktrees_and_count_unread_replies(
    aapi: httpx.AsyncClient, md: ModelDouble, cl_repo: Path, ticket_worktree: Path, tmp_path: Path
) -> None:
    url = f"{API}/symphony/sessions"
    assert (await aapi.get(url)).json() == {"sessions": []}
    body = {
        "ticketId": TICKET,
        "repoPath": str(cl_repo),
        "worktreePath": str(ticket_worktree),
        "baseBranch": "main",
    }
    assert (await aapi.post(url, json=body)).json() == {"success": True}
    assert (await aapi.post(url, json={**body, "pid": 42})).json() == {"success": True}
    listed = (await aapi.get(url)).json()["sessions"]
    assert len(listed) == 1 and listed[0]["pid"] == 42 and listed[0]["baseBranch"] == "main"
    assert listed[0]["startedAt"] <= listed[0]["lastAccessedAt"]
    outside = await aapi.post(url, json={**body, "worktreePath": str(tmp_path)})
    assert outside.status_code == 403 and error_text(outside.json()) == "directory not allowed"
    missing = await aapi.post(url, json={"ticketId": TICKET, "repoPath": str(cl_repo)})
    assert (
        missing.status_code == 400
        and error_text(missing.json()) == "ticketId, repoPath, and worktreePath are required"
    )

    assert (await aapi.get(f"{url}/unread-count")).json()["count"] == 0
    md.claude.reply("a reply")
    async with aapi.stream(
        "POST", f"{API}/symphony/chat/{TICKET}?repo={cl_repo}", json={"message": "hi"}
    ) as r:
        assert frames((await r.aread()).decode())[-1] == {"type": "done"}
    assert (await aapi.get(f"{url}/unread-count")).json()["count"] == 1
    assert (await aapi.delete(url, params={"ticketId": TICKET})).json() == {"success": True}
    assert (await aapi.get(url)).json() == {"sessions": []}


async def test_kill_by_ticket_and_repo_and_never_a_foreign_pid(
    aapi: httpx.AsyncClient, agw: GatewayHandle, md: ModelDouble, cl_repo: Path, ticket_worktree: Path
) -> None:
    url = f"{API}/symphony/kill"
    nothing = (await aapi.post(url, json={"ticketId": TICKET, "repoPath": str(cl_repo)})).json()
    assert nothing == {
        "success": True,
        "message": "No process to kill (no PID file), state marked as stopped",
    }
    foreign = await aapi.post(url, json={"pid": 1})
    assert foreign.status_code == 404 and psutil.pid_exists(1)
    md.claude.bash("echo started && sleep 600", timeout_ms=600_000).reply("never")
    async with aapi.stream(
        "POST", f"{API}/symphony/chat/{TICKET}?repo={cl_repo}", json={"message": "slow"}
    ) as r:
        lines = r.aiter_lines()
        first = json.loads(await lines.__anext__())
        await until(lambda: descendant_runs(first["pid"], "sleep"), what="the tool's sleep")
        killed = (await aapi.post(url, json={"ticketId": TICKET, "repoPath": str(cl_repo)})).json()
        assert killed["success"] is True and killed["message"] == "Process terminated"
        assert killed["pid"] == first["pid"] and killed["survivors"] == []
        rest = [json.loads(line) async for line in lines]
    assert rest[-1] == {"type": "done"} and {k: v for k, v in rest[-2].items() if k != "processId"} == {
        "type": "result",
        "success": False,
    }
    again = (await aapi.post(url, json={"pid": first["pid"]})).json()
    assert again == {"success": True, "message": "Process already terminated", "pid": first["pid"]}
    bad = await aapi.post(url, json={"ticketId": TICKET, "repoPath": 3})
    assert bad.status_code == 400
