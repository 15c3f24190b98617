"""Tier 1: three node agents on 127.0.0.2-4 and a gateway with those nodes, all real processes.

The kill contract (whole tree, setsid'd and orphaned descendants included, grace honoured, a
receipt), the log cursor across a gateway restart, and what node loss and gateway loss do.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from pathlib import Path

import httpx
import trio
from nodes_support import (
    EXITING_TREE,
    GATEWAY,
    HARD_TREE,
    ORPHAN_TREE,
    cluster,
    nodes_in,
    record_of,
    wait_state,
)

from support import marked_pids, wait_until


async def start(api: httpx.AsyncClient, argv: list[str], **body: object) -> dict:
    r = await api.post("/api/gateway/processes", json={"argv": argv, **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def stamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def read_log(api: httpx.AsyncClient, process_id: str, since: int = 0) -> list[dict]:
    r = await api.get(f"/api/gateway/processes/{process_id}/logs", params={"since": since})
    lines = [json.loads(line) for line in r.text.splitlines() if line]
    return [line for line in lines if line["type"] == "log"]


async def test_hard_trees_on_node_two_leave_nothing_alive_and_honour_the_grace(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c, c.gateway.client() as api:
        nodes = (await api.get("/api/gateway/nodes")).json()["nodes"]
        assert [(n["name"], n["state"], n["address"]) for n in nodes] == [
            (a.name, "up", a.url) for a in c.agents
        ]
        grace = 1.0
        hard = await start(api, ["sh", "-c", HARD_TREE], node="n2", stopGrace=grace)
        orphan = await start(api, ["sh", "-c", ORPHAN_TREE], node="n2", stopGrace=grace)
        exiting = await start(api, ["sh", "-c", EXITING_TREE], node="n2", stopGrace=grace)
        assert {hard["node"], orphan["node"], exiting["node"]} == {"n2"}
        await wait_until(lambda: len(marked_pids(hard["id"])) >= 4, what="the hard tree on n2")
        await wait_until(lambda: len(marked_pids(orphan["id"])) >= 2, what="the orphan tree on n2")

        # The entrypoint that exits 0: its leftover is stopped (after the grace) by the node.
        done = await wait_state(api, exiting["id"], {"exited"})
        assert done["node"] == "n2" and done["exitCode"] == 0
        assert marked_pids(exiting["id"]) == set()
        texts = [line["text"] for line in await read_log(api, exiting["id"])]
        assert "started" in texts
        assert any("leftover" in t for t in texts), texts

        async def kill(process_id: str, out: dict) -> None:
            r = await api.post(f"/api/gateway/processes/{process_id}/kill")
            assert r.status_code == 200, r.text
            out[process_id] = r.json()

        receipts: dict[str, dict] = {}
        async with trio.open_nursery() as nursery:
            for pid in (hard["id"], orphan["id"]):
                nursery.start_soon(kill, pid, receipts)
        for process_id, receipt in receipts.items():
            assert receipt["node"] == "n2" and receipt["process"]["node"] == "n2"
            assert receipt["process"]["state"] == "killed" and receipt["survivors"] == []
            signals = {s["signal"]: s for s in receipt["signals"]}
            assert set(signals) == {"SIGTERM", "SIGKILL"}, receipt
            # Grace honoured: the SIGTERM-ignoring grandchild got its second before SIGKILL.
            from datetime import datetime

            at = {
                k: datetime.fromisoformat(v["at"].replace("Z", "+00:00")).timestamp()
                for k, v in signals.items()
            }
            # The grace runs from the kill request; the SIGTERM follows a /proc scan of the tree.
            assert at["SIGKILL"] - at["SIGTERM"] >= grace - 0.25 and receipt["elapsedMs"] >= grace * 1000, (
                receipt
            )
            assert receipt["elapsedMs"] < (grace + 1) * 1000, receipt
            assert marked_pids(process_id) == set(), "nothing of the tree may survive"
            record = await record_of(api, process_id)
            assert record["state"] == "killed" and record["lastSeq"] > 0
            texts = [line["text"] for line in await read_log(api, process_id)]
            assert any("SIGTERM sent" in t for t in texts) and any("SIGKILL" in t for t in texts), texts
        # Nothing anywhere, on any node: every marked process of every record is gone.
        for record_id in (hard["id"], orphan["id"], exiting["id"]):
            assert marked_pids(record_id) == set()
        again = (await api.post(f"/api/gateway/processes/{hard['id']}/kill")).json()
        assert again["alreadyEnded"] is True and again["node"] == "n2"


async def test_placement_spreads_over_up_nodes_and_unknown_nodes_are_refused(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c, c.gateway.client() as api:
        placed = [await start(api, ["sleep", "600"], stopGrace=0.5) for _ in range(3)]
        assert sorted(p["node"] for p in placed) == ["n1", "n2", "n3"]
        r = await api.post("/api/gateway/processes", json={"argv": ["true"], "node": "nope"})
        assert r.status_code == 400 and r.json()["code"] == "node_not_found"
        r = await api.post("/api/gateway/processes", json={"argv": ["/no/such/binary"], "node": "n1"})
        assert r.status_code == 422 and r.json()["code"] == "spawn_failed", r.text
        local = await start(api, ["true"], node="local")
        assert local["node"] == "local"
        r = await api.post("/api/gateway/nodes", json={"name": "n4", "url": "http://127.0.0.5:1"})
        assert r.status_code == 400 and r.json()["code"] == "invalid_node", r.text
        r = await api.post("/api/gateway/nodes", json={"name": "local", "url": "ws://127.0.0.5:1"})
        assert r.status_code == 400 and r.json()["code"] == "invalid_node", r.text
        r = await api.post("/api/gateway/nodes", json={"name": "n1", "url": "ws://127.0.0.5:1"})
        assert r.status_code == 409 and r.json()["code"] == "node_exists", r.text
        r = await api.get("/api/gateway/nodes/nope")
        assert r.status_code == 404 and r.json()["code"] == "node_not_found", r.text
        bad = c.gateway.client()
        bad.headers.pop("X-Desktop-Gateway-Token")
        async with bad:
            assert (await bad.get("/api/gateway/nodes")).status_code == 401
        # The status stream shows remote records like local ones, with their node.
        async with api.stream("GET", "/api/gateway/processes/stream", params={"snapshot": 1}) as r:
            seen: dict[str, str] = {}
            async for raw in r.aiter_lines():
                line = json.loads(raw)
                if line["type"] == "status":
                    seen[line["process"]["id"]] = line["process"]["node"]
                if all(p["id"] in seen for p in placed):
                    break
        assert {seen[p["id"]] for p in placed} == {"n1", "n2", "n3"}
        # Teardown of a remote child: killed on its node, hooks here, logs kept.
        receipt = (await api.post(f"/api/gateway/processes/{placed[0]['id']}/teardown")).json()
        assert receipt["process"]["tornDown"] is True and receipt["process"]["state"] == "killed"
        texts = [line["text"] for line in await read_log(api, placed[0]["id"])]
        assert texts[-1] == "[gateway] torn down" and any("SIGTERM" in t for t in texts)
        # The CLI lists them too.
        done = await trio.run_process(
            [GATEWAY, "nodes", "--state-dir", str(c.gateway.state)], capture_stdout=True, capture_stderr=True
        )
        lines = done.stdout.decode().splitlines()
        assert lines[0].split()[:3] == ["NODE", "ADDRESS", "STATE"]
        assert [line.split()[:3] for line in lines[1:]] == [[a.name, a.url, "up"] for a in c.agents]
        for p in placed[1:]:
            receipt = (await api.post(f"/api/gateway/processes/{p['id']}/kill")).json()
            assert receipt["process"]["state"] == "killed"
            assert marked_pids(p["id"]) == set()


COUNTER = "i=0; while [ $i -lt {n} ]; do i=$((i+1)); echo line $i; sleep 0.01; done"


async def follow_until(
    api: httpx.AsyncClient, process_id: str, since: int, seen: list[dict], stop_at: float
) -> bool:
    """Follow from ``since`` appending log lines to ``seen``; True once the ``end`` line came."""
    params = {"since": since, "follow": 1}
    try:
        async with api.stream("GET", f"/api/gateway/processes/{process_id}/logs", params=params) as r:
            assert r.status_code == 200
            async for raw in r.aiter_lines():
                if not raw:
                    continue
                line = json.loads(raw)
                if line["type"] == "end":
                    return True
                if line["type"] == "log":
                    seen.append(line)
                    if len(seen) >= stop_at:
                        return False
    except httpx.TransportError:
        return False
    return False


async def test_a_follower_resuming_across_a_gateway_restart_misses_nothing(tmp_path: Path) -> None:
    total = 500
    async with cluster(tmp_path, lease=15) as c:
        async with c.gateway.client() as api:
            child = await start(api, ["sh", "-c", COUNTER.format(n=total)], node="n2")
            seen: list[dict] = []
            assert not await follow_until(api, child["id"], 0, seen, stop_at=40)
        # The gateway dies mid-run; the child runs on under the agent's lease.
        c.gateway.sigkill()
        c.gateway.restart_argv()
        c.gateway.start()
        await c.gateway.ready()
        async with c.gateway.client() as api:
            assert (await record_of(api, child["id"]))["state"] == "running", "restarted mid-run"
            ended = await follow_until(api, child["id"], seen[-1]["seq"], seen, stop_at=math.inf)
            assert ended
            record = await record_of(api, child["id"])
        seqs = [line["seq"] for line in seen]
        assert seqs == list(range(1, len(seqs) + 1)), "no line lost, none repeated"
        texts = [line["text"] for line in seen if line["stream"] == "stdout"]
        assert texts == [f"line {i}" for i in range(1, total + 1)]
        assert record["state"] == "exited" and record["node"] == "n2" and record["lastSeq"] == seqs[-1]


async def test_a_sigkilled_agent_makes_its_records_lost_and_its_restart_sweeps_with_a_receipt(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, lease=2) as c, c.gateway.client() as api:
        tree = await start(api, ["sh", "-c", HARD_TREE], node="n2", stopGrace=0.5)
        await wait_until(lambda: len(marked_pids(tree["id"])) >= 4, what="the tree on n2")
        agent = c.agent("n2")
        agent.sigkill()
        lost = await wait_state(api, tree["id"], {"lost"}, timeout=20)
        assert lost["stopReason"] == "lost" and "n2" in (lost["error"] or "")
        nodes = {n["name"]: n for n in (await api.get("/api/gateway/nodes")).json()["nodes"]}
        assert nodes["n2"]["state"] == "lost" and nodes["n1"]["state"] == "up"
        left = marked_pids(tree["id"])
        assert left, "the setsid'd grandchild outlives a SIGKILLed agent until its restart"
        r = await api.post("/api/gateway/processes", json={"argv": ["true"], "node": "n2"})
        assert r.status_code == 503 and r.json()["code"] == "node_unavailable"
        placed = await start(api, ["true"])
        assert placed["node"] != "n2", "never placed on a lost node"

        agent.start()
        await agent.ready()
        await nodes_in(api, "up", ("n2",))
        assert marked_pids(tree["id"]) == set(), "the restarted agent's sweep kills the leftovers"
        detail = (await api.get("/api/gateway/nodes/n2")).json()
        mine = [r for r in detail["receipts"] if r["process"]["id"] == tree["id"]]
        assert len(mine) == 1 and mine[0]["cause"] == "crash-sweep", detail["receipts"]
        swept = {p for s in mine[0]["signals"] for p in s["pids"]}
        assert swept >= left and mine[0]["survivors"] == []
        texts = [line["text"] for line in await read_log(api, tree["id"])]
        assert any("node n2 lost" in t for t in texts) and any("crash-sweep" in t for t in texts), texts
        record = await record_of(api, tree["id"])
        assert record["state"] == "lost", "a lost record stays lost"


async def test_a_sigkilled_gateway_makes_every_agent_kill_its_trees_within_the_lease(tmp_path: Path) -> None:
    lease, grace = 2.0, 0.5
    async with cluster(tmp_path, lease=lease) as c:
        async with c.gateway.client() as api:
            trees = [
                await start(api, ["sh", "-c", HARD_TREE], node=name, stopGrace=grace)
                for name in ("n1", "n2", "n3")
            ]
        for tree in trees:
            await wait_until(lambda t=tree: len(marked_pids(t["id"])) >= 4, what="a tree on each node")
        c.gateway.sigkill()
        killed_at = time.time()
        await wait_until(
            lambda: not any(marked_pids(t["id"]) for t in trees),
            timeout=lease + grace + 10,
            what="lease kills",
        )
        for tree, agent in zip(trees, c.agents, strict=True):
            # The receipt is written once the kill completed (reaped), a moment after the deaths.
            await wait_until(lambda a=agent: a.receipts_file() != [], what=f"{agent.name}'s receipt")
            kept = [r for r in agent.receipts_file() if r["process"]["id"] == tree["id"]]
            assert len(kept) == 1 and kept[0]["cause"] == "lease-expired", agent.receipts_file()
            assert kept[0]["survivors"] == [] and kept[0]["signals"]
            # Timed by the agent's own receipt, not by this test's polling (which a loaded machine
            # delays): the first SIGTERM within the lease (counted from the last heartbeat, which
            # came before the SIGKILL) plus the lease check's own tick.
            at = kept[0]["signals"][0]["at"]  # the agent keeps epoch seconds; the API answers ISO
            first = at if isinstance(at, float) else datetime.fromisoformat(at).timestamp()
            assert kept[0]["signals"][0]["signal"] == "SIGTERM"
            assert first - killed_at <= lease + 1.0, (first - killed_at, kept[0]["signals"])

        # The next gateway collects the receipts and the records' final states.
        c.gateway.restart_argv()
        c.gateway.start()
        await c.gateway.ready()
        async with c.gateway.client() as api:
            await nodes_in(api, "up")
            for tree, agent in zip(trees, c.agents, strict=True):
                record = await wait_state(api, tree["id"], {"killed", "lost"})
                assert record["stopReason"] == "lost"
                detail = (await api.get(f"/api/gateway/nodes/{agent.name}")).json()
                assert [r["cause"] for r in detail["receipts"]] == ["lease-expired"]
                assert agent.receipts_file() == [], "collected receipts are acknowledged"
