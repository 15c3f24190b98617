"""Where a child runs: this machine (``local``) or a node agent on another one.

The engine itself only knows how to run children here. A remote node plugs in as a
``NodeBackend``: the supervisor hands it the start, kill and wait of every record whose
``node`` is the backend's name, and the backend keeps that record (and its log) in the
supervisor's table so that listings, log follows and status streams treat it like any other.

Placement is deliberately simple: an explicit node, else the least loaded node that is up
and under its capacity, else ``local`` when no node is configured at all. Activities whose
requests predate nodes (Symphony's runs, reviews and loops, deploys; ClosedLoop's bodies never
name a node) resolve a missing ``node`` through ``default`` instead: ``local`` unless the user
configured another (``gateway serve --default-node``), so they keep running here. A record placed on a
node stays there: a node that disappears makes its records ``lost``, never re-placed, since
its old tree may still run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import trio

from .errors import BadRequest, GatewayError, Unavailable

if TYPE_CHECKING:
    from .engine import KillReceipt
    from .spec import ProcessRecord, ProcessSpec, StopReason

LOCAL = "local"
#: Asked for explicitly: let placement pick (the least loaded node that is up).
AUTO = "auto"


class NodeUnavailable(Unavailable):
    """The node is configured but not reachable now (or none can take a child): 503."""

    code = "node_unavailable"

    def __init__(self, message: str, *, node: str | None = None) -> None:
        GatewayError.__init__(self, message, details={"node": node} if node else None)
        self.binary = ""


class UnknownNode(LookupError):
    """No node of that name is configured."""


class NoSuchNode(BadRequest):
    """A request named a node that is not configured (400 ``node_not_found``)."""

    code = "node_not_found"


class NodeBackend(Protocol):
    """A place other than this machine to run children, with the engine's contract.

    ``start`` returns once the child runs there and its record is in the local table.
    ``kill`` returns the node's receipt once the whole tree is gone there (idempotent,
    like the engine's). ``wait`` returns once the record ended and its log is complete here.
    Cancelling a caller of ``kill`` never leaves a kill half done: the node finishes it.
    """

    name: str

    @property
    def up(self) -> bool:
        """Reachable now: new children may be placed here."""

    @property
    def load(self) -> int:
        """Children of this node that are not ended yet."""

    @property
    def capacity(self) -> int:
        """How many children the node takes at most."""

    async def start(self, spec: ProcessSpec, *, job_id: str | None = None) -> ProcessRecord:
        """Run ``spec`` on the node; the record is in the table once this returns."""

    async def kill(self, record_id: str, reason: StopReason, *, grace: float | None = None) -> KillReceipt:
        """Kill the record's tree on the node; the node's receipt, with this table's record."""

    async def wait(self, record_id: str) -> ProcessRecord:
        """Until the record ended and its log is complete here."""

    async def shutdown(self) -> None:
        """Kill every child of the node that is still running (gateway shutdown)."""


class Placement:
    """The configured nodes by name, and the choice of one for a new child."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeBackend] = {}
        #: Where a request that names no node goes, for the activities that resolve through
        #: ``choose`` (Symphony, deploys): ``local``, ``auto`` or a node's name.
        self.default = LOCAL

    def add(self, backend: NodeBackend) -> None:
        if backend.name == LOCAL:
            raise ValueError(f"{LOCAL!r} is this machine, not a node name")
        self.nodes[backend.name] = backend

    def remove(self, name: str) -> None:
        self.nodes.pop(name, None)

    def get(self, name: str) -> NodeBackend:
        backend = self.nodes.get(name)
        if backend is None:
            raise UnknownNode(name)
        return backend

    def remote(self, record: ProcessRecord | None) -> NodeBackend | None:
        """The backend of a remote record still running; None for a local or ended one."""
        if record is None or record.node == LOCAL or record.state.ended:
            return None
        return self.get(record.node)

    def choose(self, node: str | None) -> str:
        """The node a new child of a request goes to: ``node``, else ``default``.

        ``local`` is this machine, ``auto`` placement's pick (``NodeUnavailable`` when no node
        is up with room), any other name must be a configured node (``NoSuchNode``). A default
        naming a node that is gone since answers ``NoSuchNode`` too: the user said where.
        """
        name = node if node is not None else self.default
        if name == AUTO:
            return self.pick()
        if name != LOCAL and name not in self.nodes:
            what = "node" if node is not None else "the default node (--default-node)"
            raise NoSuchNode(f"{what}: no node {name[:100]!r}", details={"node": name[:100]})
        return name

    def pick(self) -> str:
        """The least loaded node that is up and has room; ``local`` if none is configured."""
        if not self.nodes:
            return LOCAL
        ready = [b for b in self.nodes.values() if b.up and b.load < b.capacity]
        if not ready:
            raise NodeUnavailable("no node is up with room for another child")
        return min(ready, key=lambda b: (b.load / max(b.capacity, 1), b.load, b.name)).name

    async def shutdown(self) -> None:
        """Stop every remote child (gateway shutdown), node by node in parallel."""
        async with trio.open_nursery() as nursery:
            for backend in list(self.nodes.values()):
                nursery.start_soon(backend.shutdown)
