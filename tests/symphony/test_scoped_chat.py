"""``terminal-chat`` and ``run-viewer-chat`` over real HTTP with the real claude CLI:
sessions of their own, resumed turns streamed as NDJSON, read-only questions about a run."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from symphony_support import API, wait_for

from agents.model_double import Bash, ModelDouble, Text


async def turn(api: httpx.AsyncClient, url: str, body: dict) -> list[dict]:
    async with api.stream("POST", url, json=body) as resp:
        assert resp.status_code == 200, await resp.aread()
        return [json.loads(line) async for line in resp.aiter_lines() if line]


async def test_terminal_chat_sessions_turns_and_end(
    api: httpx.AsyncClient, md: ModelDouble, repo: Path
) -> None:
    url = "/api/gateway/terminal-chat"
    md.claude.when(lambda q: "what is in README" in q.last_user_text, "It says: test repo.", times=1)
    lines = await turn(api, url, {"repoId": "r1", "message": "what is in README?"})
    session = lines[0]["session"]
    assert lines[0]["type"] == "session" and session["scope"] == "terminal" and session["cwd"] == str(repo)
    assert lines[-1]["type"] == "end" and lines[-1]["process"]["kind"] == "chat"
    assert lines[-1]["process"]["cwd"] == str(repo)

    # The next turn resumes the same session: the model sees the first exchange.
    md.claude.when(lambda q: "and again" in q.last_user_text, "Still: test repo.", times=1)
    again = await turn(api, url, {"repoId": "r1", "message": "and again?"})
    assert again[0]["session"]["id"] == session["id"]
    assert "what is in README" in json.dumps(md.requests_for("claude")[-1].messages)

    listed = (await api.get(url, params={"repoId": "r1"})).json()["sessions"]
    assert [s["id"] for s in listed] == [session["id"]]
    one = (await api.get(url, params={"sessionId": session["id"]})).json()
    assert [(m["role"], m["content"]) for m in one["messages"]] == [
        ("user", "what is in README?"),
        ("assistant", "It says: test repo."),
        ("user", "and again?"),
        ("assistant", "Still: test repo."),
    ]
    ended = await api.request("DELETE", url, params={"sessionId": session["id"]})
    assert ended.json()["deleted"] is True
    assert (await api.get(url, params={"sessionId": session["id"]})).status_code == 404
    assert (await api.post(url, json={"repoId": "nope", "message": "hi"})).status_code == 404
    # Without a sessionId, DELETE is ClosedLoop's: it resets the terminal chat's one history.
    assert (await api.request("DELETE", url)).json() == {"success": True}


async def test_run_viewer_chat_is_read_only_and_knows_the_run(
    api: httpx.AsyncClient, md: ModelDouble
) -> None:
    md.claude.add_turn(Text("Creating notes."), Bash("echo mango > notes.txt"))
    md.claude.reply("Wrote notes.txt.")
    r = await api.post(f"{API}/launch", json={"ticketId": "RV-1", "repoId": "r1", "prompt": "take notes"})
    run_id = r.json()["process"]["id"]
    await wait_for(api, "RV-1", lambda s: s["runs"][-1]["state"] == "exited")

    url = "/api/gateway/run-viewer-chat"
    md.claude.when(lambda q: "what did this run write" in q.last_user_text, "notes.txt, with mango.", times=1)
    lines = await turn(api, url, {"processId": run_id, "message": "what did this run write?"})
    assert lines[0]["session"]["scope"] == "run-viewer" and lines[0]["session"]["key"] == run_id
    end = lines[-1]["process"]
    assert end["ticketId"] == "RV-1" and "Read" in " ".join(end["argv"])  # read-only tools only
    asked = md.requests_for("claude")[-1].last_user_text
    assert "echo mango > notes.txt" in asked and "Creating notes." in asked  # the transcript
    sessions = (await api.get(url, params={"processId": run_id})).json()["sessions"]
    assert len(sessions) == 1
    plain = (await api.post("/api/gateway/processes", json={"argv": ["true"]})).json()["id"]
    assert (await api.post(url, json={"processId": plain, "message": "hi"})).status_code == 404
