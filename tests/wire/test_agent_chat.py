"""``symphony/chat`` and ``symphony/chat-history`` as ClosedLoop's chat panel drives them.

Derived from closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/stream-events.ts``
(the frames), ``symphony-interactive.ts`` (the chat route), ``symphony-chat-history.ts`` (the
history route) and the chat panel's request (``{message, displayContent, activeTab,
contextRepoPaths, codexAvailable}`` to ``symphony/chat/<ticket>?repo=<repoPath>``).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psutil
from agent_support import (  # fixtures are imported by name
    API,
    TICKET,
    aapi,
    agw,
    cl_repo,
    error_text,
    frames,
    git,
    md,
    ticket_worktree,
    until,
)

from gateway.http.serve import GatewayHandle

from agents.model_double import ModelDouble
from support import descendant_runs


def chat_url(repo: Path, ticket: str = TICKET) -> str:
    return f"{API}/symphony/chat/{ticket}?repo={repo}"


def panel_body(message: str, **extra: object) -> dict[str, object]:
    """What the chat panel sends (ClosedLoopChat.tsx)."""
    return {
        "message": message,
        "displayContent": f"<context>...</context>\n\n{message}",
        "activeTab": "plan",
        "contextRepoPaths": [],
        "codexAvailable": True,
        **extra,
    }


async def test_chat_streams_closedloops_frames_and_stores_the_history(
    aapi: httpx.AsyncClient, md: ModelDouble, cl_repo: Path, ticket_worktree: Path
) -> None:
    md.claude.bash("echo hi").reply("first block")
    async with aapi.stream("POST", chat_url(cl_repo), json=panel_body("look around")) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        got = frames((await response.aread()).decode())
    types = [f["type"] for f in got]
    assert (
        types[0] == "status"
        and got[0]["status"] == "running"
        and psutil.pid_exists(got[0]["pid"]) in (True, False)
    )
    assert isinstance(got[0]["pid"], int)
    assert types[-1] == "done"
    tool_use = next(f for f in got if f["type"] == "tool_use")
    assert tool_use["name"] == "Bash" and tool_use["input"]["command"] == "echo hi"
    tool_result = next(f for f in got if f["type"] == "tool_result")
    assert (
        tool_result["id"] == tool_use["id"]
        and tool_result["is_error"] is False
        and "hi" in tool_result["content"]
    )
    assert [f["content"] for f in got if f["type"] == "text"] == ["first block"]
    session = next(f for f in got if f["type"] == "sessionId")["sessionId"]
    usage = next(f for f in got if f["type"] == "usage")
    assert isinstance(usage["contextPercent"], int) and 0 <= usage["contextPercent"] <= 100
    results = [f for f in got if f["type"] == "result"]
    assert results and all(r["success"] is True for r in results)
    assert types.index("tool_use") < types.index("tool_result") < types.index("text") < types.index("result")

    # The history is where ClosedLoop keeps it, with the message (not displayContent).
    stored = json.loads((ticket_worktree / ".closedloop-ai" / "work" / "chat-history.json").read_text())
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][0]["content"] == "look around"
    assert stored["messages"][1]["content"] == "first block"
    assert stored["sessionId"] == session and stored["ticketId"] == TICKET
    # ClosedLoop's work files never show up as changes of the worktree (info/exclude).
    assert git(ticket_worktree, "status", "--porcelain") == ""

    read = (await aapi.get(f"{API}/symphony/chat-history/{TICKET}", params={"repo": str(cl_repo)})).json()
    assert read["messages"][1]["content"] == "first block" and read["codexSessionExists"] is False
    assert read["repoPath"] == str(cl_repo) and read["sessionId"] == session

    # Turn 2 resumes the stored session: the model double sees turn 1 in the conversation.
    md.claude.reply("second answer")
    async with aapi.stream("POST", chat_url(cl_repo), json=panel_body("and now?")) as response:
        got2 = frames((await response.aread()).decode())
    assert [f["content"] for f in got2 if f["type"] == "text"] == ["second answer"]
    assert "look around" in json.dumps(md.requests_for("claude")[-1].body)


async def test_chat_history_post_and_delete_as_the_panel_persists_messages(
    aapi: httpx.AsyncClient, cl_repo: Path, ticket_worktree: Path
) -> None:
    url = f"{API}/symphony/chat-history/{TICKET}"
    params = {"repo": str(cl_repo), "provider": "codex"}
    empty = (await aapi.get(url, params=params)).json()
    assert empty == {
        "messages": [],
        "ticketId": TICKET,
        "repoPath": str(cl_repo),
        "codexSessionExists": False,
    }
    message = {
        "id": "m1",
        "role": "assistant",
        "content": "hello",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "sender": "codex",
    }
    r = await aapi.post(url, params=params, json={"message": message})
    assert r.status_code == 200 and r.json()["success"] is True
    assert r.json()["history"]["messages"] == [message]
    assert (ticket_worktree / ".closedloop-ai" / "work" / "chat-history-codex.json").is_file()
    bad = await aapi.post(url, params=params, json={"message": {"role": "user"}})
    assert bad.status_code == 400 and error_text(bad.json()) == "message with content and role is required"
    assert (await aapi.post(url, params=params, json={"sessionId": "s-1"})).json() == {
        "success": True,
        "sessionId": "s-1",
    }
    oob = await aapi.delete(url, params={**params, "index": "5"})
    assert oob.status_code == 404 and error_text(oob.json()) == "Index out of bounds"
    one = (await aapi.delete(url, params={**params, "index": "0"})).json()
    assert one["success"] is True and one["history"]["messages"] == []
    cleared = (await aapi.delete(url, params=params)).json()
    assert cleared == {"success": True, "message": "Chat history cleared"}
    bad_provider = await aapi.get(url, params={"repo": str(cl_repo), "provider": "gpt"})
    assert bad_provider.status_code == 400 and error_text(bad_provider.json()) == "unsupported provider"


async def test_chat_refuses_what_closedloop_refuses(
    aapi: httpx.AsyncClient, cl_repo: Path, tmp_path: Path
) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    r = await aapi.post(f"{API}/symphony/chat/{TICKET}?repo={other}", json=panel_body("hi"))
    assert r.status_code == 403 and error_text(r.json()) == "directory not allowed"
    r = await aapi.post(chat_url(cl_repo), json={"activeTab": "plan"})
    assert r.status_code == 400 and error_text(r.json()) == "message and repoPath are required"
    r = await aapi.post(chat_url(cl_repo), json=panel_body("hi", contextRepoPaths=[str(other)]))
    assert r.status_code == 403


async def test_a_client_that_hangs_up_kills_the_chat_turn(
    aapi: httpx.AsyncClient, agw: GatewayHandle, md: ModelDouble, cl_repo: Path, ticket_worktree: Path
) -> None:
    md.claude.bash("echo started && sleep 600", timeout_ms=600_000).reply("never")
    seen: list[dict[str, object]] = []
    async with aapi.stream("POST", chat_url(cl_repo), json=panel_body("slow")) as response:
        lines = response.aiter_lines()  # read by hand: leaving an ``async for`` closes it
        while not seen or seen[-1]["type"] != "tool_use":
            seen.append(json.loads(await lines.__anext__()))
        pid = seen[0]["pid"]
        assert seen[0]["type"] == "status" and seen[0]["status"] == "running" and isinstance(pid, int)

        await until(lambda: descendant_runs(pid, "sleep"), what="the tool's sleep")
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    record = agw.context.sup.table.get(str(seen[0]["processId"]))
    assert record is not None
    await until(lambda: record.state.value == "killed", what="the turn killed")
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    # What the turn said before it was killed is kept: the user's message at least.
    history = json.loads((ticket_worktree / ".closedloop-ai" / "work" / "chat-history.json").read_text())
    assert history["messages"][0]["content"] == "slow"
