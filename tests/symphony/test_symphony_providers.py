"""Providers: argv for each mode and the parsers, on lines recorded from the real CLIs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gateway.supervisor.agents.providers import (
    ClaudeProvider,
    CodexProvider,
    MissingBinary,
    ProviderRegistry,
    RunOptions,
    parse_event,
    summarize,
)
from gateway.supervisor.agents.replies import (
    ArgueOutcome,
    JudgeVerdict,
    LearningsReply,
    ReviewReply,
    parse_reply,
    reply_schema,
    schema_file,
    schema_text,
)
from gateway.supervisor.errors import AgentReplyError

DATA = Path(__file__).parent / "data"


def lines(name: str) -> list[bytes]:
    return (DATA / name).read_bytes().splitlines()


def test_claude_argv_modes() -> None:
    p = ClaudeProvider()
    run = p.run_argv("/bin/claude", "--help me", RunOptions(model="sonnet"))
    assert run[:5] == ["/bin/claude", "-p", "--output-format", "stream-json", "--verbose"]
    assert run[-2:] == ["--", "--help me"]  # a prompt is never read as a flag
    assert "--dangerously-skip-permissions" not in run
    assert run[run.index("--permission-mode") + 1] == "default"
    assert run[run.index("--model") + 1] == "sonnet"
    tools = run[run.index("--allowedTools") + 1 : run.index("--")]
    assert "Bash" in tools and "Edit" in tools
    resumed = p.resume_argv("claude", "abc-123", "again")
    assert "--resume=abc-123" in resumed and resumed[-2:] == ["--", "again"]
    plan = p.plan_argv("claude", "plan it")
    assert plan[plan.index("--permission-mode") + 1] == "plan"
    assert "Bash" not in plan and "Edit" not in plan
    judge = p.judge_argv("claude", "judge it")
    assert "Bash" not in judge and judge[-1] == "judge it"


def test_codex_argv_modes() -> None:
    p = CodexProvider(sandbox="workspace-write")
    run = p.run_argv("codex", "-x")
    assert run[:4] == ["codex", "exec", "--json", "--skip-git-repo-check"]
    assert run[run.index("--sandbox") + 1] == "workspace-write"
    assert 'approval_policy="never"' in run and run[-2:] == ["--", "-x"]
    assert "--dangerously-bypass-approvals-and-sandbox" not in run
    resumed = p.resume_argv("codex", "thread-1", "again")
    assert resumed[-4:] == ["resume", "thread-1", "--", "again"]
    assert p.plan_argv("codex", "p")[p.plan_argv("codex", "p").index("--sandbox") + 1] == "read-only"
    assert p.judge_argv("codex", "j")[p.judge_argv("codex", "j").index("--sandbox") + 1] == "read-only"
    with pytest.raises(ValueError):
        p.resume_argv("codex", "--last", "x")


def test_claude_parser_on_a_recorded_run() -> None:
    p = ClaudeProvider()
    events = p.parse_lines(lines("claude_run.ndjson"))
    types = [e["type"] for e in events]
    assert types == ["session", "text", "tool_use", "tool_result", "text", "result"]
    assert events[0]["sessionId"] == "1e97e7fd-83c5-486e-bf56-b061cdc4bc35"
    assert events[1]["text"] == "Writing."
    assert events[2]["name"] == "Bash" and "made.txt" in events[2]["input"]["command"]
    assert events[3] == {
        "type": "tool_result",
        "toolUseId": events[2]["id"],
        "output": "wrote",
        "content": "wrote",
        "isError": False,
    }
    result = events[-1]
    assert result["ok"] is True and result["turns"] == 2 and result["costUsd"] == pytest.approx(0.102028)
    assert result["durationMs"] == 1345 and result["text"] == "File written."
    assert p.is_result_line(lines("claude_run.ndjson")[-1])
    assert not p.is_result_line(lines("claude_run.ndjson")[0])
    s = summarize(p, lines("claude_run.ndjson"))
    assert s.ok and s.session_id == events[0]["sessionId"] and s.final_text == "File written."


def test_claude_parser_error_result_and_unknown_lines() -> None:
    p = ClaudeProvider()
    raw = lines("claude_error.ndjson")
    assert p.parse_line(b"Some non-JSON warning line") == []
    assert p.parse_line(b'{"type":"brand_new_type"}') == []
    assert p.parse_line(b"{not json") == [] and p.parse_line(b"[1,2]") == []
    s = summarize(p, raw)
    assert s.ok is False and "scripted bad request" in (s.error or "")
    # `"subtype": "success"` with `"is_error": true` is still an error
    assert (
        p.parse_line(b'{"type":"result","subtype":"success","is_error":true,"result":"x"}')[0]["ok"] is False
    )


def test_codex_parser_on_recorded_runs() -> None:
    p = CodexProvider()
    events = p.parse_lines(lines("codex_run.ndjson"))
    assert [e["type"] for e in events] == ["session", "tool_use", "tool_result", "text", "result"]
    assert events[0]["sessionId"] == "01a21f3a-0bd5-7602-9e2b-fa47384116a1"
    assert events[2]["output"] == "wrote\n" and events[2]["isError"] is False
    assert events[-1]["ok"] is True and events[-1]["usage"]["input_tokens"] == 19366
    assert p.is_result_line(lines("codex_run.ndjson")[-1])
    failed = summarize(p, lines("codex_error.ndjson"))
    assert failed.ok is False and failed.error == "scripted bad request"
    assert failed.errors == ["scripted bad request"]
    assert p.parse_line(b'{"type":"item.updated","item":{}}') == []


def test_parse_event_for_log_lines() -> None:
    assert parse_event("claude", lines("claude_run.ndjson")[1]) == {"type": "text", "text": "Writing."}
    assert parse_event(None, b'{"type":"result"}') is None
    assert parse_event("unknown", b"{}") is None
    multi = parse_event(
        "claude",
        b'{"type":"assistant","message":{"content":[{"type":"text","text":"a"},'
        b'{"type":"tool_use","id":"t","name":"Bash","input":{}}]}}',
    )
    assert multi is not None and multi["type"] == "multi" and len(multi["events"]) == 2


def test_a_verdict_with_braces_in_prose_passes() -> None:
    said = parse_reply(
        JudgeVerdict, '{"passed": true, "score": 0.9, "justification": "handles {} edge case"}', "judge"
    )
    assert (said.passed, said.score, said.justification) == (True, 0.9, "handles {} edge case")
    assert parse_reply(JudgeVerdict, {"passed": False, "score": 0, "justification": ""}, "j").score == 0.0


@pytest.mark.parametrize(
    "reply",
    [
        None,
        "",
        "PASS: all good",
        'Looks fine.\n{"passed": true, "score": 0.9, "justification": "tests exist"}',
        {"passed": True, "score": 7, "justification": "out of range"},
        {"passed": "yes", "score": 0.5, "justification": "not a boolean"},
        {"passed": True, "score": 0.5},
        {"passed": True, "score": 0.5, "justification": "x", "extra": 1},
    ],
)
def test_a_reply_that_breaks_the_schema_is_an_agent_reply_error(reply: object) -> None:
    with pytest.raises(AgentReplyError) as err:
        parse_reply(JudgeVerdict, reply, "judge 'q'")
    assert err.value.code == "bad_agent_reply" and "judge 'q'" in err.value.message


def _schemas(node: dict) -> list[dict]:
    """``node`` and every schema under it (properties, items, anyOf branches)."""
    subs = [*node.get("properties", {}).values(), *node.get("anyOf", [])]
    if isinstance(node.get("items"), dict):
        subs.append(node["items"])
    return [node, *(s for sub in subs for s in _schemas(sub))]


@pytest.mark.parametrize("model", [JudgeVerdict, ReviewReply, ArgueOutcome, LearningsReply])
def test_reply_schemas_fit_both_clis(model: type, tmp_path: Path) -> None:
    """Self-contained (no $ref), object at the root, every object closed with every property
    required, no numeric or length bounds (OpenAI strict mode and Anthropic tools accept it)."""
    schema = reply_schema(model)
    text = json.dumps(schema)
    assert schema["type"] == "object" and "$ref" not in text and "$defs" not in text
    unportable = {"minimum", "maximum", "minItems", "maxItems", "minLength", "default", "title"}
    for node in _schemas(schema):
        assert not unportable & set(node), node
        if node.get("type") == "object":
            assert node["additionalProperties"] is False and set(node["required"]) == set(node["properties"])
    path = schema_file(model, tmp_path)
    assert json.loads(path.read_text()) == schema and schema_file(model, tmp_path) == path
    assert json.loads(schema_text(model)) == schema


def test_reply_schema_goes_into_each_clis_argv(tmp_path: Path) -> None:
    text = schema_text(JudgeVerdict)
    path = str(schema_file(JudgeVerdict, tmp_path))
    opts = RunOptions(json_schema=text, schema_file=path)
    claude = ClaudeProvider().judge_argv("claude", "judge", opts)
    assert claude[claude.index("--json-schema") + 1] == text and claude[-2:] == ["--", "judge"]
    codex = CodexProvider().judge_argv("codex", "judge", opts)
    assert codex[codex.index("--output-schema") + 1] == path and codex[-2:] == ["--", "judge"]
    with pytest.raises(ValueError, match="schema_file"):
        CodexProvider().judge_argv("codex", "judge", RunOptions(json_schema=text))


def test_claude_result_carries_structured_output() -> None:
    p = ClaudeProvider()
    ok = summarize(p, [json.dumps({
        "type": "result", "subtype": "success", "is_error": False, "result": "{}",
        "structured_output": {"passed": True, "score": 1, "justification": "x"},
    })])  # fmt: skip
    assert p.structured(ok) == {"passed": True, "score": 1, "justification": "x"}
    assert not ok.reply_rejected
    gave_up = summarize(p, [json.dumps({
        "type": "result", "subtype": "error_max_structured_output_retries", "is_error": True,
        "errors": ["Failed to provide valid structured output after 5 attempts"],
    })])  # fmt: skip
    assert gave_up.reply_rejected and p.structured(gave_up) is None
    assert gave_up.error is not None and "after 5 attempts" in gave_up.error
    codex = CodexProvider()
    said = summarize(
        codex, [json.dumps({"type": "item.completed", "item": {"type": "agent_message", "text": "{}"}})]
    )
    assert codex.structured(said) == "{}"


def test_registry_resolves_binaries(tmp_path: Path) -> None:
    exe = tmp_path / "claude"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    reg = ProviderRegistry(binary_path={"claude": str(exe), "codex": str(tmp_path / "nope")}.get)
    assert reg.executable("claude") == str(exe)
    with pytest.raises(MissingBinary) as err:
        reg.executable("codex")
    assert err.value.binary == "codex" and "binary-paths" in str(err.value)
    with pytest.raises(MissingBinary):
        ProviderRegistry(binary_path=lambda _n: None).executable("claude")
    with pytest.raises(KeyError):
        reg.get("gemini")
    assert os.access(exe, os.X_OK)
