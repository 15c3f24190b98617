"""Held requests show what they would run, and reach the dashboard over a stream, not a poll."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import trio
from gwtest import GATEWAY_BIN, ServeProcess

from gateway.http.policy import approval_detail


async def test_the_approval_stream_shows_a_held_start_with_its_command(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    await api.put("/api/gateway/policy", json={"thresholds": {"gateway": "none"}})
    body = {
        "argv": ["sleep", "30"],
        "cwd": str(tmp_path),
        "env": {"API_KEY": "s3cret-value", "DEBUG": "1"},
        "ticketId": "T-7",
    }
    frames: list[dict] = []
    started: list[httpx.Response] = []

    async with trio.open_nursery() as nursery, api.stream("GET", "/api/gateway/approvals/stream") as feed:
        lines = feed.aiter_lines()
        first = json.loads(await anext(lines))
        assert first == {"type": "approvals", "approvals": []}

        async def start() -> None:
            started.append(await api.post("/api/gateway/processes", json=body))

        nursery.start_soon(start)
        with trio.fail_after(10):
            async for line in lines:
                frame = json.loads(line)
                if frame["type"] != "approvals":
                    continue
                frames.append(frame)
                pending = [a for a in frame["approvals"] if a["status"] == "pending"]
                if pending:
                    held = pending[0]
                    decided = await api.post(
                        f"/api/gateway/approvals/{held['id']}", json={"decision": "approved"}
                    )
                    assert decided.status_code == 200
                elif any(a["status"] == "approved" for a in frame["approvals"]):
                    break
    assert held["detail"] == {
        "argv": ["sleep", "30"], "cwd": str(tmp_path), "envKeys": ["API_KEY", "DEBUG"], "ticketId": "T-7",
    }  # fmt: skip
    assert held["operation"] == "process_control" and held["principal"] == "gateway" and held["tier"]
    assert "s3cret-value" not in json.dumps(frames)  # env values never leave the request
    assert started[0].status_code == 201
    await api.post(f"/api/gateway/processes/{started[0].json()['id']}/kill")


def test_detail_reads_only_json_objects() -> None:
    assert approval_detail(b'{"argv": ["a"]}', "text/plain") is None
    assert approval_detail(b"[1, 2]", "application/json") is None
    assert approval_detail(b"{not json", "application/json") is None
    long = approval_detail(json.dumps({"prompt": "x" * 1000}).encode(), "application/json")
    assert long is not None and len(long["prompt"]) == 301


def test_cli_approvals_show_the_command(serve_process: ServeProcess, tmp_path: Path) -> None:
    import subprocess
    import time

    state = str(serve_process.state_dir)
    headers = {"X-Desktop-Gateway-Token": serve_process.token}
    with httpx.Client(base_url=serve_process.url, headers=headers, trust_env=False, timeout=30) as client:
        client.put("/api/gateway/policy", json={"thresholds": {"gateway": "none"}})
        held = subprocess.Popen(
            [GATEWAY_BIN, "run", "--state-dir", state, "-e", "TOKEN=zzz", "--ticket", "T-9",
             "--", "sleep", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 15
            listed = ""
            while "sleep 30" not in listed:
                assert time.monotonic() < deadline, listed
                time.sleep(0.05)  # polling another process, bounded by the deadline
                listed = subprocess.run(
                    [GATEWAY_BIN, "approvals", "--state-dir", state],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout
            assert (
                "command    sleep 30" in listed
                and "env keys   TOKEN" in listed
                and "ticket     T-9" in listed
            )
            assert "zzz" not in listed
            approval_id = listed.split()[0]
            client.post(f"/api/gateway/approvals/{approval_id}", json={"decision": "denied"})
            assert held.wait(20) == 1 and "approval_denied" in held.stderr.read()  # type: ignore[union-attr]
        finally:
            if held.poll() is None:
                held.kill()
