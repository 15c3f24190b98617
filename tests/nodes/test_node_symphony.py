"""Tier 1: Symphony runs and deploys placed on node 2 of three real node agents (127.0.0.2-4).

The agents are the shipped ``gateway node-agent`` processes; the gateway runs in this process
(``run_gateway``, the composition root of ``gateway serve``) so that its Symphony can be
pointed at the model double like the Symphony tests do, and the runs are the real claude CLI.
Everything that reads a run's output (result detection, status, logs, kill with receipt)
reads the gateway's mirror of the node's log.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from nodes_support import HOSTS, NAMES, Agent, cluster, nodes_in

from gateway.http.serve import GatewayHandle, ServeOptions, run_gateway
from gateway.supervisor.nodes import NodeConfig
from gateway.supervisor.services.repos import REPOS_SCHEMA
from gateway.supervisor.symphony import Limits, SymphonySettings

from agents import clis
from agents.model_double import Bash, ModelDouble, Text
from support import gateway_client, init_repo, marked_pids, runs_program, wait_until

API = "/api/gateway/symphony"
D = "/api/gateway/deploy"
pytestmark = pytest.mark.agents


@pytest.fixture
def md() -> Iterator[ModelDouble]:
    with ModelDouble() as double:
        yield double


@pytest.fixture
def claude() -> str:
    path = clis.find_cli("claude")
    if path is None:
        pytest.skip("claude CLI not installed: run scripts/install-agent-clis.sh")
    return path


@pytest.fixture
async def agents(tmp_path: Path) -> AsyncIterator[list[Agent]]:
    token_file = tmp_path / "node-token"
    token_file.write_text("t0k3n-" + "x" * 32 + "\n")
    token_file.chmod(0o600)
    started = [Agent(tmp_path, n, h, token_file, lease=10.0) for n, h in zip(NAMES, HOSTS, strict=True)]
    try:
        for agent in started:
            agent.start()
        for agent in started:
            await agent.ready()
        yield started
    finally:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for agent in started:
                    nursery.start_soon(agent.stop)


@pytest.fixture
async def gw(
    tmp_path: Path, agents: list[Agent], md: ModelDouble, claude: str, nursery: trio.Nursery
) -> AsyncIterator[GatewayHandle]:
    """A gateway with the three nodes, its Symphony running claude against ``md``."""
    opts = ServeOptions(
        state_dir=tmp_path / "state",
        port=0,
        probe_binaries=False,
        nodes=[NodeConfig(a.name, a.url) for a in agents],
        node_token_file=tmp_path / "node-token",
    )
    handle: GatewayHandle = await nursery.start(run_gateway, opts)
    ctx = handle.context
    ctx.services.symphony.settings = SymphonySettings(
        defaults=Limits(result_idle_timeout=30.0, stall_timeout=60.0, max_runtime=90.0),
        stop_grace=2.0,
        inherit_env=False,
        provider_env={"claude": clis.claude_env(md, tmp_path / "claude-home")},
    )
    ctx.binaries.overrides["claude"] = claude
    yield handle
    handle.request_shutdown()


@pytest.fixture
async def api(gw: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gw, timeout=60) as client:
        await nodes_in(client, "up")
        yield client


async def register(gw: GatewayHandle, repo: Path, repo_id: str = "r1") -> None:
    """The repo as Symphony knows it (``repoId``) and as the deploy routes resolve it."""
    sup = gw.context.sup
    await sup.store.migrate("repos", REPOS_SCHEMA)
    await sup.store.execute(
        "INSERT OR IGNORE INTO repos (id, path, name, default_branch, created_at) VALUES (?, ?, ?, ?, ?)",
        (repo_id, str(repo), repo.name, "main", time.time()),
    )


def make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return init_repo(path)


async def follow_all(api: httpx.AsyncClient, url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every NDJSON object of a followed log until its ``end``."""
    out: list[dict[str, Any]] = []
    async with api.stream("GET", url, params={**params, "follow": 1}) as resp:
        assert resp.status_code == 200
        async for line in resp.aiter_lines():
            if line.strip():
                out.append(json.loads(line))
                if out[-1]["type"] == "end":
                    break
    return out


async def launch_on_n2(api: httpx.AsyncClient, ticket: str, prompt: str) -> dict[str, Any]:
    """``symphony/launch`` placed on n2; the answered process, checked to be there."""
    body = {"ticketId": ticket, "repoId": "r1", "prompt": prompt, "node": "n2"}
    r = await api.post(f"{API}/launch", json=body)
    assert r.status_code == 201, r.text
    process: dict[str, Any] = r.json()["process"]
    assert process["node"] == "n2"
    return process


async def test_a_symphony_run_on_node_two_finishes_is_followed_and_a_killed_one_leaves_nothing(
    gw: GatewayHandle, api: httpx.AsyncClient, md: ModelDouble, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"README": "test repo\n"})
    await register(gw, repo)

    # A run that finishes: placed on n2, its log followed through the Symphony route, its
    # result found in the gateway's mirror, its file made in the (shared) worktree.
    md.claude.add_turn(Text("Working."), Bash("for i in 1 2 3; do echo line$i; done; echo made > made.txt"))
    md.claude.reply("All done.")
    run = await launch_on_n2(api, "T-1", "make it")
    with trio.fail_after(60):
        seen = await follow_all(api, f"{API}/logs/T-1", {})
    assert seen[-1]["process"]["state"] == "exited" and seen[-1]["process"]["node"] == "n2"
    logs = [o for o in seen if o["type"] == "log"]
    assert [o["seq"] for o in logs] == list(range(logs[0]["seq"], logs[0]["seq"] + len(logs)))
    events = [o["event"] for o in logs if "event" in o]
    assert {"type": "text", "text": "Working."} in events
    assert any(e["type"] == "result" and e["ok"] for e in events)
    with trio.fail_after(10):
        while True:
            status = (await api.get(f"{API}/status/T-1")).json()
            if status["runs"][-1]["state"] != "running":
                break
            await trio.sleep(0.05)
    last = status["runs"][-1]
    assert (last["id"], last["node"], last["state"]) == (run["id"], "n2", "exited")
    assert (Path(status["ticket"]["worktree"]) / "made.txt").read_text() == "made\n"
    record = (await api.get(f"/api/gateway/processes/{run['id']}")).json()
    assert record["node"] == "n2" and record["exitCode"] == 0

    # A run that hangs in a tool: killed through Symphony, the receipt is the node's.
    md.claude.add_turn(Bash("echo started && sleep 600", timeout_ms=600_000))
    child = await launch_on_n2(api, "T-2", "wait")
    await wait_until(lambda: runs_program(child["id"], "sleep"), 30, "the tool's sleep on n2")
    assert len(marked_pids(child["id"])) >= 3
    began = time.monotonic()
    receipt = (await api.post(f"{API}/kill", json={"ticketId": "T-2"})).json()
    assert time.monotonic() - began < 2.0 + 1.0  # grace (2 s here) + 1 s
    assert receipt["node"] == "n2" and receipt["process"]["node"] == "n2"
    assert receipt["process"]["state"] == "killed" and receipt["survivors"] == []
    assert not marked_pids(child["id"]), "nothing of the run's tree may survive"
    final = (await api.get(f"{API}/status/T-2")).json()["runs"][-1]
    assert (final["id"], final["node"], final["state"]) == (child["id"], "n2", "killed")

    # Unknown nodes are refused before anything starts; no node is this machine (the default).
    body = {"ticketId": "T-3", "repoId": "r1", "prompt": "x"}
    r = await api.post(f"{API}/launch", json={**body, "node": "n9"})
    assert r.status_code == 400 and r.json()["code"] == "node_not_found", r.text
    r = await api.post(f"{API}/launch", json={**body, "node": "N 2"})
    assert r.status_code == 400 and "node" in r.json()["error"], r.text


async def test_a_judges_loop_on_node_two_runs_its_agent_and_judge_there(
    gw: GatewayHandle, api: httpx.AsyncClient, md: ModelDouble, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo", {"README": "test repo\n"})
    await register(gw, repo)
    md.claude.add_turn(Bash("echo ok > flag.txt"))
    md.claude.reply("Flag made.")
    judges = [{"name": "check", "command": ["test", "-f", "flag.txt"]}]
    body = {"ticketId": "T-5", "repoId": "r1", "prompt": "make the flag", "judges": judges, "node": "n2"}
    r = await api.post(f"{API}/loop", json=body)
    assert r.status_code == 201, r.text
    job = r.json()["process"]
    assert job["node"] == "local" and job["labels"]["node"] == "n2"  # the job itself runs here
    with trio.fail_after(60):
        end = (await follow_all(api, f"/api/gateway/processes/{job['id']}/logs", {}))[-1]
    assert end["process"]["state"] == "exited", end
    runs = (await api.get(f"{API}/status/T-5")).json()["runs"]
    children = [(x["labels"].get("role"), x["node"], x["state"]) for x in runs if x.get("jobId") == job["id"]]
    assert ("agent", "n2", "exited") in children and ("judge", "n2", "exited") in children, children


SERVE_SH = """setsid sh -c 'trap "" TERM; sleep 600' &
echo "ready on http://localhost:$PORT/"
sleep 600
"""


async def test_a_deploy_on_node_two_is_followed_and_killed_whole_and_without_node_runs_here(
    gw: GatewayHandle, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    package = {"name": "proj", "scripts": {"dev": f"PORT={port} sh serve.sh"}}
    repo = make_repo(tmp_path / "proj", {"package.json": json.dumps(package), "serve.sh": SERVE_SH})
    await register(gw, repo)
    paths = {"repoPath": str(repo), "worktreePath": str(repo)}

    r = await api.post(D, json={"ticketId": "T-9", **paths, "node": "n9"})
    assert r.status_code == 400 and r.json()["code"] == "node_not_found", r.text
    r = await api.post(D, json={"ticketId": "T-9", **paths, "node": 2})
    assert r.status_code == 400 and r.json()["code"] == "invalid_request", r.text

    r = await api.post(D, json={"ticketId": "T-9", **paths, "node": "n2"})
    assert r.status_code == 200, r.text
    started = r.json()
    assert started["node"] == "n2" and started["success"] is True and started["port"] == port
    record_id = started["processId"]

    # Its log, followed through the process routes, shows the server's line from the node.
    async with api.stream("GET", f"/api/gateway/processes/{record_id}/logs", params={"follow": 1}) as resp:
        with trio.fail_after(30):
            async for line in resp.aiter_lines():
                if line.strip() and "ready on" in json.loads(line).get("text", ""):
                    break
    with trio.fail_after(30):
        while len(marked_pids(record_id)) < 4:  # npm, sh, the setsid'd sh and its sleep, sleep
            await trio.sleep(0.05)
    status = (await api.get(f"{D}/status/T-9", params={"repo": str(repo)})).json()
    assert status["node"] == "n2" and status["processId"] == record_id and "ready on" in status["logs"]

    r = await api.post(f"{D}/kill", json={"pid": started["pid"]})
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["node"] == "n2" and receipt["process"]["state"] == "killed" and receipt["survivors"] == []
    assert {s["signal"] for s in receipt["signals"]} == {"SIGTERM", "SIGKILL"}  # the trap held out
    assert not marked_pids(record_id), "nothing of the deploy's tree may survive, setsid'd included"
    with trio.fail_after(20):
        end = (await follow_all(api, f"/api/gateway/processes/{record_id}/logs", {"since": 0}))[-1]
    assert end["process"]["state"] == "killed" and end["process"]["node"] == "n2"

    # ClosedLoop's body names no node: the default, this machine.
    r = await api.post(D, json={"ticketId": "T-9", **paths})
    assert r.status_code == 200, r.text
    assert r.json()["node"] == "local"
    down = await api.post(f"{D}/teardown", json=paths)
    assert down.status_code == 200 and down.json()["node"] == "local" and down.json()["survivors"] == []
    assert not marked_pids(r.json()["processId"])


async def test_default_node_sends_closedloops_bodies_to_that_node(tmp_path: Path) -> None:
    """``gateway serve --default-node n3``: a deploy body without ``node`` (ClosedLoop's form) runs
    on n3; ``local`` still means this machine."""
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    package = {"name": "proj", "scripts": {"dev": f"PORT={port} sh serve.sh"}}
    repo = make_repo(tmp_path / "proj", {"package.json": json.dumps(package), "serve.sh": SERVE_SH})
    paths = {"repoPath": str(repo), "worktreePath": str(repo)}
    async with cluster(tmp_path, extra=("--default-node", "n3")) as c, c.gateway.client() as api:
        r = await api.post("/api/gateway/repos", json={"path": str(repo)})
        assert r.status_code in (200, 201), r.text
        r = await api.post(D, json={"ticketId": "T-7", **paths})
        assert r.status_code == 200, r.text
        started = r.json()
        assert started["node"] == "n3"
        record_id = started["processId"]
        with trio.fail_after(30):
            while len(marked_pids(record_id)) < 4:
                await trio.sleep(0.05)
        down = (await api.post(f"{D}/teardown", json=paths)).json()
        assert down["node"] == "n3" and down["process"]["tornDown"] and down["survivors"] == []
        assert not marked_pids(record_id)
        r = await api.post(D, json={"ticketId": "T-7", **paths, "node": "local"})
        assert r.status_code == 200 and r.json()["node"] == "local", r.text
        receipt = (await api.post(f"{D}/kill", json={"pid": r.json()["pid"]})).json()
        assert receipt["node"] == "local" and receipt["survivors"] == []
