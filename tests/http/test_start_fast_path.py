"""``POST /api/gateway/processes`` answered in the guard (before Quart): the same answers, and
a record whose start was answered is on disk before the answer leaves."""

from __future__ import annotations

import json
import signal
import sqlite3

import httpx
from gwtest import ServeProcess, start_process

from gateway.supervisor import State, open_supervisor


async def test_the_fast_start_answers_like_the_view_and_refusals_still_come_from_quart(
    api: httpx.AsyncClient,
) -> None:
    started = await api.post("/api/gateway/processes", json={"argv": ["sleep", "30"], "labels": {"a": "b"}})
    assert started.status_code == 201 and started.headers["content-type"] == "application/json"
    record = started.json()
    assert record["state"] == "running" and record["labels"] == {"a": "b"} and record["pid"] > 0
    assert started.content.endswith(b"\n")
    again = (await api.get(f"/api/gateway/processes/{record['id']}")).json()
    assert set(again) == set(record) and again["argv"] == ["sleep", "30"]
    # A charset parameter is still JSON.
    typed = await api.post(
        "/api/gateway/processes",
        content=json.dumps({"argv": ["true"]}),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert typed.status_code == 201, typed.text
    # Whatever the fast path declines, Quart answers as it always did.
    unknown = await api.post("/api/gateway/processes", json={"argv": ["true"], "nope": 1})
    assert unknown.status_code == 400 and unknown.json()["code"] == "invalid_request"
    assert "nope" in unknown.json()["error"]
    bad = await api.post("/api/gateway/processes", content=b"{", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_json"
    plain = {"Content-Type": "text/plain"}
    text = await api.post("/api/gateway/processes", content=b"argv=true", headers=plain)
    assert text.status_code == 415
    # Errors of the start itself come from the fast path, in the same shape.
    missing = await api.post("/api/gateway/processes", json={"argv": ["/no/such/binary"]})
    assert missing.status_code == 422 and missing.json()["code"] == "spawn_failed"
    nocwd = await api.post("/api/gateway/processes", json={"argv": ["true"], "cwd": "/no/such/dir"})
    assert nocwd.status_code == 400 and "cwd" in nocwd.json()["error"]
    assert (await start_process(api, ["true"]))["state"] in ("running", "exited")


async def test_an_answered_start_survives_a_sigkill_of_the_gateway(serve_process: ServeProcess) -> None:
    """The answer waits for the record's commit (shared by concurrent starts): killing the
    gateway right after the answers leaves every answered record in the database."""
    headers = {"X-Desktop-Gateway-Token": serve_process.token}
    ids = []
    async with httpx.AsyncClient(base_url=serve_process.url, headers=headers, trust_env=False) as client:
        for i in range(10):
            answer = await client.post("/api/gateway/processes", json={"argv": ["sleep", "600"]})
            if i == 9:
                serve_process.proc.send_signal(signal.SIGKILL)  # at once: no flush after this
            assert answer.status_code == 201
            ids.append(answer.json()["id"])
    serve_process.proc.wait(20)
    with sqlite3.connect(serve_process.state_dir / "gateway.db") as db:
        found = {row[0] for row in db.execute("SELECT id FROM processes")}
    assert set(ids) <= found
    async with open_supervisor(serve_process.state_dir) as sup:  # and the sweep ends them
        for record_id in ids:
            record = sup.table.get(record_id)
            assert record is not None and record.state is State.LOST
