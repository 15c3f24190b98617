"""Node agents: what ``POST /api/gateway/nodes`` takes and what the node routes answer."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

from gateway.http.schemas.core import Strict


class NodeIn(Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
    url: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class NodeOut(BaseModel):
    name: str
    address: str
    state: str
    lastHeartbeat: str | None = None
    running: int
    capacity: int
    lease: float
    error: str | None = None


class NodeListOut(BaseModel):
    nodes: list[NodeOut]


class NodeDetailOut(NodeOut):
    receipts: list[dict[str, Any]] = Field(default_factory=list)
