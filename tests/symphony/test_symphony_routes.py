"""More Symphony routes over real HTTP: codex runs and chat, provider judges, comment threads,
sessions, chat history, plan approval with launch, worktree removal and the OpenAPI schemas."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio
from symphony_support import API, ndjson, wait_for

from agents.model_double import Bash, ModelDouble, structured
from support import marked_pids

NDJSON = {"Accept": "application/x-ndjson"}  # the log as our NDJSON cursor stream

pytestmark = pytest.mark.agents


def _is_judge(req: object) -> bool:
    return "You are a strict judge" in getattr(req, "last_user_text", "")


async def test_codex_launch_and_chat_resume_over_http(
    api: httpx.AsyncClient, md: ModelDouble, binaries: dict
) -> None:
    if binaries["codex"] is None:
        pytest.skip("codex CLI not installed: run scripts/install-agent-clis.sh")
    md.codex.bash("echo made-by-codex > made.txt && echo wrote")
    md.codex.reply("File written.")
    body = {"ticketId": "C-1", "repoId": "r1", "prompt": "make a PAPAYA file", "provider": "codex"}
    r = await api.post(f"{API}/launch", json=body)
    assert r.status_code == 201, r.text
    run = r.json()["process"]
    # The sandbox is explicit (the tests' settings: this container cannot run codex's own).
    assert run["argv"][:2][1] == "exec" and "--sandbox" in run["argv"]
    status = await wait_for(api, "C-1", lambda s: s["runs"][-1]["state"] not in ("starting", "running"))
    assert status["runs"][-1]["state"] == "exited", status["runs"][-1]
    assert (Path(status["ticket"]["worktree"]) / "made.txt").read_text() == "made-by-codex\n"
    assert status["ticket"]["provider"] == "codex"
    log = ndjson((await api.get(f"{API}/logs/C-1", headers=NDJSON)).text)
    events = [o["event"] for o in log if "event" in o]
    assert {"type": "text", "text": "File written."} in events
    thread_id = next(e["sessionId"] for e in events if e["type"] == "session")

    # Chat resumes the codex thread: `codex exec ... resume <thread_id> -- message`.
    md.codex.when(lambda req: "which fruit" in req.last_user_text, "PAPAYA")
    async with api.stream("POST", f"{API}/chat/C-1", json={"message": "which fruit?"}) as resp:
        assert resp.status_code == 200
        lines = [json.loads(line) async for line in resp.aiter_lines() if line]
    end = lines[-1]
    assert end["type"] == "end" and end["process"]["state"] == "exited", end
    argv = end["process"]["argv"]
    assert argv[argv.index("resume") + 1] == thread_id and end["process"]["labels"]["provider"] == "codex"
    assert {"type": "text", "text": "PAPAYA"} in [o.get("event") for o in lines]
    assert "make a PAPAYA file" in json.dumps(md.requests_for("codex")[-1].messages)
    msgs = (await api.get(f"{API}/chat-history/C-1")).json()["messages"]
    assert [(m["role"], m["content"], m["provider"]) for m in msgs] == [
        ("user", "which fruit?", "codex"),
        ("assistant", "PAPAYA", "codex"),
    ]


async def test_provider_judge_loop_persists_scores(api: httpx.AsyncClient, md: ModelDouble) -> None:
    verdict_fail = {"passed": False, "score": 0.3, "justification": "no README section"}
    verdict_pass = {"passed": True, "score": 0.9, "justification": "the README {usage} section is there"}
    md.claude.when(_is_judge, structured(verdict_fail), times=1)
    md.claude.when(_is_judge, structured(verdict_pass))
    md.claude.when(lambda r: "Judge `review` failed" in r.last_user_text, "Added the section.")
    md.claude.reply("First attempt.")
    judge = {
        "name": "review",
        "provider": "claude",
        "criteria": "README has a usage section",
        "threshold": 0.7,
    }
    body = {
        "ticketId": "J-1",
        "repoId": "r1",
        "prompt": "document usage",
        "maxIterations": 3,
        "judges": [judge],
    }
    r = await api.post(f"{API}/loop", json=body)
    assert r.status_code == 201, r.text
    status = await wait_for(api, "J-1", lambda s: s["runs"][0]["state"] not in ("starting", "running"), 60)
    assert status["runs"][0]["state"] == "exited", status["runs"][0]
    out = (await api.get(f"{API}/judges/J-1")).json()
    assert out["outcome"] == "passed"
    got = [
        (v["iteration"], v["passed"], v["score"], v["threshold"], v["justification"]) for v in out["verdicts"]
    ]
    assert got == [
        (1, False, 0.3, 0.7, "no README section"),
        (2, True, 0.9, 0.7, "the README {usage} section is there"),
    ]
    assert all(v["durationMs"] > 0 and v["processId"] for v in out["verdicts"])
    # The judge ran read-only through the real claude CLI; the next prompt carried its feedback.
    judge_run = next(x for x in status["runs"] if x["labels"].get("role") == "judge")
    argv = judge_run["argv"]
    assert argv[0].endswith("claude") and "Edit" not in argv and "Read" in argv
    asked = next(q for q in md.requests_for("claude") if _is_judge(q))
    assert json.loads(argv[argv.index("--json-schema") + 1]) == asked.output_schema
    assert set(asked.output_schema["required"]) == {"passed", "score", "justification"}
    fix = [q for q in md.requests_for("claude") if "Judge `review` failed" in q.last_user_text]
    assert (
        fix
        and "no README section" in fix[0].last_user_text
        and "score 0.30 < threshold 0.70" in (fix[0].last_user_text)
    )
    # Shape errors name the field; a NUL never reaches an argv.
    r = await api.post(f"{API}/launch", json={"ticketId": "J-3", "repoId": "r1", "prompt": "a\u0000b"})
    assert r.status_code == 400 and "prompt" in r.json()["error"]
    r = await api.get(f"{API}/commit-message/J-1", params={"model": "a\u0000b"})
    assert r.status_code == 400 and "model" in r.json()["error"]
    bad = {**body, "ticketId": "J-2", "judges": [{"name": "x", "provider": "claude", "threshold": 3}]}
    r = await api.post(f"{API}/loop", json=bad)
    assert r.status_code == 400 and "judges.0.threshold" in r.json()["error"]


async def test_comment_chat_sessions_and_history_routes(api: httpx.AsyncClient, md: ModelDouble) -> None:
    md.claude.reply("Started.")
    r = await api.post(f"{API}/launch", json={"ticketId": "K-1", "repoId": "r1", "prompt": "start"})
    assert r.status_code == 201
    await wait_for(api, "K-1", lambda s: s["runs"][-1]["state"] == "exited")

    # comment-chat: POST twice (the second resumes the thread), GET, PATCH, DELETE.
    md.claude.when(lambda q: "line 3 is odd" in q.last_user_text, "It guards against None.")
    md.claude.when(lambda q: "are you sure" in q.last_user_text, "Yes, see the earlier answer.")
    url = f"{API}/comment-chat/c-42"
    assert (await api.get(url)).json()["messages"] == []
    r = await api.post(url, json={"ticketId": "K-1", "message": "why?", "context": "line 3 is odd"})
    assert r.status_code == 200, r.text
    thread = r.json()
    assert [m["content"] for m in thread["messages"]] == ["why?", "It guards against None."]
    assert thread["providerSessionId"] and thread["process"]["kind"] == "chat"
    assert "Edit" not in thread["process"]["argv"]  # read-only
    r = await api.post(url, json={"ticketId": "K-1", "message": "are you sure?"})
    assert r.status_code == 200, r.text
    assert f"--resume={thread['providerSessionId']}" in r.json()["process"]["argv"]
    assert "It guards against None." in json.dumps(md.requests_for("claude")[-1].messages)
    got = (await api.get(url)).json()
    assert got["ticketId"] == "K-1" and len(got["messages"]) == 4 and got["resolved"] is False
    first = got["messages"][0]["id"]
    r = await api.patch(url, json={"resolved": True, "messageId": first, "content": "why this guard?"})
    assert r.status_code == 200 and r.json()["resolved"] is True
    assert r.json()["messages"][0]["content"] == "why this guard?"
    r = await api.patch(url, json={"resolved": "yes"})
    assert r.status_code == 400 and "resolved" in r.json()["error"]
    assert (await api.patch(url, json={"messageId": 99999, "content": "x"})).status_code == 404
    assert (await api.patch(f"{API}/comment-chat/nope", json={"resolved": True})).status_code == 404
    bad = await api.post(url, json={"message": "no ticket"})
    assert bad.status_code == 400 and "ticketId" in bad.json()["error"]
    assert (await api.delete(url)).json() == {"commentId": "c-42", "deleted": 4}
    assert (await api.delete(url)).status_code == 404

    # sessions: POST opens (or returns) one; markRead clears; DELETE by id, by ticket, or neither.
    r = await api.post(f"{API}/sessions", json={"ticketId": "K-1", "title": "Review", "markRead": True})
    assert r.status_code == 201, r.text
    session = r.json()["session"]
    assert session["title"] == "Review" and session["unreadCount"] == 0 and session["providerSessionId"]
    assert (await api.get(f"{API}/sessions/unread-count")).json()["byTicket"] == {"K-1": 0}
    assert (await api.post(f"{API}/sessions", json={"ticketId": "K-404"})).status_code == 404
    r = await api.post(f"{API}/sessions", json={"ticketId": "K-1", "bogus": 1})
    assert r.status_code == 400 and "bogus" in r.json()["error"]
    assert (await api.delete(f"{API}/sessions")).status_code == 400
    r = await api.request("DELETE", f"{API}/sessions", json={"sessionId": session["id"]})
    assert r.status_code == 200 and r.json()["deleted"] == [session["id"]]
    assert (await api.get(f"{API}/sessions", params={"ticketId": "K-1"})).json()["sessions"] == []
    await api.post(f"{API}/sessions", json={"ticketId": "K-1", "provider": "claude"})
    r = await api.delete(f"{API}/sessions", params={"ticketId": "K-1"})
    assert r.status_code == 200 and len(r.json()["deleted"]) == 1
    assert (await api.delete(f"{API}/sessions", params={"ticketId": "K-1"})).status_code == 404

    # chat-history: POST appends (role defaults to user), bad role names the field.
    r = await api.post(f"{API}/chat-history/K-1", json={"role": "system", "content": "note to self"})
    assert r.status_code == 201 and r.json()["message"]["role"] == "system"
    r = await api.post(f"{API}/chat-history/K-1", json={"content": "hello"})
    assert r.status_code == 201 and r.json()["message"]["role"] == "user"
    r = await api.post(f"{API}/chat-history/K-1", json={"role": "robot", "content": "x"})
    assert r.status_code == 400 and "role" in r.json()["error"]
    assert (await api.post(f"{API}/chat-history/K-404", json={"content": "x"})).status_code == 404
    msgs = (await api.get(f"{API}/chat-history/K-1")).json()["messages"]
    assert [(m["role"], m["content"]) for m in msgs] == [("system", "note to self"), ("user", "hello")]


async def test_plan_approve_with_launch(api: httpx.AsyncClient, md: ModelDouble) -> None:
    md.claude.reply("PLAN: write plan.txt")
    md.claude.when(lambda q: "Implement this approved plan" in q.last_user_text, [Bash("echo ok > plan.txt")])
    r = await api.post(
        f"{API}/plan-loop/start", json={"ticketId": "P-1", "repoId": "r1", "prompt": "plan it"}
    )
    assert r.status_code == 201, r.text
    r = await api.post(f"{API}/plan-loop/start", json={"ticketId": "P-2", "repoId": "r1"})
    assert r.status_code == 400 and "prompt" in r.json()["error"]
    with trio.fail_after(30):
        while not (await api.get(f"{API}/plan/P-1")).json()["waitingForFeedback"]:
            await trio.sleep(0.05)
    r = await api.post(f"{API}/plan-loop/feedback", json={"ticketId": "P-1"})
    assert r.status_code == 400 and "feedback" in r.json()["error"]
    r = await api.post(f"{API}/plan-loop/approve", json={"ticketId": "P-1", "launch": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["plan"]["status"] == "approved" and out["process"]["state"] == "exited"
    assert out["run"]["kind"] == "symphony" and "PLAN: write plan.txt" in out["run"]["argv"][-1]
    status = await wait_for(api, "P-1", lambda s: s["runs"][-1]["state"] not in ("starting", "running"))
    assert status["runs"][-1]["state"] == "exited"
    assert (Path(status["ticket"]["worktree"]) / "plan.txt").read_text() == "ok\n"
    assert (await api.post(f"{API}/plan-loop/nope", json={"ticketId": "P-1"})).status_code == 404


async def test_worktree_is_removed_only_when_a_teardown_asks(
    api: httpx.AsyncClient, md: ModelDouble, repo: Path
) -> None:
    # A running ticket: kill + removeWorktree tears the tree down, then removes the worktree.
    md.claude.add_turn(Bash("echo started && sleep 600", timeout_ms=600_000))
    r = await api.post(f"{API}/launch", json={"ticketId": "W-1", "repoId": "r1", "prompt": "wait"})
    assert r.status_code == 201
    run, wt1 = r.json()["process"], Path(r.json()["ticket"]["worktree"])
    with trio.fail_after(30):
        while len(marked_pids(run["id"])) < 3:  # claude, the tool's shell, sleep
            await trio.sleep(0.05)
    r = await api.post(f"{API}/kill", json={"ticketId": "W-1", "removeWorktree": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["process"]["state"] == "killed" and out["process"]["tornDown"] is True
    assert out["survivors"] == [] and not marked_pids(run["id"])
    assert out["worktree"] == {"path": str(wt1), "removed": True, "exists": False, "error": None}
    branches = await trio.run_process(
        ["git", "branch", "--list", "symphony/*"], cwd=repo, capture_stdout=True
    )
    assert b"symphony/W-1" in branches.stdout  # the branch stays

    # An ended ticket: kill and a plain process teardown keep the worktree; removeWorktree removes it.
    md.claude.reply("done")
    r = await api.post(f"{API}/launch", json={"ticketId": "W-2", "repoId": "r1", "prompt": "x"})
    run, wt2 = r.json()["process"], trio.Path(r.json()["ticket"]["worktree"])
    await wait_for(api, "W-2", lambda s: s["runs"][-1]["state"] == "exited")
    assert (await api.post(f"{API}/kill", json={"ticketId": "W-2"})).json()["alreadyEnded"] is True
    r = await api.post(f"/api/gateway/processes/{run['id']}/teardown")
    assert r.status_code == 200 and r.json()["process"]["tornDown"] is True
    assert await wt2.is_dir()
    r = await api.post(f"{API}/kill", json={"ticketId": "W-2", "removeWorktree": True})
    assert r.status_code == 200 and r.json()["worktree"]["removed"] is True
    assert not await wt2.exists()
    # A later run recreates it from the kept branch.
    md.claude.reply("back")
    r = await api.post(f"{API}/launch", json={"ticketId": "W-2", "repoId": "r1", "prompt": "again"})
    assert r.status_code == 201 and await wt2.is_dir()
    r = await api.post(f"{API}/kill", json={"ticketId": "W-2", "removeWorktree": "yes"})
    assert r.status_code == 400 and "removeWorktree" in r.json()["error"]
    await wait_for(api, "W-2", lambda s: s["active"] is None)


async def test_openapi_documents_symphony_bodies(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/api/gateway/openapi.json")).json()

    def body(path: str, method: str = "post") -> dict:
        op = doc["paths"][f"/api/gateway/symphony{path}"][method]
        return op["requestBody"]["content"]["application/json"]["schema"]

    assert {"ticketId", "repoId", "prompt", "provider", "limits"} <= set(body("/launch")["properties"])
    assert {"judges", "maxIterations"} <= set(body("/loop")["properties"])
    assert "removeWorktree" in body("/kill")["properties"]
    assert {"ticketId", "message", "context"} <= set(body("/comment-chat/{commentId}")["properties"])
    assert {"resolved", "messageId"} <= set(body("/comment-chat/{commentId}", "patch")["properties"])
    assert "markRead" in body("/sessions")["properties"]
    assert {"name", "command", "provider", "threshold"} <= set(
        doc["components"]["schemas"]["JudgeIn"]["properties"]
    )


async def test_deleting_a_session_kills_its_chat_turn(api: httpx.AsyncClient, md: ModelDouble) -> None:
    md.claude.reply("Ready.")
    r = await api.post(f"{API}/launch", json={"ticketId": "D-1", "repoId": "r1", "prompt": "start"})
    assert r.status_code == 201
    await wait_for(api, "D-1", lambda s: s["runs"][-1]["state"] == "exited")
    # (claude refuses a standalone `sleep N`; a chained one runs)
    md.claude.when(
        lambda q: "take your time" in q.last_user_text,
        [Bash("echo started && sleep 600", timeout_ms=600_000)],
        times=1,
    )
    lines: list[dict] = []

    async def chat() -> None:
        async with api.stream("POST", f"{API}/chat/D-1", json={"message": "take your time"}) as resp:
            lines.extend([json.loads(line) async for line in resp.aiter_lines() if line])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(chat)

        def running_chat(s: dict) -> bool:
            return any(x["kind"] == "chat" and x["state"] == "running" for x in s["runs"])

        status = await wait_for(api, "D-1", running_chat)
        turn = next(x for x in status["runs"] if x["kind"] == "chat")
        with trio.fail_after(30):
            while len(marked_pids(turn["id"])) < 3:  # claude, the tool's shell, sleep
                await trio.sleep(0.05)
        r = await api.request("DELETE", f"{API}/sessions", json={"ticketId": "D-1"})
        assert r.status_code == 200 and r.json()["killed"] == [turn["id"]]
        assert not marked_pids(turn["id"])
    assert lines[-1]["type"] == "end" and lines[-1]["process"]["state"] == "killed"
    assert (await api.get(f"{API}/sessions", params={"ticketId": "D-1"})).json()["sessions"] == []
