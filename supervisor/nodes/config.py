"""The gateway's nodes: ``<state>/nodes.json``, ``--node NAME=URL`` and ``POST /api/gateway/nodes``."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import BadRequest
from ..placement import AUTO, LOCAL

NODES_FILE = "nodes.json"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class BadNode(BadRequest, ValueError):
    """A node name or URL that cannot be (400 ``invalid_node``; a ValueError for the CLI)."""

    code = "invalid_node"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    url: str

    def __post_init__(self) -> None:
        check_node(self.name, self.url)

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "url": self.url}


def check_node(name: str, url: str) -> None:
    """Raise ``BadNode`` with a message for the user if ``name``/``url`` cannot be a node."""
    if not _NAME.match(name):
        raise BadNode(f"node name {name[:80]!r}: lower-case letters, digits, '.', '_' or '-'")
    if name in (LOCAL, AUTO):
        raise BadNode(f"{name!r} is reserved ({LOCAL}: this machine, {AUTO}: placement's pick)")
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname or parts.port is None:
        raise BadNode(f"node url {url[:200]!r}: expected ws://HOST:PORT or wss://HOST:PORT")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BadNode("node url: no credentials, query or fragment (the token comes from a file)")


def check_default_node(name: str) -> None:
    """``--default-node``: ``local``, ``auto`` or something that can be a node's name (the node
    itself may come later: over HTTP, or from Ray)."""
    if name not in (LOCAL, AUTO) and not _NAME.match(name):
        raise BadNode(f"--default-node {name[:80]!r}: local, auto or a node name")


def parse_node_arg(text: str) -> NodeConfig:
    """``NAME=ws://HOST:PORT`` as given to ``gateway serve --node``."""
    name, sep, url = text.partition("=")
    if not sep:
        raise ValueError(f"--node {text[:80]!r}: expected NAME=ws://HOST:PORT")
    return NodeConfig(name.strip(), url.strip())


def load_nodes(state_dir: Path) -> list[NodeConfig]:
    """The saved nodes; a missing file is no nodes, a broken one is an error for the user."""
    path = state_dir / NODES_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        raise ValueError(f'{path}: expected {{"nodes": [{{"name": ..., "url": ...}}]}}')
    return [NodeConfig(str(n.get("name", "")), str(n.get("url", ""))) for n in nodes if isinstance(n, dict)]


def save_nodes(state_dir: Path, nodes: list[NodeConfig]) -> None:
    path = state_dir / NODES_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"nodes": [n.to_json() for n in nodes]}, indent=2) + "\n")
    os.replace(tmp, path)
