"""The Symphony routes over real HTTP, with the real claude CLI against the model double."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio
from symphony_support import API, ndjson, wait_for

from gateway.http.serve import GatewayHandle

from agents.model_double import Bash, ModelDouble, Text
from support import marked_pids, runs_program, wait_until

NDJSON = {"Accept": "application/x-ndjson"}  # the log as our NDJSON cursor stream

pytestmark = pytest.mark.agents


async def test_launch_logs_follow_reconnect_and_errors(api: httpx.AsyncClient, md: ModelDouble) -> None:
    md.claude.add_turn(
        Text("Working."),
        Bash("for i in 1 2 3; do echo line$i; sleep 0.3; done; echo made > made.txt"),
    )
    md.claude.reply("All done.")
    r = await api.post(f"{API}/launch", json={"ticketId": "T-1", "repoId": "r1", "prompt": "make it"})
    assert r.status_code == 201, r.text
    proc = r.json()["process"]
    assert r.json()["ticket"]["branch"] == "symphony/T-1"

    # 409 while it runs; 400 names the field; 404 for an unknown repo.
    again = await api.post(f"{API}/launch", json={"ticketId": "T-1", "repoId": "r1", "prompt": "x"})
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    bad = await api.post(f"{API}/launch", json={"ticketId": "T-2", "repoId": "r1"})
    assert bad.status_code == 400 and "prompt" in bad.json()["error"]
    bad = await api.post(f"{API}/launch", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    missing = await api.post(f"{API}/launch", json={"ticketId": "T-2", "repoId": "zz", "prompt": "x"})
    assert missing.status_code == 404 and "repoId" in missing.json()["error"]
    assert (await api.get(f"{API}/status/T-404")).status_code == 404

    # A follower reads part of the run, drops, and reconnects with since: every line once.
    seen: list[int] = []
    async with api.stream("GET", f"{API}/logs/T-1", params={"follow": 1}) as resp:
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        async for line in resp.aiter_lines():
            obj = json.loads(line)
            if obj["type"] == "log":
                seen.append(obj["seq"])
            if len(seen) >= 2:
                break
    async with api.stream("GET", f"{API}/logs/T-1", params={"follow": 1, "since": seen[-1]}) as resp:
        async for line in resp.aiter_lines():
            obj = json.loads(line)
            if obj["type"] == "log":
                seen.append(obj["seq"])
            if obj["type"] == "end":
                assert obj["process"]["state"] == "exited"
                break
    full = ndjson((await api.get(f"{API}/logs/T-1", headers=NDJSON)).text)
    assert seen == [o["seq"] for o in full if o["type"] == "log"]
    events = [o["event"] for o in full if "event" in o]
    assert {"type": "text", "text": "Working."} in events
    result = [e for e in events if e["type"] == "result"][-1]
    assert result["ok"] and result["turns"] == 2 and result["costUsd"] > 0
    assert any("line3" in (e.get("output") or "") for e in events if e["type"] == "tool_result")

    status = (await api.get(f"{API}/status/T-1")).json()
    assert status["runs"][-1]["id"] == proc["id"] and status["runs"][-1]["state"] == "exited"
    made = await trio.Path(status["ticket"]["worktree"], "made.txt").read_text()
    assert made == "made\n"
    everything = (await api.get(f"{API}/status")).json()
    assert proc["id"] in [r["id"] for r in everything["runs"]]
    # The run is in the process table, visible through the process routes too.
    assert (await api.get(f"/api/gateway/processes/{proc['id']}")).json()["state"] == "exited"
    tail = ndjson((await api.get(f"{API}/logs/T-1", params={"tail": 2})).text)
    assert [o["type"] for o in tail] == ["log", "log", "end"]


async def test_kill_and_loop_kill_take_the_whole_tree(api: httpx.AsyncClient, md: ModelDouble) -> None:
    for ticket, path, body in (
        ("T-3", "kill", {"prompt": "wait"}),
        ("T-4", "loop/kill", {"prompt": "wait", "judges": [{"name": "j", "command": ["true"]}]}),
    ):
        md.claude.add_turn(Bash("echo started && sleep 600", timeout_ms=600_000))
        start = "loop" if path == "loop/kill" else "launch"
        r = await api.post(f"{API}/{start}", json={"ticketId": ticket, "repoId": "r1", **body})
        assert r.status_code == 201, r.text

        def agent(status: dict) -> dict | None:
            runs = [x for x in status["runs"] if x["kind"] == "symphony" and x["state"] == "running"]
            return runs[0] if runs else None

        status = await wait_for(api, ticket, lambda s: agent(s) is not None)
        child = agent(status)
        assert child is not None

        await wait_until(lambda c=child: runs_program(c["id"], "sleep"), 30, "the tool's sleep")
        tree = marked_pids(child["id"])
        assert len(tree) >= 3
        began = time.monotonic()
        receipt = (await api.post(f"{API}/{path}", json={"ticketId": ticket})).json()
        assert time.monotonic() - began < 2.0 + 1.0  # grace (2 s in these settings) + 1 s
        assert receipt["process"]["state"] == "killed" and receipt["survivors"] == []
        assert not marked_pids(child["id"])
        final = (await api.get(f"{API}/status/{ticket}")).json()
        kinds = [(x["kind"], x["labels"].get("role"), x["state"]) for x in final["runs"]]
        assert ("symphony", "agent", "killed") in kinds
        assert not [k for k in kinds if k[1] == "judge"]  # no judge, no next iteration
    assert (await api.post(f"{API}/loop/kill", json={"ticketId": "T-3"})).status_code == 404


async def test_loop_judges_over_http(api: httpx.AsyncClient, md: ModelDouble, repo: Path) -> None:
    md.claude.when(
        lambda r: "Judge `check` failed" in r.last_user_text, [Bash("echo ok > flag.txt")], times=1
    )
    md.claude.reply("first try")
    md.claude.reply("fixed")
    check = [
        sys.executable,
        "-c",
        "import pathlib,sys; sys.exit(0 if pathlib.Path('flag.txt').exists() else 1)",
    ]
    r = await api.post(
        f"{API}/loop",
        json={
            "ticketId": "T-5",
            "repoId": "r1",
            "prompt": "create flag.txt",
            "maxIterations": 2,
            "judges": [{"name": "check", "command": check}],
        },
    )
    assert r.status_code == 201, r.text
    await wait_for(api, "T-5", lambda s: s["runs"][0]["state"] == "exited")
    judges = (await api.get(f"{API}/judges/T-5")).json()
    assert judges["outcome"] == "passed"
    assert [(v["iteration"], v["passed"]) for v in judges["verdicts"]] == [(1, False), (2, True)]
    bad = await api.post(f"{API}/loop", json={"ticketId": "T-6", "repoId": "r1", "prompt": "x", "judges": []})
    assert bad.status_code == 400 and "judges" in bad.json()["error"]


async def test_chat_sessions_history_and_plan_loop(api: httpx.AsyncClient, md: ModelDouble) -> None:
    md.claude.reply("I will remember MANGO.")
    r = await api.post(f"{API}/launch", json={"ticketId": "T-7", "repoId": "r1", "prompt": "remember MANGO"})
    assert r.status_code == 201
    await wait_for(api, "T-7", lambda s: s["runs"][-1]["state"] == "exited")
    md.claude.when(lambda req: "what was the word" in req.last_user_text, "MANGO")
    async with api.stream("POST", f"{API}/chat/T-7", json={"message": "what was the word?"}) as resp:
        assert resp.status_code == 200
        lines = [json.loads(line) async for line in resp.aiter_lines() if line]
    assert lines[-1]["type"] == "end" and lines[-1]["process"]["kind"] == "chat"
    assert {"type": "text", "text": "MANGO"} in [o.get("event") for o in lines]
    history = json.dumps(md.requests_for("claude")[-1].messages)
    assert "remember MANGO" in history and "I will remember MANGO." in history
    unread = (await api.get(f"{API}/sessions/unread-count")).json()
    assert unread["unreadCount"] == 2 and unread["byTicket"] == {"T-7": 2}
    sessions = (await api.get(f"{API}/sessions", params={"ticketId": "T-7"})).json()["sessions"]
    assert len(sessions) == 1 and sessions[0]["providerSessionId"]
    msgs = (await api.get(f"{API}/chat-history/T-7")).json()["messages"]
    assert [(m["role"], m["content"]) for m in msgs] == [
        ("user", "what was the word?"),
        ("assistant", "MANGO"),
    ]
    assert (await api.get(f"{API}/sessions/unread-count")).json()["unreadCount"] == 0
    assert (await api.post(f"{API}/chat/T-404", json={"message": "hi"})).status_code == 404
    assert (await api.delete(f"{API}/chat-history/T-7")).json()["deleted"] == 2

    # Plan loop: start, feedback, approve; plan/:ticketId has the latest plan.
    md.claude.reply("PLAN 1")
    md.claude.when(lambda req: "Feedback on it" in req.last_user_text, "PLAN 2")
    r = await api.post(f"{API}/plan-loop/start", json={"ticketId": "T-7", "repoId": "r1", "prompt": "plan"})
    assert r.status_code == 201, r.text
    with trio.fail_after(30):
        while not (await api.get(f"{API}/plan/T-7")).json()["waitingForFeedback"]:
            await trio.sleep(0.05)
    r = await api.post(f"{API}/plan-loop/feedback", json={"ticketId": "T-7", "feedback": "more"})
    assert r.status_code == 200, r.text
    with trio.fail_after(30):
        while True:
            plan = (await api.get(f"{API}/plan/T-7")).json()
            if plan["waitingForFeedback"] and plan["plan"]["plan"] == "PLAN 2":
                break
            await trio.sleep(0.05)
    r = await api.post(f"{API}/plan-loop/approve", json={"ticketId": "T-7"})
    assert r.status_code == 200 and r.json()["plan"]["status"] == "approved"
    assert (await api.get(f"{API}/plan/T-7")).json()["plan"]["plan"] == "PLAN 2"
    assert (
        await api.post(f"{API}/plan-loop/feedback", json={"ticketId": "T-7", "feedback": "x"})
    ).status_code == 404


async def test_missing_claude_binary_is_503(
    api: httpx.AsyncClient, gw: GatewayHandle, tmp_path: Path
) -> None:
    gw.context.binaries.overrides["claude"] = str(tmp_path / "nowhere" / "claude")
    r = await api.post(f"{API}/launch", json={"ticketId": "T-8", "repoId": "r1", "prompt": "x"})
    assert r.status_code == 503
    body = r.json()  # ClosedLoop's envelope: {error: <message>, code, details}
    assert body["details"]["binary"] == "claude" and "binary-paths" in body["error"]
    assert body["code"] == "binary_missing" and body["operation"] == "symphony_launch"
