"""Chat-like answers in ClosedLoop's frames: one agent turn, followed from its log.

Every chat route of ClosedLoop's gateway answers ``200 text/event-stream`` with NDJSON frames
(``status``, ``sessionId``, ``text``, ``tool_use``, ``tool_result``, ``thinking``, ``usage``,
``result``, ``error``) and ``done`` last (closedloop-ai/closedloop-ai
``apps/desktop/src/server/operations/symphony-interactive.ts``, ``codex.ts``,
``terminal-chat.ts``). ``turn_stream`` produces that from the turn's process log: the frames
come from ``FrameMapper`` over the provider's parsed stdout lines; stderr lines become
``error`` frames as they come (``stderr="live"``, symphony chat) or once at the end if the turn
failed (``stderr="on-failure"``, codex and finding chats).

Cancellation: the generator is closed when the client goes away (Quart-Trio cancels the
send). A chat turn belongs to its stream, so unless ``keep_running`` it is then killed (whole
tree, shielded so the kill completes) — a review run is not. What the turn said is stored by
the service's watcher, not here, so a killed or abandoned turn still lands in the history.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Literal

import trio
from quart import Response

from gateway.http.context import GatewayContext
from gateway.http.streams import counted
from gateway.supervisor import ProcessRecord, State, StopReason
from gateway.supervisor.agents.frames import FrameMapper
from gateway.supervisor.agents.providers import parser_for
from gateway.supervisor.spec import ACTIVE_STATES

EVENT_STREAM = "text/event-stream"
KEEPALIVE = b'{"type":"keepalive"}\n'
_BATCH = 2000


def frame_bytes(frame: dict[str, Any]) -> bytes:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


async def turn_stream(
    gw: GatewayContext,
    record: ProcessRecord,
    mapper: FrameMapper,
    *,
    head: Iterable[dict[str, Any]] = (),
    running: dict[str, Any] | None = None,
    stderr: Literal["live", "on-failure"] = "live",
    settled: Callable[[], Awaitable[ProcessRecord]],
    keep_running: bool = False,
) -> AsyncIterator[bytes]:
    """``head`` frames, ``status(running, pid)``, the turn's frames, ``result``, ``done``."""
    parser = parser_for(record.event_parser)
    log = gw.sup.log(record.id)
    finished = False
    stderr_lines: list[str] = []
    try:
        out = [frame_bytes(f) for f in head]
        out.append(
            frame_bytes(
                {
                    "type": "status",
                    "status": "running",
                    "pid": record.pid,
                    "processId": record.id,
                    **(running or {}),
                }
            )
        )
        yield b"".join(out)
        since = 0
        while True:
            changed = log.changed
            lines = log.read(since, _BATCH)
            if lines:
                since = lines[-1].seq
                chunk: list[bytes] = []
                for line in lines:
                    if line.stream == "stdout" and parser is not None:
                        for event in parser.parse_line(line.raw):
                            chunk += [frame_bytes({**f, "seq": line.seq}) for f in mapper.frames(event)]
                    elif line.stream == "stderr" and line.text.strip():
                        if stderr == "live":
                            chunk.append(frame_bytes({"type": "error", "error": line.text, "seq": line.seq}))
                        else:
                            stderr_lines.append(line.text)
                if chunk:
                    yield b"".join(chunk)
                continue
            if log.ended:
                break
            woke = await gw.wait(changed, gw.heartbeat)
            if woke == "shutdown":
                break
            if woke == "timeout":
                yield KEEPALIVE
        final = await settled()
        tail: list[dict[str, Any]] = []
        ok = final.state is State.EXITED
        if not ok and stderr_lines:
            tail.append({"type": "error", "error": "\n".join(stderr_lines).strip()})
        if not ok and final.error and not mapper.errors and not stderr_lines:
            tail.append({"type": "error", "error": final.error})
        tail += [{"type": "result", "success": ok, "processId": final.id}, {"type": "done"}]
        finished = True
        yield b"".join(frame_bytes(f) for f in tail)
    finally:
        if not finished and not keep_running:
            with trio.CancelScope(shield=True):
                current = gw.sup.table.get(record.id)
                if current is not None and current.state in ACTIVE_STATES:
                    await gw.sup.kill(record.id, StopReason.KILL)


def event_stream(gw: GatewayContext, body: AsyncIterator[bytes]) -> Response:
    """ClosedLoop's streaming answer: 200 ``text/event-stream`` whose body is NDJSON frames."""
    response = Response(counted(gw, body), mimetype=EVENT_STREAM)
    response.timeout = None
    response.headers["Cache-Control"] = "no-cache, no-store"
    response.headers["X-Accel-Buffering"] = "no"
    response.headers["Connection"] = "close"
    return response


_SESSION = re.compile(r"session id:\s*([0-9a-f-]{36})", re.IGNORECASE)
_CONTEXT = re.compile(r"context window|out of room", re.IGNORECASE)


async def review_stream(
    gw: GatewayContext,
    record: ProcessRecord,
    *,
    provider: str,
    settled: Callable[[], Awaitable[ProcessRecord]],
) -> AsyncIterator[bytes]:
    """A codex review as ClosedLoop streams it (``codex.ts`` ``streamCodexReview``): its
    plain-text output as ``text`` frames, ``status {sessionId}`` once codex names its session
    (0.171 prints it on stderr), then ``result`` and ``done``, or a terminal ``error`` when codex
    ran out of context. The review is a run: a client that hangs up does not stop it."""
    log = gw.sup.log(record.id)
    yield frame_bytes(
        {
            "type": "status",
            "status": "running",
            "pid": record.pid,
            "provider": provider,
            "processId": record.id,
        }
    )
    since, session, stderr = 0, None, []
    while True:
        changed = log.changed
        lines = log.read(since, _BATCH)
        if lines:
            since = lines[-1].seq
            out: list[dict[str, Any]] = []
            for line in lines:
                if line.stream == "system":
                    continue
                found = _SESSION.search(line.text)
                if found and session is None:
                    session = found.group(1)
                    out.append({"type": "status", "sessionId": session})
                if line.stream == "stdout":
                    out.append({"type": "text", "content": line.text + "\n", "seq": line.seq})
                else:
                    stderr.append(line.text)
            if out:
                yield b"".join(frame_bytes(f) for f in out)
            continue
        if log.ended:
            break
        woke = await gw.wait(changed, gw.heartbeat)
        if woke == "shutdown":
            break
        if woke == "timeout":
            yield KEEPALIVE
    final = await settled()
    ok = final.state is State.EXITED
    err = "\n".join(stderr)
    if not ok and _CONTEXT.search(err):
        message = (
            "Review interrupted: codex ran out of context window space. Partial findings may appear above."
        )
        yield frame_bytes({"type": "error", "terminal": True, "error": message})
        return
    tail: list[dict[str, Any]] = []
    if not ok:
        tail.append({"type": "error", "error": (final.error or err or "the review failed").strip()[-4000:]})
    tail += [{"type": "result", "success": ok, "processId": final.id}, {"type": "done"}]
    yield b"".join(frame_bytes(f) for f in tail)
