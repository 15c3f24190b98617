"""The Ray backend: one node agent on every Ray node, kept there through Ray's Jobs REST API.

Ray gives membership (which nodes are alive), placement (``node:<ip>``, the resource every Ray
node has once, pins a job to it) and launching (a job's entrypoint). It does not keep the kill
and log contract, so the children never run as Ray jobs: each node's *agent* does, and the
gateway drives the agents like any other node (``client.RemoteNode``).

Every ``interval`` seconds the backend reads the nodes (``GET /api/v0/nodes``) and the jobs
(``GET /api/jobs/``). An alive node without a pending or running agent job gets one (``POST
/api/jobs/``; an agent that died is thus restarted, and its start-up sweep kills what it left).
An alive node not known to the gateway is added as ``ray-<ip>``; a node Ray reports dead is
dropped: its records become ``lost`` at once, and its agent, if still reachable, is told to
kill every tree it runs.

Only httpx is used: Ray's Python client runs on asyncio and threads, and the gateway never
imports ``ray``. Cancellation: ``run`` is a supervisor service; cancelling it stops the
polling and leaves the agent jobs running (a next gateway reuses them).
"""

from __future__ import annotations

import logging
import math
import secrets
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from .client import NodeManager
from .config import NodeConfig

log = logging.getLogger("gateway.nodes.ray")

AGENT_TAG = "desktop-gateway-node-agent"
_LIVE_JOB = {"PENDING", "RUNNING"}
DEFAULT_AGENT_PORT = 19440
#: Seconds between two agent submissions for the same node.
SUBMIT_PAUSE = 5.0


def node_name(ip: str) -> str:
    return "ray-" + ip.replace(":", "-")


@dataclass
class RayOptions:
    address: str
    state_root: Path
    token_file: Path
    agent_port: int = DEFAULT_AGENT_PORT
    lease: float = 30.0
    interval: float = 1.0
    #: The interpreter that runs ``gateway node-agent`` on every node (same path everywhere).
    python: str = sys.executable


class RayBackend:
    def __init__(self, manager: NodeManager, opts: RayOptions) -> None:
        self.manager = manager
        self.opts = opts
        self.error: str | None = None
        self.submitted = 0
        self._dead: set[str] = set()
        self._last_submit: dict[str, float] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reconcile until cancelled; a Ray that does not answer is retried, never fatal."""
        async with httpx.AsyncClient(base_url=self.opts.address, timeout=10, trust_env=False) as http:
            task_status.started()
            while True:
                try:
                    await self.reconcile(http)
                    self.error = None
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                    self.error = f"{type(exc).__name__}: {exc}"[:300]
                    log.warning("ray backend: %s", self.error)
                await trio.sleep(self.opts.interval)

    async def nodes(self, http: httpx.AsyncClient) -> list[dict[str, Any]]:
        r = await http.get("/api/v0/nodes", params={"limit": 10000})
        r.raise_for_status()
        return list(r.json()["data"]["result"]["result"])

    async def agent_jobs(self, http: httpx.AsyncClient) -> dict[str, list[dict[str, Any]]]:
        """Our agent jobs by node ip."""
        r = await http.get("/api/jobs/")
        r.raise_for_status()
        data = r.json()
        jobs = data.values() if isinstance(data, dict) else data
        out: dict[str, list[dict[str, Any]]] = {}
        for job in jobs:
            meta = job.get("metadata") or {}
            if meta.get("app") == AGENT_TAG and meta.get("node_ip"):
                out.setdefault(meta["node_ip"], []).append(job)
        return out

    async def reconcile(self, http: httpx.AsyncClient) -> None:
        jobs = await self.agent_jobs(http)
        # A machine whose Ray node restarted is listed twice (the old one DEAD): by ip, alive wins.
        alive: dict[str, bool] = {}
        for listed in await self.nodes(http):
            ip = str(listed["node_ip"])
            alive[ip] = alive.get(ip, False) or listed.get("state") == "ALIVE"
        for ip, is_alive in alive.items():
            name = node_name(ip)
            if not is_alive:
                self._drop(name)
                continue
            live = any(j.get("status") in _LIVE_JOB for j in jobs.get(ip, []))
            # Not again within the pause: an agent that fails at once (its state dir still
            # locked by one that outlived its Ray node) must not become a job per second.
            if not live and trio.current_time() >= self._last_submit.get(ip, -math.inf) + SUBMIT_PAUSE:
                self._last_submit[ip] = trio.current_time()
                await self.submit(http, ip)
            node = self.manager.nodes.get(name)
            if node is None:
                await self.manager.add(NodeConfig(name, f"ws://{ip}:{self.opts.agent_port}"), save=False)
            elif name in self._dead:
                node.revive()
            self._dead.discard(name)

    def entrypoint(self, ip: str) -> str:
        """The agent's command line: built from the gateway's own options, never from requests."""
        o = self.opts
        argv = [o.python, "-m", "gateway.http.cli", "node-agent", "--state-dir", str(o.state_root / ip),
                "--listen", f"{ip}:{o.agent_port}", "--token-file", str(o.token_file),
                "--lease", f"{o.lease:g}"]  # fmt: skip
        return shlex.join(argv)

    async def submit(self, http: httpx.AsyncClient, ip: str) -> str:
        submission = f"dg-agent-{ip.replace('.', '-').replace(':', '-')}-{secrets.token_hex(4)}"
        body = {
            "entrypoint": self.entrypoint(ip),
            "submission_id": submission,
            "entrypoint_resources": {f"node:{ip}": 0.001},
            "metadata": {"app": AGENT_TAG, "node_ip": ip},
        }
        r = await http.post("/api/jobs/", json=body)
        r.raise_for_status()
        self.submitted += 1
        log.info("ray backend: node agent for %s submitted as %s", ip, submission)
        return submission

    def _drop(self, name: str) -> None:
        node = self.manager.nodes.get(name)
        if node is not None and name not in self._dead:
            self._dead.add(name)
            node.drop("Ray reports the node dead")
