"""``terminal-chat``, ``ticket-chat`` and ``run-viewer-chat`` as ClosedLoop's web app calls them.

Derived from closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/terminal-chat.ts``
(``@codex``/``@cl`` prefixes, ``status`` spawning/running with ``mode``, history with ``mode``),
``ticket-chat.ts`` (``ticketContext``, ``User:`` prompt, resumed turns) and
``run-viewer-chat.ts`` (``runDir`` must be allowed).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from agent_support import API, TICKET, aapi, agw, cl_repo, error_text, frames, md

from agents import clis
from agents.model_double import ModelDouble

CONTEXT = {
    "identifier": TICKET,
    "title": "Export reports",
    "url": "https://linear.app/x/ENG-1",
    "description": "CSV",
}


async def test_terminal_chat_picks_the_agent_by_prefix_and_keeps_one_history(
    aapi: httpx.AsyncClient, md: ModelDouble, cl_repo: Path
) -> None:
    md.claude.reply("claude here")
    async with aapi.stream("POST", f"{API}/terminal-chat", json={"message": "@cl hello"}) as r:
        got = frames((await r.aread()).decode())
    assert got[0] == {"type": "status", "status": "spawning", "mode": "claude"}
    assert got[1]["status"] == "running" and got[1]["mode"] == "claude" and isinstance(got[1]["pid"], int)
    assert [f["content"] for f in got if f["type"] == "text"] == ["claude here"] and got[-1] == {
        "type": "done"
    }
    if clis.find_cli("codex") is not None:
        md.codex.reply("codex here")
        async with aapi.stream("POST", f"{API}/terminal-chat", json={"message": "@codex list files"}) as r:
            got = frames((await r.aread()).decode())
        assert got[0]["mode"] == "codex" and "codex here" in "".join(f.get("content", "") for f in got)
        assert "list files" in json.dumps(md.requests_for("codex")[-1].body)
    history = (await aapi.get(f"{API}/terminal-chat")).json()
    assert history["messages"][0] == {
        **history["messages"][0],
        "role": "user",
        "content": "hello",
        "mode": "claude",
    }
    assert history["messages"][1]["content"] == "claude here" and history["claudeSessionId"]
    assert (await aapi.delete(f"{API}/terminal-chat")).json() == {"success": True}
    assert (await aapi.get(f"{API}/terminal-chat")).json() == {"messages": []}
    empty = await aapi.post(f"{API}/terminal-chat", json={})
    assert empty.status_code == 400 and error_text(empty.json()) == "message is required"


async def test_ticket_chat_gives_the_ticket_first_then_resumes(
    aapi: httpx.AsyncClient, md: ModelDouble, cl_repo: Path
) -> None:
    md.claude.reply("It asks for a CSV export.").reply("Yes.")
    body = {
        "ticketId": TICKET,
        "message": "what is this about?",
        "ticketContext": CONTEXT,
        "repoPath": str(cl_repo),
    }
    async with aapi.stream("POST", f"{API}/ticket-chat", json=body) as r:
        got = frames((await r.aread()).decode())
    assert got[0] == {"type": "status", "status": "spawning", "resuming": False}
    first = json.dumps(md.requests_for("claude")[-1].body)
    assert "## Ticket: ENG-1" in first and "User: what is this about?" in first
    async with aapi.stream("POST", f"{API}/ticket-chat", json={**body, "message": "sure?"}) as r:
        got = frames((await r.aread()).decode())
    assert got[0] == {"type": "status", "status": "spawning", "resuming": True}
    history = (await aapi.get(f"{API}/ticket-chat", params={"ticketId": TICKET})).json()
    assert [m["content"] for m in history["messages"]] == [
        "what is this about?",
        "It asks for a CSV export.",
        "sure?",
        "Yes.",
    ]
    assert history["ticketId"] == TICKET and history["sessionId"]
    missing = await aapi.post(
        f"{API}/ticket-chat", json={"ticketId": TICKET, "message": "x", "ticketContext": {}}
    )
    assert (
        missing.status_code == 400
        and error_text(missing.json()) == "ticketId, message, and ticketContext are required"
    )
    assert (await aapi.delete(f"{API}/ticket-chat", params={"ticketId": TICKET})).json() == {"success": True}


async def test_run_viewer_chat_reads_an_allowed_run_dir_only(
    aapi: httpx.AsyncClient, md: ModelDouble, cl_repo: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    r = await aapi.post(f"{API}/run-viewer-chat", json={"message": "hi", "runDir": str(outside)})
    assert r.status_code == 403 and error_text(r.json()) == "directory not allowed"
    md.claude.reply("The run wrote README.md.")
    async with aapi.stream(
        "POST", f"{API}/run-viewer-chat", json={"message": "what happened?", "runDir": str(cl_repo)}
    ) as r:
        got = frames((await r.aread()).decode())
    assert got[0] == {"type": "status", "status": "spawning", "mode": "claude"}
    assert f"Run directory: {cl_repo}" in json.dumps(md.requests_for("claude")[-1].body)
    history = (await aapi.get(f"{API}/run-viewer-chat")).json()
    assert history["messages"][-1]["content"] == "The run wrote README.md." and history["claudeSessionId"]
