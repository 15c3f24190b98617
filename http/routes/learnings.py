"""The learnings family over HTTP (operation ``learnings``): extract what a finished run
taught (an agent turn), review the pending ones, list the accepted ones, count their uses.

``gateway.supervisor.symphony.learnings.list`` does the work; decisions are all or nothing.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request

from gateway.http.routes.common import query_str, symphony
from gateway.http.schemas.learnings import AllDecisionIn, DecisionsIn, ExtractIn, UseIn

bp = Blueprint("learnings", __name__, url_prefix="/api/gateway")

_STORED = {"accept": "accepted", "reject": "rejected"}


@bp.get("/learnings")
async def accepted() -> dict[str, Any]:
    """Accepted learnings, most used first (``repoId``, ``ticketId`` filter; ``status`` too)."""
    items = await symphony().learnings.listing(
        status=query_str("status") or "accepted",
        repo_id=query_str("repoId"),
        ticket_id=query_str("ticketId"),
    )
    return {"learnings": items}


@bp.post("/symphony/extract-learnings")
@validate_request(ExtractIn)
async def extract(data: ExtractIn) -> tuple[dict[str, Any], int]:
    """Run the agent over the ticket's finished run (default: its latest) and file what it
    learned as pending."""
    out = await symphony().learnings.extract(data.ticket_id, data.process_id, data.provider, data.model)
    return out, 201


@bp.get("/symphony/pending-learnings")
async def pending() -> dict[str, Any]:
    items = await symphony().learnings.listing(
        status="pending", repo_id=query_str("repoId"), ticket_id=query_str("ticketId")
    )
    return {"learnings": items}


@bp.get("/symphony/process-learnings")
async def review_queue() -> dict[str, Any]:
    """The pending learnings to decide on (``ticketId`` narrows it)."""
    return await pending()


@bp.post("/symphony/process-learnings")
@validate_request(DecisionsIn)
async def decide(data: DecisionsIn) -> dict[str, Any]:
    """Accept (optionally edited) or reject pending learnings; all or nothing."""
    decisions = [
        {"id": d.id, "decision": _STORED[d.decision], "title": d.title, "body": d.body}
        for d in data.decisions
    ]
    return {"learnings": await symphony().learnings.decide(decisions)}


@bp.get("/symphony/process-all-learnings")
async def pending_counts() -> dict[str, Any]:
    """How many learnings wait for a decision, per ticket."""
    return await symphony().learnings.pending_summary()


@bp.post("/symphony/process-all-learnings")
@validate_request(AllDecisionIn)
async def decide_all(data: AllDecisionIn) -> dict[str, Any]:
    """Accept or reject every pending learning (of ``ticketId`` / ``repoId`` if given)."""
    return await symphony().learnings.decide_all(
        _STORED[data.decision], ticket_id=data.ticket_id, repo_id=data.repo_id
    )


@bp.get("/symphony/learnings-status/<ticketId>")
async def status(ticketId: str) -> dict[str, Any]:
    """Counts per status and the ticket's latest extraction run."""
    return await symphony().learnings.status(ticketId)


@bp.post("/symphony/record-learning-use")
@validate_request(UseIn)
async def record_use(data: UseIn) -> dict[str, Any]:
    """Count one use of an accepted learning (uses rank the list)."""
    return await symphony().learnings.record_use(data.id)
