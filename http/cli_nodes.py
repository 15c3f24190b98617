"""The CLI's node options: ``serve --node/--ray-address`` and ``gateway node-agent``.

Kept apart from ``cli`` so that the main parser only wires them in.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.http.cli_client import CliError, state_root

if TYPE_CHECKING:
    from gateway.http.cli_client import Client
    from gateway.http.serve import ServeOptions

Command = Callable[..., argparse.ArgumentParser]


def add_serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--node",
        action="append",
        metavar="NAME=URL",
        help="a node agent, e.g. gpu1=ws://10.0.0.5:19440 (repeatable; saved in the state dir)",
    )
    p.add_argument("--node-token-file", metavar="FILE", help="the token the node agents were given")
    p.add_argument(
        "--default-node",
        metavar="NAME",
        help="where Symphony runs, reviews, loops and deploys go when a request names no node: "
        "local (default), auto (the least loaded node that is up) or a node's name",
    )
    p.add_argument(
        "--ray-address",
        metavar="URL",
        help="Ray's dashboard (http://HOST:8265): keep a node agent on every Ray node",
    )
    p.add_argument(
        "--ray-agent-port",
        type=int,
        default=19440,
        metavar="PORT",
        help="port of those agents (default: 19440)",
    )
    p.add_argument(
        "--ray-agent-lease", type=float, default=30.0, metavar="SECONDS", help="their lease (default: 30)"
    )
    p.add_argument("--ray-agent-state-dir", metavar="DIR",
                   help="their state dirs, one per node ip (default: <state>/ray-nodes)")  # fmt: skip


def apply_serve_options(args: argparse.Namespace, opts: ServeOptions) -> None:
    """Copy the node options onto ``opts``; a bad value is a ``CliError``."""
    from gateway.supervisor.nodes.config import parse_node_arg

    try:
        opts.nodes = [parse_node_arg(text) for text in args.node or []]
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.node_token_file:
        opts.node_token_file = Path(args.node_token_file)
    if args.default_node:
        from gateway.supervisor.nodes.config import check_default_node

        try:
            check_default_node(args.default_node)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        opts.default_node = args.default_node
    if args.ray_address:
        if not args.ray_address.startswith(("http://", "https://")):
            raise CliError(f"--ray-address {args.ray_address[:80]!r}: expected http://HOST:PORT (Ray's API)")
        opts.ray_address = args.ray_address
        opts.ray_agent_port = args.ray_agent_port
        opts.ray_agent_lease = args.ray_agent_lease
        if args.ray_agent_state_dir:
            opts.ray_agent_state_dir = Path(args.ray_agent_state_dir)


def add_node_agent_parser(command: Command) -> None:
    p = command("node-agent", "run the engine for a gateway on another machine (docs/nodes.md)")
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="address of its WebSocket")
    p.add_argument("--token-file", required=True, metavar="FILE", help="the token the gateway gives")
    p.add_argument(
        "--lease",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="kill every tree after this long without the gateway (default: 30)",
    )
    p.add_argument("--capacity", type=int, help="most children at once (default: 4 per CPU)")
    p.add_argument("--tls-cert", metavar="FILE", help="serve wss:// with this certificate chain")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key")  # fmt: skip


def add_nodes_parser(command: Command) -> None:
    p = command("nodes", "list the node agents: state, last heartbeat, running, capacity")
    p.add_argument("name", nargs="?", help="one node, with the receipts its agent handed over")


def cmd_nodes(args: argparse.Namespace, client: Client) -> int:
    import json

    from gateway.http.cli_client import path_of
    from gateway.http.cli_show import table

    if args.name:
        data = client.request("GET", path_of("/api/gateway/nodes", args.name))
        if args.json:
            print(json.dumps(data, indent=2))
            return 0
        share = f"{data['running']}/{data['capacity']} running"
        print(f"{data['name']} {data['address']}: {data['state']} ({share})")
        for r in data["receipts"]:
            pids = sorted({p for s in r.get("signals", []) for p in s.get("pids", [])})
            print(f"  {r['cause']}: {r['process']['id']} stopped {len(pids)} process(es), "
                  f"survivors {r.get('survivors', [])}")  # fmt: skip
        return 0
    data = client.request("GET", "/api/gateway/nodes")
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    rows = [
        [n["name"], n["address"], n["state"], f"{n['running']}/{n['capacity']}", n["lastHeartbeat"] or "-",
         n["error"] or ""]
        for n in data["nodes"]
    ]  # fmt: skip
    print(table(rows, ["NODE", "ADDRESS", "STATE", "RUNNING", "HEARTBEAT", "ERROR"]) if rows else "no nodes")
    return 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_node_agent(args: argparse.Namespace) -> int:
    """The engine without the HTTP front, for a gateway on another machine to drive."""
    import trio

    from gateway.supervisor.heap import settle_heap
    from gateway.supervisor.nodes.agent import AgentError, AgentOptions, agent_forever, tls_context

    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise CliError(f"--listen {args.listen[:80]!r}: expected HOST:PORT")
    try:
        token = Path(args.token_file).read_text().strip()
    except OSError as exc:
        raise CliError(f"cannot read the token file {args.token_file}: {exc.strerror}") from None
    host = host.strip("[]")
    if not is_loopback(host) and not args.tls_cert:
        print(
            f"gateway: WARNING: node agent on non-loopback {host} without TLS; the token and every "
            "log line cross the network in clear (use --tls-cert/--tls-key or a tunnel)",
            file=sys.stderr,
        )
    opts = AgentOptions(state_dir=state_root(args.state_dir), host=host, port=int(port), token=token,
                        lease=args.lease)  # fmt: skip
    if args.capacity is not None:
        opts.capacity = args.capacity

    def ready(bound: int) -> None:
        settle_heap()  # as `gateway serve` does once it listens (supervisor/heap.py)
        scheme = "wss" if opts.ssl_context else "ws"
        print(f"gateway: node agent listening on {scheme}://{host}:{bound} (state {opts.state_dir}, "
              f"lease {opts.lease:g}s)", file=sys.stderr, flush=True)  # fmt: skip

    if args.tls_cert:
        try:
            opts.ssl_context = tls_context(args.tls_cert, args.tls_key)
        except AgentError as exc:
            raise CliError(str(exc)) from None
    failure: list[str] = []
    try:
        trio.run(agent_forever, opts, ready)
    except* AgentError as group:
        failure.append(str(_leaf(group)))
    if failure:
        raise CliError(failure[0])
    print("gateway: node agent stopped", file=sys.stderr)
    return 0


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


__all__ = [
    "add_node_agent_parser",
    "add_nodes_parser",
    "add_serve_options",
    "apply_serve_options",
    "cmd_node_agent",
    "cmd_nodes",
]
