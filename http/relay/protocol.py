"""ClosedLoop's relay protocol, desktop side: the envelope, parsing what the relay sends, and
mapping a gateway answer onto command events (``apps/desktop/src/main/cloud-protocol.ts``,
``cloud-socket.ts`` and ``cloud-command-executor.ts`` in closedloop-ai/closedloop-ai).

Pure functions and dataclasses only: no I/O, so every rule here is testable on its own.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

PROTOCOL_VERSION = "1"
NAMESPACE = "/desktop-gateway"
PATH_PREFIX = "/api/gateway/"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})

EventType = Literal["status", "chunk", "result", "error", "done"]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_SAFE_HEADER = re.compile(r"^[\x20-\x7e]+$")
# Headers the relay may not set on the loopback call: hop-by-hop, the framing, or credentials
# (and every ``x-desktop-*`` header: those are the executor's to set).
_RESERVED_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
    "keep-alive", "origin", "cookie", "authorization", "proxy-authorization",
})  # fmt: skip


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(payload: dict[str, Any]) -> dict[str, Any]:
    """ClosedLoop's ``createEnvelope``: protocol version, a fresh message id, a timestamp."""
    return {
        "protocolVersion": PROTOCOL_VERSION,
        "messageId": str(uuid.uuid4()),
        "timestamp": now_iso(),
        **payload,
    }


def is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))


def is_safe_header(value: str) -> bool:
    return bool(_SAFE_HEADER.match(value))


def _str(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    if value in (float("inf"), float("-inf")):
        return None
    number = int(value)
    return number if number >= 0 else None


@dataclass(slots=True)
class Command:
    """A ``desktop.command`` as the desktop keeps it (``parseDesktopCommand``)."""

    command_id: str
    operation_id: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str | list[str]] = field(default_factory=dict)
    body: Any = None
    has_body: bool = False
    timeout_ms: int | None = None
    lock_key: str | None = None
    requires_approval: bool = False
    approval_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "commandId": self.command_id,
            "operationId": self.operation_id,
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "query": self.query,
            "timeoutMs": self.timeout_ms,
            "lockKey": self.lock_key,
            "requiresApproval": self.requires_approval,
            "approvalReason": self.approval_reason,
        }
        if self.has_body:
            out["body"] = self.body
        return out

    @property
    def derived_lock(self) -> str | None:
        """ClosedLoop's ``deriveLockKey``: ``lockKey``, else operation + the body's scope path."""
        if self.lock_key:
            return self.lock_key
        if isinstance(self.body, dict):
            for key in ("repoPath", "worktreePath", "workDir", "runDir", "path"):
                value = _str(self.body.get(key))
                if value:
                    return f"{self.operation_id}:{value}"
        return None


def parse_command(payload: Any) -> Command | None:
    """A ``desktop.command`` or None when it is unusable (ClosedLoop drops those unanswered)."""
    if not isinstance(payload, dict):
        return None
    command_id = _str(payload.get("commandId"))
    operation_id = _str(payload.get("operationId"))
    method = payload.get("method")
    method = method.upper() if isinstance(method, str) else None
    path = _str(payload.get("path"))
    if not (command_id and operation_id and method in METHODS and path and path.startswith(PATH_PREFIX)):
        return None
    if len(command_id) > 200:
        return None
    headers = payload.get("headers")
    query = payload.get("query")
    return Command(
        command_id=command_id,
        operation_id=operation_id,
        method=method,
        path=path,
        headers={k: v for k, v in headers.items() if isinstance(v, str)} if isinstance(headers, dict) else {},
        query=_query(query),
        body=payload.get("body"),
        has_body="body" in payload and payload.get("body") is not None,
        timeout_ms=_int(payload.get("timeoutMs")),
        lock_key=_str(payload.get("lockKey")),
        requires_approval=bool(payload.get("requiresApproval")),
        approval_reason=_str(payload.get("approvalReason")),
    )


def command_from_json(data: dict[str, Any]) -> Command:
    """The inverse of :meth:`Command.to_json` (what the store keeps)."""
    return Command(
        command_id=data["commandId"],
        operation_id=data["operationId"],
        method=data["method"],
        path=data["path"],
        headers=data.get("headers") or {},
        query=data.get("query") or {},
        body=data.get("body"),
        has_body="body" in data,
        timeout_ms=data.get("timeoutMs"),
        lock_key=data.get("lockKey"),
        requires_approval=bool(data.get("requiresApproval")),
        approval_reason=data.get("approvalReason"),
    )


def _query(value: Any) -> dict[str, str | list[str]]:
    if not isinstance(value, dict):
        return {}
    out: dict[str, str | list[str]] = {}
    for key, entry in value.items():
        if isinstance(entry, str):
            out[key] = entry
        elif isinstance(entry, list) and all(isinstance(item, str) for item in entry):
            out[key] = list(entry)
    return out


def validate(command: Command) -> str | None:
    """ClosedLoop's ``validateCommand`` reasons, for an ``accepted: false`` ack."""
    if command.method not in METHODS:
        return "unsupported method"
    if not command.path.startswith(PATH_PREFIX):
        return "path must start with /api/gateway/"
    if "/../" in command.path or command.path.endswith("/..") or "\\" in command.path:
        return "path must not contain dot segments"
    return None


def request_headers(command: Command, gateway_token: str) -> dict[str, str]:
    """The loopback call's headers: the command's own (minus reserved ones) and ClosedLoop's
    ``x-desktop-*`` set (``executeViaGateway``)."""
    headers = {
        k: v for k, v in command.headers.items()
        if k.lower() not in _RESERVED_HEADERS and not k.lower().startswith("x-desktop-")
        and is_safe_header(v) and is_safe_header(k)
    }  # fmt: skip
    headers["x-desktop-gateway-token"] = gateway_token
    headers["x-desktop-source"] = "cloud-socket"
    if is_uuid(command.command_id):
        headers["x-desktop-command-id"] = command.command_id
    if is_safe_header(command.operation_id):
        headers["x-desktop-operation-id"] = command.operation_id
    if command.requires_approval:
        headers["x-desktop-force-approval"] = "1"
        if command.approval_reason and is_safe_header(command.approval_reason):
            headers["x-desktop-approval-reason"] = command.approval_reason
    return headers


def request_body(command: Command, headers: dict[str, str]) -> bytes | None:
    """``serializeBody``: none on GET; a string as is; anything else as JSON."""
    if command.method == "GET" or not command.has_body:
        return None
    if isinstance(command.body, str):
        return command.body.encode()
    if not any(k.lower() == "content-type" for k in headers):
        headers["content-type"] = "application/json"
    return json.dumps(command.body, separators=(",", ":")).encode()


def is_stream(content_type: str) -> bool:
    content_type = content_type.lower()
    return "application/x-ndjson" in content_type or "text/event-stream" in content_type


def map_line(line: str) -> tuple[EventType, Any]:
    """``mapGatewayLineToCommandEvent``: an NDJSON line as an (eventType, data) pair."""
    try:
        parsed = json.loads(line)
    except ValueError:
        return "chunk", {"type": "text", "content": line}
    kind = parsed.get("type") if isinstance(parsed, dict) else None
    if kind in ("status", "error", "result", "done"):
        return kind, parsed
    return "chunk", parsed


def is_terminal(event_type: str, data: Any) -> bool:
    if event_type == "done":
        return True
    if event_type in ("error", "result"):
        return isinstance(data, dict) and data.get("terminal") is True
    return False


def terminal_state(event_type: str, data: Any) -> str:
    """done / failed / cancelled, as ``resolveTerminalState``."""
    if event_type == "done":
        return "cancelled" if isinstance(data, dict) and data.get("cancelled") is True else "done"
    if event_type == "result":
        return "done"
    return "failed"


@dataclass(slots=True)
class HelloAck:
    compute_target_id: str
    session_id: str
    resume_from_sequence: dict[str, int]


def parse_hello_ack(payload: Any) -> HelloAck | None:
    """``parseDesktopHelloAck``: ignored (None) without a ``computeTargetId``."""
    if not isinstance(payload, dict):
        return None
    target = _str(payload.get("computeTargetId"))
    if not target:
        return None
    raw = payload.get("resumeFromSequence")
    resume: dict[str, int] = {}
    if isinstance(raw, dict):
        for command_id, seq in raw.items():
            value = _int(seq)
            resume[str(command_id)] = value if value is not None else 0
    return HelloAck(target, _str(payload.get("sessionId")) or "", resume)


def allowed_directories_hash(directories: list[str]) -> str:
    """sha256 of the JSON of the sorted list, as ``hashAllowedDirectories`` (JS spacing)."""
    canonical = json.dumps(sorted(directories), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
