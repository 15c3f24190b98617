"""What every route needs, in one object attached to the app (``current_gateway()``).

Routes take this context rather than module globals, so several gateways (tests, the
benchmark) can live in one process. ``services`` holds every domain service, built once at
start by the composition root (``gateway.http.serve.open_services``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import trio
from quart import current_app

from gateway.http.auth import Auth
from gateway.http.policy import Approvals, Policy
from gateway.http.telemetry import Metrics
from gateway.supervisor import StateDir, Supervisor
from gateway.supervisor.nodes import NodeManager
from gateway.supervisor.services.closedloop import VERIFY_TIMEOUT
from gateway.supervisor.services.deploys import Deploys
from gateway.supervisor.services.files import RunViewer
from gateway.supervisor.services.git import GitOps
from gateway.supervisor.services.github import PullRequests
from gateway.supervisor.services.repos import Repos
from gateway.supervisor.services.runzip import RunDirs
from gateway.supervisor.symphony import Symphony
from gateway.supervisor.symphony.workspace import PathWorkspaces, Workspaces

if TYPE_CHECKING:
    from gateway.http.binaries import Binaries
    from gateway.http.relay.client import RelayClient

HEARTBEAT_INTERVAL = 15.0
BODY_TIMEOUT = 60.0  # a request body must arrive whole within this, or the answer is 408


@dataclass
class Services:
    """Every domain service, built once per gateway; routes call one method of one of them."""

    symphony: Symphony
    workspaces: Workspaces
    #: Targets by path, as ClosedLoop's clients name them.
    places: PathWorkspaces
    repos: Repos
    git: GitOps
    deploys: Deploys
    run_viewer: RunViewer
    run_dirs: RunDirs
    pulls: PullRequests
    #: Node agents on other machines (``gateway serve`` sets it; None in apps built without).
    nodes: NodeManager | None = None


@dataclass
class GatewayContext:
    sup: Supervisor
    services: Services
    state: StateDir
    host: str
    port: int
    auth: Auth
    policy: Policy
    approvals: Approvals
    metrics: Metrics
    binaries: Binaries
    instance: str
    clock: Callable[[], float] = time.time
    heartbeat: float = HEARTBEAT_INTERVAL
    body_timeout: float = BODY_TIMEOUT
    #: How long the exchange waits for the ClosedLoop API's verdict (ClosedLoop: 5 s).
    verify_timeout: float = VERIFY_TIMEOUT
    started_at: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)
    shutting_down: trio.Event = field(default_factory=trio.Event)
    open_streams: int = 0  # NDJSON generators alive right now (a disconnect must drop it)
    #: Serialized answers the fast paths reuse (health, listing, record JSON), keyed per use.
    caches: dict[str, Any] = field(default_factory=dict)
    #: The cloud relay client while one runs (``gateway.http.relay.run_relay``), else None.
    relay: RelayClient | None = None

    async def wait(self, event: trio.Event | None, timeout: float) -> str:
        """Wait for ``event`` (if any), the timeout or shutdown; say which came first.

        Callers grab ``event`` *before* they read (``log.changed``, ``table.changed``), so a
        change that lands between the read and this wait is never missed.

        Streams use this between batches so that a shutdown ends them at once (with their
        ``end`` line) and silence turns into heartbeats.
        """
        if self.shutting_down.is_set():
            return "shutdown"
        winner = "timeout"
        async with trio.open_nursery() as nursery:

            async def watch(wait: Callable[[], Awaitable[None]], name: str) -> None:
                nonlocal winner
                await wait()
                winner = name
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch, self.shutting_down.wait, "shutdown")
            if event is not None:
                nursery.start_soon(watch, event.wait, "changed")
            nursery.cancel_scope.deadline = trio.current_time() + timeout
        return winner


def current_gateway() -> GatewayContext:
    return cast(GatewayContext, current_app.extensions["gateway"])
