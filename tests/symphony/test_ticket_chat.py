"""``/api/gateway/ticket-chat`` over real HTTP with the real claude CLI: history and sessions,
a streamed turn that resumes the run's session, and ending the session."""

from __future__ import annotations

import json

import httpx
from symphony_support import API, wait_for

from agents.model_double import ModelDouble

URL = "/api/gateway/ticket-chat"


async def test_ticket_chat_lists_streams_and_ends(api: httpx.AsyncClient, md: ModelDouble) -> None:
    md.claude.reply("Remembered: PAPAYA.")
    r = await api.post(f"{API}/launch", json={"ticketId": "C-1", "repoId": "r1", "prompt": "remember PAPAYA"})
    assert r.status_code == 201, r.text
    await wait_for(api, "C-1", lambda s: s["runs"][-1]["state"] == "exited")
    before = (await api.get(URL, params={"ticketId": "C-1"})).json()
    assert before["messages"] == [] and len(before["sessions"]) == 1

    md.claude.when(lambda q: "which fruit" in q.last_user_text, "PAPAYA", times=1)
    async with api.stream("POST", URL, json={"ticketId": "C-1", "message": "which fruit?"}) as resp:
        assert resp.status_code == 200
        lines = [json.loads(line) async for line in resp.aiter_lines() if line]
    assert lines[-1]["type"] == "end" and lines[-1]["process"]["kind"] == "chat"
    assert {"type": "text", "text": "PAPAYA"} in [o.get("event") for o in lines]
    # The turn resumed the run's session: the model saw the earlier exchange.
    assert "remember PAPAYA" in json.dumps(md.requests_for("claude")[-1].messages)

    after = (await api.get(URL, params={"ticketId": "C-1"})).json()
    assert [(m["role"], m["content"]) for m in after["messages"]] == [
        ("user", "which fruit?"),
        ("assistant", "PAPAYA"),
    ]
    ended = await api.request("DELETE", URL, json={"ticketId": "C-1"})
    assert ended.status_code == 200, ended.text
    assert (await api.get(URL, params={"ticketId": "C-1"})).json()["sessions"] == []


async def test_ticket_chat_refusals(api: httpx.AsyncClient) -> None:
    assert (await api.get(URL)).status_code == 400
    # An unknown ticket has ClosedLoop's empty chat history (its web app reads it without checks).
    assert (await api.get(URL, params={"ticketId": "C-404"})).json() == {"messages": [], "ticketId": "C-404"}
    assert (await api.post(URL, json={"message": "hi"})).status_code == 400
    missing = await api.post(URL, json={"ticketId": "C-404", "message": "hi"})
    assert missing.status_code == 404 and missing.json()["operation"] == "ticket_chat"
    assert (await api.request("DELETE", URL, json={"ticketId": "C-404"})).status_code == 404
