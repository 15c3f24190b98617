"""The Symphony family over HTTP: runs, loops, plan loops, status, logs, sessions and chat.

Routes take the ``Symphony`` service (``gateway.supervisor.symphony``) from the gateway's
services, built once at start by ``gateway.http.serve``. Bodies are pydantic models
(``gateway.http.schemas.symphony``: validated, and in the OpenAPI document); what needs the
service's knowledge is checked by the service. Both name the field in their 400s; the service's
errors become answers in ``gateway.http.errors``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

from quart import Blueprint, Response, request
from quart_schema import document_request, document_response, validate_request

from gateway.http.agent_stream import event_stream, turn_stream
from gateway.http.context import GatewayContext, current_gateway
from gateway.http.errors import ApiError
from gateway.http.query import flag, log_window
from gateway.http.routes.common import (
    json_object,
    optional_body,
    query_str,
    required,
    symphony,
    validated,
)
from gateway.http.schemas.core import ReceiptOut
from gateway.http.schemas.symphony import (
    ChatHistoryOut,
    ChatIn,
    ChatMessageIn,
    CommentChatIn,
    CommentPatchIn,
    CommentThreadOut,
    CommitMessageOut,
    JudgesOut,
    KillIn,
    KillOut,
    LoopIn,
    PlanLoopIn,
    RunIn,
    SessionDeleteIn,
    SessionIn,
    SessionListOut,
    StartedOut,
    SymphonyLimitsIn,
    SymphonyLimitsOut,
    TicketIn,
    UnreadOut,
    WireChatIn,
)
from gateway.http.streams import counted, dumps, end_line, log_chunks, ndjson_response
from gateway.supervisor import ProcessRecord
from gateway.supervisor.agents.frames import FrameMapper
from gateway.supervisor.symphony import log_line_json
from gateway.supervisor.symphony.wire_launch import launch as wire_launch
from gateway.supervisor.symphony.workchat import comment_prompt

bp = Blueprint("symphony", __name__, url_prefix="/api/gateway/symphony")
#: ``/api/gateway/settings/symphony`` (extension operation ``symphony_settings``).
settings_bp = Blueprint("symphony_settings", __name__, url_prefix="/api/gateway/settings")

# ---- settings --------------------------------------------------------------------------------


@settings_bp.get("/symphony")
@document_response(SymphonyLimitsOut)
async def get_limits() -> dict[str, Any]:
    """The watchdog limits of agent runs: the defaults a run gets, and the most it may ask for."""
    return symphony().settings.limits_json()


@settings_bp.patch("/symphony")
@validate_request(SymphonyLimitsIn)
@document_response(SymphonyLimitsOut)
async def patch_limits(data: SymphonyLimitsIn) -> dict[str, Any]:
    """Change some limits (all or nothing), store them and apply them to the next runs.

    Runs already started keep the limits they started with.
    """
    return await symphony().save_limits(data.as_request())


# ---- runs and loops -------------------------------------------------------------------------


@bp.post("/launch")
@document_request(RunIn)
@document_response(StartedOut, 201)
async def launch() -> tuple[dict[str, Any], int]:
    """Create or reuse the ticket's worktree and start one agent run (kind ``symphony``).

    ClosedLoop's form ``{ticketIdentifier, repoPath, baseBranch?, ticket?{title, identifier,
    url, description, additionalContext, contextRepoPaths}}``: the worktree in ClosedLoop's
    layout on ``feature/<ticket>``, the ticket as ``prd.md``, our agent run implementing it;
    200 ``{success, ticketId, branchName, worktreePath, pid, logFile, prdFile, baseBranch,
    parentTicketId, alreadyRunning?}``. Ours ``{ticketId, repoId, prompt, ...}``: 201."""
    body = await json_object()
    if "ticketIdentifier" in body or "repoPath" in body:
        return await wire_launch(symphony().runner, body), 200
    data = validated(RunIn, body)
    args = data.run_args()
    svc = symphony()
    record = await svc.runs.launch(**args)
    ticket = await svc.ticket(args["ticket_id"])
    return {"process": record.to_json(), "ticket": ticket.to_json()}, 201


@bp.post("/loop")
@document_request(LoopIn)
@document_response(StartedOut, 201)
async def loop() -> tuple[dict[str, Any], int]:
    """ClosedLoop's loop protocol when the body has ``loopId``/``command``: 200 ``{success,
    loopId, pid, worktreePath}``, callbacks to the configured ClosedLoop API (see
    ``docs/symphony.md``). Our judges loop otherwise (``{ticketId, repoId, prompt, judges,
    maxIterations}``, 201)."""
    body = await json_object()
    if any(k in body for k in ("loopId", "command", "closedLoopAuthToken")):
        source = "relay" if request.headers.get("x-desktop-source") == "cloud-socket" else "local"
        return await symphony().cloud_loops.start(body, source=source), 200
    data = validated(LoopIn, body)
    args = data.run_args()
    svc = symphony()
    record = await svc.loops.start(judges=data.judge_dicts(), max_iterations=data.max_iterations, **args)
    ticket = await svc.ticket(args["ticket_id"])
    return {"process": record.to_json(), "ticket": ticket.to_json()}, 201


@bp.post("/loop/kill")
@document_request(TicketIn)
@document_response(ReceiptOut)
async def loop_kill() -> dict[str, Any]:
    """``{loopId}`` (ClosedLoop): kill the loop's whole tree -> ``{success, message}`` plus our
    receipt; the ``CANCELLED`` event follows. ``{ticketId}`` (ours): the ticket's judges loop."""
    body = await json_object()
    if "loopId" in body or "ticketId" not in body:
        return await symphony().cloud_loops.kill(body.get("loopId"))
    data = validated(TicketIn, body)
    receipt = await symphony().kill_loop(data.ticket_id)
    return receipt.to_json()


@bp.post("/kill")
@document_request(KillIn)
@document_response(KillOut)
async def kill() -> dict[str, Any]:
    """Kill the ticket's active loop, plan loop, run or chat turn; answers the kill receipt.

    ClosedLoop's forms ``{pid}`` (only a process this gateway started: we never signal a pid we
    do not own) and ``{ticketId, repoPath}`` answer ``{success, message, pid}`` plus our receipt.
    ``removeWorktree: true`` tears it down instead and removes the ticket's worktree (its
    branch stays); the answer's ``worktree`` says whether it was removed. Nothing else ever
    removes a worktree.
    """
    body = await json_object()
    svc = symphony()
    if "pid" in body or "repoPath" in body:
        return await svc.views.kill(body)
    data = validated(KillIn, body)
    if data.remove_worktree:
        return await svc.teardown(data.ticket_id, remove_worktree=True)
    receipt = await svc.kill(data.ticket_id)
    return receipt.to_json()


@bp.post("/plan-loop/<action>")
@validate_request(PlanLoopIn)
async def plan_loop(action: str, data: PlanLoopIn) -> tuple[dict[str, Any], int] | dict[str, Any]:
    """``start`` (like launch, in plan mode), ``feedback`` {ticketId, feedback}, ``approve``
    {ticketId, launch?}, ``kill`` {ticketId}.

    One route, not four: the operation table maps ``plan-loop/*`` as one rule, and policy
    looks requests up by rule.
    """
    svc = symphony()
    if action == "start":
        run = RunIn(
            ticketId=data.ticket_id,
            repoId=required(data.repo_id, "repoId"),
            prompt=required(data.prompt, "prompt"),
            provider=data.provider,
            model=data.model,
            baseRef=data.base_ref,
            limits=data.limits,
            node=data.node,
        )
        record = await svc.plans.start(**run.run_args())
        return {"process": record.to_json()}, 201
    if action == "feedback":
        return await svc.plans.feedback(data.ticket_id, required(data.feedback, "feedback"))
    if action == "approve":
        return await svc.plans.approve(data.ticket_id, launch=data.launch)
    if action == "kill":
        return (await svc.plans.kill(data.ticket_id)).to_json()
    raise ApiError(404, "not_found", f"plan-loop/{action[:50]}: use start, feedback, approve or kill")


@bp.post("/plan-loop/<ticketId>/prepare")
async def plan_loop_prepare(ticketId: str) -> dict[str, Any]:
    """ClosedLoop's phase 1 ``{repoPath, baseBranch?}`` -> ``{repoPath, worktreeDir, repo:
    {fullName, branch}}`` (git only; see ``supervisor/symphony/plan_loop_wire.py``)."""
    return await symphony().plan_loop_wire.prepare(ticketId, await json_object())


@bp.post("/plan-loop/<ticketId>/select-artifact/prepare")
async def plan_loop_select_prepare(ticketId: str) -> dict[str, Any]:
    """The same as ``prepare``, for ClosedLoop's artifact picker."""
    return await symphony().plan_loop_wire.prepare(ticketId, await json_object())


@bp.post("/plan-loop/<ticketId>/confirm")
async def plan_loop_confirm(ticketId: str) -> dict[str, Any]:
    """ClosedLoop's phase 3 ``{repoPath, loopId, artifactId, artifactSlug, featureId,
    ticketTitle?, outcome}`` -> ``{ok: true, worktreeDir}`` (the loop-style worktree)."""
    return await symphony().plan_loop_wire.confirm(ticketId, await json_object())


@bp.post("/plan-loop/<ticketId>/select-artifact/confirm")
async def plan_loop_select_confirm(ticketId: str) -> dict[str, Any]:
    """The same as ``confirm``, for ClosedLoop's artifact picker."""
    return await symphony().plan_loop_wire.confirm(ticketId, await json_object())


@bp.post("/plan-loop/<ticketId>/cancel")
async def plan_loop_cancel(ticketId: str) -> tuple[dict[str, Any], int]:
    """``{repoPath, loopId}``: ``DELETE <api>/loops/<id>`` with the API key, then the local loop
    killed -> ``{cancelled: true, warning?}`` plus our kill receipt; the cloud's refusal keeps
    its status (``{error: "DB cancel failed: ..."}``), an unreachable API is 502."""
    status, answer = await symphony().plan_loop_wire.cancel(ticketId, await json_object())
    return answer, status


# ---- reading --------------------------------------------------------------------------------


@bp.get("/status")
async def status() -> dict[str, Any]:
    """``?workDir=``: ClosedLoop's ``{isRunning, phase, status, iteration, lastUpdate}`` (or
    ``{isRunning: false, reason}``); without it, every ticket's records (ours)."""
    work_dir = request.args.get("workDir")
    if work_dir is not None:
        return await symphony().views.workdir_status(work_dir)
    return symphony().status()


@bp.get("/status/<ticketId>")
async def ticket_status(ticketId: str) -> dict[str, Any]:
    """``?repo=``: ClosedLoop's status (200 with ``exists: false`` when there is nothing);
    without it, the Symphony ticket's records (ours)."""
    repo = request.args.get("repo")
    if repo is not None:
        return await symphony().views.status(repo, ticketId)
    return await symphony().ticket_status(ticketId)


@bp.get("/plan/<ticketId>")
async def plan(ticketId: str) -> dict[str, Any]:
    """``?repo=``: ClosedLoop's ``{exists, planExists, content, raw, worktreeDir}``."""
    repo = request.args.get("repo")
    if repo is not None:
        return await symphony().views.plan(repo, ticketId)
    return await symphony().plans.get(ticketId)


@bp.get("/judges/<ticketId>")
@document_response(JudgesOut)
async def judges(ticketId: str) -> dict[str, Any]:
    """``?repo=``: ClosedLoop's ``{exists, isMock, data: EvaluationReport, worktreeDir}``."""
    repo = request.args.get("repo")
    if repo is not None:
        return await symphony().views.judges(repo, ticketId)
    return await symphony().loops.judges(ticketId, request.args.get("jobId") or None)


def wants_ndjson() -> bool:
    """The log as our NDJSON cursor stream: asked for by ``follow``/``since``/``tail``/``limit``
    or ``Accept: application/x-ndjson``; otherwise ClosedLoop's one JSON object."""
    if any(name in request.args for name in ("follow", "since", "tail", "limit", "processId")):
        return True
    return "application/x-ndjson" in request.headers.get("Accept", "")


@bp.get("/logs/<ticketId>")
async def logs(ticketId: str) -> Response | dict[str, Any]:
    """ClosedLoop's JSON by default: ``{exists, format: "jsonl"|"text", lines|content,
    totalLines, returnedLines}`` (``?repo=&lines=100``). Our NDJSON cursor stream (parsed
    events, ``status`` and ``end`` lines) behind ``follow=1``, ``since=``, ``tail=``, ``limit=``,
    ``processId=`` or ``Accept: application/x-ndjson``."""
    gw = current_gateway()
    if not wants_ndjson():
        lines = request.args.get("lines", "100")
        count = min(max(int(lines), 1), 10_000) if lines.isdigit() else 100
        repo = request.args.get("repo")
        if repo is not None:
            return await symphony().views.logs(repo, ticketId, count)
        return await symphony().views.ticket_logs(ticketId, count)
    record = symphony().log_target(ticketId, request.args.get("processId") or None)
    window = log_window(gw.sup.log(record.id))
    return ndjson_response(counted(gw, _symphony_log(gw, record, window.since, window.limit, window.follow)))


def _symphony_log(
    gw: GatewayContext, record: ProcessRecord, since: int, limit: int | None, follow: bool
) -> AsyncGenerator[bytes, None]:
    """Like the process log stream, plus ``event`` per line and ``status`` lines on changes."""
    return log_chunks(
        gw,
        record.id,
        since,
        limit,
        follow,
        encode=lambda lines: b"".join(dumps(log_line_json(record, line)) for line in lines),
        status_lines=True,
        end_after_limit=True,
    )


# ---- sessions and chat ----------------------------------------------------------------------


@bp.get("/sessions")
@document_response(SessionListOut)
async def sessions() -> dict[str, Any]:
    """ClosedLoop's worktree-session registry ``{sessions: [{ticketId, repoPath, worktreePath,
    pid?, ..., startedAt, lastAccessedAt}]}``; with ``ticketId``: our agent sessions."""
    ticket_id = request.args.get("ticketId")
    if ticket_id is None:
        return {"sessions": await symphony().session_registry.listing()}
    return {"sessions": await symphony().chat.sessions(ticket_id)}


@bp.post("/sessions")
@document_request(SessionIn)
async def create_session() -> tuple[dict[str, Any], int]:
    """ClosedLoop's ``{ticketId, repoPath, worktreePath, pid?, contextRepoPaths?, baseBranch?,
    parentTicketId?, loopId?, artifactId?}`` registers (upserts) a worktree session -> 200
    ``{success}``; ours ``{ticketId, provider?, title?, markRead?}`` opens an agent session."""
    body = await json_object()
    svc = symphony()
    if "repoPath" in body or "worktreePath" in body:
        return await svc.session_registry.upsert(body), 200
    data = validated(SessionIn, body)
    session = await svc.chat.create_session(data.ticket_id, data.provider, data.title)
    if data.mark_read:
        await svc.chat.mark_read(data.ticket_id)
        session["unreadCount"] = 0
    return {"session": session}, 201


@bp.delete("/sessions")
@document_request(SessionDeleteIn)
async def delete_sessions() -> dict[str, Any]:
    """``?ticketId=`` of a registered worktree session: ClosedLoop's removal (``{success}``),
    ours too; otherwise ours: forget a session (``sessionId``) or a ticket's, killing its turn.

    The body is optional (DELETE bodies are often dropped by clients): query arguments work too.
    """
    ticket_id = request.args.get("ticketId")
    svc = symphony()
    if ticket_id is not None and await svc.session_registry.has(ticket_id):
        await svc.session_registry.remove(ticket_id)
        if await svc.chat.sessions(ticket_id):
            await end_sessions()
        return {"success": True}
    return await end_sessions()


async def end_sessions() -> dict[str, Any]:
    """Delete the sessions a body or the query names (``sessions`` and ``ticket-chat``)."""
    data = await optional_body(SessionDeleteIn)
    session_id = data.session_id or request.args.get("sessionId") or None
    ticket_id = data.ticket_id or request.args.get("ticketId") or None
    return await symphony().chat.delete_sessions(session_id=session_id, ticket_id=ticket_id)


@bp.get("/sessions/unread-count")
@document_response(UnreadOut)
async def unread_count() -> dict[str, Any]:
    """ClosedLoop's ``count`` (registered sessions whose chat ends with a reply), and ours:
    ``unreadCount`` and ``byTicket`` over our agent sessions."""
    svc = symphony()
    return {"count": await svc.session_registry.unread(), **await svc.chat.unread_count()}


@bp.post("/chat/<ticketId>")
@document_request(WireChatIn)
async def chat(ticketId: str) -> Response:
    """A chat turn on the ticket; the reply streams as ClosedLoop's frames.

    ClosedLoop's form (``?repo=`` or ``repoPath``: the repo by path, history in the worktree's
    ``.closedloop-ai/work``) answers ``text/event-stream`` frames (``status``, ``sessionId``,
    ``text``, ``tool_use``, ``tool_result``, ``thinking``, ``usage``, ``result``, ``error``,
    ``done``); without a repo it is our Symphony-ticket chat (``{message, provider?, model?}``,
    NDJSON log lines). A client that hangs up kills the turn.
    """
    raw = await json_object()
    repo = request.args.get("repo") or raw.get("repoPath")
    if repo is None:
        return await chat_turn(ticketId, validated(ChatIn, raw))
    data = validated(WireChatIn, raw)
    if not (data.message and data.message.strip()):
        raise ApiError(400, "invalid_request", "message and repoPath are required")
    svc = symphony()
    record = await svc.work_chats.turn(
        str(repo), ticketId, data.message, provider=data.provider, model=data.model,
        context_repos=data.context_repo_paths or [],
    )  # fmt: skip
    return frames_response(record, stderr="live")


def frames_response(
    record: ProcessRecord,
    *,
    head: list[dict[str, Any]] | None = None,
    running: dict[str, Any] | None = None,
    stderr: Literal["live", "on-failure"] = "live",
    session_frame: Literal["sessionId", "status"] = "sessionId",
    keep_running: bool = False,
) -> Response:
    """One agent turn as ClosedLoop's frame stream (``done`` last, once the turn is stored)."""
    gw = current_gateway()
    svc = symphony()

    async def settled() -> ProcessRecord:
        await svc.settled(record.id)
        return gw.sup.table.get(record.id) or record

    body = turn_stream(
        gw, record, FrameMapper(session_frame=session_frame), head=head or [], running=running,
        stderr=stderr, settled=settled, keep_running=keep_running,
    )  # fmt: skip
    return event_stream(gw, body)


async def chat_turn(ticket_id: str, data: ChatIn) -> Response:
    """Start a chat turn and stream its log as NDJSON (``symphony/chat`` and ``ticket-chat``)."""
    record = await symphony().chat.turn(ticket_id, data.message, data.provider, data.model)
    return stream_turn(record)


def stream_turn(record: ProcessRecord, head: bytes = b"") -> Response:
    """A chat turn's log as NDJSON; its ``end`` line comes once the reply is stored."""
    gw = current_gateway()
    svc = symphony()

    async def body() -> AsyncIterator[bytes]:
        if head:
            yield head
        async with aclosing(_symphony_log(gw, record, 0, None, True)) as chunks:
            async for chunk in chunks:
                if chunk.startswith(b'{"type":"end"'):
                    # The reply is stored once the turn ended: answer ``end`` after that.
                    await svc.settled(record.id)
                    chunk = end_line(gw.sup.table.get(record.id))
                yield chunk

    return ndjson_response(counted(gw, body()))


@bp.get("/chat-history/<ticketId>")
@document_response(ChatHistoryOut)
async def chat_history(ticketId: str) -> dict[str, Any]:
    """The ticket's chat. ClosedLoop's form (``?repo=&provider=``): the history file
    ``{messages, ticketId, repoPath, sessionId?, contextPercent?, codexSessionExists}``; without
    ``repo``: our Symphony-ticket chat (reading marks it read, ``markRead=0`` to peek)."""
    repo = request.args.get("repo")
    if repo is not None:
        return await symphony().work_chats.history(repo, ticketId, request.args.get("provider"))
    return await symphony().chat.history(ticketId, mark_read=flag("markRead", "1"))


@bp.post("/chat-history/<ticketId>")
@document_request(ChatMessageIn)
async def add_chat_history(ticketId: str) -> tuple[dict[str, Any], int]:
    """Append one message. ClosedLoop's form (``?repo=``): body ``{message: {id, role,
    content, timestamp, sender?}}`` or ``{sessionId}``, answer 200 ``{success, history}``;
    without ``repo``: ``{role, content}``, answer 201 ``{message}``."""
    raw = await json_object()
    repo = request.args.get("repo")
    if repo is not None:
        return await symphony().work_chats.add_history(repo, ticketId, request.args.get("provider"), raw), 200
    data = validated(ChatMessageIn, raw)
    message = await symphony().chat.add_history(ticketId, data.role, data.content)
    return {"message": message}, 201


@bp.delete("/chat-history/<ticketId>")
async def clear_chat_history(ticketId: str) -> dict[str, Any]:
    """Clear the history (ClosedLoop's form ``?repo=&provider=&index=``: one message by index)."""
    repo = request.args.get("repo")
    if repo is not None:
        args = request.args
        return await symphony().work_chats.delete_history(
            repo, ticketId, args.get("provider"), args.get("index")
        )
    return await symphony().chat.clear_history(ticketId)


def thread_place() -> tuple[str, str] | None:
    """ClosedLoop's thread addressing ``?ticketId=&repo=`` (both, or 400), or None for ours."""
    ticket, repo = request.args.get("ticketId"), request.args.get("repo")
    if ticket is None and repo is None:
        return None
    if not (ticket and repo):
        raise ApiError(400, "invalid_request", "ticketId and repo parameters are required")
    return ticket, repo


async def patch_thread(kind: str, key: str, item_id: str, thread_id: str) -> dict[str, Any]:
    """PATCH of a comment or finding thread: ClosedLoop's mark in the worktree's work files
    (``?ticketId&repo``), else ours on thread ``thread_id`` (resolve, reopen, edit a message)."""
    body = await json_object()
    place = thread_place()
    if place is not None:
        return await symphony().work_chats.thread_mark(place[1], place[0], kind, item_id, key, body)
    data = validated(CommentPatchIn, body)
    return await symphony().chat.update_comment_thread(
        thread_id, data.resolved, data.message_id, data.content
    )


@bp.get("/comment-chat/<commentId>")
@document_response(CommentThreadOut)
async def comment_thread(commentId: str) -> dict[str, Any]:
    """``?ticketId&repo``: ClosedLoop's thread file ``{messages, ticketId, repoPath, commentId,
    commentContext?, sessionId?}``; without them: our thread."""
    place = thread_place()
    if place is not None:
        return await symphony().work_chats.thread(place[1], place[0], "comment-chats", commentId, "commentId")
    return await symphony().chat.comment_thread(commentId)


@bp.post("/comment-chat/<commentId>")
@document_request(CommentChatIn)
@document_response(CommentThreadOut)
async def comment_chat(commentId: str) -> Response | dict[str, Any]:
    """``?ticketId&repo`` + ``{message, commentContext?{author, body, path?, line?}}``: a claude
    turn on the comment's thread streamed as frames (ClosedLoop); ours ``{ticketId, message,
    context?}`` waits for the read-only turn and answers the thread."""
    body = await json_object()
    place = thread_place()
    if place is not None:
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            raise ApiError(400, "invalid_request", "message is required")
        ctx = body.get("commentContext") if isinstance(body.get("commentContext"), dict) else None
        record = await symphony().work_chats.thread_turn(
            place[1], place[0], folder="comment-chats", key=commentId, key_name="commentId", message=message,
            shown=message, context_name="commentContext", context=ctx, require_worktree=False,
            prompt=lambda h: comment_prompt(message, h.get("commentContext")),
        )  # fmt: skip
        return frames_response(record, stderr="live")
    data = validated(CommentChatIn, body)
    return await symphony().chat.comment_chat(
        commentId, data.ticket_id, data.message, data.provider, data.context, data.model
    )


@bp.patch("/comment-chat/<commentId>")
@document_request(CommentPatchIn)
@document_response(CommentThreadOut)
async def update_comment_thread(commentId: str) -> dict[str, Any]:
    """``?ticketId&repo`` + ``{messageId?, responded?}`` (ClosedLoop) -> ``{success}``; ours:
    resolve or reopen the thread, and/or edit one message (``messageId`` + ``content``)."""
    return await patch_thread("comment-chats", "commentId", commentId, commentId)


@bp.delete("/comment-chat/<commentId>")
async def delete_comment_thread(commentId: str) -> dict[str, Any]:
    place = thread_place()
    if place is not None:
        return await symphony().work_chats.thread_delete(place[1], place[0], "comment-chats", commentId)
    return await symphony().chat.delete_comment_thread(commentId)


@bp.get("/commit-message/<ticketId>")
@document_response(CommitMessageOut)
async def commit_message(ticketId: str) -> dict[str, Any]:
    """Draft a commit message from the worktree's diff (``provider``, ``model`` query args).

    Also in ClosedLoop's shape: ``title`` (the subject line), ``description`` (the body) and
    ``source`` (``"claude"`` when the agent drafted it, ``"default"`` for an empty diff)."""
    out = await symphony().chat.commit_message(ticketId, query_str("provider"), query_str("model"))
    subject, _, rest = str(out.get("message") or "").partition("\n")
    title = subject.strip() or f"Work on {ticketId}"
    return {
        **out,
        "title": title,
        "description": rest.strip(),
        "source": "default" if out.get("empty") else "claude",
    }
