"""NDJSON streams: a process's log (read or followed) and the table's status changes.

Each stream is an async generator that Quart sends chunk by chunk. Quart-Trio runs the send
in a nursery that a client disconnect cancels, so a reader that goes away ends its stream task
at once (the generator is closed at its current await; nothing is left behind). Between batches
a stream waits on (new data | heartbeat timeout | gateway shutdown); shutdown ends it with its
``end`` line so clients know the stream did not just break.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from functools import partial
from typing import Any

from quart import Response

from gateway.http.context import GatewayContext
from gateway.supervisor import LogLine, ProcessLog, ProcessRecord, iso
from gateway.supervisor.agents.providers import parse_event
from gateway.supervisor.logs import FOLLOW_BYTES

NDJSON = "application/x-ndjson"
_HEARTBEAT = b'{"type":"heartbeat"}\n'
_BATCH = 2000


def dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def log_line(line: LogLine, process_id: str) -> dict[str, Any]:
    return {
        "type": "log",
        "seq": line.seq,
        "ts": iso(line.ts),
        "stream": line.stream,
        "text": line.text,
        "processId": process_id,
    }


def encode_lines(lines: list[LogLine], process_id: str) -> bytes:
    """One chunk for a batch: ``b"".join`` keeps the per-line cost to a dict and a dumps."""
    return b"".join(dumps(log_line(line, process_id)) for line in lines)


def encode_agent_lines(lines: list[LogLine], record: ProcessRecord) -> bytes:
    """Like ``encode_lines``, plus the provider's parsed ``event`` on an agent's stdout lines.

    Only records started with an ``event_parser`` (agent runs) pay for the parse; the
    dashboard and ``gateway logs`` render those events as a conversation.
    """
    out = []
    for line in lines:
        obj = log_line(line, record.id)
        if line.stream == "stdout":
            event = parse_event(record.event_parser, line.raw)
            if event is not None:
                obj["event"] = event
        out.append(dumps(obj))
    return b"".join(out)


def end_line(record: ProcessRecord | None) -> bytes:
    return dumps({"type": "end", "process": record.to_json() if record else None})


def ndjson_response(body: AsyncIterator[bytes]) -> Response:
    """A streamed NDJSON answer that no proxy buffers and no timeout cuts short."""
    response = Response(body, mimetype=NDJSON)
    response.timeout = None  # streams run as long as the client reads
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    # One stream per connection: Hypercorn does not close a finished keep-alive connection
    # once shutdown began, so a drained stream would hold the graceful shutdown open.
    response.headers["Connection"] = "close"
    return response


async def counted(gw: GatewayContext, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks``, counted in ``gw.open_streams`` while alive (a disconnect closes it at once)."""
    gw.open_streams += 1
    try:
        async with aclosing(chunks) as inner:  # type: ignore[type-var]
            async for chunk in inner:
                yield chunk
    finally:
        gw.open_streams -= 1


def log_stream(
    gw: GatewayContext,
    record_id: str,
    *,
    since: int,
    limit: int | None,
    follow: bool,
) -> AsyncIterator[bytes]:
    """Lines with seq > ``since`` (at most ``limit``), then while following, new ones.

    Without ``follow`` it ends after what is there, with an ``end`` line only if the process
    has ended. With ``follow`` it ends with the ``end`` line when the process has ended and
    every line was sent, or when the gateway shuts down.
    """
    record = gw.sup.table.get(record_id)
    encode: Callable[[list[LogLine]], bytes] = partial(encode_lines, process_id=record_id)
    if record is not None and record.event_parser:
        encode = partial(encode_agent_lines, record=record)
    chunks = log_chunks(gw, record_id, since, limit, follow, encode=encode)
    return counted(gw, chunks)


async def log_chunks(
    gw: GatewayContext,
    record_id: str,
    since: int,
    remaining: int | None,
    follow: bool,
    *,
    encode: Callable[[list[LogLine]], bytes],
    status_lines: bool = False,
    end_after_limit: bool = False,
) -> AsyncGenerator[bytes, None]:
    """The log loop behind every NDJSON log: batches of ``encode``d lines, heartbeats, ``end``.

    ``status_lines`` adds a ``status`` line whenever the record's state changes (Symphony logs);
    ``end_after_limit`` still ends a used-up ``limit`` with the ``end`` line if the process ended.
    """
    log: ProcessLog = gw.sup.log(record_id)
    record = gw.sup.table.get(record_id)
    assert record is not None or not status_lines
    state = record.state if record is not None else None
    while True:
        changed = log.changed  # before reading: a change after the read still wakes us
        batch = _BATCH if remaining is None else min(_BATCH, remaining)
        # Bounded in lines and bytes: the generator reads its next batch only once Quart has
        # sent the last one, so a follower is never more than a batch ahead of its client.
        lines = await log.read_async(since, batch, FOLLOW_BYTES) if batch > 0 else []
        if lines:
            since = lines[-1].seq
            if remaining is not None:
                remaining -= len(lines)
            yield encode(lines)
            continue
        if remaining == 0 and not follow and not end_after_limit:
            return
        if status_lines and record is not None and record.state is not state:
            state = record.state
            yield dumps({"type": "status", "process": record.to_json()})
        if log.ended:
            yield end_line(gw.sup.table.get(record_id))
            return
        if not follow or remaining == 0:
            return
        woke = await gw.wait(changed, gw.heartbeat)
        if woke == "shutdown":
            yield end_line(gw.sup.table.get(record_id))
            return
        if woke == "timeout":
            yield _HEARTBEAT


def _change_line(version: int, change: ProcessRecord | str) -> dict[str, Any]:
    if isinstance(change, str):
        return {"type": "removed", "version": version, "id": change}
    return {"type": "status", "version": version, "process": change.to_json()}


def status_stream(gw: GatewayContext, *, since: int) -> AsyncIterator[bytes]:
    """``status`` lines for records changed after table version ``since``; ends on shutdown."""
    return counted(gw, _status_chunks(gw, since))


async def _status_chunks(gw: GatewayContext, since: int) -> AsyncIterator[bytes]:
    table = gw.sup.table
    seen = since
    while True:
        changed = table.changed
        if table.version > seen:
            # Changes and removals (retention), in version order: from the table's change log
            # (O(changes)); a watcher further behind than the log scans once.
            logged = table.changes_since(seen)
            if logged is None:
                logged = [(r.version, r) for r in table.records.values() if r.version > seen]
                logged += table.removed_since(seen)
                logged.sort(key=lambda item: item[0])
            seen = table.version
            if logged:
                yield b"".join(dumps(_change_line(v, change)) for v, change in logged)
            continue
        woke = await gw.wait(changed, gw.heartbeat)
        if woke == "shutdown":
            yield end_line(None)
            return
        if woke == "timeout":
            yield _HEARTBEAT


def approvals_stream(gw: GatewayContext) -> AsyncIterator[bytes]:
    """``approvals`` lines: the whole list (recent outcomes, then pending) now and on each change.

    Lists are small (at most 50 recent plus what is held), so each line carries the whole
    list and a client simply replaces what it shows; silence turns into heartbeats.
    """
    return counted(gw, _approval_chunks(gw))


async def _approval_chunks(gw: GatewayContext) -> AsyncIterator[bytes]:
    approvals = gw.approvals
    while True:
        changed = approvals.changed
        items = [*approvals.recent, *approvals.pending.values()]
        yield dumps({"type": "approvals", "approvals": [a.to_json() for a in items]})
        while True:
            woke = await gw.wait(changed, gw.heartbeat)
            if woke == "shutdown":
                yield end_line(None)
                return
            if woke == "changed":
                break
            yield _HEARTBEAT
