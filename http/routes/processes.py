"""The process table over HTTP (extension operations ``process_table`` / ``process_control``).

List, read, follow logs, watch status changes, start ad-hoc commands, kill and tear down.
Kill and teardown answer only once the whole tree is gone (the engine's receipt); the engine
shields the kill, so a client that hangs up mid-kill does not leave it half done.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any, cast

import trio
from quart import Blueprint, Response, request
from quart_schema import document_querystring, document_response, validate_request

from gateway.http.context import GatewayContext, current_gateway
from gateway.http.errors import ApiError
from gateway.http.query import flag, int_arg, log_window
from gateway.http.routes.nodes import place
from gateway.http.schemas.core import (
    BulkReceiptsOut,
    BulkStopIn,
    ErrorResponse,
    LogQuery,
    ProcessListOut,
    ProcessOut,
    ProcessQuery,
    ReceiptOut,
    StartProcessIn,
    StreamQuery,
)
from gateway.http.streams import log_stream, ndjson_response, status_stream
from gateway.supervisor import ProcessRecord, ProcessSpec, RestartPolicy, State
from gateway.supervisor.cgroups import CgroupError
from gateway.supervisor.placement import LOCAL

bp = Blueprint("processes", __name__, url_prefix="/api/gateway/processes")

_STATES = {s.value for s in State}
MAX_PAGE = 1000


def _record(process_id: str) -> ProcessRecord:
    record = current_gateway().sup.table.get(process_id)
    if record is None:
        raise ApiError(404, "process_not_found", f"no process {process_id[:100]}")
    return record


def listing_bytes(gw: GatewayContext, args: Mapping[str, str]) -> bytes:
    """The listing's JSON for the given filters; the guard's fast path and the view share it.

    A UI polls the same listing over and over: while no listed record is live (live ones
    change lastSeq without a version bump), the body depends only on the table version and
    the filters, so the last one is kept whole.
    """
    states: set[str] | None = None
    raw_state = args.get("state")
    if raw_state:
        states = {s.strip() for s in raw_state.split(",") if s.strip()}
        unknown = states - _STATES
        if unknown:
            raise ApiError(400, "invalid_query", f"state: unknown {sorted(unknown)[0][:50]!r}")
    kind, ticket = args.get("kind") or None, args.get("ticketId") or None
    _prune_record_json(gw)
    if "limit" in args or "after" in args:
        return _page_bytes(gw, args, kind, ticket, states)
    key = (gw.sup.table.version, kind, ticket, raw_state)
    cached = gw.caches.get("listing")
    if cached is not None and cached[0] == key:
        return cast(bytes, cached[1])
    records = gw.sup.table.query(kind=kind, ticket_id=ticket, state=states)
    body = b"".join(
        (
            b'{"processes":[',
            b",".join(_record_bytes(gw, r) for r in records),
            b'],"version":%d}' % gw.sup.table.version,
        )
    )
    if all(r.state.ended for r in records):
        gw.caches["listing"] = (key, body)
    return body


def _page_bytes(
    gw: GatewayContext, args: Mapping[str, str], kind: str | None, ticket: str | None, states: set[str] | None
) -> bytes:
    """One page: ``limit`` records (default 100, at most 1,000) after record ``after``.

    Costs a bisection plus the page itself, whatever the table's size: ended records come
    from their cached JSON, live ones are serialized fresh. ``next`` is the ``after`` of the
    following page (null on the last one).
    """
    raw_limit = args.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise ApiError(400, "invalid_query", f"limit: an integer from 1 to {MAX_PAGE}")
    after = args.get("after") or None

    def keep(r: ProcessRecord) -> bool:
        return (
            (kind is None or r.kind == kind)
            and (ticket is None or r.ticket_id == ticket)
            and (states is None or r.state.value in states)
        )

    try:
        records, cursor = gw.sup.table.page(after, int(raw_limit), keep)
    except KeyError:
        raise ApiError(400, "invalid_query", f"after: no record {str(after)[:100]} (removed?)") from None
    return b"".join(
        (
            b'{"processes":[',
            b",".join(_record_bytes(gw, r) for r in records),
            b'],"version":%d,"next":%s}' % (gw.sup.table.version, json.dumps(cursor).encode()),
        )
    )


@bp.get("")
@document_querystring(ProcessQuery)
@document_response(ProcessListOut)
async def list_processes() -> Response:
    """Process records, oldest first; filters combine (``state`` takes a comma list).

    Plain GETs are answered by the guard's fast path (``guard.FAST_ROUTES``); HEAD lands here.
    """
    return Response(listing_bytes(current_gateway(), request.args), content_type="application/json")


def _prune_record_json(gw: GatewayContext) -> None:
    """Drop the cached JSON of records retention removed since the last listing.

    The table says what it removed (``removed``, newest last, bounded): when nothing was
    removed since the last look this costs one comparison. A listing further behind than
    that log (over 4,096 removals in between) keeps only the entries of records still there.
    """
    cache: dict[str, tuple[int, bytes]] | None = gw.caches.get("record_json")
    removed = gw.sup.table.removed
    if not cache or not removed:
        return
    seen: int = gw.caches.get("record_json_pruned", 0)
    newest = removed[-1][0]
    if newest <= seen:
        return
    if len(removed) == removed.maxlen and removed[0][0] > seen + 1:
        records = gw.sup.table.records
        for record_id in [k for k in cache if k not in records]:
            del cache[record_id]
    else:
        for version, record_id in reversed(removed):
            if version <= seen:
                break
            cache.pop(record_id, None)
    gw.caches["record_json_pruned"] = newest


def _record_bytes(gw: GatewayContext, record: ProcessRecord) -> bytes:
    """A record's JSON; ended records are cached by their version (they change only by touch).

    A long-lived gateway lists hundreds of ended records per poll: serializing them once, not
    on every request, is most of the listing's cost. Live records change without a version
    bump (``lastSeq`` grows with every line), so they are always serialized fresh.
    """
    if not record.state.ended:
        return json.dumps(record.to_json(), separators=(",", ":")).encode()
    cache: dict[str, tuple[int, bytes]] = gw.caches.setdefault("record_json", {})
    hit = cache.get(record.id)
    if hit is not None and hit[0] == record.version:
        return hit[1]
    data = json.dumps(record.to_json(), separators=(",", ":")).encode()
    cache[record.id] = (record.version, data)
    return data


@bp.post("")
@validate_request(StartProcessIn)
@document_response(ProcessOut, 201)
@document_response(ErrorResponse, 422)
async def start_process(data: StartProcessIn) -> tuple[dict[str, Any], int]:
    """Start an ad-hoc supervised command; answers the record once the child runs.

    Well-formed JSON bodies are answered by the guard's fast path (``start_fast``); this
    view answers the rest (wrong content type, bad JSON, schema errors) as before.
    """
    record = await start_record(current_gateway(), data)
    return record.to_json(), 201


async def start_fast(gw: GatewayContext, body: bytes, content_type: str | None) -> dict[str, Any] | None:
    """The start route for the guard's fast path: the record's JSON, or None to let Quart
    answer (anything that is not a valid JSON body of the schema: Quart's view then gives
    the very errors it always gave).

    Starting over HTTP paid Quart's request cycle (contexts, request and response objects,
    quart-schema building a ``TypeAdapter`` per request) on top of the engine's own work: the
    start rate was a third of the engine's (``benchmarks/bench_peers.py``). Runs after the
    guard's admission checks, like the fast GETs. Cancellation: not watched (no one reads
    the disconnect here); a start that began completes, as in the engine.
    """
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if mimetype != "application/json":
        return None
    try:
        data = StartProcessIn.model_validate(json.loads(body.decode("utf-8")))  # as Quart decodes
    except (ValueError, UnicodeDecodeError):  # pydantic's ValidationError is a ValueError
        return None
    record = await start_record(gw, data)
    # On disk before the answer: a crash right after it must not lose an answered start.
    # The flusher writes every dirty record in one commit, so concurrent starts share it.
    await gw.sup.table.persisted(record)
    return record.to_json()


async def start_record(gw: GatewayContext, data: StartProcessIn) -> ProcessRecord:
    """Start ``data``'s command; the API errors of a start (bad cwd, spawn, limits, shutdown)."""
    node = place(gw, data.node)
    if node == LOCAL and data.cwd is not None and not await trio.to_thread.run_sync(os.path.isdir, data.cwd):
        raise ApiError(400, "invalid_request", f"cwd: {data.cwd[:200]} is not a directory")
    restart = RestartPolicy()
    if data.restart is not None:
        restart = RestartPolicy(
            mode=data.restart.mode,
            max_restarts=data.restart.max_restarts,
            backoff=data.restart.backoff,
            max_backoff=data.restart.max_backoff,
        )
    spec = ProcessSpec(
        argv=data.argv,
        kind=data.kind,
        cwd=data.cwd,
        env=data.env,
        ticket_id=data.ticket_id,
        labels=data.labels,
        stop_grace=data.stop_grace,
        restart=restart,
        stall_timeout=data.stall_timeout or math.inf,
        max_runtime=data.max_runtime or math.inf,
        memory_max=data.memory_max,
        cpu_max=data.cpu_max,
        pids_max=data.pids_max,
        event_parser=data.event_parser,
    )
    if gw.shutting_down.is_set():
        raise ApiError(503, "shutting_down", "the gateway is shutting down")
    try:
        return await gw.sup.start(spec, node=node)
    except OSError as exc:
        raise ApiError(
            422, "spawn_failed", f"cannot start {data.argv[0][:200]}: {exc.strerror or exc}"
        ) from None
    except CgroupError as exc:
        raise ApiError(422, "limits_unavailable", str(exc)) from None
    except RuntimeError as exc:
        raise ApiError(503, "shutting_down", str(exc)) from None


def _bulk_targets(gw: GatewayContext, data: BulkStopIn, teardown: bool) -> list[str]:
    """The ids a bulk stop takes: ``ids`` as given, else every record the filters match."""
    if data.ids is not None:
        missing = [i for i in data.ids if gw.sup.table.get(i) is None]
        if missing:
            raise ApiError(404, "process_not_found", f"no process {missing[0][:100]}")
        return list(data.ids)
    filters = (data.kind, data.ticket_id, data.labels, data.node)
    if all(f is None for f in filters) and not data.all:
        raise ApiError(400, "invalid_request", "give ids, a filter (kind, ticketId, labels, node) or all")
    labels = data.labels or {}
    return [
        r.id
        for r in gw.sup.table.records.values()
        if (data.kind is None or r.kind == data.kind)
        and (data.ticket_id is None or r.ticket_id == data.ticket_id)
        and all(r.labels.get(k) == v for k, v in labels.items())
        and (data.node is None or r.node == data.node)
        and (not r.torn_down if teardown else not r.state.ended)
    ]


async def _bulk(data: BulkStopIn, teardown: bool) -> dict[str, Any]:
    gw = current_gateway()
    ids = _bulk_targets(gw, data, teardown)
    try:
        receipts = await gw.sup.kill_many(ids, teardown=teardown)
    except KeyError as exc:
        raise ApiError(404, "process_not_found", f"no process {str(exc.args[0])[:100]}") from None
    return {"receipts": [r.to_json() for r in receipts], "count": len(receipts)}


@bp.post("/kill")
@validate_request(BulkStopIn)
@document_response(BulkReceiptsOut)
async def kill_processes(data: BulkStopIn) -> dict[str, Any]:
    """Kill every process the body selects, concurrently; one receipt per process."""
    return await _bulk(data, teardown=False)


@bp.post("/teardown")
@validate_request(BulkStopIn)
@document_response(BulkReceiptsOut)
async def teardown_processes(data: BulkStopIn) -> dict[str, Any]:
    """Tear down every process the body selects; one receipt per process."""
    return await _bulk(data, teardown=True)


@bp.get("/stream")
@document_querystring(StreamQuery)
async def stream_status() -> Response:
    """NDJSON ``status`` lines as records change; ``snapshot=1`` first sends every record."""
    gw = current_gateway()
    since = int_arg("since")
    if flag("snapshot"):
        since = 0
    elif since is None:
        since = gw.sup.table.version
    return ndjson_response(status_stream(gw, since=since))


@bp.get("/<processId>")
@document_response(ProcessOut)
async def get_process(processId: str) -> dict[str, Any]:
    return _record(processId).to_json()


@bp.get("/<processId>/logs")
@document_querystring(LogQuery)
async def process_logs(processId: str) -> Response:
    """NDJSON log: ``since``/``tail`` pick the start, ``limit`` caps, ``follow=1`` streams on."""
    gw = current_gateway()
    record = _record(processId)
    window = log_window(gw.sup.log(record.id))
    stream = log_stream(gw, record.id, since=window.since, limit=window.limit, follow=window.follow)
    return ndjson_response(stream)


async def _stop(process_id: str, teardown: bool) -> dict[str, Any]:
    gw = current_gateway()
    _record(process_id)
    try:
        receipt = await (gw.sup.teardown(process_id) if teardown else gw.sup.kill(process_id))
    except KeyError:
        raise ApiError(404, "process_not_found", f"no process {process_id[:100]}") from None
    return receipt.to_json()


@bp.post("/<processId>/kill")
@document_response(ReceiptOut)
async def kill_process(processId: str) -> dict[str, Any]:
    """Kill the whole tree; answers the receipt (``alreadyEnded`` when there was nothing)."""
    return await _stop(processId, teardown=False)


@bp.post("/<processId>/teardown")
@document_response(ReceiptOut)
async def teardown_process(processId: str) -> dict[str, Any]:
    """Kill, then the kind's teardown hooks; the record is marked torn down, logs are kept."""
    return await _stop(processId, teardown=True)
