"""Review-comment and finding threads as ClosedLoop's PR review panels call them.

Derived from closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/symphony-interactive.ts``
(``comment-chat`` GET/POST/PATCH/DELETE with ``?ticketId&repo``, ``buildCommentPrompt``) and
``codex.ts`` (``finding-chat`` with ``displayMessage`` and ``findingContext``,
``buildFindingPrompt``), and the web client's ``commentChatHistoryOptions`` /
``findingChatHistoryOptions`` (``apps/app/lib/engineer/queries/symphony.ts``).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from agent_support import API, TICKET, aapi, agw, cl_repo, error_text, frames, md, ticket_worktree

from agents.model_double import ModelDouble


async def test_comment_chat_thread_streams_and_keeps_its_file(
    aapi: httpx.AsyncClient, md: ModelDouble, cl_repo: Path, ticket_worktree: Path
) -> None:
    url = f"{API}/symphony/comment-chat/c:1?ticketId={TICKET}&repo={cl_repo}"
    empty = (await aapi.get(url)).json()
    assert empty == {"messages": [], "ticketId": TICKET, "repoPath": str(cl_repo), "commentId": "c:1"}
    md.claude.reply("Agreed, renaming it.")
    context = {"author": "rev", "body": "Rename this variable", "path": "app.py", "line": 3}
    async with aapi.stream("POST", url, json={"message": "should I?", "commentContext": context}) as r:
        got = frames((await r.aread()).decode())
    assert got[0]["type"] == "status" and got[-1] == {"type": "done"}
    asked = json.dumps(md.requests_for("claude")[-1].body)
    assert "File: app.py:3" in asked and "PR comment from @rev:" in asked
    thread = (await aapi.get(url)).json()
    assert [m["content"] for m in thread["messages"]] == ["should I?", "Agreed, renaming it."]
    assert thread["commentContext"] == context and thread["sessionId"]
    assert (ticket_worktree / ".closedloop-ai" / "work" / "comment-chats" / "c_1.json").is_file()
    assert (await aapi.patch(url, json={})).json() == {"success": True}
    assert (await aapi.get(url)).json()["messages"][-1]["responded"] is True
    assert (await aapi.delete(url)).json() == {"success": True}
    assert (await aapi.get(url)).json()["messages"] == []
    only_ticket = await aapi.get(f"{API}/symphony/comment-chat/c:1?ticketId={TICKET}")
    assert (
        only_ticket.status_code == 400
        and error_text(only_ticket.json()) == "ticketId and repo parameters are required"
    )


async def test_finding_chat_stores_the_display_message_and_needs_the_worktree(
    aapi: httpx.AsyncClient, md: ModelDouble, cl_repo: Path, ticket_worktree: Path
) -> None:
    url = f"{API}/codex/finding-chat/f-1?ticketId={TICKET}&repo={cl_repo}"
    md.claude.reply("It is a real bug.")
    finding = {"severity": "high", "file": "a.py", "line": 9, "message": "None check missing"}
    body = {"message": "full prompt with code", "displayMessage": "is it real?", "findingContext": finding}
    async with aapi.stream("POST", url, json=body) as r:
        got = frames((await r.aread()).decode())
    assert [f["content"] for f in got if f["type"] == "text"] == ["It is a real bug."]
    asked = json.dumps(md.requests_for("claude")[-1].body)
    assert "Severity: high" in asked and "File: a.py:9" in asked and "full prompt with code" in asked
    thread = (await aapi.get(url)).json()
    assert [m["content"] for m in thread["messages"]] == ["is it real?", "It is a real bug."]
    assert thread["findingContext"] == finding and thread["findingId"] == "f-1"
    no_worktree = await aapi.post(f"{API}/codex/finding-chat/f-1?ticketId=ENG-404&repo={cl_repo}", json=body)
    assert no_worktree.status_code == 404 and error_text(no_worktree.json()) == "Work directory not found"
