"""Error answers a person can act on: 415 for a body in another format, a 401 that says how to
get a token, and the serve log's formats (human on a terminal, JSON otherwise)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import httpx
from gwtest import GATEWAY_BIN, ServeProcess, launch_serve, wait_serving

H = "X-Desktop-Gateway-Token"


async def test_a_json_route_given_another_format_is_415(api: httpx.AsyncClient) -> None:
    for headers, body in (
        ({"Content-Type": "text/plain"}, b'{"argv": ["true"]}'),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"argv=true"),
        ({}, b'{"argv": ["true"]}'),  # a body with no Content-Type at all
    ):
        response = await api.post("/api/gateway/processes", content=body, headers=headers)
        assert response.status_code == 415, response.text
        error = response.json()["error"]
        assert error["code"] == "unsupported_media_type" and "application/json" in error["message"]
    # The same JSON with the right type works; no body at all is a missing body (400).
    good = await api.post("/api/gateway/processes", json={"argv": ["true"]})
    assert good.status_code == 201
    empty = await api.post("/api/gateway/processes")
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "invalid_request"
    # A structured suffix is JSON too.
    merge = {"Content-Type": "application/merge+json"}
    typed = await api.post("/api/gateway/processes", content=b'{"argv": ["true"]}', headers=merge)
    assert typed.status_code == 201


async def test_401_says_which_token_and_how_to_get_one(anon: httpx.AsyncClient) -> None:
    missing = (await anon.get("/api/gateway/processes")).json()["error"]
    assert missing["reason"] == "missing_token" and "`gateway token`" in missing["message"]
    wrong = (await anon.get("/api/gateway/processes", headers={H: "not-the-token"})).json()["error"]
    assert wrong["reason"] == "bad_token" and "gateway env" in wrong["message"]
    stale = await anon.get("/api/gateway/processes", headers={"X-Desktop-Session-Token": "old"})
    assert stale.status_code == 401
    assert stale.json()["error"]["reason"] == "session_expired"
    assert "gateway open" in stale.json()["error"]["message"]


def test_serve_logs_json_off_a_terminal_with_hypercorn_inside(serve_process: ServeProcess) -> None:
    lines = [json.loads(x) for x in serve_process.stderr().splitlines()]  # every line is JSON
    loggers = {x["logger"] for x in lines}
    assert {"gateway", "gateway.hypercorn"} <= loggers
    assert any("gateway --state-dir" in x["msg"] and " open" in x["msg"] for x in lines)


def test_no_access_log_and_log_level(tmp_path: Path) -> None:
    sp = launch_serve(tmp_path / "s", tmp_path / "s.log", "--port", "0", "--no-access-log")
    try:
        wait_serving(sp)
        assert httpx.get(f"{sp.url}/api/gateway/version", headers={H: sp.token}, trust_env=False).is_success
    finally:
        sp.stop()
    assert not [x for x in sp.stderr().splitlines() if '"gateway.access"' in x]
    assert "listening on" in sp.stderr()
    quiet = launch_serve(tmp_path / "q", tmp_path / "q.log", "--port", "0", "--log-level", "warning")
    try:
        wait_serving(quiet)
        httpx.get(f"{quiet.url}/api/gateway/version", headers={H: quiet.token}, trust_env=False)
    finally:
        quiet.stop()
    assert quiet.stderr().strip() == ""


def test_serve_on_a_terminal_writes_human_lines(tmp_path: Path) -> None:
    """A pseudo-terminal as stderr: plain lines, the dashboard hint, one short access line."""
    leader, follower = pty.openpty()
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [GATEWAY_BIN, "serve", "--state-dir", str(state), "--port", "0"],
        stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    out = b""

    def read_until(marker: bytes) -> None:
        nonlocal out
        while marker not in out:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, out
            if select.select([leader], [], [], left)[0]:  # wait for output, never sleep
                out += os.read(leader, 4096)

    try:
        deadline = time.monotonic() + 20
        read_until(b"open` for a sign-in link")
        port = json.loads((state / "gateway.json").read_text())["port"]
        token = (state / "gateway-token").read_text().strip()
        httpx.get(f"http://127.0.0.1:{port}/api/gateway/version", headers={H: token}, trust_env=False)
        read_until(b"access: GET /api/gateway/version 200")
    finally:
        proc.terminate()
        proc.wait(20)
        os.close(leader)
    text = out.decode()
    assert "{" not in text  # no JSON line anywhere
    assert " info    gateway: listening on http://127.0.0.1:" in text
