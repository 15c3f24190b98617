"""The CLI client against a live ``gateway serve`` (and without one)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from gwtest import GATEWAY_BIN, ServeProcess


def cli(state_dir: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATEWAY_BIN, *args, "--state-dir", str(state_dir)] if args[0] != "run" else
        [GATEWAY_BIN, "run", "--state-dir", str(state_dir), *args[1:]],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_no_gateway_is_one_line_and_nonzero(tmp_path: Path) -> None:
    for args in (["status"], ["ps"], ["kill", "p_x"], ["logs", "p_x"]):
        done = cli(tmp_path / "empty", *args)
        assert done.returncode == 3, done
        assert done.stderr.count("\n") == 1 and "no gateway is running" in done.stderr
    # A stale gateway.json (the gateway died) gives the same clear answer.
    state = tmp_path / "stale"
    state.mkdir()
    (state / "gateway.json").write_text(json.dumps({"port": 1, "pid": 1}))
    (state / "gateway-token").write_text("x" * 43)
    done = cli(state, "ps")
    assert done.returncode == 3 and "no gateway is running" in done.stderr


def test_run_ps_logs_follow_kill(serve_process: ServeProcess, tmp_path: Path) -> None:
    state = serve_process.state_dir
    script = "import time\nfor i in range(3): print('tick', i, flush=True)\ntime.sleep(60)"
    started = cli(state, "run", "--cwd", str(tmp_path), "--", sys.executable, "-c", script)
    assert started.returncode == 0, started.stderr
    pid = started.stdout.strip()
    assert pid.startswith("p_")
    ps = cli(state, "ps")
    assert ps.returncode == 0 and pid in ps.stdout and "running" in ps.stdout
    ps_json = json.loads(cli(state, "ps", "--json").stdout)
    assert [p["id"] for p in ps_json["processes"]] == [pid]
    follower = subprocess.Popen(
        [GATEWAY_BIN, "logs", "-f", pid, "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        got = [follower.stdout.readline().strip() for _ in range(3)]
        assert got == ["tick 0", "tick 1", "tick 2"]
        killed = cli(state, "kill", pid)
        assert killed.returncode == 0, killed.stderr
        assert "killed" in killed.stdout and "SIGTERM" in killed.stdout
        follower.communicate(timeout=20)
        assert follower.returncode == 1  # the followed process did not exit cleanly
    finally:
        if follower.poll() is None:
            follower.kill()
    again = cli(state, "kill", pid)
    assert again.returncode == 0 and "already ended" in again.stdout
    logs = cli(state, "logs", pid, "--since", "1")
    assert logs.stdout.splitlines()[:2] == ["tick 1", "tick 2"]
    assert cli(state, "ps").stdout.count("\n") == 1  # header only: nothing active
    assert pid in cli(state, "ps", "--all").stdout


def test_kill_many_by_ticket_and_all(serve_process: ServeProcess) -> None:
    state = serve_process.state_dir
    tickets = ("T-1", "T-1", "T-2")
    ids = [cli(state, "run", "--ticket", t, "--", "sleep", "60").stdout.strip() for t in tickets]
    assert all(i.startswith("p_") for i in ids)
    usage = cli(state, "kill")
    assert usage.returncode == 2 and "--all" in usage.stderr
    by_ticket = cli(state, "kill", "--ticket", "T-1")
    assert by_ticket.returncode == 0, by_ticket.stderr
    lines = by_ticket.stdout.splitlines()
    assert len(lines) == 2 and all("killed" in line and "SIGTERM" in line for line in lines)
    assert {line.split(":")[0] for line in lines} == set(ids[:2])
    rest = json.loads(cli(state, "kill", "--all", "--json").stdout)
    assert [r["process"]["id"] for r in rest["receipts"]] == [ids[2]]
    assert "nothing to kill" in cli(state, "kill", "--all").stdout


def test_status_token_approvals_open(serve_process: ServeProcess) -> None:
    state = serve_process.state_dir
    status = cli(state, "status")
    assert status.returncode == 0 and f"127.0.0.1:{serve_process.port}" in status.stdout
    assert cli(state, "token").stdout.strip() == serve_process.token
    assert "no pending approvals" in cli(state, "approvals").stdout
    opened = json.loads(cli(state, "open", "--no-browser", "--json").stdout)
    assert opened["url"].startswith(serve_process.url) and opened["challenge"] in opened["url"]
    missing = cli(state, "kill", "p_nope")
    assert missing.returncode == 1 and "404" in missing.stderr


def test_cli_approves_held_request(serve_process: ServeProcess) -> None:
    import httpx

    state = serve_process.state_dir
    headers = {"X-Desktop-Gateway-Token": serve_process.token}
    with httpx.Client(base_url=serve_process.url, headers=headers, trust_env=False, timeout=30) as client:
        client.put("/api/gateway/policy", json={"thresholds": {"gateway": "none"}})
        held = subprocess.Popen(
            [GATEWAY_BIN, "ps", "--state-dir", str(state)], stdout=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 10
        pending: list = []
        while not pending and time.monotonic() < deadline:
            pending = client.get("/api/gateway/approvals").json()["approvals"]
            time.sleep(0.02)  # polling another process, bounded by the deadline
        assert pending, "request was not held"
        listed = cli(state, "approvals")
        assert pending[0]["id"] in listed.stdout and "process_table" in listed.stdout
        assert cli(state, "approvals", pending[0]["id"], "--approve").returncode == 0
        assert held.wait(20) == 0
