"""The learnings routes as ClosedLoop's web app calls them (the learnings dialog, the chat panel).

Derived from closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/learnings.ts``
(``parseToon``, ``pending-learnings``, ``process-learnings`` with ``waitForExtraction``,
``extract-learnings``, ``learnings-status``, ``record-learning-use``).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio
from agent_support import API, TICKET, aapi, agw, cl_repo, error_text, md, ticket_worktree

from agents.model_double import ModelDouble

TOON = """patterns[2]{id,category,summary,confidence}:
p1,testing,"Run pytest with -x first",high

- Prefer argv lists over shell strings
  seen in the deploy code
"""


async def test_patterns_come_from_the_org_patterns_file(
    aapi: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))  # the gateway runs in this process: its ~ is this
    assert (await aapi.get(f"{API}/learnings")).json()["patterns"] == []
    org = home / ".closedloop-ai" / "learnings" / "org-patterns.toon"
    org.parent.mkdir(parents=True)
    org.write_text(TOON)
    patterns = (await aapi.get(f"{API}/learnings")).json()["patterns"]
    assert patterns[0]["id"] == "pattern-1" and patterns[0]["summary"] == "Run pytest with -x first"
    assert patterns[1] == {
        "id": "pattern-2",
        "summary": "Prefer argv lists over shell strings",
        "raw": "- Prefer argv lists over shell strings\n  seen in the deploy code",
    }


async def test_extract_then_process_then_record_use(
    aapi: httpx.AsyncClient,
    md: ModelDouble,
    cl_repo: Path,
    ticket_worktree: Path,
    monkeypatch: object,
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # type: ignore[attr-defined]
    repo = str(cl_repo)
    # No chat yet: ClosedLoop's 404.
    r = await aapi.post(f"{API}/symphony/extract-learnings", json={"ticketId": TICKET, "repoPath": repo})
    assert r.status_code == 404 and error_text(r.json()) == "No chat history found"
    work = ticket_worktree / ".closedloop-ai" / "work"
    work.mkdir(parents=True)
    chat = {
        "messages": [
            {"id": "u", "role": "user", "content": "why did the build fail?", "timestamp": "t"},
            {"id": "a", "role": "assistant", "content": "npm ci needs the lockfile", "timestamp": "t"},
        ]
    }
    (work / "chat-history.json").write_text(json.dumps(chat))
    status_url = f"{API}/symphony/learnings-status/{TICKET}"
    assert (await aapi.get(status_url, params={"repo": repo})).json() == {"status": "none", "count": 0}
    lesson = {"title": "Keep the lockfile", "body": "npm ci fails without package-lock.json"}
    md.claude.structured({"learnings": [lesson]})
    body = {"ticketId": TICKET, "repoPath": repo, "activeTab": "plan"}
    r = await aapi.post(f"{API}/symphony/extract-learnings", json=body)
    assert r.status_code == 200 and r.json() == {"status": "processing"}

    with trio.fail_after(60):  # the extraction is the gateway's background agent turn: poll
        while (status := (await aapi.get(status_url, params={"repo": repo})).json())[
            "status"
        ] == "processing":
            await trio.sleep(0.05)
    assert status["status"] == "completed" and status["count"] == 1 and status["activeTab"] == "plan"
    assert "npm ci needs the lockfile" in json.dumps(md.requests_for("claude")[-1].body)
    counts = (await aapi.get(f"{API}/symphony/pending-learnings")).json()
    assert counts["totalCount"] == 1 and counts["worktreeCount"] == 1

    process = f"{API}/symphony/process-learnings"
    waiting = await aapi.post(process, json={"ticketId": TICKET, "repoPath": repo, "waitForExtraction": True})
    assert waiting.json() == {"status": "waiting"}
    assert (await aapi.get(process, params={"ticketId": TICKET, "repo": repo})).json()["status"] == "waiting"
    processing = await aapi.post(
        process, json={"ticketId": TICKET, "repoPath": repo, "waitForExtraction": False}
    )
    assert processing.json()["status"] == "processing" and processing.json()["pid"] is None
    assert (await aapi.get(process, params={"ticketId": TICKET, "repo": repo})).json()[
        "status"
    ] == "completed"
    patterns = (await aapi.get(f"{API}/learnings")).json()["patterns"]
    assert [p["summary"] for p in patterns] == ["Keep the lockfile"]
    again = await aapi.post(process, json={"ticketId": TICKET, "repoPath": repo})
    assert again.json() == {"status": "skipped", "reason": "No pending learning files"}

    use = f"{API}/symphony/record-learning-use"
    r = await aapi.post(
        use, json={"ticketId": TICKET, "repoPath": repo, "learnings": [{"summary": "Keep | the lockfile"}]}
    )
    assert r.json() == {"status": "recorded", "count": 1}
    outcome = (work / ".learnings" / "outcomes.log").read_text().strip().split("|")
    assert outcome[1:] == [f"chat-{TICKET}", "0", "interactive-chat", "Keep / the lockfile", "applied", ""]
    empty = await aapi.post(use, json={"ticketId": TICKET, "repoPath": repo, "learnings": []})
    assert (
        empty.status_code == 400
        and error_text(empty.json()) == "learnings array is required and must not be empty"
    )
    missing = await aapi.post(use, json={"repoPath": repo})
    assert missing.status_code == 400 and error_text(missing.json()) == "ticketId and repoPath are required"
