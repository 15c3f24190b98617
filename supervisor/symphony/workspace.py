"""Where a request's work happens: a managed repository or a Symphony ticket's worktree.

ClosedLoop's clients name it by path (``PathWorkspaces``); our older routes by ``repoId`` or
``ticketId`` (``Workspaces``). The
rules for that (exactly one of them; a ticket's worktree must still exist) and the rule that
commits and pulls in a ticket's worktree take its worktree lock (409 while an agent works
there, and no run starts until they are done) live here, beside the lock itself.
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import trio

from ..errors import BadRequest, Forbidden, NotFound, Unavailable
from ..services.files import rank_files
from ..services.git import GitFailed, GitOps, GitWire
from ..services.paths import PathRefused, expand, layout_path, resolve_file, worktrees_of
from ..services.repos import Repos, not_allowed
from ..services.worktrees import Git, check_ref
from .model import Ticket

#: ClosedLoop's image types in ``git/diff`` (``git-diff.ts``).
IMAGE_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".svg": "image/svg+xml", ".webp": "image/webp", ".ico": "image/x-icon", ".bmp": "image/bmp",
}  # fmt: skip
PR_WORKTREE = re.compile(r"-pr-\d+$")
MAX_TEXT = 2 * 1024 * 1024
GH_TIMEOUT = 10.0


def check_branch(value: str, field: str) -> str:
    try:
        return check_ref(value, field)
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_request") from None


def read_text(path: Path) -> str:
    """A working-tree file's text for a diff view (at most ``MAX_TEXT`` bytes)."""
    try:
        with path.open("rb") as f:
            return f.read(MAX_TEXT).decode("utf-8", "replace")
    except OSError:
        return ""


class TicketSource(Protocol):
    """What ``Workspaces`` needs of Symphony: find tickets and repos, and the worktree lock.

    A narrow protocol rather than the whole service, so the rules here can be read (and
    tested) without the activities.
    """

    async def ticket(self, ticket_id: str) -> Ticket: ...

    async def repo_path(self, repo_id: str) -> Path: ...

    def hold_worktree(self, ticket: Ticket, what: str) -> AbstractContextManager[None]: ...

    async def open_worktree(
        self, ticket_id: str, repo_id: str, base_ref: str | None = None
    ) -> tuple[Ticket, bool]: ...


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


@dataclass(frozen=True, slots=True)
class Target:
    """A path from a ClosedLoop request, resolved: the folder git runs in, the registered repo
    it belongs to, and the Symphony ticket when it is that ticket's worktree."""

    where: Path
    repo: Path
    ticket: Ticket | None


class PathWorkspaces:
    """Targets named by path, as ClosedLoop's web app names them (``repoPath``, ``?repo=``).

    Every path passes the registry's check (a registered repo or one of its worktrees, symlinks
    resolved: 403 otherwise); a ticket's worktree is recognised by its place in the layout, and
    writes there take the ticket's worktree lock like a run does.
    """

    def __init__(self, symphony: TicketSource, git: GitOps, repos: Repos) -> None:
        self.symphony = symphony
        self.git = git
        self.wire = GitWire(git)
        self.repos = repos

    async def target(self, raw: object, field: str = "repoPath") -> Target:
        resolved = await self.repos.resolve(raw, field)
        if not await trio.to_thread.run_sync(resolved.path.is_dir):
            raise NotFound(
                "repository not found", code="REPO_NOT_FOUND", details={"category": "repo_not_found"}
            )
        ticket = await self.ticket_at(resolved.tree) if resolved.is_worktree else None
        return Target(resolved.path, resolved.repo, ticket)

    async def ticket_at(self, tree: Path) -> Ticket | None:
        """The Symphony ticket whose worktree ``tree`` is: named ``<repoName>-<ticketId>`` in
        ClosedLoop's layout, or ``<ticketId>`` in our older one; the stored path must match."""
        names = {tree.name}
        names |= {tree.name[len(repo.name) + 1 :] for _id, repo in await self.repos.ids()
                  if tree.name.startswith(f"{repo.name}-")}  # fmt: skip
        for name in names:
            try:
                ticket = await self.symphony.ticket(name)
            except NotFound:
                continue
            if await trio.to_thread.run_sync(ticket.worktree.resolve) == tree:
                return ticket
        return None

    def _locked(self, target: Target, what: str) -> AbstractContextManager[None]:
        if target.ticket is None:
            return nullcontext()
        return self.symphony.hold_worktree(target.ticket, what)

    async def git_action(
        self,
        action: str,
        raw_path: object,
        *,
        branch_name: str | None = None,
        message: str | None = None,
        base_branch: str = "main",
    ) -> dict[str, Any]:
        """ClosedLoop's ``POST /git`` actions; writes in a ticket's worktree take its lock."""
        target = await self.target(raw_path)
        where, wire = target.where, self.wire
        tid = target.ticket.ticket_id if target.ticket is not None else None
        if action == "status":
            return await wire.status(where)
        if action == "branch-diff":
            return await wire.branch_diff(where, base_branch)
        if action == "sync-status":
            return await wire.sync_status(where)
        if action == "branch":
            if not branch_name:
                raise BadRequest("branchName is required for branch action", code="invalid_request")
            with self._locked(target, "a branch switch"):
                return await wire.branch(where, branch_name, tid)
        if action == "commit":
            if not message:
                raise BadRequest("message is required for commit action", code="invalid_request")
            with self._locked(target, "a git commit"):
                return await wire.commit(where, message, tid)
        if action == "push":
            return await wire.push(where, tid)
        if action == "pull":
            with self._locked(target, "a git pull"):
                return await wire.pull(where, tid)
        raise BadRequest("Invalid action", code="invalid_request")

    async def create_worktree(
        self, raw_repo: object, ticket_id: str, base_ref: str | None
    ) -> tuple[Ticket, bool]:
        """The ticket's worktree in ClosedLoop's layout (created, or reused when there)."""
        resolved = await self.repos.resolve(raw_repo)
        row = await self.repos.by_path(str(resolved.repo))
        if row is None:
            raise NotFound(
                "repository not found", code="REPO_NOT_FOUND", details={"category": "repo_not_found"}
            )
        return await self.symphony.open_worktree(ticket_id, row["id"], base_ref)

    async def file_diff(self, raw_repo: object, raw_file: object, base_branch: str | None) -> dict[str, Any]:
        """ClosedLoop's ``POST git/diff``: one file's old and new text, against ``HEAD`` (the
        working tree) or ``origin/<baseBranch>`` (the branch). The file must stay inside."""
        target = await self.target(raw_repo)
        rel, real = await self._file(target.where, raw_file)
        image = Path(rel).suffix.lower() in IMAGE_TYPES
        extra: dict[str, Any] = (
            {"isImage": True, "mimeType": IMAGE_TYPES[Path(rel).suffix.lower()]} if image else {}
        )
        if base_branch:
            base = check_branch(base_branch, "baseBranch")
            old = await self.wire.blob(target.where, f"origin/{base}", rel)
            new = await self.wire.blob(target.where, "HEAD", rel)
            return {"filePath": raw_file, "oldContent": old or "", "newContent": new or "",
                    "isNew": old is None, "isDeleted": new is None, **extra}  # fmt: skip
        code = (await self.wire.file_status(target.where, rel)).strip()
        if not code:
            raise BadRequest("File has no changes", code="no_changes")
        is_new, is_deleted = code in ("??", "A"), code == "D"
        old = "" if is_new else (await self.wire.blob(target.where, "HEAD", rel) or "")
        new = "" if is_deleted else await trio.to_thread.run_sync(read_text, real)
        return {"filePath": raw_file, "oldContent": old, "newContent": new,
                "isNew": is_new, "isDeleted": is_deleted, **extra}  # fmt: skip

    async def _file(self, where: Path, raw: object) -> tuple[str, Path]:
        try:
            return await trio.to_thread.run_sync(resolve_file, where, raw)
        except PathRefused as exc:
            if exc.malformed:
                raise BadRequest(str(exc), code="invalid_request") from None
            raise not_allowed("filePath") from None

    async def remove_worktree(self, raw: object, force: bool) -> tuple[int, dict[str, Any]]:
        """ClosedLoop's ``DELETE git/worktree {worktreePath, force}``: a worktree of a registered
        repo (never the repo itself); 409 when dirty without ``force`` or while a run works
        there. Unlike ClosedLoop there is no ``rm -rf`` fallback: git removes it or says why."""
        try:
            resolved = await self.repos.resolve(raw, "worktreePath")
        except Forbidden:
            if await self._gone_layout_path(raw):
                return 200, {"success": True, "message": "Worktree does not exist"}
            raise
        if not resolved.is_worktree or resolved.path != resolved.tree:
            raise Forbidden("worktreePath: not a worktree of a registered repository", code="not_a_worktree")
        if not await trio.to_thread.run_sync(resolved.tree.exists):
            await self.git.run(["worktree", "prune"], resolved.repo, check=False)
            return 200, {"success": True, "message": "Worktree does not exist"}
        ticket = await self.ticket_at(resolved.tree)
        target = Target(resolved.tree, resolved.repo, ticket)
        with self._locked(target, "a worktree removal"):
            args = ["worktree", "remove", *(["--force"] if force else []), str(resolved.tree)]
            result = await self.git.run(args, resolved.repo, check=False)
        if result.ok:
            return 200, {
                "success": True,
                "message": "Worktree forcefully removed" if force else "Worktree removed successfully",
            }
        said = (result.stderr or result.stdout).strip()
        if "modified or untracked files" in said and not force:
            return 409, {"error": "Worktree has uncommitted changes", "code": "worktree_dirty",
                         "hasChanges": True, "message": "Use force=true to remove anyway"}  # fmt: skip
        raise GitFailed(f"Failed to remove worktree: {said[-800:]}")

    async def _gone_layout_path(self, raw: object) -> bool:
        """A missing folder where a registered repo's worktree would be (already removed)."""
        try:
            path = expand(raw, "worktreePath")
        except PathRefused:
            return False
        if await trio.to_thread.run_sync(os.path.lexists, path):
            return False
        parent = self.repos.layout.parent_dir()
        return any(
            path.parent == (parent or repo.parent) and path.name.startswith(f"{repo.name}-")
            for repo in self.repos.layout.repos.values()
        )

    async def cleanup_pr_worktrees(self) -> dict[str, list[str]]:
        """ClosedLoop's hourly ``POST git/worktree``: remove ``*-pr-N`` worktrees whose branch is
        gone from origin. Ours looks only at worktrees of registered repos, and keeps a dirty one."""
        removed: list[str] = []
        kept: list[str] = []
        errors: list[str] = []
        for repo in await self.repos.paths():
            trees = await trio.to_thread.run_sync(worktrees_of, repo)
            for tree in [t for t in trees if PR_WORKTREE.search(t.name)][:10]:
                if not await trio.to_thread.run_sync(tree.is_dir):
                    continue
                branch = await self.git.run(["rev-parse", "--abbrev-ref", "HEAD"], tree, check=False)
                name = branch.stdout.strip()
                remote = await self.git.run(
                    ["ls-remote", "--heads", "origin", f"refs/heads/{name}"], tree, check=False
                )
                if not branch.ok or not name or not remote.ok or remote.stdout.strip():
                    kept.append(str(tree))
                    continue
                gone = await self.git.run(["worktree", "remove", str(tree)], repo, check=False)
                (removed if gone.ok else kept).append(str(tree))
        return {"removed": removed, "kept": kept, "errors": errors}

    async def github_login(self) -> str:
        """The GitHub user ``gh`` is signed in as (``gh api user --jq .login``, a supervised
        child of kind ``gh`` with a 10 s limit), as ClosedLoop's ``git/user`` answers it."""
        runner = self.git.git
        gh = runner.locate("gh")
        if gh is None:
            raise Unavailable(
                "gh is not installed; install it (apt-get install gh) or set its path with "
                'PATCH /api/gateway/settings/binary-paths {"gh": "/abs/path/to/gh"}',
                "gh",
            )
        ghr = Git(runner.sup, exe=gh, timeout=GH_TIMEOUT, kind="gh")
        result = await ghr.run(["api", "user", "--jq", ".login"], Path.home(), check=False)
        login = result.stdout.strip()
        if not result.ok or not login:
            raise Unavailable(
                "Failed to get GitHub user. Ensure gh is installed and authenticated.", "gh", code="gh_failed"
            )
        return login

    # ---- the filesystem family ----------------------------------------------------------

    async def ticket_tree(self, raw_repo: object, ticket_id: str, field: str = "repo") -> Path | None:
        """Where ``ticket_id``'s worktree of the repo ``raw_repo`` is: Symphony's record of it,
        else ClosedLoop's layout; None when there is no such worktree (yet)."""
        resolved = await self.repos.resolve(raw_repo, field)
        repo = resolved.repo
        candidates: list[Path] = []
        try:
            ticket = await self.symphony.ticket(ticket_id)
            candidates.append(ticket.worktree)
        except (NotFound, BadRequest):
            pass
        candidates.append(layout_path(repo, ticket_id, self.repos.layout.parent_dir()))
        for tree in candidates:
            if not await trio.to_thread.run_sync(tree.is_dir):
                continue
            try:
                found = await self.repos.resolve(str(tree), field)
            except Forbidden:
                continue
            if found.repo == repo and found.is_worktree and found.path == found.tree:
                return found.tree
        return None

    async def search_files(
        self, raw_repo: object, ticket_id: str | None, query: str, base: bool
    ) -> dict[str, Any]:
        """ClosedLoop's ``files/search``: in the repo (``base``) or the ticket's worktree; the
        files git knows (tracked and untracked, never ignored)."""
        if base:
            target = await self.target(raw_repo, "repo")
            where: Path | None = target.repo if not target.ticket else target.where
        else:
            where = await self.ticket_tree(raw_repo, ticket_id or "")
        if where is None or not await trio.to_thread.run_sync(where.is_dir):
            return {
                "files": [],
                "truncated": False,
                "error": "Repository not found" if base else "Worktree not found",
            }
        paths = await self.git.ls_files(where)
        files, truncated = rank_files(query, paths)
        return {"files": files, "truncated": truncated}

    async def work_directory(self, ticket_id: str) -> dict[str, Any]:
        """ClosedLoop's ``work-directory/:ticketId``: the ticket's worktree (Symphony's record,
        else the first registered repo with one in the layout), whether ``CLAUDE.md`` has
        uncommitted changes, and whether its branch left origin (merged)."""
        found: tuple[Path, str] | None = None
        try:
            ticket = await self.symphony.ticket(ticket_id)
            if await trio.to_thread.run_sync(ticket.worktree.is_dir):
                found = (ticket.worktree, "session")
        except (NotFound, BadRequest):
            pass
        if found is None:
            for _id, repo in await self.repos.ids():
                tree = await self.ticket_tree(str(repo), ticket_id)
                if tree is not None:
                    found = (tree, "worktree")
                    break
        if found is None:
            return {"exists": False, "path": None, "pendingClaudeMd": None, "branchStatus": None}
        tree, source = found
        return {
            "exists": True,
            "path": str(tree),
            "source": source,
            "pendingClaudeMd": await self._pending_claude_md(tree),
            "branchStatus": await self._branch_status(tree),
            "ticketId": ticket_id,
        }

    async def _pending_claude_md(self, tree: Path) -> str | None:
        claude_md = tree / "CLAUDE.md"
        if not await trio.to_thread.run_sync(claude_md.exists):
            return None
        status = await self.git.run(["status", "--porcelain", "--", "CLAUDE.md"], tree, check=False)
        return str(claude_md) if status.ok and status.stdout.strip() else None

    async def _branch_status(self, tree: Path) -> dict[str, bool] | None:
        branch = await self.git.run(["rev-parse", "--abbrev-ref", "HEAD"], tree, check=False)
        name = branch.stdout.strip()
        if not branch.ok or not name:
            return None
        remote = await self.git.run(
            ["ls-remote", "--heads", "origin", f"refs/heads/{name}"], tree, check=False
        )
        if not remote.ok:
            return None
        if remote.stdout.strip():
            return {"merged": False, "remoteMissing": False}
        merged = await self.git.run(
            ["branch", "--merged", "origin/main", "--format=%(refname:short)"], tree, check=False
        )
        return {"merged": merged.ok and name in merged.stdout.split(), "remoteMissing": True}
