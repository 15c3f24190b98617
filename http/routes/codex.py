"""The codex review family over HTTP (operations ``codex_review`` and ``codex_argue``).

``gateway.supervisor.symphony.reviews`` does the work. Review chat (``chat/<ticketId>``) and
finding threads (``finding-chat/<findingId>``) are the review-comment threads of
``comment-chat``, keyed ``review:<ticketId>`` and ``finding:<findingId>``, always with codex.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import validate_request

from gateway.http.routes.symphony import _optional_body, _symphony_errors, service
from gateway.http.schemas.codex import ArgueIn, FindingEditIn, ReviewChatIn, ReviewIn, VerdictIn
from gateway.http.schemas.symphony import CommentPatchIn
from gateway.supervisor.symphony.reviews import PROVIDER

bp = Blueprint("codex", __name__, url_prefix="/api/gateway/codex")


@bp.get("/available")
async def available() -> dict[str, Any]:
    """Whether codex can run here, and which binary."""
    return service().review_available()


@bp.post("/review/<ticketId>")
async def review(ticketId: str) -> tuple[dict[str, Any], int]:
    """Start codex on the worktree's diff against its base (kind ``codex_review``)."""
    data = await _optional_body(ReviewIn)
    with _symphony_errors():
        record = await service().start_review(ticketId, data.base, data.model, data.focus)
    return {"ticketId": ticketId, "process": record.to_json()}, 201


@bp.get("/status/<ticketId>")
async def status(ticketId: str) -> dict[str, Any]:
    """The latest review: its record, its summary once finished, how many findings it filed."""
    with _symphony_errors():
        return await service().review_status(ticketId)


@bp.delete("/status/<ticketId>")
async def forget(ticketId: str) -> dict[str, Any]:
    """Stop the latest review if it runs and forget it; its log stays readable by id."""
    with _symphony_errors():
        return (await service().forget_review(ticketId)).to_json()


@bp.route("/stop/<ticketId>", methods=["POST", "DELETE"])
async def stop(ticketId: str) -> dict[str, Any]:
    """Kill the running review (its whole tree); answers the kill receipt."""
    with _symphony_errors():
        return (await service().stop_review(ticketId)).to_json()


@bp.post("/review-extract/<ticketId>")
async def extract(ticketId: str) -> dict[str, Any]:
    """File the finished review's JSON findings as ``open`` (re-extracting replaces them)."""
    with _symphony_errors():
        return await service().extract_findings(ticketId)


@bp.get("/review-findings/<ticketId>")
async def findings(ticketId: str) -> dict[str, Any]:
    with _symphony_errors():
        return {"ticketId": ticketId, "findings": await service().findings(ticketId)}


@bp.post("/review-findings/<ticketId>")
@validate_request(FindingEditIn)
async def edit_finding(ticketId: str, data: FindingEditIn) -> dict[str, Any]:
    """Change a finding's status, severity or text."""
    changes = {"status": data.status, "severity": data.severity, "title": data.title, "body": data.body}
    with _symphony_errors():
        return await service().update_finding(ticketId, data.id, changes)


@bp.post("/review-dedup/<ticketId>")
async def dedup(ticketId: str) -> dict[str, Any]:
    """Fold open findings that say the same thing about the same place into one."""
    with _symphony_errors():
        return await service().dedup(ticketId)


@bp.post("/review-verdict/<ticketId>")
async def verdict(ticketId: str) -> dict[str, Any]:
    """Record ``verdict``, or derive it: request-changes while a high/critical finding is open."""
    data = await _optional_body(VerdictIn)
    with _symphony_errors():
        return await service().verdict(ticketId, data.verdict, data.reason)


@bp.post("/argue/<ticketId>")
@validate_request(ArgueIn)
async def argue(ticketId: str, data: ArgueIn) -> dict[str, Any]:
    """codex reads the code and accepts or contests the finding (recorded on it)."""
    with _symphony_errors():
        return await service().argue(ticketId, data.finding_id, data.message, data.model)


@bp.post("/chat/<ticketId>")
@validate_request(ReviewChatIn)
async def chat(ticketId: str, data: ReviewChatIn) -> dict[str, Any]:
    """A turn on the review's thread (read-only codex, resumed)."""
    svc = service()
    with _symphony_errors():
        summary = (await svc.review_status(ticketId)).get("summary")
        return await svc.comment_chat(
            f"review:{ticketId}", ticketId, data.message, PROVIDER, summary, data.model
        )


def _thread(finding_id: str) -> str:
    return f"finding:{finding_id}"


@bp.get("/finding-chat/<findingId>")
async def finding_thread(findingId: str) -> dict[str, Any]:
    with _symphony_errors():
        await service().finding(findingId)
        return await service().comment_thread(_thread(findingId))


@bp.post("/finding-chat/<findingId>")
@validate_request(ReviewChatIn)
async def finding_chat(findingId: str, data: ReviewChatIn) -> dict[str, Any]:
    """A turn on the finding's thread; the first one gives codex the finding as context."""
    svc = service()
    with _symphony_errors():
        found = await svc.finding(findingId)
        context = f"[{found['severity']}] {found['file']}:{found['line']} {found['title']}\n{found['body']}"
        return await svc.comment_chat(
            _thread(findingId), found["ticketId"], data.message, PROVIDER, context, data.model
        )


@bp.patch("/finding-chat/<findingId>")
@validate_request(CommentPatchIn)
async def finding_thread_patch(findingId: str, data: CommentPatchIn) -> dict[str, Any]:
    with _symphony_errors():
        return await service().update_comment_thread(
            _thread(findingId), data.resolved, data.message_id, data.content
        )


@bp.delete("/finding-chat/<findingId>")
async def finding_thread_delete(findingId: str) -> dict[str, Any]:
    with _symphony_errors():
        return await service().delete_comment_thread(_thread(findingId))
