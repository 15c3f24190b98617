"""The codex review family over HTTP (operations ``codex_review`` and ``codex_argue``).

``gateway.supervisor.symphony.reviews`` does the work. Review chat (``chat/<ticketId>``) and
finding threads (``finding-chat/<findingId>``) are the review-comment threads of
``comment-chat``, keyed ``review:<ticketId>`` and ``finding:<findingId>``, always with codex.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request
from quart_schema import document_request

from gateway.http.agent_stream import event_stream, review_stream, turn_stream
from gateway.http.context import current_gateway
from gateway.http.errors import ApiError
from gateway.http.routes.common import json_object, symphony, validated
from gateway.http.routes.symphony import patch_thread, thread_place
from gateway.http.schemas.codex import ArgueIn, FindingEditIn, ReviewChatIn, ReviewIn, VerdictIn
from gateway.http.schemas.symphony import CommentPatchIn
from gateway.supervisor import ProcessRecord
from gateway.supervisor.agents.frames import FrameMapper
from gateway.supervisor.symphony.addressing import resolve_repo
from gateway.supervisor.symphony.review_text import duplicate_pairs
from gateway.supervisor.symphony.reviews import PROVIDER
from gateway.supervisor.symphony.workchat import finding_prompt

bp = Blueprint("codex", __name__, url_prefix="/api/gateway/codex")


def _repo_arg() -> str | None:
    return request.args.get("repo")


async def _claude_frames(record: ProcessRecord) -> Response:
    """A claude turn as frames, stderr once at the end if it failed (ClosedLoop's finding chat)."""
    gw = current_gateway()
    svc = symphony()

    async def settled() -> ProcessRecord:
        await svc.settled(record.id)
        return gw.sup.table.get(record.id) or record

    body = turn_stream(gw, record, FrameMapper(), stderr="on-failure", settled=settled)
    return event_stream(gw, body)


async def _codex_frames(record: ProcessRecord, *, keep_running: bool = False) -> Response:
    """A codex turn as ClosedLoop streams it: ``status {sessionId}`` frames, text, result, done."""
    gw = current_gateway()
    svc = symphony()

    async def settled() -> ProcessRecord:
        await svc.settled(record.id)
        return gw.sup.table.get(record.id) or record

    mapper = FrameMapper(session_frame="status")
    body = turn_stream(gw, record, mapper, stderr="on-failure", settled=settled, keep_running=keep_running)
    return event_stream(gw, body)


@bp.get("/available")
async def available() -> dict[str, Any]:
    """ClosedLoop's ``{available, version}`` (from ``codex --version``), plus the binary's path."""
    return await symphony().codex_wire.available()


@bp.post("/review/<ticketId>")
async def review(ticketId: str) -> Response | tuple[dict[str, Any], int]:
    """ClosedLoop's form ``{repoPath, model?, reasoningEffort?, reviewMode?, baseBranch?,
    provider?, branchName?, useBaseRepo?}``: the review (kind ``codex_review``) streams as
    frames; it keeps running if the client goes away. Ours ``{base?, model?, focus?}`` on a
    Symphony ticket answers 201 with the record."""
    body = await json_object()
    if "repoPath" in body:
        svc = symphony()
        record, provider = await svc.codex_wire.start_review(ticketId, body)
        gw = current_gateway()

        async def settled() -> ProcessRecord:
            await svc.settled(record.id)
            return gw.sup.table.get(record.id) or record

        if provider == "codex":
            return event_stream(gw, review_stream(gw, record, provider=provider, settled=settled))
        mapper = FrameMapper()
        head_running = {"provider": provider}
        stream = turn_stream(gw, record, mapper, running=head_running, settled=settled, keep_running=True)
        return event_stream(gw, stream)
    data = validated(ReviewIn, body)
    record = await symphony().reviews.start(ticketId, data.base, data.model, data.focus, data.node)
    return {"ticketId": ticketId, "process": record.to_json()}, 201


@bp.get("/status/<ticketId>")
async def status(ticketId: str) -> dict[str, Any]:
    """``?repo=&provider=``: ClosedLoop's ``{hasReview, worktreeDir, status, processRunning, pid,
    provider, sessionId, startedAt, completedAt, exitCode, config, log, logSize}``; without
    ``repo``: our latest review record, summary and findings count."""
    repo = _repo_arg()
    if repo is not None:
        return await symphony().codex_wire.status(repo, ticketId, request.args.get("provider"))
    return await symphony().reviews.status(ticketId)


@bp.delete("/status/<ticketId>")
async def forget(ticketId: str) -> dict[str, Any]:
    """``?repo=&provider=``: stop the review and delete its files (``{success: true}``)."""
    repo = _repo_arg()
    if repo is not None:
        await symphony().codex_wire.forget(repo, ticketId, request.args.get("provider"))
        return {"success": True}
    return (await symphony().reviews.forget(ticketId)).to_json()


@bp.route("/stop/<ticketId>", methods=["POST", "DELETE"])
async def stop(ticketId: str) -> dict[str, Any]:
    """ClosedLoop's forms: ``POST {repo, provider?}`` -> ``{stopped, pid}`` (+ our receipt);
    ``DELETE ?repo&provider`` stops and deletes the files -> ``{deleted}``. Ours: the ticket's
    running review, killed with a receipt."""
    svc = symphony()
    if request.method == "DELETE" and _repo_arg() is not None:
        return {"deleted": await svc.codex_wire.forget(_repo_arg(), ticketId, request.args.get("provider"))}
    body = await json_object() if request.method == "POST" else {}
    if "repo" in body:
        provider = body.get("provider")
        return await svc.codex_wire.stop(
            body.get("repo"), ticketId, provider if isinstance(provider, str) else None
        )
    return (await svc.reviews.stop(ticketId)).to_json()


@bp.post("/review-extract/<ticketId>")
async def extract(ticketId: str) -> dict[str, Any]:
    """ClosedLoop's ``{repoPath, sessionId}`` -> ``{findings}`` parsed from the review's output;
    ours: file the finished review's findings on the Symphony ticket."""
    body = await json_object()
    if "repoPath" in body:
        return await symphony().codex_wire.extract(ticketId, body)
    return await symphony().reviews.extract_findings(ticketId)


@bp.get("/review-findings/<ticketId>")
async def findings(ticketId: str) -> dict[str, Any]:
    """``?repo=&provider=``: the findings file (``{provider, model, findings, declined?}`` or
    ``{findings: []}``); ours: the Symphony ticket's findings."""
    repo = _repo_arg()
    if repo is not None:
        return await symphony().codex_wire.findings(repo, ticketId, request.args.get("provider"))
    return {"ticketId": ticketId, "findings": await symphony().reviews.findings(ticketId)}


@bp.post("/review-findings/<ticketId>")
@document_request(FindingEditIn)
async def edit_finding(ticketId: str) -> dict[str, Any]:
    """``?repo=``: ClosedLoop's ``{findings, provider?, model?}`` | ``{commentedIndex}`` |
    ``{declined, declineReason}``; ours ``{id, status?, severity?, title?, body?}``."""
    body = await json_object()
    repo = _repo_arg()
    if repo is not None:
        return await symphony().codex_wire.save_findings(repo, ticketId, request.args.get("provider"), body)
    data = validated(FindingEditIn, body)
    changes = {"status": data.status, "severity": data.severity, "title": data.title, "body": data.body}
    return await symphony().reviews.update_finding(ticketId, data.id, changes)


@bp.post("/review-dedup/<ticketId>")
async def dedup(ticketId: str) -> dict[str, Any]:
    """ClosedLoop's ``{repoPath, providerA, providerB, findingsA, findingsB}`` ->
    ``{duplicates: [[iA, iB]...]}``; ours folds the ticket's open duplicates."""
    body = await json_object()
    if "repoPath" in body:
        repo, a, b = body.get("repoPath"), body.get("providerA"), body.get("providerB")
        if not (isinstance(repo, str) and repo and isinstance(a, str) and a and isinstance(b, str) and b):
            raise ApiError(400, "invalid_request", "repoPath, providerA, and providerB are required")
        await resolve_repo(symphony().runner.db, repo)
        raw_a, raw_b = body.get("findingsA"), body.get("findingsB")
        fa: list[Any] = raw_a if isinstance(raw_a, list) else []
        fb: list[Any] = raw_b if isinstance(raw_b, list) else []
        return {"duplicates": duplicate_pairs(fa, fb)}
    return await symphony().reviews.dedup(ticketId)


@bp.post("/review-verdict/<ticketId>")
async def verdict(ticketId: str) -> dict[str, Any]:
    """ClosedLoop's ``{repoPath, sessionId, provider}``: resume the review session with the
    premise-review prompt -> ``{verdict: {verdict, reason} | null, error?}``; ours records or
    derives approve/request-changes."""
    body = await json_object()
    if "repoPath" in body:
        return await symphony().codex_wire.verdict(ticketId, body)
    data = validated(VerdictIn, body)
    return await symphony().reviews.verdict(ticketId, data.verdict, data.reason)


@bp.post("/argue/<ticketId>")
@document_request(ArgueIn)
async def argue(ticketId: str) -> Response | dict[str, Any]:
    """ClosedLoop's ``?repo=`` + ``{claudeArgument, findingSummary, model?}``: a debate round
    (read-only codex, resumed from ``codex-debate.json``) streamed as frames; ours ``{findingId,
    message?}`` records codex's answer on the finding."""
    body = await json_object()
    repo = _repo_arg() or body.get("repoPath")
    if repo is not None or "claudeArgument" in body:
        record = await symphony().codex_wire.argue(ticketId, repo, body)
        return await _codex_frames(record)
    data = validated(ArgueIn, body)
    return await symphony().reviews.argue(ticketId, data.finding_id, data.message, data.model)


@bp.post("/chat/<ticketId>")
@document_request(ReviewChatIn)
async def chat(ticketId: str) -> Response | dict[str, Any]:
    """ClosedLoop's ``{prompt, repoPath, model?, chatContextId?}``: a codex turn (resumed from
    ``codex-chat[-review].json``) streamed as frames; ours ``{message}``: a turn on the
    review's thread."""
    body = await json_object()
    if "prompt" in body or "repoPath" in body:
        record = await symphony().codex_wire.chat(ticketId, body)
        return await _codex_frames(record)
    data = validated(ReviewChatIn, body)
    svc = symphony()
    summary = (await svc.reviews.status(ticketId)).get("summary")
    return await svc.chat.comment_chat(
        f"review:{ticketId}", ticketId, data.message, PROVIDER, summary, data.model
    )


def _thread(finding_id: str) -> str:
    return f"finding:{finding_id}"


@bp.get("/finding-chat/<findingId>")
async def finding_thread(findingId: str) -> dict[str, Any]:
    """``?ticketId&repo``: ClosedLoop's finding thread ``{messages, ticketId, repoPath, findingId,
    findingContext?, sessionId?}``; without them: our finding's thread."""
    place = thread_place()
    if place is not None:
        return await symphony().work_chats.thread(place[1], place[0], "finding-chats", findingId, "findingId")
    await symphony().reviews.finding(findingId)
    return await symphony().chat.comment_thread(_thread(findingId))


@bp.post("/finding-chat/<findingId>")
@document_request(ReviewChatIn)
async def finding_chat(findingId: str) -> Response | dict[str, Any]:
    """``?ticketId&repo`` + ``{message, displayMessage?, findingContext?}``: a claude turn about
    the finding in the ticket's worktree (404 without one) streamed as frames (ClosedLoop);
    ours ``{message}``: a codex turn on our finding's thread."""
    body = await json_object()
    place = thread_place()
    if place is not None:
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            raise ApiError(400, "invalid_request", "message is required")
        display = body.get("displayMessage")
        shown = display if isinstance(display, str) and display else message
        ctx = body.get("findingContext") if isinstance(body.get("findingContext"), dict) else None
        record = await symphony().work_chats.thread_turn(
            place[1], place[0], folder="finding-chats", key=findingId, key_name="findingId", message=message,
            shown=shown, context_name="findingContext", context=ctx, require_worktree=True,
            prompt=lambda h: finding_prompt(h.get("findingContext"), message, h.get("messages", [])),
        )  # fmt: skip
        return await _claude_frames(record)
    data = validated(ReviewChatIn, body)
    svc = symphony()
    found = await svc.reviews.finding(findingId)
    context = f"[{found['severity']}] {found['file']}:{found['line']} {found['title']}\n{found['body']}"
    return await svc.chat.comment_chat(
        _thread(findingId), found["ticketId"], data.message, PROVIDER, context, data.model
    )


@bp.patch("/finding-chat/<findingId>")
@document_request(CommentPatchIn)
async def finding_thread_patch(findingId: str) -> dict[str, Any]:
    return await patch_thread("finding-chats", "findingId", findingId, _thread(findingId))


@bp.delete("/finding-chat/<findingId>")
async def finding_thread_delete(findingId: str) -> dict[str, Any]:
    place = thread_place()
    if place is not None:
        return await symphony().work_chats.thread_delete(place[1], place[0], "finding-chats", findingId)
    return await symphony().chat.delete_comment_thread(_thread(findingId))
