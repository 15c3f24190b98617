"""``symphony/launch`` as ClosedLoop's ticket list launches a ticket.

Derived from closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/symphony-interactive.ts``
(``POST symphony/launch``: ``ticketIdentifier``, ``repoPath``, ``ticket``; the worktree in its
layout on ``feature/<ticket>``, ``prd.md`` and ``launch-metadata.json``, ``alreadyRunning``).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import trio
from agent_support import API, aapi, agw, cl_repo, error_text, git, md

from agents.model_double import ModelDouble

TICKET = {
    "title": "Export CSV",
    "identifier": "ENG-7",
    "url": "https://linear.app/x/ENG-7",
    "description": "Add it",
}


async def test_launch_makes_the_worktree_writes_the_prd_and_runs_the_agent(
    aapi: httpx.AsyncClient, md: ModelDouble, cl_repo: Path
) -> None:
    md.claude.bash("echo done > made.txt").reply("Implemented.")
    body = {"ticketIdentifier": "ENG-7", "repoPath": str(cl_repo), "baseBranch": "main", "ticket": TICKET}
    r = await aapi.post(f"{API}/symphony/launch", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    wt = cl_repo.parent / "app-ENG-7"
    assert (
        answer["success"] is True
        and answer["worktreePath"] == str(wt)
        and answer["branchName"] == "feature/ENG-7"
    )
    assert isinstance(answer["pid"], int) and answer["prdFile"] == str(
        wt / ".closedloop-ai" / "work" / "prd.md"
    )
    # The run is the ticket's status, in ClosedLoop's shape, until it ends.
    status_url = f"{API}/symphony/status/ENG-7"
    with trio.fail_after(60):
        while (status := (await aapi.get(status_url, params={"repo": str(cl_repo)})).json())[
            "processRunning"
        ]:
            await trio.sleep(0.05)
    assert status["status"] == "COMPLETED" and status["worktreeDir"] == str(wt), status
    assert (wt / "made.txt").read_text() == "done\n"
    assert git(wt, "rev-parse", "--abbrev-ref", "HEAD") == "feature/ENG-7"
    prd = (wt / ".closedloop-ai" / "work" / "prd.md").read_text()
    assert prd.startswith("# Export CSV") and "**Ticket:** [ENG-7](https://linear.app/x/ENG-7)" in prd
    assert (
        json.loads((wt / ".closedloop-ai" / "work" / "launch-metadata.json").read_text())["ticketTitle"]
        == "Export CSV"
    )
    assert "Add it" in json.dumps(md.requests_for("claude")[0].body)
    missing = await aapi.post(f"{API}/symphony/launch", json={"repoPath": str(cl_repo)})
    assert (
        missing.status_code == 400
        and error_text(missing.json()) == "ticketIdentifier is required and must be a string"
    )
