"""The git family over HTTP (operations ``git_action``, ``git_branch_worktree``, ``git_pr``), on
ClosedLoop's wire.

Requests and answers are those of ClosedLoop's desktop gateway
(``apps/desktop/src/server/operations/git-action.ts``, ``git-diff.ts``, ``git-branches.ts``,
``git-worktree.ts``, ``git-branch-worktree.ts``, ``git-repo-path.ts``) as its web app sends
and reads them (``apps/app/lib/git/queries.ts``, ``apps/app/lib/engineer/queries/git.ts``,
``repo-path.ts``). Repositories are named by path; ``PathWorkspaces`` checks every path (a
registered repository or one of its worktrees, symlinks resolved) and takes a ticket's
worktree lock for the writes. The ``pr`` routes (``git_pr``, driving ``gh``) are in ``pr.py``.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, request
from quart_schema import document_request, document_response

from gateway.http.errors import ApiError
from gateway.http.routes.common import json_object, query_str, services, symphony
from gateway.http.schemas.core import ErrorResponse
from gateway.http.schemas.git import (
    BranchesOut,
    BranchWorktreeOut,
    DiffIn,
    DiffOut,
    GitActionIn,
    GitActionOut,
    GitUserOut,
    RepoPathOut,
    WorktreeCleanupOut,
    WorktreeDeleteIn,
    WorktreeIn,
    WorktreeOut,
)

bp = Blueprint("git", __name__, url_prefix="/api/gateway/git")


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) and value else None


@bp.post("")
@document_request(GitActionIn)
@document_response(GitActionOut)
@document_response(ErrorResponse, 400)
@document_response(ErrorResponse, 403)
async def git_action() -> dict[str, Any]:
    """``{action, repoPath, branchName?, message?, baseBranch? = "main"}``: ``status``,
    ``branch``, ``commit``, ``push``, ``pull``, ``branch-diff`` (against ``origin/<base>``),
    ``sync-status`` (after ``git fetch origin``)."""
    body = await json_object()
    repo_path = _string(body, "repoPath")
    if repo_path is None:
        raise ApiError(400, "invalid_request", "repoPath is required")
    action = body.get("action")
    return await services().places.git_action(
        action if isinstance(action, str) else "",
        repo_path,
        branch_name=_string(body, "branchName"),
        message=_string(body, "message"),
        base_branch=_string(body, "baseBranch") or "main",
    )


@bp.get("/branches")
@document_response(BranchesOut)
async def branches() -> dict[str, Any]:
    """``?repo=``: ``{defaultBranch, worktrees[{path, branch, ticketId}], branches[{name,
    isRemote, lastCommitDate?}], isEmpty?}``."""
    raw = request.args.get("repo")
    if not raw:
        raise ApiError(400, "invalid_query", "repo parameter is required")
    places = services().places
    target = await places.target(raw, "repo")
    return await places.wire.branches(target.repo)


@bp.post("/diff")
@document_request(DiffIn)
@document_response(DiffOut)
async def diff() -> dict[str, Any]:
    """``{filePath, repoPath, baseBranch?}`` -> ``{filePath, oldContent, newContent, isNew,
    isDeleted, isImage?, mimeType?}``; 400 ``File has no changes`` for a clean file."""
    body = await json_object()
    file_path, repo_path = _string(body, "filePath"), _string(body, "repoPath")
    if file_path is None or repo_path is None:
        raise ApiError(400, "invalid_request", "filePath and repoPath are required")
    return await services().places.file_diff(repo_path, file_path, _string(body, "baseBranch"))


@bp.post("/worktree")
@document_request(WorktreeIn)
@document_response(WorktreeCleanupOut)
@document_response(WorktreeOut, 201)
async def worktree_post() -> tuple[dict[str, Any], int]:
    """No body (ClosedLoop's hourly call): remove ``*-pr-N`` worktrees whose branch left origin
    -> ``{removed, kept, errors}``. ``{repoPath, ticketId, baseRef?}`` (ours): create or reuse
    the ticket's worktree in ClosedLoop's layout -> ``{success, path, branch, created, ticket}``."""
    body = await json_object()
    places = services().places
    ticket_id = _string(body, "ticketId")
    if ticket_id is None and not body:
        return await places.cleanup_pr_worktrees(), 200
    if ticket_id is None or not (_string(body, "repoPath") or _string(body, "repoId")):
        raise ApiError(400, "invalid_request", "repoPath and ticketId are required")
    base_ref = _string(body, "baseRef")
    if _string(body, "repoPath"):
        ticket, created = await places.create_worktree(body["repoPath"], ticket_id, base_ref)
    else:
        ticket, created = await symphony().open_worktree(ticket_id, body["repoId"], base_ref)
    answer = {"success": True, "path": str(ticket.worktree), "branch": ticket.branch, "created": created}
    return {**answer, "ticket": ticket.to_json()}, 201 if created else 200


@bp.delete("/worktree")
@document_request(WorktreeDeleteIn)
async def worktree_delete() -> Response:
    """``{worktreePath, force?}`` -> ``{success, message}``; 409 ``hasChanges`` when dirty
    without ``force``, or while a run works there. ``{ticketId}`` (ours) removes a ticket's."""
    body = await json_object()
    raw = _string(body, "worktreePath")
    if raw is None and _string(body, "ticketId"):
        removed = await symphony().close_worktree(body["ticketId"])
        return jsonify({"success": True, "ticketId": body["ticketId"], "removed": removed})
    if raw is None:
        raise ApiError(400, "invalid_request", "worktreePath is required and must be a string")
    status, answer = await services().places.remove_worktree(raw, body.get("force") is True)
    response = jsonify(answer)
    response.status_code = status
    return response


@bp.get("/branch-worktree")
@document_response(BranchWorktreeOut)
async def branch_worktree() -> dict[str, Any]:
    """``?repoFullName=<owner/repo>&headBranch=<b>`` -> ``{path, repoPath}`` (nulls when no
    registered repo's origin is that repo, or no work tree has the branch checked out)."""
    full_name, branch = query_str("repoFullName"), query_str("headBranch")
    if full_name is None or branch is None:
        raise ApiError(400, "invalid_query", "repoFullName and headBranch are required")
    svc = services()
    row = await svc.repos.by_full_name(full_name)
    if row is None:
        return {"path": None, "repoPath": None}
    path = await svc.places.wire.worktree_for_branch(row["path"], branch)
    return {"path": path, "repoPath": row["path"]}


@bp.get("/repo-path")
@document_response(RepoPathOut)
async def repo_path() -> dict[str, Any]:
    """``?repoFullName=<owner/repo>`` -> ``{path}`` of the registered repo whose origin it is,
    or ``{path: null}``."""
    full_name = query_str("repoFullName")
    if full_name is None:
        raise ApiError(400, "invalid_query", "repoFullName is required")
    row = await services().repos.by_full_name(full_name)
    return {"path": row["path"] if row is not None else None}


@bp.get("/user")
@document_response(GitUserOut)
async def git_user() -> dict[str, Any]:
    """``{login}`` (the GitHub user ``gh`` is signed in as, as ClosedLoop answers), plus the
    git identity commits get (``name``, ``email``; ours)."""
    svc = services()
    identity = await svc.git.user(None)
    login = await svc.places.github_login()
    return {"login": login, **identity}
