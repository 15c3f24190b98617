"""NDJSON streams: a process's log (read or followed) and the table's status changes.

Each stream is an async generator that Quart sends chunk by chunk. Quart-Trio runs the send
in a nursery that a client disconnect cancels, so a reader that goes away ends its stream task
at once (the generator is closed at its current await; nothing is left behind). Between batches
a stream waits on (new data | heartbeat timeout | gateway shutdown); shutdown ends it with its
``end`` line so clients know the stream did not just break.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from gateway.http.context import GatewayContext
from gateway.supervisor import LogLine, ProcessLog, ProcessRecord, iso

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


def end_line(record: ProcessRecord | None) -> bytes:
    return dumps({"type": "end", "process": record.to_json() if record else None})


async def log_stream(
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
    log = gw.sup.log(record_id)
    remaining = limit
    gw.open_streams += 1
    try:
        async with aclosing(_log_chunks(gw, log, record_id, since, remaining, follow)) as chunks:
            async for chunk in chunks:
                yield chunk
    finally:
        gw.open_streams -= 1


async def _log_chunks(
    gw: GatewayContext,
    log: ProcessLog,
    record_id: str,
    since: int,
    remaining: int | None,
    follow: bool,
) -> AsyncIterator[bytes]:
    while True:
        changed = log.changed  # before reading: a change after the read still wakes us
        batch = _BATCH if remaining is None else min(_BATCH, remaining)
        lines = log.read(since, batch) if batch > 0 else []
        if lines:
            since = lines[-1].seq
            if remaining is not None:
                remaining -= len(lines)
            yield encode_lines(lines, record_id)
            continue
        if remaining == 0 and not follow:
            return
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


async def status_stream(gw: GatewayContext, *, since: int) -> AsyncIterator[bytes]:
    """``status`` lines for records changed after table version ``since``; ends on shutdown."""
    gw.open_streams += 1
    try:
        async with aclosing(_status_chunks(gw, since)) as chunks:
            async for chunk in chunks:
                yield chunk
    finally:
        gw.open_streams -= 1


async def _status_chunks(gw: GatewayContext, since: int) -> AsyncIterator[bytes]:
    table = gw.sup.table
    seen = since
    while True:
        changed = table.changed
        if table.version > seen:
            batch = sorted((r for r in table.records.values() if r.version > seen), key=lambda r: r.version)
            seen = table.version
            if batch:
                yield b"".join(
                    dumps({"type": "status", "version": r.version, "process": r.to_json()})
                    for r in batch
                )
            continue
        woke = await gw.wait(changed, gw.heartbeat)
        if woke == "shutdown":
            yield end_line(None)
            return
        if woke == "timeout":
            yield _HEARTBEAT
