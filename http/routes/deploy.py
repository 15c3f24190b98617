"""The deploy family over HTTP (operation ``deploy``, high tier): dev servers of a ticket's
worktree (or a managed repo), supervised with restart on failure on a free loopback port.

``gateway.supervisor.services.deploys`` does the work; this module resolves where the ticket's code
lives and turns its answers into the contract's JSON.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import trio
from quart import Blueprint
from quart_schema import document_response, validate_request

from gateway.http.errors import ApiError
from gateway.http.routes.common import services
from gateway.http.schemas.core import ReceiptOut
from gateway.http.schemas.deploy import DeployIn, DeployTargetIn, TicketOnlyIn
from gateway.supervisor.services.deploys import Candidate, Deploys, detect, free_port
from gateway.supervisor.spec import ACTIVE_STATES, ProcessRecord

bp = Blueprint("deploy", __name__, url_prefix="/api/gateway/deploy")

PROBE_TIMEOUT = 3.0


def deploys() -> Deploys:
    return services().deploys


async def _root(ticket_id: str, repo_id: str | None) -> Path:
    return await services().workspaces.deploy_root(ticket_id, repo_id)


def _deploy_json(record: ProcessRecord | None) -> dict[str, Any]:
    if record is None:
        return {"process": None, "url": None, "port": None, "running": False}
    port = record.labels.get("port")
    return {
        "process": record.to_json(),
        "url": record.labels.get("url"),
        "port": int(port) if port and port.isdigit() else None,
        "running": record.state in ACTIVE_STATES,
    }


@bp.post("/detect")
@validate_request(DeployTargetIn)
async def detect_route(data: DeployTargetIn) -> dict[str, Any]:
    """How the work tree can run (best first) and a free port to run it on."""
    root = await _root(data.ticket_id, data.repo_id)
    found = await trio.to_thread.run_sync(detect, root)
    return {
        "ticketId": data.ticket_id,
        "root": str(root),
        "candidates": [c.to_json() for c in found],
        "chosen": found[0].to_json() if found else None,
        "port": free_port(),
    }


@bp.post("/redetect")
@validate_request(DeployTargetIn)
async def redetect(data: DeployTargetIn) -> dict[str, Any]:
    """Detect again (after the work tree changed). Nothing is cached, so this is ``detect``."""
    return await detect_route(data)


@bp.post("")
@validate_request(DeployIn)
@document_response(ReceiptOut, 201)
async def deploy(data: DeployIn) -> tuple[dict[str, Any], int]:
    """Start the ticket's dev server: ``command`` (argv), else ``script``, else the best found."""
    root = await _root(data.ticket_id, data.repo_id)
    if data.command is not None:
        chosen = Candidate("request", "command", tuple(data.command))
    else:
        found = await trio.to_thread.run_sync(detect, root)
        if data.script is not None:
            found = [c for c in found if c.source == "package.json" and c.name == data.script]
            if not found:
                raise ApiError(400, "invalid_request", f"script: no package.json script {data.script!r}")
        if not found:
            raise ApiError(
                400, "nothing_to_run", "no package.json script, Procfile web line or manage.py; send command"
            )
        chosen = found[0]
    record = await deploys().start(data.ticket_id, root, chosen, data.port)
    return {**_deploy_json(record), "source": chosen.to_json()}, 201


@bp.get("/status/<ticketId>")
async def status(ticketId: str) -> dict[str, Any]:
    """The ticket's deploy (null once torn down), its URL and whether it runs."""
    return {"ticketId": ticketId, **_deploy_json(deploys().current(ticketId))}


@bp.post("/check-existing")
@validate_request(TicketOnlyIn)
async def check_existing(data: TicketOnlyIn) -> dict[str, Any]:
    """Whether the ticket has a running deploy (to reuse it instead of starting another)."""
    record = deploys().active(data.ticket_id)
    return {"ticketId": data.ticket_id, "exists": record is not None, **_deploy_json(record)}


@bp.post("/health")
@validate_request(TicketOnlyIn)
async def health(data: TicketOnlyIn) -> dict[str, Any]:
    """Probe the deploy's own URL (GET, 3 s); healthy = any answer below 500."""
    record = deploys().active(data.ticket_id)
    if record is None:
        return {"ticketId": data.ticket_id, "healthy": False, "reason": "no running deploy"}
    url = record.labels["url"]
    began = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT, trust_env=False) as client:
            answer = await client.get(url)
    except httpx.HTTPError as exc:
        return {"ticketId": data.ticket_id, "healthy": False, "url": url, "reason": type(exc).__name__}
    return {
        "ticketId": data.ticket_id,
        "healthy": answer.status_code < 500,
        "url": url,
        "status": answer.status_code,
        "elapsedMs": round((time.perf_counter() - began) * 1000, 1),
    }


@bp.post("/extract-info")
@validate_request(TicketOnlyIn)
async def extract_info(data: TicketOnlyIn) -> dict[str, Any]:
    """The URL and port the server announced in its log, and its latest error lines."""
    record, info = deploys().info(data.ticket_id)
    return {"ticketId": data.ticket_id, "processId": record.id, **info}


@bp.post("/kill")
@validate_request(TicketOnlyIn)
@document_response(ReceiptOut)
async def kill(data: TicketOnlyIn) -> dict[str, Any]:
    """Stop the dev server's whole tree; the deploy stays (``status`` shows it stopped)."""
    return (await deploys().kill(data.ticket_id)).to_json()


@bp.post("/teardown")
@validate_request(TicketOnlyIn)
@document_response(ReceiptOut)
async def teardown(data: TicketOnlyIn) -> dict[str, Any]:
    """Kill, free the port and forget the deploy; its logs stay readable by process id."""
    return (await deploys().teardown(data.ticket_id)).to_json()
