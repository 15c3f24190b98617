"""One-line summaries of an agent's stream records, for a loop's ``output`` events.

ClosedLoop's loop tailer posts, at most every few seconds, a summary of the newest record of the
agent's stream-json output (closedloop-ai/closedloop-ai
``apps/desktop/src/server/operations/output-tailer.ts`` ``summarizeJsonlRecord``): a tool call as
``Tool: Name(arg)``, text truncated, ``Thinking...``, ``Tool result: ...``, ``Turn complete``.
Secrets that show up in the text are redacted before anything leaves the machine. Pure.
"""

from __future__ import annotations

import re
from typing import Any

_REDACTIONS = (
    (re.compile(r"AKIA[A-Z0-9]{16}"), "[REDACTED]"),
    (re.compile(r"sk-ant-[A-Za-z0-9\-_]+"), "[REDACTED]"),
    (re.compile(r"sk-[A-Za-z0-9]{32,}"), "[REDACTED]"),
    (re.compile(r"Bearer [A-Za-z0-9._-]+"), "Bearer [REDACTED]"),
    (re.compile(r"-----BEGIN [A-Z ]+ KEY-----"), "[REDACTED]"),
)


def redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _tool_input(name: str, data: Any) -> str:
    data = data if isinstance(data, dict) else {}
    for key in ("file_path", "path", "command", "pattern"):
        value = data.get(key)
        if isinstance(value, str):
            return f"Tool: {name}({_cut(value, 80)})"
    return f"Tool: {name}"


def _tool_result(block: dict[str, Any]) -> str:
    if block.get("is_error") is True:
        return "Tool error"
    content = block.get("content")
    if isinstance(content, str) and content:
        return f"Tool result: {_cut(content, 120)}"
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                return f"Tool result: {_cut(part['text'], 120)}"
    return "Tool result"


def summarize(record: Any) -> str | None:
    """The display line of one parsed claude stream-json record, or None to skip it."""
    if not isinstance(record, dict):
        return None
    kind = record.get("type")
    if kind in ("assistant", "user"):
        message = record.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "tool_use":
                return redact(_tool_input(str(block.get("name") or "unknown"), block.get("input")))
            if btype == "text":
                return redact(_cut(str(block.get("text") or ""), 200))
            if btype == "thinking":
                return "Thinking..."
            if btype == "tool_result":
                return redact(_tool_result(block))
        return None
    if kind == "content_block_delta":
        delta = record.get("delta")
        if isinstance(delta, dict) and delta.get("type") == "text_delta":
            return redact(_cut(str(delta.get("text") or ""), 200))
        return None
    if kind == "result":
        if record.get("subtype") == "success":
            return "Turn complete"
        if record.get("subtype") == "error" or record.get("is_error") is True:
            return redact(f"Error: {_cut(str(record.get('result') or record.get('error') or ''), 200)}")
    if kind == "item.completed":  # codex exec --json
        item = record.get("item")
        if isinstance(item, dict):
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                return redact(_cut(item["text"], 200))
            if item.get("type") == "command_execution":
                return redact(_tool_input("shell", {"command": item.get("command")}))
            if item.get("type") == "reasoning":
                return "Thinking..."
    if kind == "turn.completed":
        return "Turn complete"
    return None
