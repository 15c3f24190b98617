"""The codex review family over HTTP (operations ``codex_review`` and ``codex_argue``).

``gateway.supervisor.symphony.reviews`` does the work. Review chat (``chat/<ticketId>``) and
finding threads (``finding-chat/<findingId>``) are the review-comment threads of
``comment-chat``, keyed ``review:<ticketId>`` and ``finding:<findingId>``, always with codex.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request

from gateway.http.routes.common import optional_body, symphony
from gateway.http.schemas.codex import ArgueIn, FindingEditIn, ReviewChatIn, ReviewIn, VerdictIn
from gateway.http.schemas.symphony import CommentPatchIn
from gateway.supervisor.symphony.reviews import PROVIDER

bp = Blueprint("codex", __name__, url_prefix="/api/gateway/codex")


@bp.get("/available")
async def available() -> dict[str, Any]:
    """Whether codex can run here, and which binary."""
    return symphony().reviews.available()


@bp.post("/review/<ticketId>")
async def review(ticketId: str) -> tuple[dict[str, Any], int]:
    """Start codex on the worktree's diff against its base (kind ``codex_review``)."""
    data = await optional_body(ReviewIn)
    record = await symphony().reviews.start(ticketId, data.base, data.model, data.focus)
    return {"ticketId": ticketId, "process": record.to_json()}, 201


@bp.get("/status/<ticketId>")
async def status(ticketId: str) -> dict[str, Any]:
    """The latest review: its record, its summary once finished, how many findings it filed."""
    return await symphony().reviews.status(ticketId)


@bp.delete("/status/<ticketId>")
async def forget(ticketId: str) -> dict[str, Any]:
    """Stop the latest review if it runs and forget it; its log stays readable by id."""
    return (await symphony().reviews.forget(ticketId)).to_json()


@bp.route("/stop/<ticketId>", methods=["POST", "DELETE"])
async def stop(ticketId: str) -> dict[str, Any]:
    """Kill the running review (its whole tree); answers the kill receipt."""
    return (await symphony().reviews.stop(ticketId)).to_json()


@bp.post("/review-extract/<ticketId>")
async def extract(ticketId: str) -> dict[str, Any]:
    """File the finished review's JSON findings as ``open`` (re-extracting replaces them)."""
    return await symphony().reviews.extract_findings(ticketId)


@bp.get("/review-findings/<ticketId>")
async def findings(ticketId: str) -> dict[str, Any]:
    return {"ticketId": ticketId, "findings": await symphony().reviews.findings(ticketId)}


@bp.post("/review-findings/<ticketId>")
@validate_request(FindingEditIn)
async def edit_finding(ticketId: str, data: FindingEditIn) -> dict[str, Any]:
    """Change a finding's status, severity or text."""
    changes = {"status": data.status, "severity": data.severity, "title": data.title, "body": data.body}
    return await symphony().reviews.update_finding(ticketId, data.id, changes)


@bp.post("/review-dedup/<ticketId>")
async def dedup(ticketId: str) -> dict[str, Any]:
    """Fold open findings that say the same thing about the same place into one."""
    return await symphony().reviews.dedup(ticketId)


@bp.post("/review-verdict/<ticketId>")
async def verdict(ticketId: str) -> dict[str, Any]:
    """Record ``verdict``, or derive it: request-changes while a high/critical finding is open."""
    data = await optional_body(VerdictIn)
    return await symphony().reviews.verdict(ticketId, data.verdict, data.reason)


@bp.post("/argue/<ticketId>")
@validate_request(ArgueIn)
async def argue(ticketId: str, data: ArgueIn) -> dict[str, Any]:
    """codex reads the code and accepts or contests the finding (recorded on it)."""
    return await symphony().reviews.argue(ticketId, data.finding_id, data.message, data.model)


@bp.post("/chat/<ticketId>")
@validate_request(ReviewChatIn)
async def chat(ticketId: str, data: ReviewChatIn) -> dict[str, Any]:
    """A turn on the review's thread (read-only codex, resumed)."""
    svc = symphony()
    summary = (await svc.reviews.status(ticketId)).get("summary")
    return await svc.chat.comment_chat(
        f"review:{ticketId}", ticketId, data.message, PROVIDER, summary, data.model
    )


def _thread(finding_id: str) -> str:
    return f"finding:{finding_id}"


@bp.get("/finding-chat/<findingId>")
async def finding_thread(findingId: str) -> dict[str, Any]:
    await symphony().reviews.finding(findingId)
    return await symphony().chat.comment_thread(_thread(findingId))


@bp.post("/finding-chat/<findingId>")
@validate_request(ReviewChatIn)
async def finding_chat(findingId: str, data: ReviewChatIn) -> dict[str, Any]:
    """A turn on the finding's thread; the first one gives codex the finding as context."""
    svc = symphony()
    found = await svc.reviews.finding(findingId)
    context = f"[{found['severity']}] {found['file']}:{found['line']} {found['title']}\n{found['body']}"
    return await svc.chat.comment_chat(
        _thread(findingId), found["ticketId"], data.message, PROVIDER, context, data.model
    )


@bp.patch("/finding-chat/<findingId>")
@validate_request(CommentPatchIn)
async def finding_thread_patch(findingId: str, data: CommentPatchIn) -> dict[str, Any]:
    return await symphony().chat.update_comment_thread(
        _thread(findingId), data.resolved, data.message_id, data.content
    )


@bp.delete("/finding-chat/<findingId>")
async def finding_thread_delete(findingId: str) -> dict[str, Any]:
    return await symphony().chat.delete_comment_thread(_thread(findingId))
