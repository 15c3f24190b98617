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
from quart import Blueprint, Response
from quart_schema import document_request, validate_request

from gateway.http.errors import ApiError
from gateway.http.query import flag
from gateway.http.routes.common import optional_body, query_str, symphony
from gateway.http.routes.symphony import chat_turn, end_sessions, stream_turn
from gateway.http.schemas.symphony import ChatIn, Id, SessionDeleteIn

bp = Blueprint("ticket_chat", __name__, url_prefix="/api/gateway")


class TicketChatIn(ChatIn):
    ticket_id: Id = Field(alias="ticketId")


@bp.get("/ticket-chat")
async def ticket_chat() -> dict[str, Any]:
    """The ticket's sessions and messages; reading marks them read (``markRead=0`` to peek)."""
    ticket_id = query_str("ticketId")
    if ticket_id is None:
        raise ApiError(400, "invalid_query", "ticketId: required")
    svc = symphony()
    history = await svc.chat.history(ticket_id, mark_read=flag("markRead", "1"))
    return {
        "ticketId": ticket_id,
        "sessions": await svc.chat.sessions(ticket_id),
        "messages": history["messages"],
    }


@bp.post("/ticket-chat")
@validate_request(TicketChatIn)
async def ticket_chat_turn(data: TicketChatIn) -> Response:
    """Send ``message`` into the ticket's session (resumed); the reply streams as NDJSON."""
    return await chat_turn(data.ticket_id, data)


@bp.delete("/ticket-chat")
@document_request(SessionDeleteIn)
async def ticket_chat_end() -> dict[str, Any]:
    """End the ticket's sessions (``ticketId``) or one (``sessionId``), killing a running turn."""
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


@bp.get("/terminal-chat")
async def terminal_chat() -> dict[str, Any]:
    """Terminal chat sessions (``repoId`` narrows), or one (``sessionId``) with its messages."""
    return await _listing("terminal", "repoId")


@bp.post("/terminal-chat")
@validate_request(TerminalChatIn)
async def terminal_chat_turn(data: TerminalChatIn) -> Response:
    """A turn of an agent working in the repo's own folder (the settings' permissions); the
    reply streams as NDJSON after a ``session`` line."""
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
    """End a session (``sessionId``): a running turn is killed, its messages are forgotten."""
    return await _end("terminal")


@bp.get("/run-viewer-chat")
async def run_viewer_chat() -> dict[str, Any]:
    """Run-viewer chat sessions (``processId`` narrows), or one (``sessionId``) with messages."""
    return await _listing("run-viewer", "processId")


@bp.post("/run-viewer-chat")
@validate_request(RunViewerChatIn)
async def run_viewer_chat_turn(data: RunViewerChatIn) -> Response:
    """Ask a read-only agent about one agent run; the first turn hands it the run's transcript."""
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
    return await _end("run-viewer")
