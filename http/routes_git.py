"""The git family over HTTP (operations ``git_action`` and ``git_branch_worktree``).

Targets are a managed repository (``repoId``) or a Symphony ticket's worktree (``ticketId``),
resolved through the Symphony service, which owns both. Commits and pulls in a ticket's
worktree take its worktree lock: 409 while an agent works there, and no run starts until
they are done. The ``pr`` routes (``git_pr``, driving ``gh``) are in ``routes_pr.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from quart import Blueprint
from quart_schema import document_querystring, document_response, validate_request

from gateway.http.errors import ApiError
from gateway.http.routes_symphony import _query_str, _symphony_errors, service
from gateway.http.schemas_git import (
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
from gateway.supervisor.git_ops import GitOps
from gateway.supervisor.symphony import Symphony
from gateway.supervisor.symphony_model import Ticket

bp = Blueprint("git", __name__, url_prefix="/api/gateway/git")


class TargetQuery(Target):
    pass


async def _resolve(svc: Symphony, repo_id: str | None, ticket_id: str | None) -> tuple[Path, Ticket | None]:
    """The work tree to act on, and the ticket when it is one's worktree."""
    if (repo_id is None) == (ticket_id is None):
        raise ApiError(400, "invalid_request", "give exactly one of repoId and ticketId")
    with _symphony_errors():
        if repo_id is not None:
            return await svc.repo_path(repo_id), None
        assert ticket_id is not None
        ticket = await svc.ticket(ticket_id)
    if not await trio.to_thread.run_sync(ticket.worktree.is_dir):
        raise ApiError(404, "worktree_not_found", f"ticketId: the worktree {ticket.worktree} is gone")
    return ticket.worktree, ticket


def _target_query() -> tuple[str | None, str | None]:
    return _query_str("repoId"), _query_str("ticketId")


@bp.post("")
@validate_request(GitActionIn)
@document_response(GitActionOut)
async def git_action(data: GitActionIn) -> dict[str, Any]:
    """Dispatch ``status | branch | commit | push | pull | branch-diff | sync-status``."""
    svc = service()
    where, ticket = await _resolve(svc, data.repo_id, data.ticket_id)
    ops = GitOps(svc.git)
    tid = ticket.ticket_id if ticket is not None else None
    with _symphony_errors():
        if data.action == "status":
            return await ops.status(where, tid)
        if data.action == "branch":
            return await ops.branch(where, tid)
        if data.action == "sync-status":
            return await ops.sync_status(where, data.fetch, tid)
        if data.action == "push":
            return await ops.push(where, data.remote, tid)
        if data.action == "branch-diff":
            base = data.base or (ticket.base_ref if ticket is not None else None)
            if base is None:
                raise ApiError(400, "invalid_request", "base: required (the ticket has no base ref)")
            return await ops.diff(where, base=base, merge_base=True, ticket_id=tid)
        # commit and pull change the files an agent may be working on: take the lock.
        if data.action == "commit" and data.message is None:
            raise ApiError(400, "invalid_request", "message: required for commit")
        if ticket is None:
            return await _write(ops, data, where, None)
        with svc.hold_worktree(ticket, f"a git {data.action}"):
            return await _write(ops, data, where, tid)


async def _write(ops: GitOps, data: GitActionIn, where: Path, tid: str | None) -> dict[str, Any]:
    if data.action == "commit":
        return await ops.commit(where, data.message or "", data.paths, tid)
    return await ops.pull(where, tid)


@bp.get("/branches")
@document_querystring(TargetQuery)
@document_response(BranchesOut)
async def branches() -> dict[str, Any]:
    """Local branches (with upstream and the current one) and remote-tracking branches."""
    svc = service()
    where, ticket = await _resolve(svc, *_target_query())
    with _symphony_errors():
        return await GitOps(svc.git).branches(where, ticket.ticket_id if ticket else None)


@bp.post("/diff")
@validate_request(DiffIn)
@document_response(DiffOut)
async def diff(data: DiffIn) -> dict[str, Any]:
    """The working tree's (or the index's) diff, optionally against ``base`` or its merge base."""
    svc = service()
    where, ticket = await _resolve(svc, data.repo_id, data.ticket_id)
    with _symphony_errors():
        return await GitOps(svc.git).diff(
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
    with _symphony_errors():
        ticket, created = await service().open_worktree(data.ticket_id, data.repo_id, data.base_ref)
    return {"ticket": ticket.to_json(), "created": created}, 201 if created else 200


@bp.delete("/worktree")
@validate_request(WorktreeDeleteIn)
@document_response(WorktreeRemovedOut)
async def delete_worktree(data: WorktreeDeleteIn) -> dict[str, Any]:
    """Remove the ticket's worktree (its branch stays); 409 while a run is active in it."""
    with _symphony_errors():
        removed = await service().close_worktree(data.ticket_id)
    return {"ticketId": data.ticket_id, "removed": removed}


@bp.get("/branch-worktree")
@document_response(BranchWorktreeOut)
async def branch_worktree() -> dict[str, Any]:
    """Which work tree of ``repoId`` has ``branch`` checked out (null: none)."""
    repo_id, branch = _query_str("repoId"), _query_str("branch")
    if repo_id is None or branch is None:
        raise ApiError(400, "invalid_query", "repoId and branch are required")
    svc = service()
    with _symphony_errors():
        path = await GitOps(svc.git).branch_worktree(await svc.repo_path(repo_id), branch)
    return {"branch": branch, "path": path}


@bp.get("/repo-path")
@document_querystring(TargetQuery)
@document_response(RepoPathOut)
async def repo_path() -> dict[str, Any]:
    """The folder of a managed repository, or of a ticket's worktree."""
    repo_id, ticket_id = _target_query()
    where, _ticket = await _resolve(service(), repo_id, ticket_id)
    return {"path": str(where), "repoId": repo_id, "ticketId": ticket_id}


@bp.get("/user")
@document_querystring(TargetQuery)
@document_response(GitUserOut)
async def git_user() -> dict[str, Any]:
    """The identity commits get: the target's config, or the user's global one without one."""
    svc = service()
    repo_id, ticket_id = _target_query()
    where = None
    if repo_id is not None or ticket_id is not None:
        where, _ticket = await _resolve(svc, repo_id, ticket_id)
    with _symphony_errors():
        return await GitOps(svc.git).user(where)
