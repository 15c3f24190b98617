"""ClosedLoop's stream frames, folded from our normalized agent events.

Every chat-like route of ClosedLoop's gateway streams one JSON object per line:
``status``, ``sessionId``, ``text``, ``tool_use``, ``tool_result``, ``thinking``, ``usage``,
``result``, ``error`` and finally ``done`` (closedloop-ai/closedloop-ai
``apps/desktop/src/server/operations/stream-events.ts`` ``processStreamEvent``). Its web app and
cloud executor read those frames, so this module turns the provider events of
``gateway.supervisor.agents.providers`` into exactly them, and keeps what a turn said (the assistant text
as ClosedLoop joins it, the content blocks, the context percent, the session id) for the chat
history the routes store.

Pure: no I/O, no clock. One ``FrameMapper`` per turn.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Frame = dict[str, Any]
Event = dict[str, Any]

#: claude's default context window when its result names none (ClosedLoop's constant).
DEFAULT_CONTEXT_WINDOW = 200_000

#: An error text that means the CLI's login must be renewed: the stored session is dropped.
AUTH_CHALLENGE = re.compile(
    r"(invalid api key|authentication[_ ]error|oauth token has expired|please run /login|"
    r"unauthori[sz]ed|401\b|credit balance is too low)",
    re.IGNORECASE,
)


def format_tool_content(content: Any) -> str:
    """A tool result's content as ClosedLoop stores it in a block (``formatToolResultContent``)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(item if isinstance(item, str) else json.dumps(item, indent=2) for item in content)
    return json.dumps(content, indent=2)


def context_percent(usage: Any, window: Any) -> int | None:
    """``round(100 * (input + output + cache tokens) / window)``; None without usage."""
    if not isinstance(usage, dict):
        return None
    total = sum(
        int(usage.get(key) or 0)
        for key in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    size = window if isinstance(window, int) and window > 0 else DEFAULT_CONTEXT_WINDOW
    return round(total * 100 / size)


@dataclass
class FrameMapper:
    """Maps one turn's events to frames and remembers what the turn said.

    ``session_frame`` is how a newly seen session id is announced: claude chat routes send
    ``{"type": "sessionId", "sessionId"}``, codex routes ``{"type": "status", "sessionId"}``.
    """

    session_frame: Literal["sessionId", "status"] = "sessionId"
    assistant_content: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    session_id: str | None = None
    context_percent: int | None = None
    auth_challenge: bool = False
    errors: list[str] = field(default_factory=list)

    def frames(self, event: Event) -> list[Frame]:
        """The frames one normalized event becomes (often none)."""
        kind = event.get("type")
        if kind == "multi":
            return [f for inner in event.get("events", []) for f in self.frames(inner)]
        if kind == "session":
            return self._session(event.get("sessionId"))
        if kind == "text":
            return self._text(event)
        if kind == "thinking":
            text = event.get("text")
            if not isinstance(text, str) or not text:
                return []
            self.blocks.append({"type": "thinking", "thinking": text})
            return [{"type": "thinking", "content": text}]
        if kind == "tool_use":
            block = {
                "type": "tool_use",
                "id": event.get("id"),
                "name": event.get("name"),
                "input": event.get("input"),
            }
            self.blocks.append(block)
            return [dict(block)]
        if kind == "tool_result":
            raw = event.get("content", event.get("output"))
            is_error = bool(event.get("isError"))
            if event.get("fromAssistant"):
                self.blocks.append(
                    {
                        "type": "tool_result",
                        "id": event.get("toolUseId"),
                        "content": format_tool_content(raw),
                        "is_error": is_error,
                    }
                )
            return [
                {"type": "tool_result", "id": event.get("toolUseId"), "content": raw, "is_error": is_error}
            ]
        if kind == "result":
            return self._result(event)
        if kind == "error":
            message = str(event.get("message") or "error")
            self._error_seen(message)
            return [{"type": "error", "error": message}]
        return []

    def _session(self, session_id: Any) -> list[Frame]:
        if not isinstance(session_id, str) or not session_id or session_id == self.session_id:
            return []
        first = self.session_id is None
        self.session_id = session_id
        if not first and self.session_frame == "sessionId":
            return []
        if self.session_frame == "status":
            return [{"type": "status", "sessionId": session_id}]
        return [{"type": "sessionId", "sessionId": session_id}]

    def _text(self, event: Event) -> list[Frame]:
        text = event.get("text")
        if not isinstance(text, str) or not text:
            return []
        if event.get("delta"):
            self.assistant_content += text
            return [{"type": "text", "content": text}]
        if self.assistant_content and not self.assistant_content.endswith("\n"):
            text = f"\n\n{text}"
        self.assistant_content += text
        self.blocks.append({"type": "text", "text": text})
        return [{"type": "text", "content": text}]

    def _result(self, event: Event) -> list[Frame]:
        out: list[Frame] = []
        if self.session_id is None:
            out += self._session(event.get("sessionId"))
        if event.get("isError") or (event.get("ok") is False and event.get("error")):
            message = event.get("text") if isinstance(event.get("text"), str) and event.get("text") else None
            message = message or str(event.get("error") or "the agent encountered an error")
            self._error_seen(message)
            out.append({"type": "error", "error": message})
            return out
        if event.get("ok"):
            # Only claude's result (subtype "success") carries the usage ClosedLoop turns into a
            # context meter; codex's turn totals are not a context size.
            percent = (
                context_percent(event.get("usage"), event.get("contextWindow"))
                if event.get("subtype") == "success"
                else None
            )
            if percent is not None:
                self.context_percent = percent
                out.append({"type": "usage", "contextPercent": percent})
            out.append({"type": "result", "success": True})
            return out
        out.append({"type": "result", "success": False})
        return out

    def _error_seen(self, message: str) -> None:
        self.errors.append(message)
        if AUTH_CHALLENGE.search(message):
            self.auth_challenge = True

    @property
    def reply(self) -> str:
        """The assistant message a history stores (empty: store none)."""
        return self.assistant_content.strip()
