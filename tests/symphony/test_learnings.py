"""Learnings over real HTTP with the real claude CLI: a run, an extraction turn that reads its
transcript, review, the accepted list ranked by use, and the refusals."""

from __future__ import annotations

import httpx
from symphony_support import API, wait_for

from agents.model_double import Bash, ModelDouble, Text, structured

LEARN = [
    {"title": "Run the tests with make test", "body": "make test builds the venv first."},
    {"title": "Fixtures live in tests/data", "body": "Keep test data there."},
    {"title": "  ", "body": "blank titles are dropped"},
]


def _is_extraction(req: object) -> bool:
    return "Extract the durable lessons" in getattr(req, "last_user_text", "")


def _in_extraction(req: object) -> bool:
    """Any turn of an extraction, also claude's follow-ups (a nudge, a refused tool call)."""
    return "Extract the durable lessons" in getattr(req, "text", "")


async def test_extract_review_and_use_learnings(api: httpx.AsyncClient, md: ModelDouble) -> None:
    # Nothing to learn from before a run has finished.
    md.claude.add_turn(Text("Looking at the Makefile."), Bash("echo 'test: ; pytest' > Makefile"))
    md.claude.reply("Added a test target.")
    r = await api.post(f"{API}/launch", json={"ticketId": "L-1", "repoId": "r1", "prompt": "add make test"})
    assert r.status_code == 201, r.text
    run_id = r.json()["process"]["id"]
    await wait_for(api, "L-1", lambda s: s["runs"][-1]["state"] == "exited")

    md.claude.when(_is_extraction, structured({"learnings": LEARN}), times=1)
    got = await api.post(f"{API}/extract-learnings", json={"ticketId": "L-1"})
    assert got.status_code == 201, got.text
    out = got.json()
    assert out["sourceProcessId"] == run_id and out["processId"] != run_id
    assert [item["title"] for item in out["learnings"]] == [LEARN[0]["title"], LEARN[1]["title"]]
    assert all(item["status"] == "pending" and item["repoId"] == "r1" for item in out["learnings"])
    # The extraction read the run's transcript: its text and its tool call.
    asked = next(q for q in md.requests if _is_extraction(q))
    assert "Looking at the Makefile." in asked.last_user_text and "echo" in asked.last_user_text

    pending = (await api.get(f"{API}/pending-learnings", params={"ticketId": "L-1"})).json()["learnings"]
    assert len(pending) == 2
    assert (await api.get(f"{API}/process-all-learnings")).json() == {"pending": 2, "byTicket": {"L-1": 2}}
    first, second = (p["id"] for p in pending)
    decided = await api.post(f"{API}/process-learnings", json={"decisions": [
        {"id": first, "decision": "accept", "body": "make test builds the venv, then runs ruff and pytest."},
        {"id": second, "decision": "reject"},
    ]})  # fmt: skip
    assert decided.status_code == 200, decided.text
    assert [d["status"] for d in decided.json()["learnings"]] == ["accepted", "rejected"]
    redo = {"decisions": [{"id": first, "decision": "reject"}]}
    again = await api.post(f"{API}/process-learnings", json=redo)
    assert again.status_code == 409  # decided already; nothing changes

    for _ in range(2):
        used = await api.post(f"{API}/record-learning-use", json={"id": first})
        assert used.status_code == 200
    assert used.json()["uses"] == 2
    assert (await api.post(f"{API}/record-learning-use", json={"id": second})).status_code == 409
    listed = (await api.get("/api/gateway/learnings", params={"repoId": "r1"})).json()["learnings"]
    assert [(x["id"], x["uses"], x["body"]) for x in listed] == [
        (first, 2, "make test builds the venv, then runs ruff and pytest.")
    ]
    status = (await api.get(f"{API}/learnings-status/L-1")).json()
    assert (status["pending"], status["accepted"], status["rejected"]) == (0, 1, 1)
    assert status["lastExtraction"]["processId"] == out["processId"]
    assert status["lastExtraction"]["source"] == run_id

    # A model that answers prose (claude nudges it once to call StructuredOutput, then gives up
    # with no structured_output) is a 502 naming the problem, and files nothing.
    md.claude.when(_in_extraction, "Sure! Here are some thoughts.", times=2)
    bad = await api.post(f"{API}/extract-learnings", json={"ticketId": "L-1"})
    assert bad.status_code == 502 and bad.json()["error"]["code"] == "bad_agent_reply"
    assert "no structured reply" in bad.json()["error"]["message"]
    assert (await api.get(f"{API}/pending-learnings")).json()["learnings"] == []
    # So is one that keeps calling it with a learning without a body: claude refuses the call
    # 5 times (telling the model what is wrong), then gives up.
    md.claude.when(_in_extraction, structured({"learnings": [{"title": "no body"}]}), times=5)
    bad = await api.post(f"{API}/extract-learnings", json={"ticketId": "L-1"})
    assert bad.status_code == 502 and bad.json()["error"]["code"] == "bad_agent_reply"
    assert "LearningsReply schema" in bad.json()["error"]["message"]
    assert "after 5 attempts" in bad.json()["error"]["message"]
    assert (await api.get(f"{API}/pending-learnings")).json()["learnings"] == []

    # process-all: accept every pending one at once.
    md.claude.when(_is_extraction, structured({"learnings": LEARN[:1]}), times=1)
    assert (await api.post(f"{API}/extract-learnings", json={"ticketId": "L-1"})).status_code == 201
    everything = (await api.post(f"{API}/process-all-learnings", json={"decision": "accept"})).json()
    assert everything["count"] == 1 and everything["learnings"][0]["status"] == "accepted"


async def test_learnings_refusals(api: httpx.AsyncClient) -> None:
    for body, status in (
        ({"ticketId": "nope"}, 404),
        ({"ticketId": "nope", "processId": "p_x"}, 404),
        ({}, 400),
    ):
        r = await api.post(f"{API}/extract-learnings", json=body)
        assert r.status_code == status, r.text
        assert r.json()["error"]["operation"] == "learnings"
    url = f"{API}/process-learnings"
    bad = await api.post(url, json={"decisions": [{"id": "l_x", "decision": "maybe"}]})
    assert bad.status_code == 400
    unknown = await api.post(url, json={"decisions": [{"id": "l_x", "decision": "accept"}]})
    assert unknown.status_code == 404 and "decisions.0.id" in unknown.json()["error"]["message"]
    assert (await api.get("/api/gateway/learnings", params={"status": "maybe"})).status_code == 400
    assert (await api.post(f"{API}/record-learning-use", json={"id": "l_x"})).status_code == 404
