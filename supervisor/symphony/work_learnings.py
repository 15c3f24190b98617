"""Learnings as ClosedLoop's web app drives them: files in the worktree and the org patterns file.

ClosedLoop keeps a ticket's learnings in ``<worktree>/.closedloop-ai/work/.learnings/``
(``pending/*.json``, ``chat-extraction-status.json``, ``processing-status.json``,
``outcomes.log``) and the accepted ones, organisation-wide, in
``~/.closedloop-ai/learnings/org-patterns.toon`` (closedloop-ai/closedloop-ai
``apps/desktop/src/server/operations/learnings.ts``). Its extraction and processing are plugin
scripts (``self-learning/process-chat-learnings.sh``) or stubs; here both are real and ours:

- ``extract`` runs a read-only agent turn (supervised, kind ``symphony``, role ``learnings``)
  over the ticket's chat history and files each lesson as a pending file (and a pending row of
  ``svc.learnings``);
- ``process`` appends the pending lessons to the org patterns file, in chunks its parser reads
  back, and moves them to ``processed/``.

Both answer at once (``{"status": "processing"}``) and finish in the service's background
watchers; the status files say when. Cancellation: ``close`` of the service cancels them; a
half-done processing leaves the pending files it did not move yet.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import trio

from ..agents.replies import MAX_LEARNINGS, LearningsReply
from ..errors import BadRequest, NotFound
from ..spec import State
from .addressing import RepoRef, resolve_repo, worktree_dir
from .learnings import learnings_of
from .runner import Runner
from .toon import parse_toon, toon_chunk
from .workchat import now_iso
from .workfiles import JsonFiles, read_json, work_dir

EXTRACT_PROMPT = (
    "Below is a conversation between a developer and a coding agent about ticket {ticket}. "
    "Extract the durable lessons a future agent working on this repository should know: "
    "conventions, commands that work, pitfalls and their fixes. Answer at most {n} learnings "
    "(title, body) in the structured form you are given, none if there is nothing worth "
    "keeping.\n\nConversation:\n{conversation}"
)


def org_patterns_file(home: Path | None = None) -> Path:
    """``~/.closedloop-ai/learnings/org-patterns.toon`` (ClosedLoop's legacy path if only it exists)."""
    home = home or Path.home()
    new = home / ".closedloop-ai" / "learnings" / "org-patterns.toon"
    legacy = home / ".claude" / ".learnings" / "org-patterns.toon"
    return new if new.exists() or not legacy.exists() else legacy


def read_patterns() -> list[dict[str, str]]:
    try:
        return parse_toon(org_patterns_file().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []


class WorkLearnings:
    """ClosedLoop's learnings routes over a ticket named by (repo path, ticket id)."""

    def __init__(self, runner: Runner, files: JsonFiles) -> None:
        self.runner = runner
        self.files = files

    async def _worktree(self, raw_repo: str | None, ticket_id: str) -> tuple[RepoRef, Path]:
        repo = await resolve_repo(self.runner.db, raw_repo)
        wt = worktree_dir(repo.path, ticket_id, self.runner.worktrees.layout)
        if not await trio.to_thread.run_sync(wt.is_dir):
            raise NotFound("Work directory not found", code="worktree_not_found")
        return repo, wt

    @staticmethod
    def _dir(wt: Path) -> Path:
        return work_dir(wt) / ".learnings"

    async def patterns(self) -> list[dict[str, str]]:
        return await trio.to_thread.run_sync(read_patterns)

    # ---- counts and status ----------------------------------------------------------------

    async def pending_counts(self) -> dict[str, int]:
        """``{totalCount, worktreeCount}`` over every worktree of every registered repo."""
        total = worktrees = 0
        for _rid, repo in await self.runner.db.repos():
            if not await trio.to_thread.run_sync(repo.is_dir):
                continue
            listed = await self.runner.git.run(["worktree", "list", "--porcelain"], repo, check=False)
            paths = [line[9:] for line in listed.stdout.splitlines() if line.startswith("worktree ")]
            for path in paths:
                count = await trio.to_thread.run_sync(_count_pending, self._dir(Path(path)) / "pending")
                if count:
                    total += count
                    worktrees += 1
        return {"totalCount": total, "worktreeCount": worktrees}

    async def extraction_status(self, raw_repo: str | None, ticket_id: str) -> dict[str, Any]:
        repo = await resolve_repo(self.runner.db, raw_repo)
        path = (
            self._dir(worktree_dir(repo.path, ticket_id, self.runner.worktrees.layout))
            / "chat-extraction-status.json"
        )
        data = await trio.to_thread.run_sync(read_json, path, None)
        return data if isinstance(data, dict) else {"status": "none", "count": 0}

    async def processing_status(self, raw_repo: str | None, ticket_id: str) -> dict[str, Any]:
        repo = await resolve_repo(self.runner.db, raw_repo)
        path = (
            self._dir(worktree_dir(repo.path, ticket_id, self.runner.worktrees.layout))
            / "processing-status.json"
        )
        data = await trio.to_thread.run_sync(read_json, path, None)
        return data if isinstance(data, dict) else {"status": "none"}

    # ---- record a use ---------------------------------------------------------------------

    async def record_use(self, raw_repo: str | None, ticket_id: str, learnings: list[Any]) -> dict[str, Any]:
        summaries = [
            x["summary"] for x in learnings if isinstance(x, dict) and isinstance(x.get("summary"), str)
        ]
        if not summaries:
            raise BadRequest("learnings array is required and must not be empty", code="invalid_request")
        _repo, wt = await self._worktree(raw_repo, ticket_id)
        stamp = now_iso()
        run_id = "chat-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in ticket_id)
        lines = "".join(
            f"{stamp}|{run_id}|0|interactive-chat|{s.replace('|', '/').replace(chr(10), ' ')}|applied|\n"
            for s in summaries
        )
        await trio.to_thread.run_sync(_append, self._dir(wt) / "outcomes.log", lines)
        return {"status": "recorded", "count": len(summaries)}

    # ---- extract (an agent turn over the chat) ---------------------------------------------

    async def extract(
        self, raw_repo: str | None, ticket_id: str, active_tab: str | None, chat_file: str | None
    ) -> dict[str, Any]:
        name = chat_file or "chat-history.json"
        if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".json"):
            raise BadRequest("chatFile: a file name in the work dir", code="invalid_request")
        repo, wt = await self._worktree(raw_repo, ticket_id)
        history = await trio.to_thread.run_sync(read_json, work_dir(wt) / name, None)
        if not isinstance(history, dict):
            raise NotFound("No chat history found", code="chat_history_not_found", details={"path": name})
        status_path = self._dir(wt) / "chat-extraction-status.json"
        base = {"ticketId": ticket_id, "activeTab": active_tab}
        await self.files.write(status_path, {"status": "processing", **base, "timestamp": now_iso()})
        conversation = "\n".join(
            f"{m.get('role', '?').upper()}: {m.get('content', '')}"
            for m in history.get("messages", [])
            if isinstance(m, dict)
        )[-30_000:]
        self.runner.spawn(self._extract, repo, wt, ticket_id, conversation, status_path, base)
        return {"status": "processing"}

    async def _extract(
        self,
        repo: RepoRef,
        wt: Path,
        ticket_id: str,
        conversation: str,
        status_path: Path,
        base: dict[str, Any],
    ) -> None:
        try:
            prov = self.runner.provider(None)
            exe = self.runner.executable(prov)
            prompt = EXTRACT_PROMPT.format(ticket=ticket_id, n=MAX_LEARNINGS, conversation=conversation)
            argv = prov.judge_argv(exe, prompt, self.runner.reply_options(LearningsReply))
            spec = self.runner.agent_spec(
                prov, argv, None, self.runner.settings.defaults, role="learnings", cwd=wt,
                labels={"mode": "learnings", "worktree": str(wt), "repoPath": str(repo.path)},
            )  # fmt: skip
            record = await self.runner.sup.start(spec)
            final = await self.runner.sup.wait(record.id)
            summary = self.runner.conclude(final, prov)
            if final.state is not State.EXITED and not summary.reply_rejected:
                raise RuntimeError(final.error or "the agent failed")
            who = f"the learnings turn {final.id} ({prov.name})"
            items = learnings_of(self.runner.structured_reply(prov, summary, LearningsReply, who))
            pending = self._dir(wt) / "pending"
            now = time.time()
            for item in items:
                lid = f"l_{int(now * 1000):x}{secrets.token_hex(3)}"
                doc = {"id": lid, **item, "ticketId": ticket_id, "source": "chat", "createdAt": now_iso()}
                await self.files.write(pending / f"{lid}.json", doc)
            done = {"status": "completed", "count": len(items), **base, "timestamp": now_iso()}
            await self.files.write(status_path, {**done, "processId": record.id})
        except Exception as exc:  # the status file is the only reader: it must say what happened
            failed = {"status": "failed", "count": 0, **base, "error": str(exc)[:500], "timestamp": now_iso()}
            await self.files.write(status_path, failed)

    # ---- process (pending -> org patterns) ------------------------------------------------

    async def process(
        self, raw_repo: str | None, ticket_id: str, wait_for_extraction: bool
    ) -> dict[str, Any]:
        _repo, wt = await self._worktree(raw_repo, ticket_id)
        status_path = self._dir(wt) / "processing-status.json"
        if wait_for_extraction:
            await self.files.write(status_path, {"status": "waiting", "timestamp": now_iso()})
            return {"status": "waiting"}
        pending = self._dir(wt) / "pending"
        if not await trio.to_thread.run_sync(pending.is_dir):
            return {"status": "skipped", "reason": "No pending learnings directory"}
        if not await trio.to_thread.run_sync(_count_pending, pending):
            return {"status": "skipped", "reason": "No pending learning files"}
        await self.files.write(status_path, {"status": "processing", "timestamp": now_iso()})
        processed = await trio.to_thread.run_sync(merge_pending, pending, org_patterns_file())
        await self.files.write(
            status_path, {"status": "completed", "processed": processed, "timestamp": now_iso()}
        )
        return {"status": "processing", "pid": None, "processed": processed}


def _count_pending(pending: Path) -> int:
    try:
        return sum(1 for name in os.listdir(pending) if name.endswith(".json"))
    except OSError:
        return 0


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def merge_pending(pending: Path, patterns: Path) -> int:
    """Append each pending lesson to the org patterns file; move it to ``processed/``."""
    done = pending.parent / "processed"
    done.mkdir(parents=True, exist_ok=True)
    patterns.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    for name in sorted(os.listdir(pending)):
        if not name.endswith(".json"):
            continue
        try:
            doc = json.loads((pending / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict):
            continue
        title = str(doc.get("title") or doc.get("summary") or "Learning")
        chunk = toon_chunk(title, str(doc.get("body") or ""))
        existing = patterns.read_text(encoding="utf-8") if patterns.exists() else ""
        sep = (
            "" if not existing or existing.endswith("\n\n") else ("\n" if existing.endswith("\n") else "\n\n")
        )
        _append(patterns, sep + chunk)
        os.replace(pending / name, done / name)
        count += 1
    return count
