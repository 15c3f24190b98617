"""ClosedLoop's per-ticket plan-loop steps: ``plan-loop/:ticketId/prepare``, ``confirm``, ``cancel``.

ClosedLoop's web app starts a PLAN loop in three phases (closedloop-ai/closedloop-ai
``apps/app/hooks/engineer/use-start-plan-loop.ts``; the handlers are closedloop-ai/closedloop-electron
``apps/desktop/src/server/operations/symphony-plan-loop.ts``):

1. ``prepare`` ``{repoPath, baseBranch?}``: check the repo, answer where the ticket's worktree
   goes and the repo's ``{fullName, branch}`` for the API call. Filesystem and git only.
2. The browser asks ClosedLoop's API to create the loop; the cloud then sends the loop to this
   gateway as ``POST symphony/loop`` (``cloud_loops``).
3. ``confirm`` ``{repoPath, loopId, artifactId, artifactSlug, featureId, ticketTitle?,
   outcome}``: write ``launch-metadata.json`` and remember the loop (ClosedLoop's JobStore
   record, ``QUEUED``, or ``RUNNING`` for ``outcome: "already-running"``); answer the
   loop-style worktree ``<parent>/<repo>-loop-<slug>``.

``cancel`` ``{repoPath, loopId}`` deletes the loop in the cloud (``DELETE <api>/loops/<id>``
with the desktop's API key; 404 there counts as done) and then kills the local loop: the
supervised loop child of that ``loopId``, else the ticket's active top-level run, loop or plan
loop (ClosedLoop reads the pid file of the ticket's worktree). The answer is ClosedLoop's
``{cancelled: true}`` plus our kill receipt, with ``warning: "process-unknown"`` when nothing
local was running and ``"process-still-running"`` when the kill left survivors.

Differences, on purpose: the repo must be a registered one (our sandbox, as everywhere); the
metadata is written into the worktree only if it already exists (creating the folder early
would make ``git worktree add`` refuse it later) and always to ``<state>/loops/<loopId>/``;
the remembered loops live in memory (a restart forgets them, as it forgets the loops). The PLAN
loop itself needs ClosedLoop's plugin scripts: ``symphony/loop`` answers ``SCRIPT_NOT_FOUND``.

Cancellation: ``cancel`` bounds the cloud call (``CANCEL_TIMEOUT``) and answers 502 when it
times out; the kill is the engine's (SIGTERM, the grace, SIGKILL of the whole tree).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ..errors import BadRequest, GatewayError
from ..services.closedloop import ClosedLoopSettings
from ..services.closedloop_api import delete_loop
from ..services.worktrees import check_ref
from ..spec import ProcessRecord, State, StopReason
from .addressing import RepoRef, resolve_repo, worktree_dir, worktree_parent
from .cloud_loops import CloudLoops
from .loop_request import UUID
from .model import TOP_KINDS
from .runner import Runner
from .workfiles import read_json, work_dir, write_json

CANCEL_TIMEOUT = 10.0
_SLUG_UNSAFE = re.compile(r"[^a-z0-9-]")
_FULL_NAME = re.compile(r"[:/]([^/:]+/[^/]+?)(?:\.git)?$")
_META_KEYS = ("issueId", "ticketTitle", "artifactId", "loopId", "baseBranch", "parentTicketId")
_ACTIVE = (State.STARTING, State.RUNNING, State.STOPPING)


class ApiKeyMissing(GatewayError):
    """No ClosedLoop API key is configured, so the cloud loop cannot be cancelled."""

    code = "api_key_missing"


@dataclass
class ConfirmedLoop:
    """What ClosedLoop's JobStore keeps about a loop the browser confirmed."""

    loop_id: str
    ticket_id: str
    repo_path: str
    worktree_dir: str
    status: str  # QUEUED | RUNNING | CANCEL_PENDING | CANCELLED
    artifact_id: str | None = None
    artifact_slug: str | None = None
    issue_id: str | None = None
    warning: str | None = None
    updated_at: float = 0.0


def _text(body: dict[str, Any], key: str) -> str | None:
    """ClosedLoop's ``asString``: a non-blank string, else None."""
    value = body.get(key)
    return value if isinstance(value, str) and value.strip() else None


def loop_worktree_dir(repo: Path, slug: str, parent: Path) -> Path:
    """ClosedLoop's ``resolveLoopWorktreeDir``: ``<parent>/<repo name>-loop-<slug>``."""
    return parent / f"{repo.name}-loop-{_SLUG_UNSAFE.sub('-', slug.lower())[:50]}"


class PlanLoopWire:
    """``plan-loop/:ticketId/{prepare,confirm,cancel}`` (and ``select-artifact/...``)."""

    def __init__(self, runner: Runner, cloud_loops: CloudLoops) -> None:
        self.runner = runner
        self.cloud_loops = cloud_loops
        self.confirmed: dict[str, ConfirmedLoop] = {}

    @staticmethod
    def _loop_id(body: dict[str, Any]) -> str | None:
        """The body's ``loopId``, which must be a UUID (as ``symphony/loop`` demands): it names a
        folder under the state dir, so anything else (``../``) is refused before it is used."""
        loop_id = _text(body, "loopId")
        if loop_id is not None and not UUID.match(loop_id):
            raise BadRequest("loopId must be a valid UUID", code="invalid_request")
        return loop_id

    async def _repo(self, body: dict[str, Any]) -> RepoRef:
        raw = _text(body, "repoPath")
        if raw is None:
            raise BadRequest("repoPath is required", code="invalid_request")
        return await resolve_repo(self.runner.db, raw)

    # ---- prepare ----------------------------------------------------------------------------

    async def prepare(self, ticket_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``{repoPath, worktreeDir, repo: {fullName, branch}}``; git is asked, nothing written."""
        repo = await self._repo(body)
        base = _text(body, "baseBranch")
        if base is not None:
            try:
                check_ref(base, "baseBranch")
            except ValueError as exc:
                raise BadRequest(str(exc), code="invalid_request") from None
        branch = base or await self._current_branch(repo.path) or await self._default_branch(repo.path)
        return {
            "repoPath": str(repo.path),
            "worktreeDir": str(worktree_dir(repo.path, ticket_id, self.runner.worktrees.layout)),
            "repo": {"fullName": await self._full_name(repo.path) or "", "branch": branch},
        }

    async def _git_out(self, args: list[str], where: Path) -> str | None:
        result = await self.runner.git.run(args, where, check=False)
        out = result.stdout.strip()
        return out if result.ok and out else None

    async def _full_name(self, repo: Path) -> str | None:
        url = await self._git_out(["remote", "get-url", "origin"], repo)
        match = _FULL_NAME.search(url) if url else None
        return match.group(1) if match else None

    async def _current_branch(self, repo: Path) -> str | None:
        return await self._git_out(["rev-parse", "--abbrev-ref", "HEAD"], repo)

    async def _default_branch(self, repo: Path) -> str:
        ref = await self._git_out(["symbolic-ref", "refs/remotes/origin/HEAD"], repo)
        return ref.rsplit("/", 1)[-1] if ref else "main"

    # ---- confirm ----------------------------------------------------------------------------

    async def confirm(self, ticket_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``{ok: true, worktreeDir}``: the metadata written and the loop remembered."""
        repo = await self._repo(body)
        loop_id, artifact_id = self._loop_id(body), _text(body, "artifactId")
        slug = _text(body, "artifactSlug")
        layout = self.runner.worktrees.layout
        wt = (
            loop_worktree_dir(repo.path, slug, worktree_parent(repo.path, layout))
            if slug
            else worktree_dir(repo.path, ticket_id, layout)
        )
        if loop_id and artifact_id:
            meta = {
                "issueId": _text(body, "issueId"),
                "ticketTitle": _text(body, "ticketTitle"),
                "artifactId": artifact_id,
                "loopId": loop_id,
            }
            await trio.to_thread.run_sync(self._write_metadata, wt, loop_id, meta)
        if loop_id:
            known = self.confirmed.get(loop_id)
            if known is None:
                running = _text(body, "outcome") == "already-running"
                self.confirmed[loop_id] = ConfirmedLoop(
                    loop_id, ticket_id, str(repo.path), str(wt), "RUNNING" if running else "QUEUED",
                    artifact_id, slug, _text(body, "issueId"), updated_at=time.time(),
                )  # fmt: skip
        return {"ok": True, "worktreeDir": str(wt)}

    def _write_metadata(self, wt: Path, loop_id: str, meta: dict[str, str | None]) -> None:
        """ClosedLoop's ``writeLaunchMetadata`` (new values win, absent ones keep the old)."""
        places = [self.runner.sup.state_dir / "loops" / loop_id / "launch-metadata.json"]
        if wt.is_dir():
            places.append(work_dir(wt) / "launch-metadata.json")
        for path in places:
            stored = read_json(path, None)
            old: dict[str, Any] = stored if isinstance(stored, dict) else {}
            merged = {k: meta.get(k) or old.get(k) for k in _META_KEYS}
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {k: v for k, v in merged.items() if v is not None})

    # ---- cancel -----------------------------------------------------------------------------

    async def cancel(self, ticket_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status, answer): the cloud loop deleted, then the local process killed."""
        if _text(body, "repoPath") is None:
            raise BadRequest("repoPath is required", code="invalid_request")
        loop_id = self._loop_id(body)
        if loop_id is None:
            raise BadRequest("loopId is required", code="invalid_request")
        repo = await self._repo(body)
        settings = ClosedLoopSettings.load(self.runner.sup.state_dir)
        if not settings.api_key:
            raise ApiKeyMissing("API key not configured", details={"setting": "GATEWAY_CLOSEDLOOP_API_KEY"})
        if not settings.api_origin:
            raise ApiKeyMissing(
                "API origin not configured",
                code="api_origin_missing",
                details={"setting": "GATEWAY_CLOSEDLOOP_API_ORIGIN"},
            )
        status, text = await delete_loop(settings.api_origin, settings.api_key, loop_id, CANCEL_TIMEOUT)
        if status is None:
            return 502, {"error": f"Failed to reach API: {text}", "code": "api_unreachable"}
        if not 200 <= status < 300 and status != 404:
            return status, {"error": f"DB cancel failed: {text}", "code": "cloud_cancel_failed"}
        record = self._local_process(loop_id, ticket_id, repo)
        known = self.confirmed.get(loop_id)
        if record is None:
            self._mark(known, "CANCEL_PENDING", "process-unknown")
            return 200, {"cancelled": True, "warning": "process-unknown"}
        receipt = await self.runner.sup.kill(record.id, StopReason.KILL)
        answer: dict[str, Any] = {"cancelled": True, **receipt.to_json()}
        if receipt.survivors:
            self._mark(known, "CANCEL_PENDING", "process-still-running")
            return 200, {**answer, "warning": "process-still-running"}
        self._mark(known, "CANCELLED", None)
        return 200, answer

    def _local_process(self, loop_id: str, ticket_id: str, repo: RepoRef) -> ProcessRecord | None:
        """The loop's own child, else what runs for the ticket (in its worktree or by its id)."""
        loop = self.cloud_loops.loops.get(loop_id)
        if loop is not None and loop.record is not None and loop.record.state in _ACTIVE:
            return loop.record
        known = self.confirmed.get(loop_id)
        places = {str(worktree_dir(repo.path, ticket_id, self.runner.worktrees.layout))}
        if known is not None:
            places.add(known.worktree_dir)
        active = [
            r
            for r in self.runner.records(None, TOP_KINDS)
            if r.job_id is None
            and r.state in _ACTIVE
            and (r.ticket_id == ticket_id or r.labels.get("worktree") in places or r.cwd in places)
        ]
        return active[-1] if active else None

    @staticmethod
    def _mark(known: ConfirmedLoop | None, status: str, warning: str | None) -> None:
        if known is not None:
            known.status, known.warning, known.updated_at = status, warning, time.time()


__all__ = ["ApiKeyMissing", "ConfirmedLoop", "PlanLoopWire", "loop_worktree_dir"]
