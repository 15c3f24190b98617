"""The deploy family over HTTP (operation ``deploy``, high tier), on ClosedLoop's wire: a
worktree's dev server, started supervised with restart on failure.

Requests and answers are those of ClosedLoop's ``apps/desktop/src/server/operations/deploy.ts``
as its web app sends and reads them (``apps/app/lib/engineer/queries/deploy.ts``,
``DeployDialog.tsx``, ``TicketList.tsx``). Underneath, a deploy is ours: a supervised record of
kind ``deploy`` (its log kept, killed with a receipt), its command an argv this gateway chose
from ``package.json`` (never a request string, never a shell), its port refused when taken.
Where ClosedLoop is unsafe we are not: ``kill`` signals only the pid of one of our deploys, and
``teardown`` never frees a port by killing whatever holds it. Health probes reach loopback only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio
from quart import Blueprint, request
from quart_schema import document_request, document_response

from gateway.http.auth import is_loopback_origin
from gateway.http.errors import ApiError
from gateway.http.routes.common import json_object, services
from gateway.http.schemas.deploy import (
    CheckExistingOut,
    DeployIn,
    DeployOut,
    DeployStatusOut,
    DetectOut,
    HealthIn,
    HealthOut,
    KillIn,
    PathsIn,
    RepoPathIn,
    UrlOut,
)
from gateway.supervisor.services.deployconfig import argv_for, detect_config
from gateway.supervisor.services.deploys import Candidate, Deploys, port_free
from gateway.supervisor.spec import ACTIVE_STATES, ProcessRecord, State

bp = Blueprint("deploy", __name__, url_prefix="/api/gateway/deploy")

PROBE_TIMEOUT = 10.0
STATUS_PROBE_TIMEOUT = 1.0
LOG_TAIL_LINES = 2000
_NODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def deploys() -> Deploys:
    return services().deploys


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and value.strip() else None


async def _repo_and_tree(body: dict[str, Any]) -> tuple[Path, Path]:
    """``repoPath`` and ``worktreePath``, each a registered repo or one of its worktrees."""
    places = services().places
    repo = await places.repos.resolve(body["repoPath"], "repoPath")
    tree = await places.repos.resolve(body["worktreePath"], "worktreePath")
    return repo.repo, tree.path


async def _config(repo: Path, tree: Path | None = None) -> dict[str, Any] | None:
    """The worktree's config (detected now), else the repo's (ClosedLoop's order)."""
    for root in (tree, repo):
        if root is not None:
            found = await trio.to_thread.run_sync(detect_config, root)
            if found is not None:
                return found
    return None


async def _remember(repo: Path, config: dict[str, Any] | None) -> bool:
    """Store the config on the registered repo, as ClosedLoop does (``repos`` shows it)."""
    repos = services().repos
    row = await repos.by_path(str(repo))
    if row is None:
        return False
    await repos.set_deployment(row["id"], config)
    return True


def _url(record: ProcessRecord) -> str | None:
    port = record.labels.get("port", "")
    return f"http://localhost:{port}" if port.isdigit() else None


async def _alive(url: str, timeout: float) -> tuple[bool, int | None]:
    """ClosedLoop's deploy health: ``HEAD`` without redirects; 2xx and 3xx are alive."""
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, follow_redirects=False) as client:
            answer = await client.head(url)
    except httpx.HTTPError:
        return False, None
    return answer.is_success or 300 <= answer.status_code < 400, answer.status_code


@bp.post("")
@document_request(DeployIn)
@document_response(DeployOut)
async def deploy() -> dict[str, Any]:
    """``{ticketId, repoPath, worktreePath, node?}``: start the worktree's dev server (the ``dev``,
    else ``start`` script of ``package.json``, with pnpm, yarn or npm by lockfile) on its port.

    ``node`` is ours (ClosedLoop never sends it): a node's name, ``local`` or ``auto``; without
    it the default node (``local`` unless ``--default-node``). The answer says ``node``."""
    body = await json_object()
    ticket_id = _text(body, "ticketId")
    if not (ticket_id and _text(body, "repoPath") and _text(body, "worktreePath")):
        raise ApiError(400, "invalid_request", "ticketId, repoPath, and worktreePath are required")
    node = body.get("node")
    if node is not None and not (isinstance(node, str) and _NODE.match(node)):
        raise ApiError(400, "invalid_request", "node: a node's name, local or auto")
    repo, tree = await _repo_and_tree(body)
    if not await trio.to_thread.run_sync(tree.is_dir):
        raise ApiError(404, "worktree_not_found", f"Worktree not found: {tree}")
    config = await _config(repo, tree)
    argv = argv_for(config["command"]) if config is not None else None
    if config is None or argv is None:
        raise ApiError(400, "nothing_to_run", "No deployment configuration detected for this repository")
    await _remember(repo, config)
    port = config.get("port")
    labels = {"repoPath": str(repo), "worktreePath": str(tree)}
    record = await deploys().start(
        ticket_id[:200], tree, Candidate("package.json", config["command"], tuple(argv)),
        port if isinstance(port, int) else None, labels=labels, host="localhost", node=node,
    )  # fmt: skip
    return {
        "success": True,
        "pid": record.pid,
        "logFile": str(services().deploys.sup.log(record.id).prefix),
        "deployCommand": config["command"],
        "deployType": config.get("type"),
        "repoName": repo.name,
        "processId": record.id,
        "port": int(record.labels["port"]),
        "url": _url(record),
        "node": record.node,
    }


@bp.get("/status/<ticketId>")
@document_response(DeployStatusOut)
async def status(ticketId: str) -> dict[str, Any]:
    """``?repo=&pid=``: ``{status: running | completed | failed | not-started, logs, pid,
    deployedUrl?, error?}``. ``completed`` is a server that answers on its URL (or a command
    that ended well); ``failed`` one that ended badly."""
    raw = request.args.get("repo")
    if not raw:
        raise ApiError(400, "invalid_query", "repo query param is required")
    await services().places.repos.resolve(raw, "repo")
    record = deploys().current(ticketId[:200])
    if record is None:
        return {"status": "not-started", "logs": None, "pid": None}
    logs = await trio.to_thread.run_sync(deploys().log_text, record, LOG_TAIL_LINES)
    out: dict[str, Any] = {"logs": logs or None, "pid": record.pid, "processId": record.id}
    out["node"] = record.node
    url = _url(record)
    if record.state in ACTIVE_STATES:
        alive = url is not None and (await _alive(url, STATUS_PROBE_TIMEOUT))[0]
        return {**out, "status": "completed", "deployedUrl": url} if alive else {**out, "status": "running"}
    if record.state == State.EXITED:
        return {**out, "status": "completed"}
    code = record.exit_code if record.exit_code is not None else record.signal
    return {**out, "status": "failed", "error": f"Deploy command failed with exit code {code}"}


@bp.post("/health")
@document_request(HealthIn)
@document_response(HealthOut)
async def health() -> dict[str, Any]:
    """``{url}``: ``{alive, statusCode}``; a URL that is not on loopback is never probed."""
    body = await json_object()
    url = _text(body, "url")
    if url is None:
        raise ApiError(400, "invalid_request", "url is required")
    try:
        parts = urlsplit(url)
        allowed = parts.scheme in ("http", "https") and is_loopback_origin(f"{parts.scheme}://{parts.netloc}")
    except ValueError:
        allowed = False
    if not allowed:
        return {"alive": False, "statusCode": None, "error": "url blocked by desktop outbound policy",
                "code": "OUTBOUND_URL_DENIED"}  # fmt: skip
    alive, code = await _alive(url, PROBE_TIMEOUT)
    return {"alive": alive, "statusCode": code}


@bp.post("/check-existing")
@document_request(PathsIn)
@document_response(CheckExistingOut)
async def check_existing() -> dict[str, Any]:
    """``{repoPath, worktreePath}``: ``{active, url?}``: our deploy of the worktree, else a
    server already answering on the detected port (a read-only probe)."""
    body = await json_object()
    if not (_text(body, "repoPath") and _text(body, "worktreePath")):
        raise ApiError(400, "invalid_request", "repoPath and worktreePath are required")
    repo, tree = await _repo_and_tree(body)
    record = deploys().of_worktree(tree)
    if record is not None and record.state in ACTIVE_STATES:
        return {"active": True, "url": _url(record), "processId": record.id}
    config = await _config(repo, tree)
    port = config.get("port") if config else None
    if isinstance(port, int) and not await trio.to_thread.run_sync(port_free, port):
        return {"active": True, "url": f"http://localhost:{port}"}
    return {"active": False}


@bp.post("/detect")
@document_request(RepoPathIn)
@document_response(DetectOut)
async def detect() -> dict[str, Any]:
    """``{repoPath}``: ``{detected, config?}``; a found config is stored on the repo."""
    body = await json_object()
    if not _text(body, "repoPath"):
        raise ApiError(400, "invalid_request", "repoPath is required")
    target = await services().places.repos.resolve(body["repoPath"])
    config = await _config(target.path)
    if config is None:
        return {"detected": False}
    await _remember(target.repo, config)
    return {"detected": True, "config": config}


@bp.post("/redetect")
@document_request(RepoPathIn)
@document_response(DetectOut)
async def redetect() -> dict[str, Any]:
    """``{repoPath}``: detect again; ``{redetected, config?}`` (a stale config is dropped)."""
    body = await json_object()
    if not _text(body, "repoPath"):
        raise ApiError(400, "invalid_request", "repoPath is required")
    target = await services().places.repos.resolve(body["repoPath"])
    config = await _config(target.path)
    stored = await _remember(target.repo, config)
    return {"redetected": True, "config": config} if config and stored else {"redetected": False}


@bp.post("/extract-info")
@document_request(RepoPathIn)
@document_response(UrlOut)
async def extract_info() -> dict[str, Any]:
    """``{repoPath, logs?}``: ``{url}`` of the repo's dev server (its running deploy, else the
    stored config's port), or ``{url: null}``."""
    body = await json_object()
    if not _text(body, "repoPath"):
        raise ApiError(400, "invalid_request", "repoPath is required")
    target = await services().places.repos.resolve(body["repoPath"])
    for record in deploys().current_deploys():
        if record.labels.get("repoPath") == str(target.repo) and record.state in ACTIVE_STATES:
            return {"url": _url(record), "processId": record.id}
    row = await services().repos.by_path(str(target.repo))
    config = services().repos.deployment_of(row) if row is not None else None
    port = config.get("port") if config else None
    return {"url": f"http://localhost:{port}" if isinstance(port, int) else None}


@bp.post("/kill")
@document_request(KillIn)
async def kill() -> dict[str, Any]:
    """``{pid}``: stop that deploy's whole tree (answered with the kill receipt). Only the pid
    of one of our deploys is ever signalled: any other is a 404, never a signal."""
    body = await json_object()
    pid = body.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise ApiError(400, "invalid_request", "pid is required and must be a number")
    record = deploys().of_pid(pid)
    if record is None:
        raise ApiError(404, "deploy_not_found", f"no deploy with pid {pid}")
    if record.state not in ACTIVE_STATES:
        return {"success": True, "message": "Process already terminated", "pid": pid}
    receipt = await services().deploys.sup.kill(record.id)
    return {"success": True, "message": "Process terminated", "pid": pid, **receipt.to_json()}


@bp.post("/teardown")
@document_request(PathsIn)
async def teardown() -> dict[str, Any]:
    """``{repoPath, worktreePath, pid?, port?}``: kill our deploy of the worktree (or of ``pid``)
    and forget it -> ``{success: true, ...receipt}``; ``{success: false, error}`` when there is
    none. A ``port`` is never freed by killing whatever holds it."""
    body = await json_object()
    if not (_text(body, "repoPath") and _text(body, "worktreePath")):
        raise ApiError(400, "invalid_request", "repoPath and worktreePath are required")
    _repo, tree = await _repo_and_tree(body)
    record = deploys().of_worktree(tree)
    pid = body.get("pid")
    if record is None and isinstance(pid, int) and not isinstance(pid, bool):
        record = deploys().of_pid(pid)
    if record is None:
        return {
            "success": False,
            "error": "Could not stop the server - no deploy of this worktree is running",
        }
    receipt = await services().deploys.sup.teardown(record.id)
    return {"success": True, **receipt.to_json()}
