"""The filesystem family over HTTP (operation ``filesystem``): folder pickers, fuzzy file
search in a repo or worktree, a ticket's work directory, and ticket attachments.

Uploads are the one route with a bigger body limit (``UPLOAD_MAX_BODY``, enforced by the guard
before anything reads it). Attachments are served as downloads with ``nosniff`` and a
sandboxing CSP; only common image types are shown inline. So an uploaded HTML or SVG file can
never run script in the dashboard's origin. ``run-viewer-extract`` saves an agent run's
parsed events for a run viewer.
"""

from __future__ import annotations

import mimetypes
from typing import Any

import trio
from quart import Blueprint, Response, request
from quart import send_file as quart_send_file
from quart_schema import document_response

from gateway.http.errors import ApiError
from gateway.http.query import flag, int_arg
from gateway.http.routes.common import query_str, services, symphony
from gateway.http.schemas.files import DirectoriesOut, SearchOut, UploadOut, WorkDirectoryOut
from gateway.supervisor.services.files import Attachments, list_directories, search
from gateway.supervisor.services.worktrees import check_id

bp = Blueprint("files", __name__, url_prefix="/api/gateway")

UPLOAD_RULE = "/api/gateway/symphony/upload/<ticketId>"
UPLOAD_MAX_BODY = 25 * 1024 * 1024
UPLOAD_MAX_FILE = 10 * 1024 * 1024
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def attachments() -> Attachments:
    return services().attachments


def _ticket_id(value: str) -> str:
    try:
        return check_id(value, "ticketId")
    except ValueError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None


@bp.get("/directories")
@document_response(DirectoriesOut)
async def directories() -> dict[str, Any]:
    """Sub-folders of ``path`` (absolute; default: home) for a folder picker; ``hidden=1``
    includes dot-folders. Each says whether it is a git repository."""
    path, hidden = request.args.get("path"), flag("hidden")
    return await trio.to_thread.run_sync(lambda: list_directories(path, hidden=hidden))


@bp.get("/files/search")
@document_response(SearchOut)
async def files_search() -> dict[str, Any]:
    """Files of a repo (``repoId``) or ticket worktree (``ticketId``) whose path fuzzily
    matches ``q``, best first (tracked and untracked files; ignored ones never)."""
    q = query_str("q")
    if q is None:
        raise ApiError(400, "invalid_query", "q: required")
    limit = min(max(int_arg("limit") or 50, 1), 500)
    svc = services()
    where, ticket = await svc.workspaces.resolve(query_str("repoId"), query_str("ticketId"))
    paths = await svc.git.ls_files(where, ticket.ticket_id if ticket else None)
    return {"query": q, "total": len(paths), "files": search(q, paths, limit)}


@bp.get("/work-directory/<ticketId>")
@document_response(WorkDirectoryOut)
async def work_directory(ticketId: str) -> dict[str, Any]:
    """The ticket's worktree, where its agent runs work."""
    ticket = await symphony().ticket(_ticket_id(ticketId))
    exists = await trio.to_thread.run_sync(ticket.worktree.is_dir)
    return {"ticketId": ticket.ticket_id, "path": str(ticket.worktree), "exists": exists}


@bp.post("/symphony/upload/<ticketId>")
@document_response(UploadOut, 201)
async def upload(ticketId: str) -> tuple[dict[str, Any], int]:
    """Store multipart files (any field name) as the ticket's attachments.

    Names are reduced to safe basenames; a clash gets a suffix. Limits: 10 MiB per file and
    25 MiB per request.
    """
    ticket_id = _ticket_id(ticketId)
    if not (request.mimetype or "").startswith("multipart/form-data"):
        raise ApiError(415, "unsupported_media_type", "send the files as multipart/form-data")
    files = await request.files
    items = [f for _field, f in files.items(multi=True)]
    if not items:
        raise ApiError(400, "invalid_request", "file: no file in the form")
    store = attachments()
    saved = []
    for item in items:
        args = (ticket_id, item.filename, item.stream, UPLOAD_MAX_FILE)
        saved.append(await trio.to_thread.run_sync(store.save, *args))
    return {"ticketId": ticket_id, "attachments": [a.to_json() for a in saved]}, 201


@bp.get("/symphony/attachments/<path:attachmentPath>")
async def attachment(attachmentPath: str) -> Response:
    """An uploaded file; images inline, everything else as a download, never rendered."""
    path = await trio.to_thread.run_sync(attachments().resolve, attachmentPath)
    guessed = mimetypes.guess_type(path.name)[0]
    inline = guessed in INLINE_TYPES
    response = await quart_send_file(
        path,
        mimetype=guessed if inline else "application/octet-stream",
        as_attachment=not inline,
        attachment_filename=path.name,
        conditional=True,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-cache"
    return response


# ---- run viewer ------------------------------------------------------------------------------


def _process_id() -> str:
    process_id = query_str("processId")
    if process_id is None:
        raise ApiError(400, "invalid_query", "processId: required")
    return process_id


@bp.post("/run-viewer-extract")
async def run_viewer_extract() -> tuple[dict[str, Any], int]:
    """Save an agent run's parsed events (``processId`` in the body or the query)."""
    data = await request.get_json(silent=True) or {}
    process_id = data.get("processId") if isinstance(data, dict) else None
    process_id = process_id if isinstance(process_id, str) else _process_id()
    viewer = services().run_viewer
    return await trio.to_thread.run_sync(viewer.extract, process_id), 201


@bp.get("/run-viewer-extract")
async def run_viewer_read() -> dict[str, Any]:
    """One run's extraction (``processId``), or the list of extracted runs without it."""
    viewer = services().run_viewer
    process_id = query_str("processId")
    if process_id is None:
        return {"runs": await trio.to_thread.run_sync(viewer.listing)}
    return await trio.to_thread.run_sync(viewer.read, process_id)


@bp.delete("/run-viewer-extract")
async def run_viewer_delete() -> dict[str, Any]:
    process_id = _process_id()
    viewer = services().run_viewer
    deleted = await trio.to_thread.run_sync(viewer.delete, process_id)
    return {"processId": process_id, "deleted": deleted}

