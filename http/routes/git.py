"""The git family over HTTP (operations ``git_action`` and ``git_branch_worktree``).

Targets are a managed repository (``repoId``) or a Symphony ticket's worktree (``ticketId``),
resolved by ``Workspaces`` (``gateway.supervisor.symphony.workspace``), which also holds the
rule that commits and pulls in a ticket's worktree take its worktree lock. The ``pr`` routes
(``git_pr``, driving ``gh``) are in ``pr.py``.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint
from quart_schema import document_querystring, document_response, validate_request

from gateway.http.errors import ApiError
from gateway.http.routes.common import query_str, services, symphony
from gateway.http.schemas.git import (
    BranchesOut,
    BranchWorktreeOut,
    DiffIn,
    DiffOut,
    GitActionIn,
    GitActionOut,
    GitUserOut,
    RepoPathOut,
    Target,
    WorktreeDeleteIn,
    WorktreeIn,
    WorktreeOut,
    WorktreeRemovedOut,
)

bp = Blueprint("git", __name__, url_prefix="/api/gateway/git")


class TargetQuery(Target):
    pass


def _target_query() -> tuple[str | None, str | None]:
    return query_str("repoId"), query_str("ticketId")


@bp.post("")
@validate_request(GitActionIn)
@document_response(GitActionOut)
async def git_action(data: GitActionIn) -> dict[str, Any]:
    """Dispatch ``status | branch | commit | push | pull | branch-diff | sync-status``."""
    return await services().workspaces.git_action(
        data.action,
        data.repo_id,
        data.ticket_id,
        message=data.message,
        paths=data.paths,
        remote=data.remote,
        fetch=data.fetch,
        base=data.base,
    )


@bp.get("/branches")
@document_querystring(TargetQuery)
@document_response(BranchesOut)
async def branches() -> dict[str, Any]:
    """Local branches (with upstream and the current one) and remote-tracking branches."""
    svc = services()
    where, ticket = await svc.workspaces.resolve(*_target_query())
    return await svc.git.branches(where, ticket.ticket_id if ticket else None)


@bp.post("/diff")
@validate_request(DiffIn)
@document_response(DiffOut)
async def diff(data: DiffIn) -> dict[str, Any]:
    """The working tree's (or the index's) diff, optionally against ``base`` or its merge base."""
    svc = services()
    where, ticket = await svc.workspaces.resolve(data.repo_id, data.ticket_id)
    return await svc.git.diff(
        where,
        base=data.base,
        staged=data.staged,
        paths=data.paths,
        merge_base=data.merge_base,
        ticket_id=ticket.ticket_id if ticket else None,
    )


@bp.post("/worktree")
@validate_request(WorktreeIn)
@document_response(WorktreeOut)
@document_response(WorktreeOut, 201)
async def create_worktree(data: WorktreeIn) -> tuple[dict[str, Any], int]:
    """Create (201) or reuse (200) the ticket's worktree on ``symphony/<ticketId>``."""
    ticket, created = await symphony().open_worktree(data.ticket_id, data.repo_id, data.base_ref)
    return {"ticket": ticket.to_json(), "created": created}, 201 if created else 200


@bp.delete("/worktree")
@validate_request(WorktreeDeleteIn)
@document_response(WorktreeRemovedOut)
async def delete_worktree(data: WorktreeDeleteIn) -> dict[str, Any]:
    """Remove the ticket's worktree (its branch stays); 409 while a run is active in it."""
    removed = await symphony().close_worktree(data.ticket_id)
    return {"ticketId": data.ticket_id, "removed": removed}


@bp.get("/branch-worktree")
@document_response(BranchWorktreeOut)
async def branch_worktree() -> dict[str, Any]:
    """Which work tree of ``repoId`` has ``branch`` checked out (null: none)."""
    repo_id, branch = query_str("repoId"), query_str("branch")
    if repo_id is None or branch is None:
        raise ApiError(400, "invalid_query", "repoId and branch are required")
    svc = services()
    path = await svc.git.branch_worktree(await svc.symphony.repo_path(repo_id), branch)
    return {"branch": branch, "path": path}


@bp.get("/repo-path")
@document_querystring(TargetQuery)
@document_response(RepoPathOut)
async def repo_path() -> dict[str, Any]:
    """The folder of a managed repository, or of a ticket's worktree."""
    repo_id, ticket_id = _target_query()
    where, _ticket = await services().workspaces.resolve(repo_id, ticket_id)
    return {"path": str(where), "repoId": repo_id, "ticketId": ticket_id}


@bp.get("/user")
@document_querystring(TargetQuery)
@document_response(GitUserOut)
async def git_user() -> dict[str, Any]:
    """The identity commits get: the target's config, or the user's global one without one."""
    svc = services()
    repo_id, ticket_id = _target_query()
    where = None
    if repo_id is not None or ticket_id is not None:
        where, _ticket = await svc.workspaces.resolve(repo_id, ticket_id)
    return await svc.git.user(where)
