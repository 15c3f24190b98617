"""The metadata family: health, version, managed repositories, binary paths, MCP auth.

Repositories are validated with the real ``git`` (a short child process with a timeout, argv
only): the path must exist and be a git work tree; the stored path is the work tree's top
level, so registering a sub-folder and its root cannot make two entries.
"""

from __future__ import annotations

import json
import platform
import shutil
import sqlite3
import time
from collections.abc import Mapping
from typing import Any, cast

from quart import Blueprint, Response, request
from quart_schema import document_response, validate_request

import gateway.supervisor as engine
from gateway.http.auth import GATEWAY_HEADER, SESSION_HEADER
from gateway.http.binaries import BINARIES, BinaryPathError
from gateway.http.context import GatewayContext, current_gateway
from gateway.http.errors import ApiError, describe_validation
from gateway.http.operations import OPERATIONS, route_table
from gateway.http.relay import relay_status
from gateway.http.routes.common import services
from gateway.http.schemas.core import (
    BinaryPathsIn,
    BinaryPathsOut,
    ErrorResponse,
    HealthOut,
    RepoDeleteIn,
    RepoIn,
    RepoListOut,
    RepoOut,
    RepoPatchIn,
)
from gateway.supervisor import iso

VERSION = engine.__version__

public = Blueprint("public", __name__)
bp = Blueprint("meta", __name__, url_prefix="/api/gateway")


_ROUTES_JSON = route_table()


def health_body(gw: GatewayContext) -> dict[str, Any]:
    return {
        "status": "ok",
        "version": VERSION,
        "port": gw.port,
        "pid": gw.pid,
        "instance": gw.instance,
        "startedAt": iso(gw.started_at),
        "capabilities": {
            "operations": list(OPERATIONS),
            "routes": _ROUTES_JSON,
            "binaries": gw.binaries.capabilities(),
        },
        "relay": relay_status(gw, public=True),
    }


HEALTH_TTL = 1.0


def health_bytes(gw: GatewayContext, _args: Mapping[str, str] | None = None) -> bytes:
    """The health body, serialized at most once a second.

    It is mostly the static route table; UIs and the CLI poll it, and it must stay cheap for
    a gateway under load. The guard's fast path answers plain GETs with it.
    """
    now = time.monotonic()
    cached = gw.caches.get("health")
    if cached is None or now - cached[0] >= HEALTH_TTL:
        cached = (now, json.dumps(health_body(gw), separators=(",", ":")).encode())
        gw.caches["health"] = cached
    return cast(bytes, cached[1])


@public.get("/health")
@document_response(HealthOut)
async def health() -> Response:
    """Unauthenticated liveness and capabilities (``instance`` fingerprints the state dir)."""
    return Response(health_bytes(current_gateway()), content_type="application/json")


@bp.get("/health-check")
async def health_check() -> tuple[dict[str, Any], int]:
    """Database, disk and engine checks; 503 when any fails."""
    gw = current_gateway()
    checks: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        ok = await gw.sup.store.ping()
        checks["database"] = {
            "ok": ok,
            "schemaVersion": gw.sup.store.schema_version,
            "latencyMs": round((time.perf_counter() - t0) * 1000, 2),
        }
    except (sqlite3.Error, RuntimeError) as exc:
        checks["database"] = {"ok": False, "error": str(exc)}
    usage = shutil.disk_usage(gw.state.root)
    checks["disk"] = {
        "ok": usage.free > 100 * 1024 * 1024,
        "path": str(gw.state.root),
        "freeBytes": usage.free,
        "totalBytes": usage.total,
    }
    counts: dict[str, int] = {}
    for (_kind, state), n in gw.sup.table.counts().items():
        counts[state] = counts.get(state, 0) + n
    checks["supervisor"] = {
        "ok": not gw.shutting_down.is_set(),
        "processes": counts,
        "active": len(gw.sup.table.active()),
        "linesIngested": gw.sup.lines_ingested,
        "bytesIngested": gw.sup.bytes_ingested,
    }
    healthy = all(c["ok"] for c in checks.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "version": VERSION,
        "checks": checks,
        "relay": relay_status(gw),  # informative: a relay problem never fails the gateway's checks
    }
    return body, 200 if healthy else 503


@bp.get("/version")
async def version() -> dict[str, Any]:
    return {
        "version": VERSION,
        "python": platform.python_version(),
        "platform": platform.system().lower(),
    }


@bp.get("/mcp-auth")
async def mcp_auth() -> dict[str, Any]:
    """How an MCP client (or any program) authenticates here; never the secret itself."""
    gw = current_gateway()
    return {
        "gatewayUrl": f"http://127.0.0.1:{gw.port}",
        "schemes": [
            {
                "type": "gateway-token",
                "header": GATEWAY_HEADER,
                "tokenFile": str(gw.state.token_file),
                "description": "read the token file (mode 0600, same user) and send it",
            },
            {
                "type": "session",
                "header": SESSION_HEADER,
                "requires": ["Origin"],
                "obtain": "POST /api/gateway/auth/challenge (gateway token), then "
                "POST /gateway-auth/exchange {challenge} from loopback",
                "idleTimeoutSeconds": int(gw.auth.session_idle),
            },
        ],
    }


# ---- repos --------------------------------------------------------------------------------


@bp.get("/repos")
@document_response(RepoListOut)
async def list_repos() -> dict[str, Any]:
    return {"repos": await services().repos.list()}


@bp.post("/repos")
@validate_request(RepoIn)
@document_response(RepoOut, 201)
@document_response(ErrorResponse, 409)
async def add_repo(data: RepoIn) -> tuple[dict[str, Any], int]:
    """Register a local git work tree (its top level); 409 if already registered."""
    return await services().repos.add(data.path, data.name), 201


@bp.patch("/repos")
@validate_request(RepoPatchIn)
@document_response(RepoOut)
async def update_repo(data: RepoPatchIn) -> dict[str, Any]:
    return await services().repos.update(
        data.id,
        name=data.name,
        default_branch=data.default_branch,
        set_branch="default_branch" in data.model_fields_set,
    )


@bp.delete("/repos")
@document_response(RepoOut)
async def delete_repo() -> dict[str, Any]:
    """Forget a repo (``?id=`` or a JSON body ``{"id"}``); the files are not touched."""
    repo_id = request.args.get("id")
    if not repo_id:
        body = await request.get_json(silent=True)
        if body is not None:
            try:
                repo_id = RepoDeleteIn.model_validate(body).id
            except ValueError as exc:
                raise ApiError(400, "invalid_request", describe_validation(exc)) from None
    if not repo_id:
        raise ApiError(400, "invalid_request", "id: required (query or JSON body)")
    return await services().repos.delete(repo_id)


# ---- binary paths -------------------------------------------------------------------------


def _binaries_json(gw: GatewayContext) -> dict[str, Any]:
    return {"binaries": {name: gw.binaries.info(name).to_json() for name in BINARIES}}


@bp.get("/settings/binary-paths")
@document_response(BinaryPathsOut)
async def get_binary_paths() -> dict[str, Any]:
    return _binaries_json(current_gateway())


@bp.patch("/settings/binary-paths")
@validate_request(BinaryPathsIn)
@document_response(BinaryPathsOut)
async def set_binary_paths(data: BinaryPathsIn) -> dict[str, Any]:
    """Override paths (absolute, executable; version probed); ``null`` returns to PATH."""
    gw = current_gateway()
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    try:
        await gw.binaries.set_overrides(changes)
    except BinaryPathError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    finally:
        gw.caches.pop("health", None)
    return _binaries_json(gw)

