"""Node agents: the engine on other machines, driven over one WebSocket per node.

``agent`` is the engine without the HTTP front (``gateway node-agent``); ``client`` is the
gateway's side of the channel (a ``placement.NodeBackend``); ``wire`` is what they say to each
other; ``config`` is the gateway's list of nodes in its state dir.
"""

from .client import NodeManager, RemoteNode
from .config import NodeConfig, load_nodes, save_nodes

__all__ = ["NodeConfig", "NodeManager", "RemoteNode", "load_nodes", "save_nodes"]
