"""The metadata family: health, version, managed repositories, binary paths, MCP auth.

Repositories are validated with the real ``git`` (a short child process with a timeout, argv
only): the path must exist and be a git work tree; the stored path is the work tree's top
level, so registering a sub-folder and its root cannot make two entries.
"""

from __future__ import annotations

import json
import platform
import shutil
import socket
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import trio
from quart import Blueprint, Response, request
from quart_schema import document_request, document_response

import gateway.supervisor as engine
from gateway.http.auth import GATEWAY_HEADER, SESSION_HEADER
from gateway.http.binaries import BINARIES, OVERRIDABLE, BinaryPathError
from gateway.http.context import GatewayContext, current_gateway
from gateway.http.errors import ApiError, describe_validation
from gateway.http.healthchecks import (
    app_version_check,
    binary_checks,
    no_mcp,
    parse_version,
    worktree_dir_check,
)
from gateway.http.operations import OPERATIONS, route_table
from gateway.http.relay import relay_status
from gateway.http.routes.common import json_object, services
from gateway.http.schemas.core import (
    BinaryPathsIn,
    BinaryPathsOut,
    ErrorResponse,
    HealthCheckOut,
    HealthOut,
    RepoAddedOut,
    RepoEditIn,
    RepoIn,
    RepoListOut,
    RepoPatchIn,
    SuccessOut,
)
from gateway.supervisor import iso

VERSION = engine.__version__

public = Blueprint("public", __name__)
bp = Blueprint("meta", __name__, url_prefix="/api/gateway")


_ROUTES_JSON = route_table()


#: The tools ClosedLoop's ``ComputeTargetCapabilities`` names (``apps/desktop/src/shared/contracts.ts``).
CAPABILITY_TOOLS = ("claude", "codex", "git", "gh", "python3")


def health_body(gw: GatewayContext) -> dict[str, Any]:
    """ClosedLoop's ``HealthResponse`` (``router.ts``; read by ``gateway-probe.ts``) plus ours.

    ``gatewayId`` is this gateway's stable identity (the state-dir fingerprint, as ``instance``);
    ``onboardingCompleted`` is always true: there is no setup step before the gateway works.
    """
    binaries = gw.binaries.capabilities()
    return {
        "status": "ok",
        "machineName": socket.gethostname(),
        "gatewayId": gw.instance,
        "onboardingCompleted": True,
        "version": VERSION,
        "port": gw.port,
        "pid": gw.pid,
        "instance": gw.instance,
        "startedAt": iso(gw.started_at),
        "capabilities": {
            "tools": {name: binaries.get(name) is not None for name in CAPABILITY_TOOLS},
            "versions": {
                name: parse_version(info.get("version"))
                for name, info in binaries.items()
                if info is not None and name in CAPABILITY_TOOLS and parse_version(info.get("version"))
            },
            "operations": list(OPERATIONS),
            "routes": _ROUTES_JSON,
            "binaries": binaries,
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
@document_response(HealthCheckOut)
async def health_check() -> dict[str, Any]:
    """ClosedLoop's system check (``health-check.ts``), always 200: the binaries ClosedLoop
    checks (by its ids and labels), the worktree folder, and ours (database, disk, engine)
    with their figures in ``details``. ``?latestVersion=`` adds ``app-version``."""
    gw = current_gateway()
    binaries = {name: (gw.binaries.path(name), gw.binaries.versions.get(name)) for name in BINARIES}
    checks = binary_checks(binaries)
    settings = services().repos.settings
    confirmed = bool(settings.get("worktreeParentDirConfirmed"))
    checks.append(worktree_dir_check(settings.get("worktreeParentDir"), confirmed))
    own = await _own_checks(gw)
    checks += own
    latest = request.args.get("latestVersion", "").strip()
    if latest:
        checks.append(app_version_check(VERSION, latest[:50]))
    now = iso(time.time()) or ""
    return {
        "checks": checks,
        "allRequiredPassed": all(c["passed"] for c in checks if c["required"]),
        "mcpServers": {"claude": no_mcp(now), "codex": no_mcp(now)},
        # Ours: the gateway itself (database, disk, engine); ClosedLoop's verdict is the field above.
        "status": "ok" if all(c["passed"] for c in own) else "degraded",
        "version": VERSION,
        "relay": relay_status(gw),  # informative: a relay problem never fails the gateway's checks
    }


async def _own_checks(gw: GatewayContext) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    database: dict[str, Any] = {"id": "database", "label": "Database", "required": True}
    try:
        ok = await gw.sup.store.ping()
        database |= {"passed": bool(ok)}
        database["details"] = {
            "schemaVersion": gw.sup.store.schema_version,
            "latencyMs": round((time.perf_counter() - t0) * 1000, 2),
        }
    except (sqlite3.Error, RuntimeError) as exc:
        database |= {"passed": False, "error": str(exc)[:300]}
    usage = await trio.to_thread.run_sync(shutil.disk_usage, gw.state.root)
    disk: dict[str, Any] = {
        "id": "disk", "label": "Disk space", "required": True, "passed": usage.free > 100 * 1024 * 1024,
        "details": {"path": str(gw.state.root), "freeBytes": usage.free, "totalBytes": usage.total},
    }  # fmt: skip
    if not disk["passed"]:
        disk |= {"error": "Less than 100 MiB free", "remediation": f"Free space on {gw.state.root}"}
    counts: dict[str, int] = {}
    for (_kind, state), n in gw.sup.table.counts().items():
        counts[state] = counts.get(state, 0) + n
    engine_check: dict[str, Any] = {
        "id": "supervisor", "label": "Process supervisor", "required": True,
        "passed": not gw.shutting_down.is_set(),
        "details": {
            "processes": counts, "active": len(gw.sup.table.active()),
            "linesIngested": gw.sup.lines_ingested, "bytesIngested": gw.sup.bytes_ingested,
        },
    }  # fmt: skip
    if not engine_check["passed"]:
        engine_check["error"] = "The gateway is shutting down"
    return [database, disk, engine_check]


#: Where this gateway's own source lives (a git checkout when run from one).
SOURCE_ROOT = Path(__file__).resolve().parents[2]
_COMMIT_END = "---COMMIT_END---"


@bp.get("/version")
async def version() -> dict[str, Any]:
    """ClosedLoop's ``/version`` (``metadata-routes.ts``): the version and the last ten commits
    of the gateway's own source (``[]`` when it is not a git checkout); never a 500."""
    return {
        "version": VERSION,
        "commits": await _commits(),
        "python": platform.python_version(),
        "platform": platform.system().lower(),
    }


async def _commits() -> list[dict[str, str]]:
    """Read once per gateway (the namespace probe asks for ``version`` often)."""
    caches = current_gateway().caches
    if "commits" not in caches:
        caches["commits"] = await _read_commits()
    return cast(list[dict[str, str]], caches["commits"])


async def _read_commits() -> list[dict[str, str]]:
    git = services().git.git
    if not git.available() or not await trio.to_thread.run_sync((SOURCE_ROOT / ".git").exists):
        return []
    fmt = f"--pretty=format:%H%x00%h%x00%s%x00%b%x00%an%x00%cI%x00%cr{_COMMIT_END}"
    result = await git.run(["log", "-10", fmt], SOURCE_ROOT, check=False)
    if not result.ok:
        return []
    commits = []
    for entry in result.stdout.split(_COMMIT_END):
        parts = entry.strip("\n").split("\x00")
        if len(parts) == 7:
            keys = ("hash", "shortHash", "subject", "body", "author", "date", "relativeDate")
            commits.append(dict(zip(keys, [p.strip() for p in parts], strict=True)))
    return commits


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
# ClosedLoop's registry by path (``repos-config.ts``; ``apps/app/lib/engineer/queries/repos.ts``),
# with our by-id edits kept for the CLI and dashboard.


@bp.get("/repos")
@document_response(RepoListOut)
async def list_repos() -> dict[str, Any]:
    """``{repos: [{path, name, description?, deployment?, addedAt, id, ...}], settings}``."""
    return await services().repos.wire_list()


@bp.post("/repos")
@document_request(RepoIn)
@document_response(RepoAddedOut)
@document_response(ErrorResponse, 400)
async def add_repo() -> dict[str, Any]:
    """Register a local git work tree (``{path, description?}``); 400 with ClosedLoop's
    messages when it is missing, not a folder, not a git work tree, or already registered."""
    body = await json_object()
    path = body.get("path")
    if not isinstance(path, str) or not path or "\x00" in path or len(path) > 4096:
        raise ApiError(400, "invalid_request", "path is required and must be a string")
    description, name = body.get("description"), body.get("name")
    repo = await services().repos.add(
        path,
        name[:200] if isinstance(name, str) and name else None,
        description[:2000] if isinstance(description, str) and description else None,
    )
    return {"success": True, "repo": repo}


@bp.patch("/repos")
@document_request(RepoPatchIn)
@document_response(SuccessOut)
async def update_repo() -> dict[str, Any]:
    """ClosedLoop's settings edit (``{worktreeParentDir?, worktreeParentDirConfirmed?}``) ->
    ``{success}``; or ours, a repo's ``{id, name?, defaultBranch?}`` -> the repo."""
    body = await json_object()
    repos = services().repos
    if "id" in body:
        try:
            data = RepoEditIn.model_validate(body)
        except ValueError as exc:
            raise ApiError(400, "invalid_request", describe_validation(exc)) from None
        return await repos.update(
            data.id, name=data.name, default_branch=data.default_branch,
            set_branch="default_branch" in data.model_fields_set,
        )  # fmt: skip
    changes: dict[str, Any] = {}
    if isinstance(body.get("worktreeParentDir"), str):
        changes["worktreeParentDir"] = body["worktreeParentDir"]
    if isinstance(body.get("worktreeParentDirConfirmed"), bool):
        changes["worktreeParentDirConfirmed"] = body["worktreeParentDirConfirmed"]
    if not changes:
        raise ApiError(400, "invalid_request", "No settings to update")
    await repos.update_settings(changes)
    current_gateway().caches.pop("health", None)
    return {"success": True}


@bp.delete("/repos")
@document_response(SuccessOut)
async def delete_repo() -> dict[str, Any]:
    """Forget a repo, ``?path=`` (ClosedLoop) or ``?id=`` (ours); the files are not touched."""
    repos = services().repos
    path, repo_id = request.args.get("path"), request.args.get("id")
    if path:
        await repos.remove_path(path)
        return {"success": True}
    if repo_id:
        return {"success": True, **await repos.delete(repo_id)}
    raise ApiError(400, "invalid_request", "path query parameter is required")


# ---- binary paths -------------------------------------------------------------------------


def _binaries_json(gw: GatewayContext) -> dict[str, Any]:
    """ClosedLoop's ``{binaryPaths}`` (the overrides set) and ours, per binary, under ``binaries``."""
    return {
        "binaryPaths": dict(gw.binaries.overrides),
        "binaries": {name: gw.binaries.info(name).to_json() for name in BINARIES},
    }


@bp.get("/settings/binary-paths")
@document_response(BinaryPathsOut)
async def get_binary_paths() -> dict[str, Any]:
    return _binaries_json(current_gateway())


@bp.patch("/settings/binary-paths")
@document_request(BinaryPathsIn)
@document_response(BinaryPathsOut)
async def set_binary_paths() -> dict[str, Any]:
    """``{<binary>: path | null}`` (``binary-paths.ts``): absolute, executable, version probed;
    ``null`` returns to PATH. ClosedLoop's refusals, word for word."""
    gw = current_gateway()
    body = await json_object("body must be a JSON object")
    changes: dict[str, str | None] = {}
    for key, value in body.items():
        if key not in OVERRIDABLE:
            raise ApiError(400, "invalid_request", f"unknown key: {key[:100]}")
        if value is not None and not isinstance(value, str):
            raise ApiError(400, "invalid_request", f"value for {key} must be a string or null")
        if isinstance(value, str) and not value.strip():
            raise ApiError(400, "invalid_request", f"value for {key} must not be empty")
        changes[key] = value
    try:
        await gw.binaries.set_overrides(changes)
    except BinaryPathError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    finally:
        gw.caches.pop("health", None)
    return _binaries_json(gw)
