"""``/api/gateway/ticket-chat`` (operation ``ticket_chat``): one route for a UI's ticket chat
panel, over the Symphony chat the ``symphony/*`` routes also expose.

GET lists the ticket's sessions and history, POST sends a turn through the provider registry
(Claude or Codex) and streams the reply as NDJSON, DELETE ends the session and kills any turn
still running. ``terminal-chat`` and ``run-viewer-chat`` are not built (501).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from quart import Blueprint, Response
from quart_schema import document_request, validate_request

from gateway.http.errors import ApiError
from gateway.http.query import flag
from gateway.http.routes_symphony import _query_str, _symphony_errors, chat_turn, end_sessions, service
from gateway.http.schemas_symphony import ChatIn, Id, SessionDeleteIn

bp = Blueprint("ticket_chat", __name__, url_prefix="/api/gateway")


class TicketChatIn(ChatIn):
    ticket_id: Id = Field(alias="ticketId")


@bp.get("/ticket-chat")
async def ticket_chat() -> dict[str, Any]:
    """The ticket's sessions and messages; reading marks them read (``markRead=0`` to peek)."""
    ticket_id = _query_str("ticketId")
    if ticket_id is None:
        raise ApiError(400, "invalid_query", "ticketId: required")
    svc = service()
    with _symphony_errors():
        history = await svc.chat_history(ticket_id, mark_read=flag("markRead", "1"))
    return {"ticketId": ticket_id, "sessions": await svc.sessions(ticket_id), "messages": history["messages"]}


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
