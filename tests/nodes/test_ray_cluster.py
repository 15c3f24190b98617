"""Tier 2 (``cluster``): the same checks with the nodes placed by a real Ray cluster.

Ray runs head 127.0.0.2 and workers .3 and .4 (``ray_support``); the gateway gets only
``--ray-address`` and keeps one node agent on every Ray node as a Ray job. The agents (and
their state dirs) outlive each test's gateway, as they would in use.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from nodes_support import HARD_TREE, ORPHAN_TREE, Gateway, nodes_in, record_of, wait_state
from ray_support import HEAD, WORKERS, RayCluster, ray_processes
from test_nodes import read_log, stamp, start

from support import marked_pids, wait_until

pytestmark = pytest.mark.cluster

NAMES = tuple(f"ray-{ip}" for ip in (HEAD, *WORKERS))
LEASE = 3.0


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Token and agent state dirs shared by every gateway of this module."""
    root = tmp_path_factory.mktemp("ray-shared")
    (root / "node-token").write_text("ray-t0k3n-" + "y" * 32 + "\n")
    return root


@asynccontextmanager
async def ray_gateway(tmp_path: Path, shared: Path, cluster: RayCluster) -> AsyncIterator[Gateway]:
    await cluster.all_alive()
    extra = ("--ray-address", cluster.address, "--ray-agent-lease", str(LEASE),
             "--ray-agent-state-dir", str(shared / "agents"))  # fmt: skip
    gw = Gateway(tmp_path, [], shared / "node-token", extra)
    gw.start()
    try:
        await gw.ready()
        async with gw.client() as api:
            await nodes_in(api, "up", NAMES, timeout=120)
        yield gw
    finally:
        with trio.CancelScope(shield=True):
            await gw.stop()


async def test_ray_places_an_agent_per_node_and_a_hard_tree_on_node_two_dies_whole(
    tmp_path: Path,
    shared: Path,
    ray_cluster: RayCluster,
) -> None:
    async with ray_gateway(tmp_path, shared, ray_cluster) as gw, gw.client() as api:
        nodes = {n["name"]: n for n in (await api.get("/api/gateway/nodes")).json()["nodes"]}
        assert set(nodes) == set(NAMES) and {n["state"] for n in nodes.values()} == {"up"}
        node = f"ray-{WORKERS[0]}"
        grace = 1.0
        trees = [
            await start(api, ["sh", "-c", t], node=node, stopGrace=grace) for t in (HARD_TREE, ORPHAN_TREE)
        ]
        await wait_until(lambda: len(marked_pids(trees[0]["id"])) >= 4, what="the hard tree")
        await wait_until(lambda: len(marked_pids(trees[1]["id"])) >= 2, what="the orphan tree")
        for tree in trees:
            receipt = (await api.post(f"/api/gateway/processes/{tree['id']}/kill")).json()
            assert receipt["node"] == node and receipt["survivors"] == []
            at = {s["signal"]: stamp(s["at"]) for s in receipt["signals"]}
            # The grace runs from the kill request; the SIGTERM follows a /proc scan of the tree.
            assert at["SIGKILL"] - at["SIGTERM"] >= grace - 0.25 and receipt["elapsedMs"] >= grace * 1000
            assert marked_pids(tree["id"]) == set()
            texts = [line["text"] for line in await read_log(api, tree["id"])]
            assert any("SIGTERM sent" in t for t in texts)


async def test_ray_restarts_a_sigkilled_agent_whose_sweep_hands_over_a_receipt(
    tmp_path: Path,
    shared: Path,
    ray_cluster: RayCluster,
) -> None:
    async with ray_gateway(tmp_path, shared, ray_cluster) as gw, gw.client() as api:
        node = f"ray-{WORKERS[0]}"
        tree = await start(api, ["sh", "-c", HARD_TREE], node=node, stopGrace=0.5)
        await wait_until(lambda: len(marked_pids(tree["id"])) >= 4, what="the tree")
        agent_pid = {n["name"]: n for n in (await api.get("/api/gateway/nodes")).json()["nodes"]}[node][
            "agentPid"
        ]
        os.kill(agent_pid, signal.SIGKILL)
        lost = await wait_state(api, tree["id"], {"lost"}, timeout=60)
        assert lost["stopReason"] == "lost"

        async def swept() -> bool:
            detail = (await api.get(f"/api/gateway/nodes/{node}")).json()
            return any(r["process"]["id"] == tree["id"] for r in detail["receipts"])

        with trio.fail_after(90):  # Ray notices the failed job, the backend submits a new agent
            while not await swept():
                await trio.sleep(0.2)
        assert marked_pids(tree["id"]) == set()
        new_pid = {n["name"]: n for n in (await api.get("/api/gateway/nodes")).json()["nodes"]}[node][
            "agentPid"
        ]
        assert new_pid != agent_pid
        assert (await record_of(api, tree["id"]))["state"] == "lost"


async def test_a_sigkilled_gateway_leaves_ray_placed_trees_to_the_lease(
    tmp_path: Path,
    shared: Path,
    ray_cluster: RayCluster,
) -> None:
    async with ray_gateway(tmp_path, shared, ray_cluster) as gw:
        async with gw.client() as api:
            trees = [await start(api, ["sh", "-c", HARD_TREE], node=name, stopGrace=0.5) for name in NAMES]
        for tree in trees:
            await wait_until(lambda t=tree: len(marked_pids(t["id"])) >= 4, what="a tree per node")
        gw.sigkill()
        began = trio.current_time()
        await wait_until(lambda: not any(marked_pids(t["id"]) for t in trees), timeout=30, what="lease kills")
        assert trio.current_time() - began <= LEASE + 0.5 + 2.0


async def test_a_node_ray_reports_dead_is_dropped_and_its_comeback_sweeps_the_leftovers(
    tmp_path: Path, shared: Path, ray_cluster: RayCluster
) -> None:
    """Last in this module: it replaces a Ray node."""
    async with ray_gateway(tmp_path, shared, ray_cluster) as gw, gw.client() as api:
        ip = WORKERS[1]
        node = f"ray-{ip}"
        tree = await start(api, ["sh", "-c", HARD_TREE], node=node, stopGrace=0.5)
        await wait_until(lambda: len(marked_pids(tree["id"])) >= 4, what="the tree")
        raylets = [
            p for p in ray_processes(ray_cluster.marker)
            if "raylet" in p.name() and f"--node_ip_address={ip}" in " ".join(p.cmdline())
        ]  # fmt: skip
        assert len(raylets) == 1
        raylets[0].kill()

        async def dropped() -> dict:
            nodes = {n["name"]: n for n in (await api.get("/api/gateway/nodes")).json()["nodes"]}
            return nodes[node]

        with trio.fail_after(120):  # Ray's health checks take a while to call a node dead
            while "Ray reports the node dead" not in ((await dropped())["error"] or ""):
                await trio.sleep(0.5)
        assert (await dropped())["state"] == "lost"
        record = await record_of(api, tree["id"])
        assert record["state"] == "lost" and record["stopReason"] == "lost"
        # Either the agent outlived its raylet and swept when the node was dropped, or the
        # raylet took the agent (a Ray job) with it and the setsid'd grandchild lives on until
        # a Ray node on that machine is back and its new agent's start-up sweep kills it.
        left = marked_pids(tree["id"])
        await trio.to_thread.run_sync(ray_cluster.restart_worker, ip, 46700)

        async def swept() -> list[dict]:
            detail = (await api.get(f"/api/gateway/nodes/{node}")).json()
            return [r for r in detail["receipts"] if r["process"]["id"] == tree["id"]]

        with trio.fail_after(120):
            while not await swept():
                await trio.sleep(0.5)
        receipt = (await swept())[0]
        assert receipt["cause"] in ("dropped", "crash-sweep") and receipt["survivors"] == []
        assert {p for s in receipt["signals"] for p in s["pids"]} >= left
        assert marked_pids(tree["id"]) == set(), "nothing of the tree is left anywhere"
        # The receipts can be collected a moment before the node is marked up again.
        with trio.fail_after(60):
            while (await dropped())["state"] != "up":
                await trio.sleep(0.5)
        assert (await record_of(api, tree["id"]))["state"] == "lost", "a lost record stays lost"
