"""Where a request's work happens: a managed repository or a Symphony ticket's worktree.

The git, file-search and deploy routes name their target by ``repoId`` or ``ticketId``. The
rules for that (exactly one of them; a ticket's worktree must still exist) and the rule that
commits and pulls in a ticket's worktree take its worktree lock (409 while an agent works
there, and no run starts until they are done) live here, beside the lock itself.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import trio

from ..errors import BadRequest, NotFound
from ..services.git import GitOps
from .model import Ticket


class TicketSource(Protocol):
    """What ``Workspaces`` needs of Symphony: find tickets and repos, and the worktree lock.

    A narrow protocol rather than the whole service, so the rules here can be read (and
    tested) without the activities.
    """

    async def ticket(self, ticket_id: str) -> Ticket: ...

    async def repo_path(self, repo_id: str) -> Path: ...

    def hold_worktree(self, ticket: Ticket, what: str) -> AbstractContextManager[None]: ...


class Workspaces:
    """Resolve targets and run the git operations that need the worktree lock."""

    def __init__(self, symphony: TicketSource, git: GitOps) -> None:
        self.symphony = symphony
        self.git = git

    async def resolve(self, repo_id: str | None, ticket_id: str | None) -> tuple[Path, Ticket | None]:
        """The work tree to act on, and the ticket when it is one's worktree."""
        if (repo_id is None) == (ticket_id is None):
            raise BadRequest("give exactly one of repoId and ticketId", code="invalid_request")
        if repo_id is not None:
            return await self.symphony.repo_path(repo_id), None
        assert ticket_id is not None
        ticket = await self.symphony.ticket(ticket_id)
        if not await trio.to_thread.run_sync(ticket.worktree.is_dir):
            raise NotFound(f"ticketId: the worktree {ticket.worktree} is gone", code="worktree_not_found")
        return ticket.worktree, ticket

    async def deploy_root(self, ticket_id: str, repo_id: str | None) -> Path:
        """The ticket's worktree if Symphony knows the ticket, else the managed repo named."""
        try:
            root = (await self.symphony.ticket(ticket_id)).worktree
        except NotFound:
            if repo_id is None:
                hint = "send repoId to deploy a repo"
                raise NotFound(f"ticketId: no worktree for {ticket_id!r}; {hint}") from None
            root = await self.symphony.repo_path(repo_id)
        if not await trio.to_thread.run_sync(root.is_dir):
            raise NotFound(f"ticketId: the folder {root} is gone", code="worktree_not_found")
        return root

    async def git_action(
        self,
        action: str,
        repo_id: str | None,
        ticket_id: str | None,
        *,
        message: str | None = None,
        paths: list[str] | None = None,
        remote: str = "origin",
        fetch: bool = False,
        base: str | None = None,
    ) -> dict[str, Any]:
        """Dispatch ``status | branch | commit | push | pull | branch-diff | sync-status``.

        ``commit`` and ``pull`` change the files an agent may be working on, so in a ticket's
        worktree they run under its worktree lock.
        """
        where, ticket = await self.resolve(repo_id, ticket_id)
        ops = self.git
        tid = ticket.ticket_id if ticket is not None else None
        if action == "status":
            return await ops.status(where, tid)
        if action == "branch":
            return await ops.branch(where, tid)
        if action == "sync-status":
            return await ops.sync_status(where, fetch, tid)
        if action == "push":
            return await ops.push(where, remote, tid)
        if action == "branch-diff":
            base = base or (ticket.base_ref if ticket is not None else None)
            if base is None:
                raise BadRequest("base: required (the ticket has no base ref)", code="invalid_request")
            return await ops.diff(where, base=base, merge_base=True, ticket_id=tid)
        if action == "commit" and message is None:
            raise BadRequest("message: required for commit", code="invalid_request")
        if ticket is None:
            return await self._write(action, where, None, message, paths)
        with self.symphony.hold_worktree(ticket, f"a git {action}"):
            return await self._write(action, where, tid, message, paths)

    async def _write(
        self, action: str, where: Path, tid: str | None, message: str | None, paths: list[str] | None
    ) -> dict[str, Any]:
        if action == "commit":
            return await self.git.commit(where, message or "", paths, tid)
        return await self.git.pull(where, tid)
