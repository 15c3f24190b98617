"""Process routes over real HTTP against the real engine: list, start, logs, kill, stream."""

from __future__ import annotations

import json
import sys

import httpx
import trio
from gwtest import start_process, wait_ended, wait_until

from gateway.http.serve import GatewayHandle

PY = sys.executable


async def read_ndjson(api: httpx.AsyncClient, url: str, **params: object) -> list[dict]:
    async with api.stream("GET", url, params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) async for line in response.aiter_lines() if line]


async def test_start_list_get_and_filters(api: httpx.AsyncClient, tmp_path) -> None:
    a = await start_process(api, ["true"], kind="deploy", ticketId="T-1", cwd=str(tmp_path))
    b = await start_process(api, ["sleep", "30"], ticketId="T-2", labels={"who": "test"})
    assert a["cwd"] == str(tmp_path) and a["kind"] == "deploy" and a["ticketId"] == "T-1"
    assert b["state"] == "running" and b["pid"] > 0 and b["labels"] == {"who": "test"}
    await wait_ended(api, a["id"])
    listing = (await api.get("/api/gateway/processes")).json()
    assert {p["id"] for p in listing["processes"]} == {a["id"], b["id"]}
    assert listing["version"] > 0
    by_kind = (await api.get("/api/gateway/processes", params={"kind": "deploy"})).json()
    assert [p["id"] for p in by_kind["processes"]] == [a["id"]]
    by_ticket = (await api.get("/api/gateway/processes", params={"ticketId": "T-2"})).json()
    assert [p["id"] for p in by_ticket["processes"]] == [b["id"]]
    running = (await api.get("/api/gateway/processes", params={"state": "running,stopping"})).json()
    assert [p["id"] for p in running["processes"]] == [b["id"]]
    bad = await api.get("/api/gateway/processes", params={"state": "sleeping"})
    assert bad.status_code == 400 and "state" in bad.json()["error"]
    one = (await api.get(f"/api/gateway/processes/{b['id']}")).json()
    assert one["id"] == b["id"] and set(one) >= {
        "id", "kind", "ticketId", "state", "pid", "argv", "cwd", "startedAt", "endedAt",
        "exitCode", "signal", "restarts", "lastSeq", "tornDown", "stopReason",
    }  # fmt: skip
    missing = await api.get("/api/gateway/processes/p_nope")
    assert missing.status_code == 404 and missing.json()["code"] == "process_not_found"


async def test_kill_answers_receipt_after_tree_is_gone(api: httpx.AsyncClient) -> None:
    rec = await start_process(api, ["sh", "-c", "sleep 60 & sleep 60 & wait"], stopGrace=2)
    receipt = (await api.post(f"/api/gateway/processes/{rec['id']}/kill")).json()
    assert receipt["process"]["state"] == "killed"
    assert receipt["process"]["stopReason"] == "kill"
    assert receipt["signals"][0]["signal"] == "SIGTERM"
    assert receipt["survivors"] == [] and receipt["elapsedMs"] >= 0
    again = (await api.post(f"/api/gateway/processes/{rec['id']}/kill")).json()
    assert again["alreadyEnded"] is True
    torn = (await api.post(f"/api/gateway/processes/{rec['id']}/teardown")).json()
    assert torn["process"]["tornDown"] is True
    assert (await api.post("/api/gateway/processes/p_nope/kill")).status_code == 404
    assert (await api.post("/api/gateway/processes/p_nope/teardown")).status_code == 404


async def test_limits_and_the_kill_method_over_http(api: httpx.AsyncClient, gateway: GatewayHandle) -> None:
    """Limits go to the child's cgroup, or are refused with 422 where their controller is not
    delegated (as for pids.max on a hybrid layout); the record says how it is killed."""
    cgroups = gateway.context.sup.cgroups
    r = await api.post("/api/gateway/processes", json={"argv": ["sleep", "30"], "pidsMax": 16})
    if cgroups is not None and "pids" in cgroups.controllers:
        assert r.status_code == 201, r.text
        assert (cgroups.get(r.json()["id"]).path / "pids.max").read_text().strip() == "16"
        await api.post(f"/api/gateway/processes/{r.json()['id']}/kill")
    else:
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "limits_unavailable"
        assert "pids" in r.json()["error"]
    bad = await api.post("/api/gateway/processes", json={"argv": ["true"], "memoryMax": 5})
    assert bad.status_code == 400 and "memoryMax" in bad.text
    rec = await start_process(api, ["sleep", "30"], stopGrace=1)
    assert rec["killMethod"] == ("cgroup" if cgroups is not None else "proc")
    receipt = (await api.post(f"/api/gateway/processes/{rec['id']}/kill")).json()
    assert receipt["method"] == rec["killMethod"] and receipt["survivors"] == []


async def test_bulk_kill_and_teardown_by_filter(api: httpx.AsyncClient, gateway: GatewayHandle) -> None:
    tree = ["sh", "-c", "sleep 60 & setsid sleep 60 & wait"]
    t1 = [await start_process(api, tree, ticketId="T-1", stopGrace=2) for _ in range(3)]
    other = await start_process(api, ["sleep", "60"], ticketId="T-2", labels={"team": "b"})
    labelled = await start_process(api, ["sleep", "60"], labels={"team": "a", "x": "1"})
    done = await start_process(api, ["true"], ticketId="T-1")
    await wait_ended(api, done["id"])

    none = await api.post("/api/gateway/processes/kill", json={})
    assert none.status_code == 400 and none.json()["code"] == "invalid_request"
    unknown = await api.post("/api/gateway/processes/kill", json={"ids": [t1[0]["id"], "p_nope"]})
    assert unknown.status_code == 404
    assert gateway.context.sup.table.get(t1[0]["id"]).state.value == "running"  # nothing killed

    by_ticket = (await api.post("/api/gateway/processes/kill", json={"ticketId": "T-1"})).json()
    assert by_ticket["count"] == 3  # the live ones only: the ended record is not in it
    assert sorted(r["process"]["id"] for r in by_ticket["receipts"]) == sorted(p["id"] for p in t1)
    for receipt in by_ticket["receipts"]:
        assert receipt["process"]["state"] == "killed" and receipt["survivors"] == []
        assert receipt["signals"][0]["signal"] == "SIGTERM"

    by_label = (await api.post("/api/gateway/processes/kill", json={"labels": {"team": "a"}})).json()
    assert [r["process"]["id"] for r in by_label["receipts"]] == [labelled["id"]]
    assert gateway.context.sup.table.get(other["id"]).state.value == "running"

    torn = (await api.post("/api/gateway/processes/teardown", json={"ticketId": "T-1"})).json()
    assert torn["count"] == 4 and all(r["process"]["tornDown"] for r in torn["receipts"])
    again = (await api.post("/api/gateway/processes/teardown", json={"ticketId": "T-1"})).json()
    assert again["count"] == 0

    rest = (await api.post("/api/gateway/processes/kill", json={"all": True})).json()
    assert [r["process"]["id"] for r in rest["receipts"]] == [other["id"]]
    by_ids = (await api.post("/api/gateway/processes/kill", json={"ids": [other["id"]]})).json()
    assert by_ids["receipts"][0]["alreadyEnded"] is True
    assert not gateway.context.sup.table.active()


async def test_listing_pages_with_limit_and_after(api: httpx.AsyncClient) -> None:
    ids = [(await start_process(api, ["true"], kind="page"))["id"] for _ in range(5)]
    live = await start_process(api, ["sleep", "30"], kind="page")
    pages, after = [], None
    while True:
        params = {"kind": "page", "limit": 2, **({"after": after} if after else {})}
        got = await api.get("/api/gateway/processes", params=params)
        assert got.status_code == 200, got.text
        body = got.json()
        pages.append([p["id"] for p in body["processes"]])
        after = body["next"]
        if after is None:
            break
    assert pages == [ids[0:2], ids[2:4], [ids[4], live["id"]]]
    head = await api.head("/api/gateway/processes", params={"limit": 2})  # the Quart view agrees
    assert head.status_code == 200
    for process_id in ids:  # `true` may still be running on a loaded machine: wait, do not race
        await wait_ended(api, process_id)
    running = (await api.get("/api/gateway/processes", params={"limit": 10, "state": "running"})).json()
    assert [p["id"] for p in running["processes"]] == [live["id"]] and running["next"] is None
    for params in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"after": "p_nope"}):
        bad = await api.get("/api/gateway/processes", params=params)
        assert bad.status_code == 400, (params, bad.text)
        assert bad.json()["code"] == "invalid_query"
    whole = (await api.get("/api/gateway/processes", params={"kind": "page"})).json()
    assert "next" not in whole and len(whole["processes"]) == 6  # unpaged: as before
    await api.post(f"/api/gateway/processes/{live['id']}/kill")


async def test_start_rejects_bad_input_with_field_names(api: httpx.AsyncClient, tmp_path) -> None:
    cases = [
        ({"argv": []}, "argv"),
        ({"argv": "sleep 1"}, "argv"),
        ({"argv": ["a\x00b"]}, "argv"),
        ({"argv": ["true"], "stopGrace": -1}, "stopGrace"),
        ({"argv": ["true"], "bogus": 1}, "bogus"),
        ({"argv": ["true"], "cwd": str(tmp_path / "missing")}, "cwd"),
        ({"argv": ["true"], "restart": {"mode": "always"}}, "restart"),
    ]
    for body, field in cases:
        response = await api.post("/api/gateway/processes", json=body)
        assert response.status_code == 400, (body, response.text)
        assert field in response.json()["error"], (body, response.text)
    missing = await api.post("/api/gateway/processes", json={"argv": ["/no/such/binary"]})
    assert missing.status_code == 422 and missing.json()["code"] == "spawn_failed"


async def test_logs_since_limit_tail_and_end(api: httpx.AsyncClient) -> None:
    rec = await start_process(api, [PY, "-c", "for i in range(1, 101): print(f'line {i}')"])
    await wait_ended(api, rec["id"])
    url = f"/api/gateway/processes/{rec['id']}/logs"
    everything = await read_ndjson(api, url)
    logs = [x for x in everything if x["type"] == "log" and x["stream"] == "stdout"]
    assert [x["text"] for x in logs] == [f"line {i}" for i in range(1, 101)]
    assert everything[-1]["type"] == "end" and everything[-1]["process"]["state"] == "exited"
    assert all(x["processId"] == rec["id"] for x in logs)
    seqs = [x["seq"] for x in everything if x["type"] == "log"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    page = await read_ndjson(api, url, since=10, limit=5)
    assert [x["seq"] for x in page] == [11, 12, 13, 14, 15]  # limit reached: no end line
    last = everything[-2]["seq"]
    tail = await read_ndjson(api, url, tail=3)
    assert [x["seq"] for x in tail if x["type"] == "log"] == [last - 2, last - 1, last]
    bad = await api.get(url, params={"since": "x"})
    assert bad.status_code == 400 and "since" in bad.json()["error"]


async def test_follow_50000_lines_across_reconnect(api: httpx.AsyncClient, gateway: GatewayHandle) -> None:
    """Every line once, in order, even when the follower drops and resumes with ``since``."""
    n = 50_000
    script = (
        "import sys, time\n"
        f"for i in range(1, {n} + 1):\n"
        "    sys.stdout.write(f'{i}\\n')\n"
        "    if i % 5000 == 0: sys.stdout.flush(); time.sleep(0.01)\n"
    )
    rec = await start_process(api, [PY, "-c", script])
    url = f"/api/gateway/processes/{rec['id']}/logs"
    seen: list[int] = []
    last_seq = 0
    # First connection: read about 12,000 lines, then hang up mid-stream.
    async with api.stream("GET", url, params={"follow": 1}) as response:
        async for line in response.aiter_lines():
            obj = json.loads(line)
            if obj["type"] == "log":
                last_seq = obj["seq"]
                if obj["stream"] == "stdout":
                    seen.append(int(obj["text"]))
                if len(seen) >= 12_000:
                    break
    await wait_until(lambda: gateway.context.open_streams == 0, 10)
    end = None
    async with api.stream("GET", url, params={"follow": 1, "since": last_seq}) as response:
        async for line in response.aiter_lines():
            obj = json.loads(line)
            if obj["type"] == "log" and obj["stream"] == "stdout":
                seen.append(int(obj["text"]))
            elif obj["type"] == "end":
                end = obj
    assert seen == list(range(1, n + 1))
    assert end is not None and end["process"]["state"] == "exited"


async def test_disconnect_ends_stream_task(api: httpx.AsyncClient, gateway: GatewayHandle) -> None:
    rec = await start_process(api, ["sleep", "60"])
    async with api.stream("GET", f"/api/gateway/processes/{rec['id']}/logs", params={"follow": 1}):
        await wait_until(lambda: gateway.context.open_streams == 1)
    await wait_until(lambda: gateway.context.open_streams == 0, 5)
    async with api.stream("GET", "/api/gateway/processes/stream"):
        await wait_until(lambda: gateway.context.open_streams == 1)
    await wait_until(lambda: gateway.context.open_streams == 0, 5)


async def test_heartbeat_during_silence(api: httpx.AsyncClient, gateway: GatewayHandle) -> None:
    gateway.context.heartbeat = 0.05
    rec = await start_process(api, ["sleep", "60"])
    kinds = []
    async with api.stream("GET", f"/api/gateway/processes/{rec['id']}/logs", params={"follow": 1}) as r:
        async for line in r.aiter_lines():
            kinds.append(json.loads(line)["type"])
            if kinds.count("heartbeat") >= 2:
                break
    assert kinds.count("heartbeat") == 2


async def test_status_stream_reports_changes_and_ends(api: httpx.AsyncClient) -> None:
    events: list[dict] = []
    async with api.stream("GET", "/api/gateway/processes/stream") as response:
        lines = response.aiter_lines()
        rec = await start_process(api, ["sleep", "60"])
        await api.post(f"/api/gateway/processes/{rec['id']}/kill")
        with trio.fail_after(10):
            async for line in lines:
                obj = json.loads(line)
                if obj["type"] == "status" and obj["process"]["id"] == rec["id"]:
                    events.append(obj)
                    if obj["process"]["state"] == "killed":
                        break
    states = [e["process"]["state"] for e in events]
    assert states[0] == "running" and states[-1] == "killed"
    versions = [e["version"] for e in events]
    assert versions == sorted(versions)
    snap = [json.loads(x) async for x in _first_lines(api, "/api/gateway/processes/stream?snapshot=1", 1)]
    assert snap[0]["type"] == "status"


async def _first_lines(api: httpx.AsyncClient, url: str, n: int):  # type: ignore[no-untyped-def]
    async with api.stream("GET", url) as response:
        count = 0
        async for line in response.aiter_lines():
            yield line
            count += 1
            if count >= n:
                return
