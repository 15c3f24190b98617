"""The codex review family over real HTTP with the real codex CLI against the model double:
review a worktree's diff, file findings, fold duplicates, argue, verdicts and threads."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio

from agents.model_double import ModelDouble, structured

C = "/api/gateway/codex"
FINDINGS = {
    "summary": "Two issues.",
    "findings": [
        {"file": "README", "line": 2, "severity": "high", "title": "Unchecked input in parser", "body": "x"},
        {"file": "README", "line": 3, "severity": "low", "title": "Parser input unchecked", "body": "dup"},
        {"file": "README", "line": 9, "severity": "low", "title": "Typo in heading", "body": "teh"},
    ],
}


def _asks(phrase: str):  # type: ignore[no-untyped-def]
    return lambda req: phrase in getattr(req, "last_user_text", "")


async def finished(api: httpx.AsyncClient, ticket: str) -> dict:
    with trio.fail_after(60):
        while True:
            st = (await api.get(f"{C}/status/{ticket}")).json()
            if st["process"]["state"] not in ("starting", "running", "stopping"):
                return st
            await trio.sleep(0.05)


@pytest.fixture
def codex(binaries: dict) -> str:
    if binaries["codex"] is None:
        pytest.skip("codex CLI not installed: run scripts/install-agent-clis.sh")
    return binaries["codex"]


async def test_review_findings_argue_and_verdicts(
    api: httpx.AsyncClient, md: ModelDouble, codex: str
) -> None:
    assert (await api.get(f"{C}/available")).json()["available"] is True
    made = await api.post("/api/gateway/git/worktree", json={"repoId": "r1", "ticketId": "R-1"})
    wt = Path(made.json()["ticket"]["worktree"])
    nothing = await api.post(f"{C}/review/R-1")
    assert nothing.status_code == 409 and "no changes" in nothing.json()["error"]["message"]

    (wt / "README").write_text("test repo\nparse(input)\n")
    md.codex.when(_asks("You are reviewing"), structured(FINDINGS), times=1)
    started = await api.post(f"{C}/review/R-1", json={"focus": "input handling"})
    assert started.status_code == 201, started.text
    assert started.json()["process"]["kind"] == "codex_review"
    st = await finished(api, "R-1")
    review_req = md.requests_for("codex")[-1]
    asked = review_req.last_user_text
    assert "+parse(input)" in asked and "input handling" in asked  # the diff went in
    # codex was given the ReviewReply schema (--output-schema FILE -> text.format json_schema).
    argv = st["process"]["argv"]
    schema_path = trio.Path(argv[argv.index("--output-schema") + 1])
    assert review_req.output_schema == json.loads(await schema_path.read_text())
    assert review_req.body["text"]["format"]["strict"] is True
    assert st["process"]["state"] == "exited" and st["summary"] == "Two issues."

    filed = (await api.post(f"{C}/review-extract/R-1")).json()
    assert filed["summary"] == "Two issues."
    assert [(f["severity"], f["status"]) for f in filed["findings"]] == [
        ("high", "open"),
        ("low", "open"),
        ("low", "open"),
    ]
    again = (await api.post(f"{C}/review-extract/R-1")).json()
    assert len(again["findings"]) == 3  # replaced, not added
    high, dup, typo = (f["id"] for f in again["findings"])

    folded = (await api.post(f"{C}/review-dedup/R-1")).json()
    assert folded["merged"] == 1
    by_id = {f["id"]: f for f in folded["findings"]}
    assert by_id[dup]["status"] == "duplicate" and by_id[dup]["duplicateOf"] == high

    derived = (await api.post(f"{C}/review-verdict/R-1")).json()
    assert derived["verdict"] == "request-changes" and derived["blocking"] == [high]

    # An outcome outside accept/contest breaks the schema: 502, and the finding stays open.
    md.codex.when(_asks("decide whether"), structured({"outcome": "maybe", "argument": "?"}), times=1)
    unsure = await api.post(f"{C}/argue/R-1", json={"findingId": high})
    assert unsure.status_code == 502 and unsure.json()["error"]["code"] == "bad_agent_reply"
    assert "outcome" in unsure.json()["error"]["message"]
    assert (await api.get(f"{C}/review-findings/R-1")).json()["findings"][0]["status"] == "open"
    outcome = {"outcome": "contest", "argument": "guarded by parse() {}"}
    md.codex.when(_asks("decide whether the finding is right"), structured(outcome), times=1)
    argued = await api.post(f"{C}/argue/R-1", json={"findingId": high, "message": "it is validated upstream"})
    assert argued.status_code == 200, argued.text
    assert argued.json()["outcome"] == "contest" and argued.json()["finding"]["status"] == "contested"
    assert argued.json()["argument"] == "guarded by parse() {}"
    assert "validated upstream" in md.requests_for("codex")[-1].last_user_text
    assert (await api.post(f"{C}/review-verdict/R-1")).json()["verdict"] == "approve"
    recorded = (
        await api.post(f"{C}/review-verdict/R-1", json={"verdict": "request-changes", "reason": "style"})
    ).json()
    assert recorded["source"] == "recorded" and recorded["reason"] == "style"

    edited = await api.post(f"{C}/review-findings/R-1", json={"id": typo, "status": "fixed"})
    assert edited.json()["status"] == "fixed"
    bad_edit = await api.post(f"{C}/review-findings/R-1", json={"id": typo, "status": "gone"})
    assert bad_edit.status_code == 400

    # A finding's thread: codex gets the finding as context on the first turn.
    md.codex.when(_asks("why is this high"), "Because input reaches the parser unchecked.", times=1)
    thread = await api.post(f"{C}/finding-chat/{high}", json={"message": "why is this high?"})
    assert thread.status_code == 200, thread.text
    assert [m["role"] for m in thread.json()["messages"]] == ["user", "assistant"]
    assert "Unchecked input in parser" in md.requests_for("codex")[-1].last_user_text
    assert (await api.patch(f"{C}/finding-chat/{high}", json={"resolved": True})).json()["resolved"] is True
    assert (await api.delete(f"{C}/finding-chat/{high}")).status_code == 200
    assert (await api.get(f"{C}/finding-chat/f_nope")).status_code == 404

    md.codex.when(_asks("anything else"), "No.", times=1)
    talk = await api.post(f"{C}/chat/R-1", json={"message": "anything else?"})
    assert talk.status_code == 200 and talk.json()["messages"][-1]["content"] == "No."

    # stop on a finished review answers alreadyEnded; DELETE status forgets it.
    assert (await api.post(f"{C}/stop/R-1")).json()["alreadyEnded"] is True
    assert (await api.delete(f"{C}/status/R-1")).status_code == 200
    assert (await api.get(f"{C}/status/R-1")).status_code == 404


async def test_a_review_that_is_not_json_files_nothing(
    api: httpx.AsyncClient, md: ModelDouble, codex: str
) -> None:
    made = await api.post("/api/gateway/git/worktree", json={"repoId": "r1", "ticketId": "R-2"})
    (Path(made.json()["ticket"]["worktree"]) / "README").write_text("changed\n")
    md.codex.when(_asks("You are reviewing"), "Looks fine to me!", times=1)
    assert (await api.post(f"{C}/review/R-2")).status_code == 201
    assert (await finished(api, "R-2"))["summary"] == "Looks fine to me!"  # status shows what it said
    bad = await api.post(f"{C}/review-extract/R-2")
    assert bad.status_code == 502 and bad.json()["error"]["code"] == "bad_agent_reply"
    assert "ReviewReply schema" in bad.json()["error"]["message"]
    assert bad.json()["error"]["reply"] == "Looks fine to me!"  # what it said, for the person
    assert (await api.get(f"{C}/review-findings/R-2")).json()["findings"] == []
    # A finding without a title breaks the schema too: the review files nothing, not a guess.
    broken = {"summary": "s", "findings": [{"severity": "low", "body": "no title"}]}
    md.codex.when(_asks("You are reviewing"), structured(broken), times=1)
    assert (await api.post(f"{C}/review/R-2")).status_code == 201
    await finished(api, "R-2")
    bad = await api.post(f"{C}/review-extract/R-2")
    assert bad.status_code == 502 and "findings.0.title" in bad.json()["error"]["message"]

    assert (await api.post(f"{C}/review/R-404")).status_code == 404
    assert (await api.post(f"{C}/argue/R-2", json={"findingId": "f_nope"})).status_code == 404
