"""The codex routes as ClosedLoop's review panels call them, through the real codex CLI.

Derived from closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/codex.ts``
(``codex/available``, ``review`` with ``streamCodexReview``, ``status``, ``stop``,
``review-findings``, ``review-extract`` with ``parseFindingsFromText``, ``review-dedup`` with
``findDuplicatePairs``, ``review-verdict`` with ``extractVerdictTag``, ``argue`` and ``chat``
with ``streamCodexConversation``).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from agent_support import API, TICKET, aapi, agw, cl_repo, error_text, frames, git, md, ticket_worktree

from agents import clis
from agents.model_double import ModelDouble

pytestmark = pytest.mark.skipif(clis.find_cli("codex") is None, reason="codex CLI not installed")

REVIEW = """Looked at the change.
```json
[{"severity": "high", "file": "README.md", "line": 2, "title": "Typo", "description": "teh -> the",
  "suggestion": "fix it"}]
```"""


async def test_available_names_the_version(aapi: httpx.AsyncClient) -> None:
    answer = (await aapi.get(f"{API}/codex/available")).json()
    assert answer["available"] is True and answer["version"] == "0.171.0"


async def test_review_streams_text_then_status_extract_and_findings(
    aapi: httpx.AsyncClient, md: ModelDouble, cl_repo: Path, ticket_worktree: Path
) -> None:
    (ticket_worktree / "README.md").write_text("app\nteh change\n")
    git(ticket_worktree, "commit", "-qam", "change")
    md.codex.reply(REVIEW)
    body = {"repoPath": str(cl_repo), "model": "gpt-5.5", "reviewMode": "base", "baseBranch": "main"}
    async with aapi.stream("POST", f"{API}/codex/review/{TICKET}", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        got = frames((await r.aread()).decode())
    assert got[0]["type"] == "status" and got[0]["status"] == "running" and got[0]["provider"] == "codex"
    text = "".join(f["content"] for f in got if f["type"] == "text")
    assert '"severity": "high"' in text
    session = next(f["sessionId"] for f in got if f["type"] == "status" and "sessionId" in f)
    assert got[-2] == {"type": "result", "success": True, "processId": got[-2]["processId"]} and got[-1] == {
        "type": "done"
    }
    assert md.requests_for("codex")[-1].body["model"] == "gpt-5.5"

    status = (await aapi.get(f"{API}/codex/status/{TICKET}", params={"repo": str(cl_repo)})).json()
    assert status["hasReview"] is True and status["status"] == "completed" and status["exitCode"] == 0
    assert (
        status["sessionId"] == session and status["processRunning"] is False and "teh -> the" in status["log"]
    )
    work = ticket_worktree / ".closedloop-ai" / "work"
    assert json.loads((work / "codex-review-codex.json").read_text())["status"] == "completed"
    assert json.loads((work / "codex-chat-review.json").read_text())["sessionId"] == session

    extracted = (
        await aapi.post(
            f"{API}/codex/review-extract/{TICKET}", json={"repoPath": str(cl_repo), "sessionId": session}
        )
    ).json()
    assert extracted["findings"] == [
        {"severity": "high", "priority": "P1", "message": "Typo\nteh -> the", "commented": False,
         "file": "README.md", "line": 2, "suggestion": "fix it"}
    ]  # fmt: skip
    url = f"{API}/codex/review-findings/{TICKET}"
    params = {"repo": str(cl_repo), "provider": "codex"}
    assert (await aapi.get(url, params=params)).json() == {"findings": []}
    saved = await aapi.post(url, params=params, json={"findings": extracted["findings"], "model": "gpt-5.5"})
    assert saved.json() == {"success": True, "count": 1}
    assert (await aapi.post(url, params=params, json={"commentedIndex": 0})).json() == {"success": True}
    out_of_range = await aapi.post(url, params=params, json={"commentedIndex": 3})
    assert out_of_range.status_code == 400 and error_text(out_of_range.json()) == "Index out of range"
    assert (await aapi.post(url, params=params, json={"declined": True, "declineReason": "nit"})).json() == {
        "success": True
    }
    stored = (await aapi.get(url, params=params)).json()
    assert (
        stored["findings"][0]["commented"] is True
        and stored["declined"] is True
        and stored["model"] == "gpt-5.5"
    )

    md.codex.reply(
        'Checked.\n<pr_verdict>{"verdict":"needs_attention","reason":"typo in README"}</pr_verdict>'
    )
    verdict = (
        await aapi.post(
            f"{API}/codex/review-verdict/{TICKET}",
            json={"repoPath": str(cl_repo), "sessionId": session, "provider": "codex"},
        )
    ).json()
    assert verdict == {"verdict": {"verdict": "needs_attention", "reason": "typo in README"}}

    stop = (await aapi.post(f"{API}/codex/stop/{TICKET}", json={"repo": str(cl_repo)})).json()
    assert stop == {"stopped": False, "message": "Review is not running (status: completed)"}
    deleted = (
        await aapi.delete(f"{API}/codex/stop/{TICKET}", params={"repo": str(cl_repo), "provider": "codex"})
    ).json()
    assert sorted(deleted["deleted"]) == [
        "codex-review-codex.json",
        "codex-review-codex.log",
        "review-findings-codex.json",
    ]


async def test_dedup_pairs_as_closedloop_scores_them(aapi: httpx.AsyncClient, cl_repo: Path) -> None:
    same_a = {"message": "Null pointer in handler when body is empty", "file": "a.ts"}
    same_b = {"message": "Null pointer in handler when the body is empty", "file": "a.ts"}
    body = {
        "repoPath": str(cl_repo), "providerA": "codex", "providerB": "claude",
        "findingsA": [same_a, {"message": "other"}], "findingsB": [{"message": "zzz"}, same_b],
    }  # fmt: skip
    assert (await aapi.post(f"{API}/codex/review-dedup/{TICKET}", json=body)).json() == {
        "duplicates": [[0, 1]]
    }
    missing = await aapi.post(f"{API}/codex/review-dedup/{TICKET}", json={"repoPath": str(cl_repo)})
    assert (
        missing.status_code == 400
        and error_text(missing.json()) == "repoPath, providerA, and providerB are required"
    )


async def test_argue_and_chat_stream_and_resume_their_sessions(
    aapi: httpx.AsyncClient, md: ModelDouble, cl_repo: Path, ticket_worktree: Path
) -> None:
    md.codex.reply("The finding stands: line 2 has a typo.")
    argue = {"claudeArgument": "It is intentional.", "findingSummary": "Typo in README"}
    async with aapi.stream("POST", f"{API}/codex/argue/{TICKET}?repo={cl_repo}", json=argue) as r:
        got = frames((await r.aread()).decode())
    assert got[0]["type"] == "status" and got[0]["status"] == "running"
    assert any(f["type"] == "status" and "sessionId" in f for f in got)
    assert (
        "".join(f["content"] for f in got if f["type"] == "text") == "The finding stands: line 2 has a typo."
    )
    assert got[-1] == {"type": "done"} and any(f["type"] == "result" and f["success"] for f in got)
    debate = json.loads((ticket_worktree / ".closedloop-ai" / "work" / "codex-debate.json").read_text())
    assert debate["rounds"] == 1 and debate["sessionId"]
    bad = await aapi.post(f"{API}/codex/argue/{TICKET}?repo={cl_repo}", json={"claudeArgument": "x"})
    assert (
        bad.status_code == 400 and error_text(bad.json()) == "claudeArgument and findingSummary are required"
    )

    md.codex.reply("first").reply("second")
    chat = {"prompt": "what changed?", "repoPath": str(cl_repo), "chatHistory": [], "activeTab": "plan"}
    for expected in ("first", "second"):
        async with aapi.stream("POST", f"{API}/codex/chat/{TICKET}?repo={cl_repo}", json=chat) as r:
            got = frames((await r.aread()).decode())
        assert "".join(f["content"] for f in got if f["type"] == "text") == expected
    state = json.loads((ticket_worktree / ".closedloop-ai" / "work" / "codex-chat.json").read_text())
    assert state["messageCount"] == 2
    assert "what changed?" in json.dumps(md.requests_for("codex")[-1].body)
