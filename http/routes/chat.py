"""The chat-session routes. ``/api/gateway/ticket-chat`` (operation ``ticket_chat``): one
route for a UI's ticket chat panel, over the Symphony chat the ``symphony/*`` routes also expose.

GET lists the ticket's sessions and history, POST sends a turn through the provider registry
(Claude or Codex) and streams the reply as NDJSON, DELETE ends the session and kills any turn
still running. ``terminal-chat`` (an agent in a managed repo's folder) and ``run-viewer-chat``
(a read-only agent asked about one run) keep their own sessions (``symphony_scoped_chat``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from pydantic import Field
from quart import Blueprint, Response, request
from quart_schema import document_request

from gateway.http.errors import ApiError
from gateway.http.query import flag
from gateway.http.routes.common import json_object, optional_body, query_str, symphony, validated
from gateway.http.routes.symphony import chat_turn, end_sessions, frames_response, stream_turn
from gateway.http.schemas.symphony import ChatIn, Id, SessionDeleteIn

bp = Blueprint("ticket_chat", __name__, url_prefix="/api/gateway")


class TicketChatIn(ChatIn):
    ticket_id: Id = Field(alias="ticketId")


@bp.get("/ticket-chat")
async def ticket_chat() -> dict[str, Any]:
    """ClosedLoop's ticket chat history ``{messages, ticketId, sessionId?}``; for a Symphony
    ticket whose chat ran through our ticket form, its sessions and messages (reading marks them
    read, ``markRead=0`` to peek)."""
    ticket_id = query_str("ticketId")
    if ticket_id is None:
        raise ApiError(400, "invalid_query", "ticketId parameter is required")
    svc = symphony()
    wire = await svc.side_chats.history("ticket", ticket_id)
    if wire["messages"] or await svc.runner.db.ticket(ticket_id) is None:
        return wire
    history = await svc.chat.history(ticket_id, mark_read=flag("markRead", "1"))
    return {
        "ticketId": ticket_id,
        "sessions": await svc.chat.sessions(ticket_id),
        "messages": history["messages"],
    }


@bp.post("/ticket-chat")
@document_request(TicketChatIn)
async def ticket_chat_turn() -> Response:
    """ClosedLoop's form ``{ticketId, message, ticketContext: {identifier, title, url,
    description?}, repoPath?}``: a claude turn (read-only in the repo, else web only; the first
    turn gets the ticket as context, later ones resume) streamed as frames after
    ``status {status: "spawning", resuming}``. Ours ``{ticketId, message, provider?}`` on a
    Symphony ticket: NDJSON log lines."""
    body = await json_object()
    if "ticketContext" in body:
        ticket, message, context = body.get("ticketId"), body.get("message"), body.get("ticketContext")
        valid_context = isinstance(context, dict) and all(
            isinstance(context.get(k), str) for k in ("identifier", "title", "url")
        )
        if not (
            isinstance(ticket, str)
            and ticket
            and isinstance(message, str)
            and message.strip()
            and valid_context
        ):
            raise ApiError(400, "invalid_request", "ticketId, message, and ticketContext are required")
        repo = body.get("repoPath") if isinstance(body.get("repoPath"), str) else None
        assert isinstance(context, dict)
        record, resuming = await symphony().side_chats.ticket(ticket, message, context, repo)
        return frames_response(record, head=[{"type": "status", "status": "spawning", "resuming": resuming}])
    data = validated(TicketChatIn, body)
    return await chat_turn(data.ticket_id, data)


@bp.delete("/ticket-chat")
@document_request(SessionDeleteIn)
async def ticket_chat_end() -> dict[str, Any]:
    """ClosedLoop's ``?ticketId=``: reset the ticket's chat history (``{success: true}``, a running
    turn is killed); with ``sessionId`` or for a Symphony ticket's sessions: ours."""
    ticket_id = query_str("ticketId")
    svc = symphony()
    if (
        ticket_id is not None
        and query_str("sessionId") is None
        and await svc.runner.db.ticket(ticket_id) is None
    ):
        return await svc.side_chats.reset("ticket", ticket_id)
    return await end_sessions()


# ---- terminal-chat and run-viewer-chat ------------------------------------------------------


class ScopedChatIn(ChatIn):
    session_id: Id | None = Field(None, alias="sessionId", description="default: the latest one")


class TerminalChatIn(ScopedChatIn):
    repo_id: Id = Field(alias="repoId")


class RunViewerChatIn(ScopedChatIn):
    process_id: Id = Field(alias="processId")


async def _listing(scope: str, key_arg: str) -> dict[str, Any]:
    """Sessions of the scope (``key_arg`` narrows them), or one session with its messages."""
    svc = symphony()
    session_id = query_str("sessionId")
    if session_id is not None:
        session = await svc.scoped_chats.session(scope, session_id)
        return {"session": session, "messages": await svc.scoped_chats.history(session_id)}
    return {"sessions": await svc.scoped_chats.sessions(scope, query_str(key_arg))}


async def _end(scope: str) -> dict[str, Any]:
    data = await optional_body(SessionDeleteIn)
    session_id = data.session_id or query_str("sessionId")
    if session_id is None:
        raise ApiError(400, "invalid_request", "sessionId: required")
    return await symphony().scoped_chats.end(scope, session_id)


def _head(session: dict[str, Any]) -> bytes:
    return json.dumps({"type": "session", "session": session}, separators=(",", ":")).encode() + b"\n"


def _ours() -> bool:
    return (
        query_str("sessionId") is not None
        or query_str("repoId") is not None
        or query_str("processId") is not None
    )


@bp.get("/terminal-chat")
async def terminal_chat() -> dict[str, Any]:
    """ClosedLoop's ``{messages: [{id, role, content, timestamp, mode}], claudeSessionId?,
    codexSessionId?}``; with ``repoId`` or ``sessionId``: our scoped sessions."""
    if not _ours():
        return await symphony().side_chats.history("terminal")
    return await _listing("terminal", "repoId")


@bp.post("/terminal-chat")
@document_request(TerminalChatIn)
async def terminal_chat_turn() -> Response:
    """ClosedLoop's form ``{message}`` (``@codex `` / ``@cl `` pick the agent): a turn in the
    first registered repo, streamed as frames after ``status {status: "spawning", mode}``.
    Ours ``{repoId, message, sessionId?}``: a scoped session, NDJSON after a ``session`` line."""
    body = await json_object()
    if "repoId" not in body:
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            raise ApiError(400, "invalid_request", "message is required")
        record, mode = await symphony().side_chats.terminal(message)
        return frames_response(
            record, head=[{"type": "status", "status": "spawning", "mode": mode}], running={"mode": mode}
        )
    data = validated(TerminalChatIn, body)
    svc = symphony()
    cwd = await svc.repo_path(data.repo_id)
    record, session = await svc.scoped_chats.turn(
        "terminal", data.repo_id, cwd, data.message,
        provider=data.provider, model=data.model, session_id=data.session_id,
    )  # fmt: skip
    return stream_turn(record, _head(session))


@bp.delete("/terminal-chat")
@document_request(SessionDeleteIn)
async def terminal_chat_end() -> dict[str, Any]:
    """ClosedLoop's form (no ``sessionId``): reset the history (``{success: true}``, a running
    turn is killed); ours: end one scoped session."""
    if not _ours() and not (await request.get_data()).strip():
        return await symphony().side_chats.reset("terminal")
    return await _end("terminal")


@bp.get("/run-viewer-chat")
async def run_viewer_chat() -> dict[str, Any]:
    """ClosedLoop's ``{messages, claudeSessionId?}``; with ``processId``/``sessionId``: ours."""
    if not _ours():
        return await symphony().side_chats.history("run-viewer")
    return await _listing("run-viewer", "processId")


@bp.post("/run-viewer-chat")
@document_request(RunViewerChatIn)
async def run_viewer_chat_turn() -> Response:
    """ClosedLoop's form ``{message, runDir?}``: a read-only claude turn about the run folder
    (inside a registered repo, one of its worktrees or our state folder; 403 otherwise),
    streamed as frames. Ours ``{processId, message}``: about one agent run of our table."""
    body = await json_object()
    if "processId" not in body:
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            raise ApiError(400, "invalid_request", "message is required")
        run_dir = body.get("runDir") if isinstance(body.get("runDir"), str) else None
        turn_record = await symphony().side_chats.run_viewer(message, run_dir)
        head = [{"type": "status", "status": "spawning", "mode": "claude"}]
        return frames_response(turn_record, head=head, running={"mode": "claude"})
    data = validated(RunViewerChatIn, body)
    svc = symphony()
    record = svc.sup.table.get(data.process_id)
    if record is None or not record.event_parser:
        raise ApiError(404, "process_not_found", f"processId: no agent run {data.process_id[:100]!r}")
    if record.cwd is None or not await trio.Path(record.cwd).is_dir():
        raise ApiError(404, "worktree_not_found", f"processId: the run's folder {record.cwd} is gone")
    context = (
        f"This conversation is about agent run {record.id}. Its transcript:\n{svc.runner.transcript(record)}"
    )
    turn, session = await svc.scoped_chats.turn(
        "run-viewer", record.id, Path(record.cwd), data.message,
        provider=data.provider or record.event_parser, model=data.model, session_id=data.session_id,
        context=context, read_only=True, ticket_id=record.ticket_id,
    )  # fmt: skip
    return stream_turn(turn, _head(session))


@bp.delete("/run-viewer-chat")
@document_request(SessionDeleteIn)
async def run_viewer_chat_end() -> dict[str, Any]:
    """ClosedLoop's form: reset the history; with ``sessionId``: end our scoped session."""
    if not _ours() and not (await request.get_data()).strip():
        return await symphony().side_chats.reset("run-viewer")
    return await _end("run-viewer")
