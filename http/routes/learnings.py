"""The learnings family over HTTP (operation ``learnings``): extract what a finished run
taught (an agent turn), review the pending ones, list the accepted ones, count their uses.

``gateway.supervisor.symphony.learnings.list`` does the work; decisions are all or nothing.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request
from quart_schema import document_request, validate_request

from gateway.http.errors import ApiError
from gateway.http.routes.common import json_object, query_str, symphony, validated
from gateway.http.schemas.learnings import AllDecisionIn, DecisionsIn, ExtractIn, UseIn

bp = Blueprint("learnings", __name__, url_prefix="/api/gateway")

_STORED = {"accept": "accepted", "reject": "rejected"}


@bp.get("/learnings")
async def accepted() -> dict[str, Any]:
    """ClosedLoop's ``patterns`` (``[{id: "pattern-N", summary, raw}]`` from
    ``~/.closedloop-ai/learnings/org-patterns.toon``), and our accepted learnings, most used
    first, under ``learnings`` (``repoId``, ``ticketId``, ``status`` filter them)."""
    svc = symphony()
    items = await svc.learnings.listing(
        status=query_str("status") or "accepted",
        repo_id=query_str("repoId"),
        ticket_id=query_str("ticketId"),
    )
    return {"patterns": await svc.work_learnings.patterns(), "learnings": items}


def _wire(body: dict[str, Any]) -> tuple[str, str]:
    """ClosedLoop's ``{ticketId, repoPath}`` (both required, its message otherwise)."""
    ticket, repo = body.get("ticketId"), body.get("repoPath")
    if not (isinstance(ticket, str) and ticket.strip() and isinstance(repo, str) and repo.strip()):
        raise ApiError(400, "invalid_request", "ticketId and repoPath are required")
    return ticket, repo


@bp.post("/symphony/extract-learnings")
@document_request(ExtractIn)
async def extract() -> tuple[dict[str, Any], int]:
    """ClosedLoop's form ``{ticketId, repoPath, activeTab?, chatFile?}``: an agent turn over the
    ticket's chat history files its lessons as pending (``.learnings/pending/*.json``); answers
    200 ``{status: "processing"}`` at once, ``learnings-status`` says when it is done. Ours
    ``{ticketId, processId?, provider?, model?}``: learn from a finished run, 201 when filed."""
    body = await json_object()
    if "repoPath" in body:
        ticket, repo = _wire(body)
        tab, chat_file = body.get("activeTab"), body.get("chatFile")
        return await symphony().work_learnings.extract(
            repo,
            ticket,
            tab if isinstance(tab, str) else None,
            chat_file if isinstance(chat_file, str) else None,
        ), 200
    data = validated(ExtractIn, body)
    out = await symphony().learnings.extract(data.ticket_id, data.process_id, data.provider, data.model)
    return out, 201


@bp.get("/symphony/pending-learnings")
async def pending() -> dict[str, Any]:
    """ClosedLoop's ``{totalCount, worktreeCount}`` (pending files over every worktree of the
    registered repos), and our pending learnings under ``learnings``."""
    svc = symphony()
    items = await svc.learnings.listing(
        status="pending", repo_id=query_str("repoId"), ticket_id=query_str("ticketId")
    )
    return {**await svc.work_learnings.pending_counts(), "learnings": items}


@bp.get("/symphony/process-learnings")
async def review_queue() -> dict[str, Any]:
    """ClosedLoop's form ``?ticketId&repo``: the processing status file (``{status: "none"}``
    before); ours: the pending learnings to decide on."""
    repo, ticket = request.args.get("repo"), request.args.get("ticketId")
    if repo is not None:
        if not ticket:
            raise ApiError(400, "invalid_request", "ticketId and repo are required")
        return await symphony().work_learnings.processing_status(repo, ticket)
    return await pending()


@bp.post("/symphony/process-learnings")
@document_request(DecisionsIn)
async def decide() -> dict[str, Any]:
    """ClosedLoop's form ``{ticketId, repoPath, waitForExtraction}``: ``waiting``, ``skipped``
    or ``processing`` (the pending lessons go into the org patterns file); ours
    ``{decisions: [...]}``: accept or reject, all or nothing."""
    body = await json_object()
    if "repoPath" in body:
        ticket, repo = _wire(body)
        return await symphony().work_learnings.process(repo, ticket, bool(body.get("waitForExtraction")))
    data = validated(DecisionsIn, body)
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
    """ClosedLoop's form ``?repo=``: the extraction status file (``{status: "none", count: 0}``
    before); ours: counts per status and the latest extraction run."""
    repo = request.args.get("repo")
    if repo is not None:
        return await symphony().work_learnings.extraction_status(repo, ticketId)
    return await symphony().learnings.status(ticketId)


@bp.post("/symphony/record-learning-use")
@document_request(UseIn)
async def record_use() -> dict[str, Any]:
    """ClosedLoop's form ``{ticketId, repoPath, learnings: [{summary}]}`` appends to the ticket's
    ``.learnings/outcomes.log`` (``{status: "recorded", count}``); ours ``{id}`` counts a use."""
    body = await json_object()
    if "repoPath" in body:
        ticket, repo = _wire(body)
        used = body.get("learnings")
        return await symphony().work_learnings.record_use(
            repo, ticket, used if isinstance(used, list) else []
        )
    data = validated(UseIn, body)
    return await symphony().learnings.record_use(data.id)
