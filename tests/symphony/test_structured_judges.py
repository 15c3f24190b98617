"""Provider judges ask the real CLIs for a schema and parse the answer with pydantic: a ``{}``
in the justification no longer fails a verdict, and a reply outside the schema fails the loop
with a ``bad_agent_reply`` error instead of a silent FAIL 0.0."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from symphony_support import API, ndjson, wait_for

from agents.model_double import ModelDouble, structured

pytestmark = pytest.mark.agents

BRACES = {"passed": True, "score": 0.9, "justification": "handles {} edge case"}


def _judging(req: object) -> bool:
    """Any turn of a judge's conversation (claude's follow-ups too: a nudge, a refused call)."""
    return "You are a strict judge" in getattr(req, "text", "")


def _loop(ticket: str, judge: dict[str, Any]) -> dict[str, Any]:
    spec = {"name": "edge", "criteria": "the {} case is handled", "threshold": 0.8, **judge}
    return {"ticketId": ticket, "repoId": "r1", "prompt": "handle it", "maxIterations": 2, "judges": [spec]}


async def _ended(api: httpx.AsyncClient, ticket: str) -> dict[str, Any]:
    status = await wait_for(api, ticket, lambda s: s["runs"][0]["state"] not in ("starting", "running"), 60)
    return status["runs"][0]


@pytest.mark.parametrize("provider", ["claude", "codex"])
async def test_a_verdict_with_braces_in_its_justification_passes(
    api: httpx.AsyncClient, md: ModelDouble, binaries: dict, provider: str
) -> None:
    if binaries[provider] is None:
        pytest.skip(f"{provider} CLI not installed: run scripts/install-agent-clis.sh")
    md.script(provider).when(_judging, structured(BRACES), times=1)
    md.claude.reply("Handled it.")
    r = await api.post(f"{API}/loop", json=_loop(f"S-{provider}", {"provider": provider}))
    assert r.status_code == 201, r.text
    loop = await _ended(api, f"S-{provider}")
    assert loop["state"] == "exited", loop
    out = (await api.get(f"{API}/judges/S-{provider}")).json()
    assert out["outcome"] == "passed"
    got = [(v["iteration"], v["passed"], v["score"], v["justification"]) for v in out["verdicts"]]
    assert got == [(1, True, 0.9, "handles {} edge case")]
    # The judge's CLI was asked for the verdict's schema (claude: the StructuredOutput tool;
    # codex: the Responses text.format).
    asked = next(q for q in md.requests_for(provider) if _judging(q))
    assert asked.output_schema is not None
    assert set(asked.output_schema["properties"]) == {"passed", "score", "justification"}


async def test_a_judge_that_breaks_the_schema_fails_the_loop(
    api: httpx.AsyncClient, md: ModelDouble, binaries: dict
) -> None:
    # claude refuses each call that breaks the schema, 5 times, then gives up.
    md.claude.when(_judging, structured({"passed": "yes", "score": 0.9}), times=5)
    md.claude.reply("Handled it.")
    r = await api.post(f"{API}/loop", json=_loop("B-1", {"provider": "claude"}))
    assert r.status_code == 201, r.text
    loop = await _ended(api, "B-1")
    assert loop["state"] == "failed" and loop["error"].startswith("AgentReplyError: judge 'edge'")
    assert "JudgeVerdict schema" in loop["error"] and "after 5 attempts" in loop["error"]
    out = (await api.get(f"{API}/judges/B-1")).json()
    assert out["outcome"] == "bad_agent_reply" and out["state"] == "failed"
    assert out["verdicts"] == []  # no FAIL 0.0 was made up
    assert len([q for q in md.requests_for("claude") if _judging(q)]) == 5
    nd = {"Accept": "application/x-ndjson"}  # the log as our NDJSON cursor stream
    log = [o.get("text", "") for o in ndjson((await api.get(f"{API}/logs/B-1", headers=nd)).text)]
    assert any("broke the JudgeVerdict schema" in line for line in log)


async def test_a_codex_judge_answering_prose_fails_the_loop(
    api: httpx.AsyncClient, md: ModelDouble, binaries: dict
) -> None:
    if binaries["codex"] is None:
        pytest.skip("codex CLI not installed: run scripts/install-agent-clis.sh")
    # codex checks nothing itself: the gateway's pydantic check is what catches it.
    md.codex.when(_judging, 'PASS. {"passed": true, "score": 0.9, "justification": "ok"}', times=1)
    md.claude.reply("Handled it.")
    r = await api.post(f"{API}/loop", json=_loop("B-2", {"provider": "codex"}))
    assert r.status_code == 201, r.text
    loop = await _ended(api, "B-2")
    assert loop["state"] == "failed" and "JudgeVerdict schema" in loop["error"]
    assert "Invalid JSON" in loop["error"]
    out = (await api.get(f"{API}/judges/B-2")).json()
    assert out["outcome"] == "bad_agent_reply" and out["verdicts"] == []
