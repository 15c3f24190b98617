"""The REAL claude and codex CLIs, offline, against the scripted model double.

These pin down the behaviour the Claude/Codex providers rely on (see docs/agents-testing.md).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import clis
import psutil
import pytest
from model_double import Bash, HttpError, ModelDouble, Structured, Text

pytestmark = pytest.mark.agents


_wait_for = clis.wait_for


def _pgid(p: psutil.Process) -> int | None:
    try:
        return os.getpgid(p.pid)
    except ProcessLookupError:
        return None


def _find_sleep(pid: int, arg: str = "600") -> psutil.Process | None:
    for p in clis.process_tree(pid):
        try:
            if p.name() == "sleep" and p.cmdline()[1:] == [arg]:
                return p
        except (psutil.NoSuchProcess, psutil.ZombieProcess, IndexError):
            continue
    return None


def _popen(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return clis.popen_cli(argv, env, cwd)


# --------------------------------------------------------------------------- model double


def test_model_double_speaks_both_wire_formats() -> None:
    """No CLI needed: the SSE shapes, predicate rules, the default reply and recording."""
    with ModelDouble(default_text="default!") as md:
        md.claude.when(lambda r: "judge" in r.last_user_text, "judged")
        md.claude.add_turn(Text("first"), Bash("echo hi"))
        md.codex.add_turn(HttpError(429, "slow down"))

        def post(path: str, body: dict) -> tuple[int, str]:
            conn = http.client.HTTPConnection("127.0.0.1", md.port, timeout=10)
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()

        turn = {"stream": True, "tools": [{"name": "Bash"}]}
        msg = {"role": "user", "content": [{"type": "text", "text": "judge says no"}]}
        status, body = post("/v1/messages?beta=true", {**turn, "messages": [msg]})
        assert status == 200 and '"text": "judged"' in body
        status, body = post("/v1/messages?beta=true", {**turn, "messages": []})
        events = [line[7:] for line in body.splitlines() if line.startswith("event: ")]
        assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
        assert '"type": "input_json_delta"' in body and '"stop_reason": "tool_use"' in body
        status, body = post("/v1/messages", {"messages": [], "max_tokens": 1})  # aux: no tools
        assert status == 200 and json.loads(body)["content"][0]["type"] == "text"
        status, body = post("/v1/messages/count_tokens", {"messages": []})
        assert status == 200 and json.loads(body)["input_tokens"] >= 1
        status, body = post("/v1/messages?beta=true", {**turn, "messages": []})
        assert '"text": "default!"' in body

        assert post("/v1/responses", {"input": []})[0] == 429
        status, body = post("/v1/responses", {"input": [], "tools": [{"name": "exec_command"}]})
        assert status == 200 and "response.completed" in body and "default!" in body

        assert len(md.requests_for("claude")) == 3
        assert [r.kind for r in md.requests_for("claude", kind=None)] == [
            "turn",
            "turn",
            "aux",
            "count_tokens",
            "turn",
        ]
        assert len(md.requests_for("codex")) == 2


def test_model_double_answers_structured_steps() -> None:
    """No CLI needed: a Structured step is a StructuredOutput call when the turn offers that
    tool, JSON text when it does not, and codex's JSON message; output_schema reads the ask."""
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    with ModelDouble() as md:
        md.claude.structured({"ok": True}).structured({"ok": False})
        md.codex.structured({"ok": True})

        def post(path: str, body: dict) -> str:
            conn = http.client.HTTPConnection("127.0.0.1", md.port, timeout=10)
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            return conn.getresponse().read().decode()

        tools = [{"name": "Bash"}, {"name": "StructuredOutput", "input_schema": schema}]
        body = post("/v1/messages?beta=true", {"stream": True, "tools": tools, "messages": []})
        data = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
        starts = [d for d in data if d["type"] == "content_block_start"]
        assert [s["content_block"]["name"] for s in starts] == ["StructuredOutput"]
        assert '"stop_reason": "tool_use"' in body and "partial_json" in body
        plain = post("/v1/messages?beta=true", {"stream": True, "tools": [{"name": "Bash"}], "messages": []})
        assert '"type": "text_delta"' in plain and "tool_use" not in plain
        fmt = {"format": {"type": "json_schema", "strict": True, "schema": schema, "name": "x"}}
        answer = post("/v1/responses", {"input": [], "text": fmt})
        data = [json.loads(line[6:]) for line in answer.splitlines() if line.startswith("data: ")]
        done = [d for d in data if d["type"] == "response.output_text.done"]
        assert [json.loads(d["text"]) for d in done] == [{"ok": True}]
        claude_turn, plain_turn = md.requests_for("claude")
        assert claude_turn.output_schema == schema and plain_turn.output_schema is None
        assert md.requests_for("codex")[0].output_schema == schema


# --------------------------------------------------------------------------- claude


def test_claude_hello(model_double, claude_env, claude_bin, tmp_path) -> None:
    model_double.claude.reply("Hi from the double")
    run = clis.run_cli(clis.claude_argv("hi", claude=claude_bin), claude_env, tmp_path)
    assert run.returncode == 0, run.stderr
    init = run.first("system", "init")
    assert init["session_id"]
    texts = [
        c["text"] for e in run.of_type("assistant") for c in e["message"]["content"] if c["type"] == "text"
    ]
    assert texts == ["Hi from the double"]
    result = run.first("result")
    assert result["is_error"] is False and result["subtype"] == "success"
    assert result["result"] == "Hi from the double"
    assert result["session_id"] == init["session_id"]
    assert "total_cost_usd" in result and result["num_turns"] == 1
    # With CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 the only request is the turn itself.
    reqs = model_double.requests_for("claude", kind=None)
    assert [(r.method, r.path, r.query) for r in reqs] == [("POST", "/v1/messages", {"beta": ["true"]})]
    assert reqs[0].body["stream"] is True and "Bash" in reqs[0].tool_names


def test_claude_bash_tool_writes_file(model_double, claude_env, claude_bin, git_repo) -> None:
    model_double.claude.bash("echo made-by-claude > made.txt && echo wrote", text="Writing.")
    model_double.claude.reply("File written.")
    run = clis.run_cli(
        clis.claude_argv("make a file", "--allowedTools", "Bash", claude=claude_bin),
        claude_env,
        git_repo,
    )
    assert run.returncode == 0, run.stderr
    assert (git_repo / "made.txt").read_text() == "made-by-claude\n"
    second = model_double.requests_for("claude")[1]
    (tool_result,) = second.tool_results
    assert tool_result["is_error"] is False and "wrote" in json.dumps(tool_result["content"])
    user_lines = run.of_type("user")
    assert user_lines and user_lines[0]["message"]["content"][0]["type"] == "tool_result"
    result = run.first("result")
    assert result["is_error"] is False and result["result"] == "File written."
    assert result["num_turns"] == 2


def test_claude_resume_sends_earlier_turn(model_double, claude_env, claude_bin, tmp_path) -> None:
    model_double.claude.reply("I will remember PINEAPPLE.")
    model_double.claude.when(lambda r: "what was the word" in r.last_user_text, "PINEAPPLE")
    first = clis.run_cli(
        clis.claude_argv("remember the word PINEAPPLE", claude=claude_bin), claude_env, tmp_path
    )
    assert first.returncode == 0, first.stderr
    session_id = first.first("result")["session_id"]

    second = clis.run_cli(
        clis.claude_argv("what was the word?", f"--resume={session_id}", claude=claude_bin),
        claude_env,
        tmp_path,
    )
    assert second.returncode == 0, second.stderr
    assert second.first("result")["result"] == "PINEAPPLE"
    assert second.first("system", "init")["session_id"] == session_id
    resumed = model_double.requests_for("claude")[-1]
    history = json.dumps(resumed.messages)
    assert "remember the word PINEAPPLE" in history
    assert "I will remember PINEAPPLE." in history  # the earlier assistant turn


def test_claude_bash_runs_in_own_session_and_outlives_sigkill(
    model_double, claude_env, claude_bin, git_repo
) -> None:
    # A bare `sleep 600` is refused by claude's Bash tool ("Blocked: standalone sleep"),
    # so chain it after an echo.
    model_double.claude.bash("echo started && sleep 600", timeout_ms=600_000)
    proc = _popen(clis.claude_argv("wait", "--allowedTools", "Bash", claude=claude_bin), claude_env, git_repo)
    try:
        sleeper = _wait_for(lambda: _find_sleep(proc.pid))
        tree = clis.process_tree(proc.pid)
        shell = sleeper.parent()
        assert shell is not None and shell.pid != proc.pid and shell.ppid() == proc.pid
        # The Bash tool's shell is a session leader: another session AND process group than
        # claude, so killpg(claude) does not reach it.
        assert os.getsid(shell.pid) == shell.pid != os.getsid(proc.pid)
        assert os.getpgid(sleeper.pid) == shell.pid != os.getpgid(proc.pid)

        group = os.getpgid(proc.pid)
        own_group = [p for p in tree if p.pid != proc.pid and _pgid(p) == group]
        os.killpg(group, signal.SIGKILL)  # claude's own group only
        proc.wait(timeout=10)
        _wait_for(lambda: not clis.alive(own_group))
        assert sleeper in clis.alive(tree), "sleep died with claude's group; expected orphan"

        assert clis.kill_tree(tree) == []
        assert _find_sleep(1) is None or not clis.alive([sleeper])
    finally:
        clis.kill_tree(clis.process_tree(proc.pid))
        proc.kill()
        proc.communicate()


def test_claude_sigterm_exits_143_and_kills_its_tool(model_double, claude_env, claude_bin, git_repo) -> None:
    model_double.claude.bash("echo started && sleep 600", timeout_ms=600_000)
    proc = _popen(clis.claude_argv("wait", "--allowedTools", "Bash", claude=claude_bin), claude_env, git_repo)
    tree: list[psutil.Process] = []
    try:
        sleeper = _wait_for(lambda: _find_sleep(proc.pid))
        tree = clis.process_tree(proc.pid)
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 143
        events = clis.parse_json_lines(out)
        assert not [e for e in events if e.get("type") == "result"]  # no result on SIGTERM
        _wait_for(lambda: not clis.alive([sleeper]), timeout=5)
    finally:
        clis.kill_tree(tree)
        proc.kill()
        proc.communicate()


def test_claude_background_task_keeps_cli_alive_after_result(
    model_double, claude_env, claude_bin, git_repo
) -> None:
    """`result` is not the end: with a background Bash task, claude -p prints `result`, waits
    for the task, then runs another turn (new system/init ... second `result`) and exits."""
    model_double.claude.bash("sleep 2", background=True)
    model_double.claude.reply("first result")
    model_double.claude.reply("after the background task")
    proc = _popen(clis.claude_argv("bg", "--allowedTools", "Bash", claude=claude_bin), claude_env, git_repo)
    try:
        assert proc.stdout is not None
        first_result_at = None
        for line in proc.stdout:
            if '"type":"result"' in line:
                first_result_at = time.monotonic()
                assert json.loads(line)["result"] == "first result"
                break
        assert first_result_at is not None
        assert proc.poll() is None  # still running after its `result`
        rest, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert time.monotonic() - first_result_at > 1.0
        later = clis.parse_json_lines(rest)
        results = [e for e in later if e.get("type") == "result"]
        assert [r["result"] for r in results] == ["after the background task"]
        assert any(e.get("subtype") == "task_notification" for e in later)
    finally:
        clis.kill_tree(clis.process_tree(proc.pid))
        proc.kill()
        proc.communicate()


def test_claude_api_error_is_reported_in_result(model_double, claude_env, claude_bin, tmp_path) -> None:
    model_double.claude.add_turn(HttpError(500, "scripted outage"))
    run = clis.run_cli(clis.claude_argv("hi", claude=claude_bin), claude_env, tmp_path)
    assert run.returncode == 1
    result = run.first("result")
    # "success" subtype, but is_error: judge by is_error.
    assert result["subtype"] == "success" and result["is_error"] is True
    assert result["api_error_status"] == 500 and "scripted outage" in result["result"]
    assert len(model_double.requests_for("claude")) == 1  # x-should-retry: false honoured


VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "passed": {"type": "boolean"},
        "score": {"type": "number"},
        "justification": {"type": "string"},
    },
    "required": ["passed", "score", "justification"],
    "additionalProperties": False,
}
BRACES_VERDICT = {"passed": True, "score": 0.9, "justification": "handles {} edge case"}


def test_claude_json_schema_is_a_structured_output_tool(
    model_double, claude_env, claude_bin, tmp_path
) -> None:
    model_double.claude.structured(BRACES_VERDICT)
    schema = json.dumps(VERDICT_SCHEMA)
    run = clis.run_cli(
        clis.claude_argv("judge", "--json-schema", schema, claude=claude_bin), claude_env, tmp_path
    )
    assert run.returncode == 0, run.stderr
    # The CLI adds a tool the model must call; the schema is its input schema; no tool_choice.
    (req,) = model_double.requests_for("claude")
    assert "StructuredOutput" in req.tool_names and "tool_choice" not in req.body
    assert req.output_schema == VERDICT_SCHEMA
    # One call ends the run: the result carries the object (and its JSON as the text).
    (tool_result,) = run.of_type("user")[0]["message"]["content"]
    assert tool_result["type"] == "tool_result" and not tool_result.get("is_error")
    result = run.first("result")
    assert result["is_error"] is False and result["structured_output"] == BRACES_VERDICT
    assert json.loads(result["result"]) == BRACES_VERDICT


def test_claude_json_schema_retries_a_breaking_call_then_fails(
    model_double, claude_env, claude_bin, tmp_path
) -> None:
    for _ in range(5):
        model_double.claude.structured({"passed": "yes"})
    schema = json.dumps(VERDICT_SCHEMA)
    run = clis.run_cli(
        clis.claude_argv("judge", "--json-schema", schema, claude=claude_bin), claude_env, tmp_path
    )
    assert run.returncode == 1
    # The CLI checks each call against the schema and tells the model what is wrong.
    second = model_double.requests_for("claude")[1]
    (refused,) = second.tool_results
    assert refused["is_error"] is True and "does not match required schema" in json.dumps(refused)
    result = run.first("result")
    assert result["subtype"] == "error_max_structured_output_retries" and result["is_error"] is True
    assert "structured_output" not in result and "after 5 attempts" in result["errors"][0]
    assert len(model_double.requests_for("claude")) == 5


def test_claude_json_schema_text_reply_is_nudged_once(model_double, claude_env, claude_bin, tmp_path) -> None:
    model_double.claude.reply('Sure: {"passed": true}')
    model_double.claude.reply("Still prose.")
    schema = json.dumps(VERDICT_SCHEMA)
    run = clis.run_cli(
        clis.claude_argv("judge", "--json-schema", schema, claude=claude_bin), claude_env, tmp_path
    )
    assert run.returncode == 0, run.stderr
    _first, second = model_double.requests_for("claude")
    assert "[structured-output-enforce]" in second.last_user_text
    # A success without structured_output: the caller must treat it as no reply.
    result = run.first("result")
    assert result["is_error"] is False and "structured_output" not in result
    assert result["result"] == "Still prose."


# --------------------------------------------------------------------------- codex


def _agent_texts(run: clis.CliRun) -> list[str]:
    return [
        e["item"]["text"] for e in run.of_type("item.completed") if e["item"].get("type") == "agent_message"
    ]


def test_codex_hello(model_double, codex_env, codex_bin, tmp_path) -> None:
    model_double.codex.reply("Hi from the double")
    run = clis.run_cli(clis.codex_argv("hi", codex=codex_bin), codex_env, tmp_path)
    assert run.returncode == 0, run.stderr
    types = [e["type"] for e in run.events]
    assert types == ["thread.started", "turn.started", "item.completed", "turn.completed"]
    assert run.first("thread.started")["thread_id"]
    assert _agent_texts(run) == ["Hi from the double"]
    assert run.first("turn.completed")["usage"]["input_tokens"] > 0
    (req,) = model_double.requests_for("codex", kind=None)
    assert (req.method, req.path) == ("POST", "/v1/responses")
    assert req.body["stream"] is True and req.headers["authorization"].startswith("Bearer ")


def test_codex_native_binary_runs_directly(model_double, codex_env, codex_bin, tmp_path) -> None:
    native = clis.codex_native_binary()
    if native is None:
        pytest.skip("codex installed without the npm platform package (.tools/node)")
    run = clis.run_cli(clis.codex_argv("hi", codex=native), codex_env, tmp_path)
    assert run.returncode == 0, run.stderr
    assert _agent_texts(run) == [model_double.codex.default_text]


def test_codex_shell_command_writes_file(model_double, codex_env, codex_bin, git_repo) -> None:
    model_double.codex.bash("echo made-by-codex > made.txt && echo wrote")
    model_double.codex.reply("File written.")
    run = clis.run_cli(clis.codex_argv("make a file", codex=codex_bin), codex_env, git_repo)
    assert run.returncode == 0, run.stderr
    assert (git_repo / "made.txt").read_text() == "made-by-codex\n"
    cmd = [e["item"] for e in run.of_type("item.completed") if e["item"]["type"] == "command_execution"]
    assert cmd and cmd[0]["exit_code"] == 0 and cmd[0]["aggregated_output"] == "wrote\n"
    assert _agent_texts(run) == ["File written."]
    (output,) = model_double.requests_for("codex")[1].tool_results
    assert output["type"] == "function_call_output" and "wrote" in output["output"]


def test_codex_api_error_fails_the_turn(model_double, codex_env, codex_bin, tmp_path) -> None:
    model_double.codex.add_turn(HttpError(400, "scripted refusal"))
    run = clis.run_cli(clis.codex_argv("hi", codex=codex_bin), codex_env, tmp_path)
    assert run.returncode == 1
    failed = run.first("turn.failed")
    assert "scripted refusal" in failed["error"]["message"]
    assert not run.of_type("turn.completed")
    assert len(model_double.requests_for("codex")) == 1  # request_max_retries = 0


def test_codex_exec_resume(model_double, codex_env, codex_bin, tmp_path) -> None:
    model_double.codex.reply("I will remember MANGO.")
    model_double.codex.when(lambda r: "what was the word" in r.last_user_text, "MANGO")
    first = clis.run_cli(clis.codex_argv("remember MANGO", codex=codex_bin), codex_env, tmp_path)
    assert first.returncode == 0, first.stderr
    thread_id = first.first("thread.started")["thread_id"]

    second = clis.run_cli(
        clis.codex_argv("what was the word?", "resume", thread_id, codex=codex_bin),
        codex_env,
        tmp_path,
    )
    assert second.returncode == 0, second.stderr
    assert second.first("thread.started")["thread_id"] == thread_id
    assert _agent_texts(second) == ["MANGO"]
    history = json.dumps(model_double.requests_for("codex")[-1].messages)
    assert "remember MANGO" in history and "I will remember MANGO." in history


def test_codex_sigterm_orphans_grandchildren(model_double, codex_env, codex_bin, git_repo) -> None:
    # `&& echo after` keeps bash alive as sleep's parent (else bash execs sleep directly).
    model_double.codex.bash("echo started && sleep 600 && echo after", timeout_ms=30_000)
    proc = _popen(clis.codex_argv("wait", codex=codex_bin), codex_env, git_repo)
    tree: list[psutil.Process] = []
    try:
        sleeper = _wait_for(lambda: _find_sleep(proc.pid))
        tree = clis.process_tree(proc.pid)
        shell = sleeper.parent()
        assert shell is not None
        assert os.getsid(shell.pid) == shell.pid != os.getsid(proc.pid)  # own session
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == -signal.SIGTERM  # no handler: killed by the signal
        assert "turn.completed" not in out and "turn.failed" not in out
        # The shell dies with codex (parent-death signal), its child sleep does not.
        _wait_for(lambda: not clis.alive([shell]))
        assert clis.alive([sleeper])
        assert clis.kill_tree(tree) == []
    finally:
        clis.kill_tree(tree)
        proc.kill()
        proc.communicate()


def test_codex_output_schema_is_the_responses_text_format(
    model_double, codex_env, codex_bin, tmp_path
) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(VERDICT_SCHEMA))
    model_double.codex.add_turn(Structured(BRACES_VERDICT))
    model_double.codex.reply('Sure: {"passed": "yes"}')
    argv = clis.codex_argv("judge", "--output-schema", str(schema_file), codex=codex_bin)
    run = clis.run_cli(argv, codex_env, tmp_path)
    assert run.returncode == 0, run.stderr
    (req,) = model_double.requests_for("codex")
    fmt = req.body["text"]["format"]
    assert (fmt["type"], fmt["strict"], fmt["name"]) == ("json_schema", True, "codex_output_schema")
    assert req.output_schema == VERDICT_SCHEMA
    assert [json.loads(t) for t in _agent_texts(run)] == [BRACES_VERDICT]
    # codex checks nothing itself: whatever the model says is the final message.
    again = clis.run_cli(argv, codex_env, tmp_path)
    assert again.returncode == 0 and _agent_texts(again) == ['Sure: {"passed": "yes"}']
