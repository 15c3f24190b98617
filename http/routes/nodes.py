"""Node agents over HTTP: list them, add one, read one with the receipts it handed over.

Reading is ``process_table`` (low), adding a node is ``process_control`` (high): a node runs
whatever the gateway sends it. The node's token never appears in an answer.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import document_response, validate_request

from gateway.http.context import GatewayContext, current_gateway
from gateway.http.errors import ApiError
from gateway.http.schemas.core import ErrorResponse
from gateway.http.schemas.nodes import NodeDetailOut, NodeIn, NodeListOut, NodeOut
from gateway.supervisor.nodes import NodeConfig, NodeManager

bp = Blueprint("nodes", __name__, url_prefix="/api/gateway/nodes")


def place(gw: GatewayContext, node: str | None) -> str:
    """The node a new child goes to: the asked one (which must exist; ``auto``: placement's
    pick), else placement's pick. NodeUnavailable (503) when no node is up with room,
    NoSuchNode (400 ``node_not_found``) for a name that is not configured."""
    placement = gw.sup.placement
    if node is None:
        return placement.pick()
    return placement.choose(node)


def _manager() -> NodeManager:
    manager = current_gateway().services.nodes
    if manager is None:
        raise ApiError(503, "unavailable", "nodes are not set up in this gateway")
    return manager


@bp.get("")
@document_response(NodeListOut)
async def list_nodes() -> dict[str, Any]:
    """Every configured node: ``up``, ``down`` (unreachable, within its lease) or ``lost``."""
    return {"nodes": _manager().describe()}


@bp.post("")
@validate_request(NodeIn)
@document_response(NodeOut, 201)
@document_response(ErrorResponse, 400)
async def add_node(data: NodeIn) -> tuple[dict[str, Any], int]:
    """Add a node agent (saved in ``<state>/nodes.json``); it is connected in the background."""
    manager = _manager()
    if current_gateway().shutting_down.is_set():
        raise ApiError(503, "shutting_down", "the gateway is shutting down")
    node = await manager.add(NodeConfig(data.name, data.url))  # BadNode 400, Conflict 409
    return node.describe(), 201


@bp.get("/<name>")
@document_response(NodeDetailOut)
async def get_node(name: str) -> dict[str, Any]:
    """One node, with the receipts of trees its agent killed on its own (newest first)."""
    manager = _manager()
    node = manager.nodes.get(name)
    if node is None:
        raise ApiError(404, "node_not_found", f"no node {name[:100]}")
    return {**node.describe(), "receipts": await manager.receipts(name)}
