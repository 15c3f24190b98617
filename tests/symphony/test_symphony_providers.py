"""Providers: argv for each mode and the parsers, on lines recorded from the real CLIs."""

from __future__ import annotations

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
    parse_verdict,
    summarize,
)

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


def test_parse_verdict() -> None:
    text = 'Looks fine.\n{"passed": true, "score": 0.9, "justification": "tests exist"}'
    assert parse_verdict(text, 0.5) == (True, 0.9, "tests exist")
    assert parse_verdict(text, 0.95)[0] is False
    assert parse_verdict('{"passed": false, "score": 7, "justification": "no"}', 0.5) == (False, 1.0, "no")
    assert parse_verdict("PASS: all good", 0.5)[0] is True
    assert parse_verdict("rambling", 0.5) == (False, 0.0, "rambling")


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
