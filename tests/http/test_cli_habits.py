"""The CLI as a pm2 / supervisorctl user expects it: flags, ids, output, help and start-up cost."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gwtest import GATEWAY_BIN, ServeProcess

from gateway.http.cli import build_parser
from gateway.http.cli_show import Conversation, Style, ps_rows, short_command
from gateway.supervisor import __version__

from agents import clis
from agents.model_double import ModelDouble

REPO = Path(__file__).resolve().parents[2]


def gw(*args: str, timeout: float = 30, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATEWAY_BIN, *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd,
    )  # fmt: skip


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.args, done.stdout, done.stderr)
    return done.stdout


def record(state: Path, process_id: str) -> dict:
    return json.loads(ok(gw("show", process_id, "--json", "--state-dir", str(state))))


def wait_record(state: Path, process_id: str, pred, timeout: float = 20.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        rec = record(state, process_id)
        if pred(rec):
            return rec
        assert time.monotonic() < deadline, rec
        time.sleep(0.05)  # polling another process's state, bounded by the deadline


# ---- no gateway needed --------------------------------------------------------------------------


def test_version_and_python_m_gateway() -> None:
    assert ok(gw("--version")).strip() == f"gateway {__version__}"
    # From the repository root, where ./http and ./supervisor sit on sys.path[0]: the
    # package still resolves, and `http` stays the standard library's.
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert done.returncode == 0 and done.stdout.strip() == f"gateway {__version__}", done
    probe = "import sys, http, http.client, gateway.http.cli; print(http.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=30
    )
    assert where.returncode == 0, where.stderr
    assert not where.stdout.strip().startswith(str(REPO)), where.stdout


def test_read_commands_import_neither_httpx_nor_the_engine() -> None:
    probe = (
        "import sys\n"
        "from gateway.http import cli, cli_client, cli_show\n"
        "cli.build_parser()\n"
        "heavy = {'httpx', 'trio', 'quart', 'hypercorn', 'gateway.supervisor.engine', 'sqlite3'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "[]", done


def _actions(parser: argparse.ArgumentParser, path: str = "gateway"):  # type: ignore[no-untyped-def]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_option_has_help_and_the_help_is_plain_text() -> None:
    missing = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, a in _actions(build_parser())
        if not a.help or (a.help == argparse.SUPPRESS and a.dest not in ("state_dir", "json"))
    ]
    assert missing == []
    top = ok(gw("--help"))
    assert "``" not in top and "examples:" in top
    for command in ("run", "logs", "serve", "service"):
        assert "``" not in ok(gw(command, "--help"))


def test_bad_port_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    done = gw("serve", "--port", "99999", "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 2
    assert "out of range" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "s").exists()  # refused before anything was created
    done = gw("serve", "--port", "http", "--state-dir", str(tmp_path / "s"))
    assert done.returncode == 2 and "not a number" in done.stderr


def test_token_and_env_name_the_state_dir_when_there_is_none(tmp_path: Path) -> None:
    for command in ("token", "env"):
        done = gw(command, "--state-dir", str(tmp_path / "nothing"))
        assert done.returncode != 0 and "--state-dir" in done.stderr and str(tmp_path) in done.stderr


def test_bash_completion_registers_and_knows_the_commands() -> None:
    script = ok(gw("completion", "bash"))
    assert "restart" in script and "--max-runtime" in script
    done = subprocess.run(
        ["bash", "-c", 'source /dev/stdin <<< "$0"; complete -p gateway', script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and "gateway" in done.stdout, done.stderr
    assert "compdef" in ok(gw("completion", "zsh"))


def test_conversation_lines_from_events() -> None:
    talk = Conversation(Style(False))
    seen = []
    for obj in (
        {"stream": "stdout", "text": '{"type":"system"}', "event": {"type": "session", "sessionId": "s1"}},
        {"stream": "stdout", "text": "{}", "event": {"type": "text", "text": "Let me look."}},
        {
            "stream": "stdout",
            "text": "{}",
            "event": {"type": "tool_use", "name": "Bash", "input": {"command": "ls -la", "description": "x"}},
        },
        {
            "stream": "stdout",
            "text": "{}",
            "event": {"type": "tool_result", "output": "a\nb\nc\nd\ne", "isError": False},
        },
        {"stream": "stdout", "text": '{"type":"rate_limit_event"}'},
        {
            "stream": "stdout",
            "text": json.dumps(
                {"type": "assistant", "message": {"content": [{"type": "thinking", "thinking": "hmm"}]}}
            ),
            "event": {"type": "thinking", "text": "hmm"},  # the provider's parse of that line
        },
        {"stream": "stderr", "text": "warning: slow"},
        {
            "stream": "stdout",
            "text": "{}",
            "event": {
                "type": "result",
                "ok": True,
                "turns": 2,
                "durationMs": 1500,
                "costUsd": 0.01,
                "usage": {"input_tokens": 10, "output_tokens": 5},
            },
        },
    ):
        seen += talk.lines(obj)
    assert seen == [
        "── session s1",
        "assistant: Let me look.",
        "→ Bash: ls -la",
        "  ← result:",
        "    a",
        "    b",
        "    c",
        "    (+2 lines)",
        "thinking: hmm",
        "warning: slow",
        "✓ done (2 turns, 1.5s, $0.0100, 10 in, 5 out)",
    ]
    coloured = Conversation(Style(True)).lines({"stream": "stderr", "text": "x"})
    assert coloured == ["\x1b[31mx\x1b[0m"]


def test_ps_rows_show_age_restarts_exit_and_a_short_command() -> None:
    now = time.time()
    started = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - 125))
    text = ps_rows(
        [{"id": "p_1", "kind": "command", "state": "exited", "pid": 7, "startedAt": started,
          "endedAt": None, "restarts": 2, "exitCode": 3, "ticketId": None,
          "argv": ["/usr/local/bin/python3", "-c", "print('hi there')"]}],
        now=now,
    )  # fmt: skip
    header, row = text.splitlines()
    assert header.split() == ["ID", "KIND", "STATE", "PID", "AGE", "RST", "EXIT", "TICKET", "COMMAND"]
    assert row.split()[4:7] == ["2m05s", "2", "3"]
    assert row.endswith("python3 -c 'print('\"'\"'hi there'\"'\"')'")
    assert short_command(["/bin/sleep", "1" * 100], width=20) == "sleep " + "1" * 13 + "…"


# ---- against a running gateway ------------------------------------------------------------------


def test_global_options_go_anywhere_and_ids_match_by_prefix(serve_process: ServeProcess) -> None:
    state = str(serve_process.state_dir)
    first = ok(gw("run", "--state-dir", state, "--", "sleep", "60")).strip()
    second = ok(gw("--state-dir", state, "run", "--", "sleep", "61")).strip()
    before = json.loads(ok(gw("--state-dir", state, "--json", "ps")))
    after = json.loads(ok(gw("ps", "--json", "--state-dir", state)))
    assert [p["id"] for p in before["processes"]] == [p["id"] for p in after["processes"]] == [first, second]
    table = ok(gw("ps", "--state-dir", state)).splitlines()
    assert table[0].split() == ["ID", "KIND", "STATE", "PID", "AGE", "RST", "EXIT", "TICKET", "COMMAND"]
    assert table[1].endswith("sleep 60")
    # A unique suffix (the ids share their time prefix), the id without p_, an ambiguous prefix.
    assert record(serve_process.state_dir, second[-5:])["id"] == second
    assert record(serve_process.state_dir, first[2:])["id"] == first
    ambiguous = gw("show", "p_", "--state-dir", state)
    assert ambiguous.returncode == 1 and "matches 2 processes" in ambiguous.stderr
    shown = ok(gw("show", first, "--state-dir", state))
    assert "command      sleep 60" in shown and "state        running" in shown
    killed = ok(gw("kill", first[-5:], "--state-dir", state))
    assert killed.startswith(f"{first}: killed")
    ok(gw("kill", second, "--state-dir", state))


def test_status_is_for_people_and_json_for_programs(serve_process: ServeProcess) -> None:
    state = str(serve_process.state_dir)
    text = ok(gw("status", "--state-dir", state))
    assert text.startswith(f"gateway {__version__}: ok")
    assert f"http://127.0.0.1:{serve_process.port}" in text and "{" not in text
    assert json.loads(ok(gw("status", "--json", "--state-dir", state)))["status"] == "ok"


def test_run_sets_env_and_labels_and_follows(serve_process: ServeProcess, tmp_path: Path) -> None:
    state = str(serve_process.state_dir)
    code = "import os, sys; print('greeting', os.environ['GREETING']); sys.exit(4)"
    done = gw(
        "run", "--state-dir", state, "-e", "GREETING=hello world", "--label", "team=ux",
        "--cwd", str(tmp_path), "--follow", "--", sys.executable, "-c", code,
    )  # fmt: skip
    assert done.returncode == 1  # followed to the end, and it failed
    ended = "[gateway] process ended (failed, exit code 4)"
    assert done.stdout.splitlines() == ["greeting hello world", ended]
    process_id = done.stderr.strip().splitlines()[0]
    rec = record(serve_process.state_dir, process_id)
    assert rec["labels"] == {"team": "ux"} and rec["exitCode"] == 4 and rec["cwd"] == str(tmp_path)
    assert ok(gw("logs", "-n", "1", process_id, "--state-dir", state)) == ended + "\n"
    assert ok(gw("logs", "--lines", "2", process_id, "--stream", "stdout", "--state-dir", state)) == (
        "greeting hello world\n"
    )
    assert "greeting" not in ok(gw("logs", process_id, "--stream", "stderr", "--state-dir", state))


def test_run_limits_and_restart_policy(serve_process: ServeProcess) -> None:
    state = serve_process.state_dir
    capped = ok(gw("run", "--state-dir", str(state), "--max-runtime", "0.5", "--", "sleep", "60")).strip()
    stalled = ok(gw("run", "--state-dir", str(state), "--stall", "0.5", "--", "sleep", "60")).strip()
    flaky = ok(
        gw("run", "--state-dir", str(state), "--restart", "on-failure", "--max-restarts", "2", "--",
           sys.executable, "-c", "raise SystemExit(3)")
    ).strip()  # fmt: skip
    assert wait_record(state, capped, lambda r: r["state"] == "killed")["stopReason"] == "timeout"
    assert wait_record(state, stalled, lambda r: r["state"] == "killed")["stopReason"] == "stalled"
    done = wait_record(state, flaky, lambda r: r["state"] in ("failed", "exited"), timeout=30)
    assert done["restarts"] == 2 and done["exitCode"] == 3
    bad = gw("run", "--state-dir", str(state), "--max-runtime", "-1", "--", "true")
    assert bad.returncode == 2 and "more than 0" in bad.stderr
    bad = gw("run", "--state-dir", str(state), "-e", "NOVALUE", "--", "true")
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr


def test_restart_runs_the_command_again(serve_process: ServeProcess) -> None:
    state = serve_process.state_dir
    old = ok(gw("run", "--state-dir", str(state), "-l", "app=web", "--", "sleep", "60")).strip()
    new = ok(gw("restart", old[-5:], "--state-dir", str(state))).strip()
    assert new != old and new.startswith("p_")
    assert record(state, old)["state"] == "killed"
    rec = record(state, new)
    assert rec["argv"] == ["sleep", "60"] and rec["labels"] == {"app": "web"} and rec["state"] == "running"
    ok(gw("kill", new, "--state-dir", str(state)))


def test_env_exports_work_in_a_shell(serve_process: ServeProcess) -> None:
    script = (
        'eval "$(gateway env --state-dir "$1")" && '
        'python3 -c "import os, urllib.request as u; '
        "r = u.Request(os.environ['GATEWAY_URL'] + '/api/gateway/version', "
        "headers={'X-Desktop-Gateway-Token': os.environ['TOKEN']}); "
        "print(os.environ['PORT'], u.urlopen(r).status)\""
    )
    path = f"{Path(GATEWAY_BIN).parent}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "NO_PROXY": "*"}
    done = subprocess.run(
        ["bash", "-c", script, "bash", str(serve_process.state_dir)],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(serve_process.port), "200"]


@pytest.mark.agents
def test_logs_read_an_agent_run_as_a_conversation(serve_process: ServeProcess, tmp_path: Path) -> None:
    claude = clis.find_cli("claude")
    if claude is None:
        pytest.skip("claude CLI not installed: run scripts/install-agent-clis.sh")
    state = str(serve_process.state_dir)
    with ModelDouble() as md:
        md.claude.bash("echo hello-from-the-tool", "Running it.")
        md.claude.reply("All done: the tool said hello.")
        env = clis.claude_env(md, tmp_path / "home")
        env_flags = [flag for key, value in env.items() for flag in ("-e", f"{key}={value}")]
        done = gw(
            "run", "--state-dir", state, "--events", "claude", "--cwd", str(tmp_path), *env_flags, "--follow",
            "--", *clis.claude_argv("say hello through bash", claude=claude),
            timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    talk = done.stdout.splitlines()
    assert "→ Bash: echo hello-from-the-tool" in talk
    assert "    hello-from-the-tool" in talk
    assert "assistant: All done: the tool said hello." in talk
    assert talk[-2].startswith("✓ done") and talk[-1].startswith("[gateway] process ended (exited")
    assert not any(line.startswith("{") for line in talk), talk
    process_id = done.stderr.strip().splitlines()[0]
    raw = ok(gw("logs", "--raw", process_id, "--state-dir", state)).splitlines()
    assert len(raw) > 3 and all(line.startswith("{") for line in raw[:-1]), raw  # last: [gateway] ended
    listed = ok(gw("logs", "--json", process_id, "--state-dir", state)).splitlines()
    events = [json.loads(line) for line in listed]
    assert any(e.get("event", {}).get("type") == "tool_use" for e in events)
