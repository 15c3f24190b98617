"""``symphony/launch`` as ClosedLoop's web app calls it: a ticket named by identifier and repo path.

ClosedLoop creates the ticket's worktree in its layout (``<parent>/<repo>-<ticket>`` on branch
``feature/<ticket>``), writes the ticket as ``.closedloop-ai/work/prd.md`` and
``launch-metadata.json``, and starts its plugin's ``run-loop.sh`` (or, without the plugin,
answers success with ``pid: null``) (closedloop-ai/closedloop-ai
``apps/desktop/src/server/operations/symphony-interactive.ts``, ``POST symphony/launch``). Here
the run is ours: one supervised agent run (kind ``symphony``) in that worktree, told to
implement the PRD, under the worktree lock; a run already active there is answered as
ClosedLoop does, ``alreadyRunning: true`` with its pid.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import trio

from ..errors import BadRequest, Forbidden
from ..services.worktrees import check_ref
from ..spec import ProcessRecord
from .addressing import exclude_work_files, resolve_repo, worktree_dir
from .model import Ticket
from .runner import Runner
from .workfiles import write_json

_BRANCH_UNSAFE = re.compile(r"[^a-zA-Z0-9\-_]")


def prd_text(ticket: dict[str, Any], repo: Path) -> str:
    """ClosedLoop's ``createPrdFile``: title, link, description, extra instructions, context repos."""

    def text(key: str, default: str = "") -> str:
        value = ticket.get(key)
        return value if isinstance(value, str) else default

    parts = [
        f"# {text('title', 'Untitled Ticket')}",
        "",
        f"**Ticket:** [{text('identifier', 'UNKNOWN')}]({text('url')})",
        "",
        "## Description",
        "",
        text("description"),
    ]
    if text("additionalContext"):
        parts.append(f"\n## Additional Instructions\n\n{text('additionalContext')}")
    repos = [p for p in ticket.get("contextRepoPaths") or [] if isinstance(p, str)]
    if repos:
        parts.append("\n## Context Repositories\n\n" + "\n".join(f"- `{p}`" for p in repos))
    return "\n".join(parts)


async def launch(runner: Runner, body: dict[str, Any]) -> dict[str, Any]:
    identifier, raw_repo = body.get("ticketIdentifier"), body.get("repoPath")
    if not isinstance(identifier, str) or not identifier.strip():
        raise BadRequest("ticketIdentifier is required and must be a string", code="invalid_request")
    if not isinstance(raw_repo, str) or not raw_repo.strip():
        raise BadRequest("repoPath is required and must be a string", code="invalid_request")
    base = body.get("baseBranch") if isinstance(body.get("baseBranch"), str) else None
    if base is not None:
        try:
            check_ref(base, "baseBranch")
        except ValueError as exc:
            raise BadRequest(str(exc), code="invalid_request") from None
    raw_ticket = body.get("ticket")
    ticket_doc: dict[str, Any] = raw_ticket if isinstance(raw_ticket, dict) else {}
    repo = await resolve_repo(runner.db, raw_repo)
    for other in ticket_doc.get("contextRepoPaths") or []:
        if not isinstance(other, str):
            raise Forbidden("directory not allowed", code="directory_not_allowed")
        await resolve_repo(runner.db, other)
    wt = worktree_dir(repo.path, identifier, runner.worktrees.layout)
    branch = f"feature/{_BRANCH_UNSAFE.sub('-', identifier)}"
    work = wt / ".closedloop-ai" / "work"
    answer = {
        "success": True,
        "ticketId": identifier,
        "branchName": branch,
        "worktreePath": str(wt),
        "logFile": str(work / "symphony-launch.log"),
        "prdFile": str(work / "prd.md"),
        "baseBranch": base,
        "parentTicketId": None,
    }
    running = [r for r in runner.active(worktree=str(wt)) if r.job_id is None]
    if running:
        if ticket_doc:
            await trio.to_thread.run_sync((work / "prd.md").write_text, prd_text(ticket_doc, repo.path))
        return {**answer, "pid": running[-1].pid, "alreadyRunning": True, "process": running[-1].to_json()}
    prov = runner.provider(body.get("provider") if isinstance(body.get("provider"), str) else None)
    exe = runner.executable(prov)
    with runner.reserve(identifier, str(wt), "a run"):
        if not await trio.to_thread.run_sync(wt.is_dir):
            start = base or "HEAD"
            await runner.git.run(["worktree", "add", "-B", branch, str(wt), start], repo.path)
        await exclude_work_files(runner.git, wt)
        await trio.to_thread.run_sync(lambda: work.mkdir(parents=True, exist_ok=True))
        prd = prd_text(ticket_doc, repo.path) if ticket_doc else f"# {identifier}\n"
        await trio.to_thread.run_sync((work / "prd.md").write_text, prd)
        meta = {
            "issueId": ticket_doc.get("issueId"),
            "ticketTitle": ticket_doc.get("title"),
            "baseBranch": base,
        }
        await trio.to_thread.run_sync(write_json, work / "launch-metadata.json", meta)
        ticket = Ticket(identifier, repo.repo_id, wt, branch, base, prov.name)
        await runner.db.save_ticket(ticket)
        prompt = (
            "Implement the ticket described below (also saved in .closedloop-ai/work/prd.md). "
            "Make the change in this worktree and keep the tests green.\n\n" + prd
        )
        argv = prov.run_argv(exe, prompt, runner.run_options(prov, None))
        spec = runner.agent_spec(prov, argv, ticket, runner.settings.defaults, labels={"mode": "run"})
        # ClosedLoop's body names no node: the configured default (``local`` unless set).
        record: ProcessRecord = await runner.sup.start(spec, node=runner.node_for(None))
        runner.post_done[record.id] = trio.Event()
    runner.spawn(runner.watch_run, record, prov, ticket)
    return {**answer, "pid": record.pid, "process": record.to_json()}


__all__ = ["launch", "prd_text"]
