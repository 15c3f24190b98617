"""The filesystem family over HTTP (operation ``filesystem``), on ClosedLoop's wire: folder
pickers, file search in a repo or a ticket's worktree, a ticket's work directory, image uploads
and attachments kept in the worktree, and run-viewer zips.

Requests and answers are ClosedLoop's (``apps/desktop/src/server/operations/
filesystem-directories.ts``, ``filesystem-search.ts``, ``metadata-routes.ts``,
``symphony-upload.ts``, ``symphony-attachments.ts``, ``run-viewer-extract.ts``) as its web app
sends and reads them (``apps/app/lib/engineer/queries/files.ts``, ``ClosedLoopChat.tsx``,
``RunViewerDialog.tsx``). Ours on top: the picker stays inside the home folder; an upload's bytes
must be the image its type says; attachments are served with ``nosniff`` and a sandboxing CSP,
images inline and anything else as a download, so an uploaded file can never run script here.
"""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import quote

import trio
from quart import Blueprint, Response, request
from quart import send_file as quart_send_file
from quart_schema import document_response

from gateway.http.errors import ApiError
from gateway.http.routes.common import json_object, query_str, services
from gateway.http.schemas.files import DirectoriesOut, RunDirOut, SearchOut, UploadOut, WorkDirectoryOut
from gateway.supervisor.services.files import (
    UPLOAD_MAX_FILE,
    attachment_in,
    check_image,
    picker_directories,
    save_attachment,
)
from gateway.supervisor.services.runzip import MAX_ZIP, ZipRefused
from gateway.supervisor.services.worktrees import WORK_DIR

bp = Blueprint("files", __name__, url_prefix="/api/gateway")

UPLOAD_RULE = "/api/gateway/symphony/upload/<ticketId>"
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def _repo_arg() -> str:
    raw = request.args.get("repo")
    if not raw:
        raise ApiError(400, "invalid_query", "repo parameter is required")
    return raw


@bp.get("/directories")
@document_response(DirectoriesOut)
async def directories() -> dict[str, Any]:
    """``?path=`` (default ``~``): ``{directories: [{name, path, isDirectory, isGitRepo}]}``, git
    repositories first; a missing folder is an empty list; outside the home folder, 403."""
    raw = request.args.get("path")
    return await trio.to_thread.run_sync(picker_directories, raw)


@bp.get("/files/search")
@document_response(SearchOut)
async def files_search() -> dict[str, Any]:
    """``?repo&ticket&query`` (the ticket's worktree) or ``?repo&query&base=true`` (the repo):
    ``{files: [path, ...] (10 at most), truncated}``."""
    repo = request.args.get("repo")
    ticket = request.args.get("ticket")
    base = request.args.get("base") == "true"
    if not repo:
        raise ApiError(400, "invalid_query", "repo query parameter is required")
    if not (base or ticket):
        raise ApiError(400, "invalid_query", "ticket query parameter is required")
    query = request.args.get("query", "")[:200]
    return await services().places.search_files(repo, ticket, query, base)


@bp.get("/work-directory/<ticketId>")
@document_response(WorkDirectoryOut)
async def work_directory(ticketId: str) -> dict[str, Any]:
    """``{exists, path, source, pendingClaudeMd, branchStatus}``; ``exists: false`` (200) when
    the ticket has no worktree."""
    return await services().places.work_directory(ticketId[:200])


async def _attachments_dir(ticket_id: str) -> Any:
    tree = await services().places.ticket_tree(_repo_arg(), ticket_id)
    if tree is None:
        raise ApiError(404, "worktree_not_found", "Work directory not found")
    return tree / WORK_DIR / "work" / "attachments"


@bp.post("/symphony/upload/<ticketId>")
@document_response(UploadOut)
async def upload(ticketId: str) -> dict[str, Any]:
    """Multipart images (any field name; png, jpeg, gif, webp; 10 MB each) saved in the
    worktree's ``.closedloop-ai/work/attachments`` as ``chat-img-<ms>-<hex>.<ext>``;
    ``{files: [{originalName, savedName, path, apiUrl, size}]}``."""
    folder = await _attachments_dir(ticketId)
    if not (request.mimetype or "").startswith("multipart/form-data"):
        raise ApiError(400, "invalid_request", "Invalid form data")
    files = await request.files
    items = [f for _field, f in files.items(multi=True)]
    if not items:
        raise ApiError(400, "invalid_request", "No image files provided")
    accepted = []
    for item in items:
        data = item.stream.read(UPLOAD_MAX_FILE + 1)
        name = item.filename or "file"
        ext = check_image(item.mimetype or "", data[:16], name, len(data))
        accepted.append((name, ext, data))
    saved = []
    repo = request.args.get("repo", "")
    for name, ext, data in accepted:
        path = await trio.to_thread.run_sync(save_attachment, folder, ext, data)
        api_url = (
            f"/api/gateway/symphony/attachments/{quote(ticketId, safe='')}/{quote(path.name, safe='')}"
            f"?repo={quote(repo, safe='')}"
        )
        saved.append({"originalName": name, "savedName": path.name, "path": str(path), "apiUrl": api_url,
                      "size": len(data)})  # fmt: skip
    return {"files": saved}


@bp.get("/symphony/attachments/<path:attachmentPath>")
async def attachment(attachmentPath: str) -> Response:
    """``<ticketId>/<file>?repo=``: an uploaded file; images inline, everything else as a
    download, never rendered. 403 ``Invalid path`` outside the attachments folder, 404 when
    missing."""
    ticket_id, _sep, rel = attachmentPath.partition("/")
    if not rel:
        raise ApiError(400, "invalid_request", "attachment path is required")
    folder = await _attachments_dir(ticket_id)
    path = await trio.to_thread.run_sync(attachment_in, folder, rel)
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
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


# ---- run viewer ------------------------------------------------------------------------------


def _process_id() -> str:
    process_id = query_str("processId")
    if process_id is None:
        raise ApiError(400, "invalid_query", "processId: required")
    return process_id


@bp.post("/run-viewer-extract")
@document_response(RunDirOut)
async def run_viewer_extract() -> tuple[dict[str, Any], int]:
    """ClosedLoop's: a multipart ``.zip`` of a run (``application/zip``, 200 MB) unpacked for the
    run viewer -> ``{runDir}``. Ours: JSON ``{processId}`` saves an agent run's parsed events."""
    if (request.mimetype or "").startswith("multipart/form-data"):
        files = await request.files
        item = next((f for _k, f in files.items(multi=True) if f.mimetype == "application/zip"), None)
        if item is None:
            raise ApiError(400, "invalid_request", "No zip file provided")
        data = item.stream.read(MAX_ZIP + 1)
        if len(data) > MAX_ZIP:
            raise ApiError(400, "invalid_request", "Zip file too large (max 200MB)")
        try:
            run_dir = await trio.to_thread.run_sync(services().run_dirs.extract_bytes, data)
        except ZipRefused as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None
        return {"runDir": str(run_dir)}, 200
    body = await json_object()
    process_id = body.get("processId")
    process_id = process_id if isinstance(process_id, str) else _process_id()
    viewer = services().run_viewer
    return await trio.to_thread.run_sync(viewer.extract, process_id), 201


@bp.get("/run-viewer-extract")
async def run_viewer_read() -> dict[str, Any]:
    """``?runDir=`` (ClosedLoop): ``{files}``; ``?processId=`` (ours): one run's extraction;
    neither: the list of extracted runs."""
    run_dir = request.args.get("runDir")
    if run_dir is not None:
        dirs = services().run_dirs
        try:
            path = dirs.check(run_dir)
        except ValueError:
            raise ApiError(400, "invalid_query", "Invalid runDir") from None
        if not await trio.to_thread.run_sync(path.is_dir):
            raise ApiError(404, "not_found", "Run directory not found")
        return {"files": await trio.to_thread.run_sync(dirs.files, path)}
    viewer = services().run_viewer
    process_id = query_str("processId")
    if process_id is None:
        return {"runs": await trio.to_thread.run_sync(viewer.listing)}
    return await trio.to_thread.run_sync(viewer.read, process_id)


@bp.delete("/run-viewer-extract")
async def run_viewer_delete() -> dict[str, Any]:
    """``{runDir}`` (ClosedLoop) -> ``{success}``; ``?processId=`` (ours) forgets an extraction."""
    body = await json_object()
    if "runDir" in body:
        dirs = services().run_dirs
        try:
            path = dirs.check(body["runDir"])
        except ValueError:
            raise ApiError(400, "invalid_request", "Invalid runDir") from None
        await trio.to_thread.run_sync(dirs.remove, path)
        return {"success": True}
    process_id = _process_id()
    viewer = services().run_viewer
    deleted = await trio.to_thread.run_sync(viewer.delete, process_id)
    return {"processId": process_id, "deleted": deleted}
