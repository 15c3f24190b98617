"""Run a gateway: the supervisor and Hypercorn in one ``trio.run`` and one nursery.

Start-up order matters. The state-dir lock comes first, because opening the supervisor runs
crash recovery, which would kill a *live* gateway's children if a second one got that far.
Then the port: we bind the socket ourselves (no check-then-bind race) and hand Hypercorn the
descriptor. Only once it listens is ``gateway.json`` written, so the CLI never finds a gateway
that cannot answer yet.

Shutdown order: stop accepting and end every NDJSON stream with its ``end`` line (one event
does both), let Hypercorn drain, close the services, then leave ``open_supervisor``, which
stops every child.

This module is also the composition root: ``open_services`` builds every domain service once,
and production (``run_gateway``) and tests build them through it the same way.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import ipaddress
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from gateway.http.app import create_app
from gateway.http.auth import Auth
from gateway.http.binaries import Binaries
from gateway.http.context import BODY_TIMEOUT, HEARTBEAT_INTERVAL, GatewayContext, Services
from gateway.http.policy import APPROVAL_TIMEOUT, Approvals, Policy
from gateway.http.relay import run_relay
from gateway.http.routes.meta import VERSION
from gateway.http.telemetry import HYPERCORN_LOGGER, Metrics
from gateway.supervisor import StateDir, Supervisor, iso, open_supervisor
from gateway.supervisor.agents.providers import ProviderRegistry
from gateway.supervisor.nodes import NodeConfig, NodeManager, load_nodes, save_nodes
from gateway.supervisor.nodes.ray import DEFAULT_AGENT_PORT, RayBackend, RayOptions
from gateway.supervisor.services.closedloop import ClosedLoopSettings
from gateway.supervisor.services.deploys import Deploys
from gateway.supervisor.services.files import RunViewer
from gateway.supervisor.services.gh import Gh
from gateway.supervisor.services.git import GitOps
from gateway.supervisor.services.github import PullRequests
from gateway.supervisor.services.repos import Repos
from gateway.supervisor.services.runzip import RunDirs
from gateway.supervisor.services.worktrees import Git
from gateway.supervisor.symphony import SymphonySettings, open_symphony
from gateway.supervisor.symphony.workspace import PathWorkspaces, Workspaces

DEFAULT_PORT = 19432
FALLBACKS = 3
GRACEFUL_TIMEOUT = 5.0
PROBE_TIMEOUT = 0.5  # a gateway answers /health in milliseconds
REPO_GIT_TIMEOUT = 10.0  # registering a repo asks git two quick questions


class ServeError(Exception):
    """A reason not to start, as one line for the user."""


class GatewayAlreadyRunning(ServeError):
    def __init__(self, port: int | None, pid: int | None) -> None:
        where = f"port {port}" if port else "an unknown port"
        super().__init__(
            f"a gateway already runs for this state dir on {where}" + (f" (pid {pid})" if pid else "")
        )
        self.port = port
        self.pid = pid


@dataclass
class ServeOptions:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int | None = None  # explicit: that port only, no fallback
    base_port: int = DEFAULT_PORT  # else base_port and the next FALLBACKS ports
    allow_remote: bool = False
    extra_origins: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    # Knobs for tests and embedding; the defaults are the contract's values.
    clock: Callable[[], float] = time.time
    approval_timeout: float = APPROVAL_TIMEOUT
    heartbeat: float = HEARTBEAT_INTERVAL
    body_timeout: float = BODY_TIMEOUT
    probe_binaries: bool = True
    #: Node agents (``--node NAME=URL``), added to ``<state>/nodes.json``, and their token.
    nodes: list[NodeConfig] = field(default_factory=list)
    node_token_file: Path | None = None
    #: Where Symphony's activities and deploys go when a request names no node
    #: (``Placement.default``): ``local``, ``auto`` or a node's name.
    default_node: str = "local"
    #: Ray's dashboard (Jobs API) address: keep an agent on every Ray node (``nodes.ray``).
    ray_address: str | None = None
    ray_agent_port: int = DEFAULT_AGENT_PORT
    ray_agent_lease: float = 30.0
    ray_agent_state_dir: Path | None = None

    @classmethod
    def from_env(cls, state_dir: Path, **kw: object) -> ServeOptions:
        opts = cls(state_dir=state_dir, **kw)  # type: ignore[arg-type]
        if os.environ.get("GATEWAY_PORT", "").isdigit():
            opts.base_port = int(os.environ["GATEWAY_PORT"])
        opts.extra_origins += _env_list("GATEWAY_ALLOWED_ORIGINS")
        opts.extra_hosts += _env_list("GATEWAY_ALLOWED_HOSTS")
        return opts


def _env_list(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


@dataclass
class GatewayHandle:
    """What a started gateway gives its owner: where it listens and how to stop it."""

    port: int
    host: str
    app: QuartTrio
    context: GatewayContext
    _stop: trio.Event

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request_shutdown(self) -> None:
        self.context.shutting_down.set()
        self._stop.set()


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def instance_id(root: Path) -> str:
    """Fingerprint of the state dir, public in ``/health`` without revealing the path."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]


def _open_state_dir(root: Path) -> tuple[StateDir, int]:
    state = StateDir(Path(root).expanduser().resolve())
    return state, _lock_state_dir(state)


def _lock_state_dir(state: StateDir) -> int:
    fd = os.open(state.root / "gateway.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        info = state.read_info() or {}
        raise GatewayAlreadyRunning(info.get("port"), info.get("pid")) from None
    return fd


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


async def _holder_instance(port: int) -> str | None:
    """Ask whatever holds ``port`` for its ``/health``; its instance id if it is a gateway."""
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT, trust_env=False) as client:
            response = await client.get(f"http://127.0.0.1:{port}/health")
            data = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return data.get("instance") if isinstance(data, dict) else None


async def choose_socket(opts: ServeOptions, instance: str) -> socket.socket:
    """Bind the first free candidate port; refuse if a holder is this state dir's gateway."""
    ports = [opts.port] if opts.port is not None else [opts.base_port + i for i in range(FALLBACKS + 1)]
    for port in ports:
        try:
            return _bind(opts.host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ServeError(f"cannot bind {opts.host}:{port}: {exc.strerror}") from None
        if await _holder_instance(port) == instance:
            raise GatewayAlreadyRunning(port, None)
    listed = ", ".join(str(p) for p in ports)
    raise ServeError(f"no free port: {listed} {'is' if len(ports) == 1 else 'are all'} taken")


async def run_gateway(
    opts: ServeOptions, *, task_status: trio.TaskStatus[GatewayHandle] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until ``handle.request_shutdown()``; raises ``ServeError`` if it cannot start."""
    if not is_loopback_host(opts.host) and not opts.allow_remote:
        raise ServeError(f"--host {opts.host} is not loopback; pass --allow-remote to allow it")
    state, lock_fd = _open_state_dir(opts.state_dir)
    try:
        instance = instance_id(state.root)
        sock = await choose_socket(opts, instance)
        await _serve_on(opts, state, instance, sock, task_status)
    finally:
        os.close(lock_fd)


async def _serve_on(
    opts: ServeOptions,
    state: StateDir,
    instance: str,
    sock: socket.socket,
    task_status: trio.TaskStatus[GatewayHandle],
) -> None:
    port = sock.getsockname()[1]
    # Hypercorn wraps the descriptor in its own socket object and closes it; hand it over.
    fd = sock.detach()
    handed_over = trio.Event()
    try:
        await _serve_fd(opts, state, instance, fd, port, handed_over, task_status)
    finally:
        if not handed_over.is_set():
            os.close(fd)


@asynccontextmanager
async def open_services(
    sup: Supervisor,
    state: StateDir,
    which: Callable[[str], str | None],
    *,
    registry: ProviderRegistry | None = None,
    settings: SymphonySettings | None = None,
) -> AsyncIterator[Services]:
    """Build every domain service once, for the body of the block.

    ``which`` resolves a binary by name at each call (the binary-paths settings), so a
    ``PATCH /settings/binary-paths`` applies to the next git or agent child. Symphony's
    stored limits are loaded here; its background watchers end with the block (cancelled;
    the children they watched belong to the supervisor, which stops them).
    """
    git = Git(sup, which=which)
    registry = registry or ProviderRegistry(binary_path=which)
    async with open_symphony(sup, registry=registry, settings=settings, git=git) as symphony:
        await symphony.load_settings()
        ops = GitOps(git)
        repos = Repos(sup.store, Git(sup, timeout=REPO_GIT_TIMEOUT, which=which))
        await repos.open()
        # Ticket worktrees go where ClosedLoop's web app looks for them: the registry's layout.
        symphony.runner.worktrees.layout = repos.layout
        yield Services(
            symphony=symphony,
            workspaces=Workspaces(symphony, ops),
            places=PathWorkspaces(symphony, ops, repos),
            repos=repos,
            git=ops,
            deploys=Deploys(sup),
            run_viewer=RunViewer(sup),
            run_dirs=RunDirs(state.root / "run-viewer"),
            pulls=PullRequests(
                sup, git, Gh(sup, which=which), repos, worktree_root=symphony.runner.worktrees.root
            ),
        )


async def _serve_fd(
    opts: ServeOptions,
    state: StateDir,
    instance: str,
    fd: int,
    port: int,
    handed_over: trio.Event,
    task_status: trio.TaskStatus[GatewayHandle],
) -> None:
    token = state.token()
    extra_hosts = list(opts.extra_hosts)
    if not is_loopback_host(opts.host) and opts.host not in ("0.0.0.0", "::"):
        extra_hosts.append(opts.host)
    nodes = _node_configs(opts, state.root)
    token_text = _node_token(opts, state.root, nodes)
    async with open_supervisor(state.root) as sup:
        sup.placement.default = opts.default_node
        manager = NodeManager(sup, state.root, token_text)
        await manager.open(nodes)
        if opts.ray_address:
            await sup.start_service(RayBackend(manager, _ray_options(opts, state.root)).run)
        policy = Policy(sup.store, clock=opts.clock)
        await policy.load()
        binaries = Binaries(sup.store)
        await binaries.load()
        async with open_services(sup, state, binaries.path) as services:
            services.nodes = manager
            gw = GatewayContext(
                sup=sup,
                services=services,
                state=state,
                host=opts.host,
                port=port,
                auth=Auth(
                    token,
                    port,
                    opts.extra_origins,
                    extra_hosts,
                    clock=opts.clock,
                    web_app_origin=ClosedLoopSettings.load(state.root).web_app_origin,
                ),
                policy=policy,
                approvals=Approvals(policy, timeout=opts.approval_timeout),
                metrics=Metrics(sup, VERSION),
                binaries=binaries,
                instance=instance,
                clock=opts.clock,
                heartbeat=opts.heartbeat,
                body_timeout=opts.body_timeout,
            )
            await _serve_http(opts, gw, fd, handed_over, task_status)


async def _serve_http(
    opts: ServeOptions,
    gw: GatewayContext,
    fd: int,
    handed_over: trio.Event,
    task_status: trio.TaskStatus[GatewayHandle],
) -> None:
    """Hypercorn on ``fd`` for ``gw`` until a shutdown is requested; ``gateway.json`` meanwhile."""
    state, port, binaries = gw.state, gw.port, gw.binaries
    gw.approvals.on_outcome = lambda a: gw.metrics.approvals.labels(a.operation or "none", a.outcome).inc()
    app = create_app(gw)
    config = HypercornConfig()
    config.bind = [f"fd://{fd}"]
    config.accesslog = None
    config.errorlog = logging.getLogger(HYPERCORN_LOGGER)  # through the gateway's handler
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.keep_alive_timeout = 75  # > typical client pool idle times: no reuse-after-close race
    config.include_server_header = False
    stop = trio.Event()
    handle = GatewayHandle(port, opts.host, app, gw, stop)
    try:
        async with trio.open_nursery() as nursery:
            if opts.probe_binaries:
                nursery.start_soon(binaries.probe_all)

            async def serve_then_cancel(*, task_status: trio.TaskStatus[None]) -> None:
                handed_over.set()  # from here on Hypercorn owns (and closes) the fd
                await hypercorn_serve(
                    app,
                    config,
                    shutdown_trigger=stop.wait,
                    task_status=task_status,  # type: ignore[arg-type]
                )
                nursery.cancel_scope.cancel()

            await nursery.start(serve_then_cancel)
            nursery.start_soon(run_relay, gw)  # the cloud relay, when one is configured
            state.write_info(
                {"port": port, "pid": os.getpid(), "version": VERSION,
                 "startedAt": iso(gw.started_at), "host": opts.host, "instance": gw.instance}
            )  # fmt: skip
            task_status.started(handle)
    finally:
        gw.shutting_down.set()
        state.remove_info(os.getpid())


def _node_configs(opts: ServeOptions, root: Path) -> list[NodeConfig]:
    """Saved nodes plus ``--node`` ones (saved too, so a restart needs no flags)."""
    try:
        saved = load_nodes(root)
    except ValueError as exc:
        raise ServeError(str(exc)) from None
    by_name = {n.name: n for n in saved}
    for node in opts.nodes:
        by_name[node.name] = node
    merged = list(by_name.values())
    if merged != saved:
        save_nodes(root, merged)
    return merged


def _ray_options(opts: ServeOptions, root: Path) -> RayOptions:
    token_file = opts.node_token_file if opts.node_token_file is not None else root / "node-token"
    assert opts.ray_address is not None
    return RayOptions(
        address=opts.ray_address.rstrip("/"),
        state_root=opts.ray_agent_state_dir or root / "ray-nodes",
        token_file=Path(token_file).resolve(),
        agent_port=opts.ray_agent_port,
        lease=opts.ray_agent_lease,
    )


def _node_token(opts: ServeOptions, root: Path, nodes: list[NodeConfig]) -> str | None:
    """The agents' token: ``--node-token-file``, else ``<state>/node-token`` if there is one."""
    path = opts.node_token_file
    if path is None and (root / "node-token").is_file():
        path = root / "node-token"
    if path is None:
        if nodes or opts.ray_address:
            raise ServeError("nodes are configured: give the agents' token with --node-token-file")
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ServeError(f"cannot read the node token {path}: {exc.strerror}") from None
    if not token:
        raise ServeError(f"the node token file {path} is empty")
    return token


async def serve_forever(opts: ServeOptions, on_ready: Callable[[GatewayHandle], None]) -> None:
    """The ``gateway serve`` body: run until SIGINT/SIGTERM, then shut down in order."""
    import signal

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            handle: GatewayHandle = await nursery.start(partial(run_gateway, opts))
            on_ready(handle)
            async for _signum in signals:
                handle.request_shutdown()
                break
