"""``gateway serve`` as a real process: discovery file, ports, one gateway per state dir,
and an orderly shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import signal
import socket
import stat
import threading
from pathlib import Path

import httpx
import pytest
from gwtest import ServeProcess, free_port_block, launch_serve, wait_serving

H = "X-Desktop-Gateway-Token"


def test_serve_writes_info_and_answers_health(serve_process: ServeProcess) -> None:
    info_path = serve_process.state_dir / "gateway.json"
    assert stat.S_IMODE(info_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((serve_process.state_dir / "gateway-token").stat().st_mode) == 0o600
    info = serve_process.info
    assert set(info) >= {"port", "pid", "version", "startedAt"}
    assert info["pid"] == serve_process.proc.pid
    health = httpx.get(f"{serve_process.url}/health", trust_env=False).json()
    assert health["status"] == "ok"
    assert health["port"] == serve_process.port
    assert health["pid"] == serve_process.proc.pid
    assert "health_check" in health["capabilities"]["operations"]
    assert set(health["capabilities"]["binaries"]) == {"claude", "gh", "codex", "python3", "git"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_streams_then_children_and_exits_zero(serve_process: ServeProcess, sig: int) -> None:
    sp = serve_process
    headers = {H: sp.token}
    with httpx.Client(base_url=sp.url, headers=headers, trust_env=False, timeout=30) as client:
        rec = client.post("/api/gateway/processes", json={"argv": ["sleep", "300"]}).json()
        lines: list[dict] = []
        opened = threading.Event()

        def follow() -> None:
            with client.stream("GET", f"/api/gateway/processes/{rec['id']}/logs?follow=1") as r:
                opened.set()
                lines.extend(json.loads(x) for x in r.iter_lines() if x)

        reader = threading.Thread(target=follow)
        reader.start()
        assert opened.wait(10)
        assert sp.stop(sig) == 0
        reader.join(10)
    assert lines and lines[-1]["type"] == "end", lines
    assert lines[-1]["process"]["id"] == rec["id"]
    assert not (sp.state_dir / "gateway.json").exists()
    # The child was stopped on the way out and recorded as such.
    import sqlite3

    with sqlite3.connect(sp.state_dir / "gateway.db") as db:
        state, reason = db.execute(
            "SELECT state, stop_reason FROM processes WHERE id = ?", (rec["id"],)
        ).fetchone()
    assert (state, reason) == ("killed", "shutdown")


def test_second_gateway_on_same_state_dir_refuses_and_names_port(
    serve_process: ServeProcess, tmp_path: Path
) -> None:
    second = launch_serve(serve_process.state_dir, tmp_path / "second.log", "--port", "0")
    assert second.proc.wait(20) != 0
    message = second.stderr().strip().splitlines()[-1]
    assert "already runs" in message and str(serve_process.port) in message
    # The first one is untouched.
    assert httpx.get(f"{serve_process.url}/health", trust_env=False).status_code == 200


def test_second_gateway_probe_refuses_on_same_port(serve_process: ServeProcess, tmp_path: Path) -> None:
    """Even when asked for the holder's port, the answer names the first gateway."""
    second = launch_serve(
        serve_process.state_dir, tmp_path / "second.log", env={"GATEWAY_PORT": str(serve_process.port)}
    )
    assert second.proc.wait(20) != 0
    assert str(serve_process.port) in second.stderr()


def test_port_fallback_when_first_port_is_taken(tmp_path: Path) -> None:
    base = free_port_block(4)
    with socket.socket() as squatter:  # not a gateway: /health does not answer
        squatter.bind(("127.0.0.1", base))
        squatter.listen()
        sp = launch_serve(tmp_path / "s", tmp_path / "s.log", env={"GATEWAY_PORT": str(base)})
        try:
            wait_serving(sp)
            assert sp.port == base + 1
        finally:
            assert sp.stop() == 0


def test_clear_error_when_all_ports_are_taken(tmp_path: Path) -> None:
    base = free_port_block(4)
    socks = []
    try:
        for i in range(4):
            s = socket.socket()
            s.bind(("127.0.0.1", base + i))
            s.listen()
            socks.append(s)
        sp = launch_serve(tmp_path / "s", tmp_path / "s.log", env={"GATEWAY_PORT": str(base)})
        assert sp.proc.wait(20) != 0
        last = sp.stderr().strip().splitlines()[-1]
        assert "no free port" in last and str(base) in last and str(base + 3) in last
    finally:
        for s in socks:
            s.close()


def test_non_loopback_host_needs_allow_remote(tmp_path: Path) -> None:
    sp = launch_serve(tmp_path / "s", tmp_path / "s.log", "--host", "0.0.0.0", "--port", "0")
    assert sp.proc.wait(20) != 0
    assert "--allow-remote" in sp.stderr()


def test_access_log_lines_are_json_with_the_operation(serve_process: ServeProcess) -> None:
    token = serve_process.token
    assert httpx.get(
        f"{serve_process.url}/api/gateway/version", headers={H: token}, trust_env=False
    ).is_success
    assert httpx.get(f"{serve_process.url}/api/gateway/version", trust_env=False).status_code == 401
    lines = [json.loads(x) for x in serve_process.stderr().splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("logger") == "gateway.access" and x["path"] == "/api/gateway/version"]
    assert [(x["status"], x["principal"]) for x in access] == [(200, "gateway"), (401, None)]
    assert all(x["operation"] == "health_check" and x["method"] == "GET" for x in access)
    assert all(x["ts"].endswith("Z") and x["durationMs"] >= 0 for x in access)
