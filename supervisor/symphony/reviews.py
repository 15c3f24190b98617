"""Code review of a ticket's worktree by codex: the review run, its findings, a verdict.

A review is a supervised child of kind ``codex_review``: a read-only codex turn given the
worktree's diff against the merge base of its base ref, asked to answer findings as JSON.
``review-extract`` files them (status ``open``), ``review-dedup`` folds duplicates, a person
edits their status, ``argue`` lets the agent accept or contest one, and ``review-verdict``
derives approve / request-changes from what is still open (or records a person's verdict).
Finding threads reuse the review-comment threads (``comment-chat``), keyed ``finding:<id>``.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from ..agents.providers import RunSummary, summarize
from ..agents.replies import SEVERITIES, ArgueOutcome, ReviewReply
from ..engine import KillReceipt
from ..errors import AgentReplyError, BadRequest, Conflict, NotFound
from ..services.worktrees import check_ref
from ..spec import ACTIVE_STATES, ProcessRecord, StopReason, iso
from .model import Ticket
from .runner import Runner

KIND = "codex_review"
PROVIDER = "codex"
BLOCKING = ("high", "critical")
STATUSES = ("open", "accepted", "contested", "dismissed", "fixed", "duplicate")
VERDICTS = ("approve", "request-changes")
_COLUMNS = (
    "id, ticket_id, review_process_id, file, line, severity, title, body, status, duplicate_of,"
    " argument, created_at, updated_at"
)

REVIEW_PROMPT = (
    "You are reviewing the changes of ticket {ticket} (the diff below, against {base}). Look for "
    "bugs, security problems, missing tests and unclear code. Answer with a short summary and "
    "your findings (file, line, severity, title, body), in the structured form you are given."
    "{focus}\n\nDiff:\n{diff}"
)
ARGUE_PROMPT = (
    "A reviewer raised this finding on the changes in this worktree:\n{finding}\n{message}\n"
    "Read the code and decide whether the finding is right. Answer accept or contest and why, "
    "in the structured form you are given."
)


def findings_of(reply: ReviewReply) -> list[dict[str, Any]]:
    """A checked review's findings as stored (text trimmed to the columns' limits)."""
    return [
        {
            "file": f.file[:500] if f.file else None,
            "line": f.line,
            "severity": f.severity,
            "title": f.title.strip()[:300],
            "body": f.body.strip()[:5000],
        }
        for f in reply.findings
    ]


def _norm(title: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", title.lower()) if len(w) > 2}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two findings on one file that say the same: equal title words, or nearby lines sharing
    at least half of the shorter title's words."""
    if a["file"] != b["file"]:
        return False
    wa, wb = _norm(a["title"]), _norm(b["title"])
    if wa == wb:
        return True
    near = a["line"] is not None and b["line"] is not None and abs(a["line"] - b["line"]) <= 3
    return near and len(wa & wb) >= max(1, min(len(wa), len(wb)) // 2)


def _row_json(row: Any) -> dict[str, Any]:
    return {
        "id": row[0],
        "ticketId": row[1],
        "reviewProcessId": row[2],
        "file": row[3],
        "line": row[4],
        "severity": row[5],
        "title": row[6],
        "body": row[7],
        "status": row[8],
        "duplicateOf": row[9],
        "argument": row[10],
        "createdAt": iso(row[11]),
        "updatedAt": iso(row[12]),
    }


class Reviews:
    """The ``codex/*`` routes' operations."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def available(self) -> dict[str, Any]:
        try:
            path = self.runner.registry.executable(PROVIDER)
        except Exception:  # MissingBinary, or no codex provider registered
            return {"available": False, "provider": PROVIDER, "path": None}
        return {"available": True, "provider": PROVIDER, "path": path}

    def _reviews(self, ticket_id: str) -> list[ProcessRecord]:
        recs = [r for r in self.runner.records(ticket_id, (KIND,)) if not r.torn_down]
        return recs

    def _latest_review(self, ticket_id: str) -> ProcessRecord:
        recs = self._reviews(ticket_id)
        if not recs:
            raise NotFound(f"ticketId: no review for {ticket_id!r}")
        return recs[-1]

    async def _diff(self, ticket: Ticket, base: str | None) -> tuple[str, str]:
        if base is None:
            base = ticket.base_ref or await self.runner.worktrees.default_branch(
                await self.runner.repo_path(ticket.repo_id)
            )
        try:
            check_ref(base, "base")
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        mb = await self.runner.git.run(
            ["merge-base", "--end-of-options", base, "HEAD"],
            ticket.worktree,
            ticket_id=ticket.ticket_id,
            check=False,
        )
        if not mb.ok:
            raise BadRequest(f"base: {base!r} has no merge base with the worktree's HEAD")
        diff = await self.runner.git.run(
            ["diff", "--no-color", "--no-ext-diff", mb.stdout.strip()],
            ticket.worktree,
            ticket_id=ticket.ticket_id,
        )
        return base, diff.stdout[: self.runner.settings.diff_chars]

    async def start(
        self,
        ticket_id: str,
        base: str | None = None,
        model: str | None = None,
        focus: str | None = None,
        node: str | None = None,
    ) -> ProcessRecord:
        """Start codex on the worktree's diff on ``node`` (``Runner.node_for``); 409 while a
        review of the ticket runs. The diff is taken here; the review reads the worktree there."""
        ticket = await self.runner.ticket(ticket_id)
        where = self.runner.node_for(node)
        if any(r.state in ACTIVE_STATES for r in self._reviews(ticket_id)):
            raise Conflict(f"ticket {ticket_id} already has a review running")
        if not ticket.worktree.is_dir():
            raise NotFound(f"ticketId: the worktree of {ticket_id} is gone")
        base, diff = await self._diff(ticket, base)
        if not diff.strip():
            raise Conflict(f"ticket {ticket_id} has no changes against {base} to review")
        prov = self.runner.provider(PROVIDER)
        exe = self.runner.executable(prov)
        prompt = REVIEW_PROMPT.format(
            ticket=ticket_id, base=base, diff=diff, focus=f" Focus on: {focus}" if focus else ""
        )
        argv = prov.judge_argv(exe, prompt, self.runner.reply_options(ReviewReply, model))
        spec = self.runner.agent_spec(
            prov, argv, ticket, self.runner.settings.defaults, kind=KIND, role="review",
            labels={"mode": "review", "base": base},
        )  # fmt: skip
        record = await self.runner.sup.start(spec, node=where)
        self.runner.nursery.start_soon(self._conclude_review, record)
        return record

    async def _conclude_review(self, record: ProcessRecord) -> None:
        """Once, when it ends: an error result or no result marks the review failed."""
        final = await self.runner.sup.wait(record.id)
        self.runner.conclude(final, self.runner.provider(PROVIDER))

    def _said(self, record: ProcessRecord) -> RunSummary:
        """What a finished review answered (read-only: status may ask any number of times)."""
        lines = (line.raw for line in self.runner.sup.log(record.id).read() if line.stream == "stdout")
        return summarize(self.runner.provider(PROVIDER), lines)

    def _summary(self, record: ProcessRecord) -> str | None:
        """The finished review's summary: its reply's ``summary`` when the reply fits the
        schema, else whatever it said (``review-extract`` is where a bad reply is an error)."""
        said = self._said(record)
        try:
            return self.runner.structured_reply(self.runner.provider(PROVIDER), said, ReviewReply, "").summary
        except AgentReplyError:
            return said.final_text or None

    async def status(self, ticket_id: str) -> dict[str, Any]:
        record = self._latest_review(ticket_id)
        out: dict[str, Any] = {"ticketId": ticket_id, "process": record.to_json(), "summary": None}
        if record.state not in ACTIVE_STATES:
            out["summary"] = self._summary(record)
        rows = await self.runner.store.fetchall(
            "SELECT COUNT(*) FROM review_findings WHERE review_process_id = ?", (record.id,)
        )
        out["findings"] = rows[0][0]
        return out

    async def stop(self, ticket_id: str) -> KillReceipt:
        return await self.runner.sup.kill(self._latest_review(ticket_id).id, StopReason.KILL)

    async def forget(self, ticket_id: str) -> KillReceipt:
        """Stop it if it runs and forget it (``status`` then 404s); its log stays."""
        return await self.runner.sup.teardown(self._latest_review(ticket_id).id)

    async def extract_findings(self, ticket_id: str) -> dict[str, Any]:
        """File the latest finished review's findings as ``open`` (again: replaced, not added)."""
        finished = [r for r in self._reviews(ticket_id) if r.state not in ACTIVE_STATES]
        if not finished:
            raise Conflict(f"ticketId: {ticket_id} has no finished review")
        record = finished[-1]
        if record.state.value != "exited":
            raise Conflict(f"the latest review {record.id} did not finish cleanly ({record.state.value})")
        prov = self.runner.provider(PROVIDER)
        said = self.runner.structured_reply(prov, self._said(record), ReviewReply, f"the review {record.id}")
        text, items = said.summary, findings_of(said)
        now = time.time()
        await self.runner.store.execute(
            "DELETE FROM review_findings WHERE review_process_id = ?", (record.id,)
        )
        for item in items:
            await self.runner.store.execute(
                f"INSERT INTO review_findings ({_COLUMNS}) VALUES ({','.join('?' * 13)})",
                (f"f_{secrets.token_hex(6)}", ticket_id, record.id, item["file"], item["line"],
                 item["severity"], item["title"], item["body"], "open", None, None, now, now),
            )  # fmt: skip
        return {"ticketId": ticket_id, "reviewProcessId": record.id, "summary": text,
                "findings": await self.findings(ticket_id)}  # fmt: skip

    async def findings(self, ticket_id: str) -> list[dict[str, Any]]:
        rows = await self.runner.store.fetchall(
            f"SELECT {_COLUMNS} FROM review_findings WHERE ticket_id = ? ORDER BY created_at, rowid",
            (ticket_id,),
        )
        return [_row_json(r) for r in rows]

    async def finding(self, finding_id: str) -> dict[str, Any]:
        row = await self.runner.store.fetchone(
            f"SELECT {_COLUMNS} FROM review_findings WHERE id = ?", (finding_id,)
        )
        if row is None:
            raise NotFound(f"findingId: no finding {finding_id!r}")
        return _row_json(row)

    async def update_finding(
        self, ticket_id: str, finding_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        found = await self.finding(finding_id)
        if found["ticketId"] != ticket_id:
            raise NotFound(f"id: no finding {finding_id!r} on ticket {ticket_id}")
        if changes.get("status") not in (None, *STATUSES):
            raise BadRequest(f"status: one of {', '.join(STATUSES)}")
        if changes.get("severity") not in (None, *SEVERITIES):
            raise BadRequest(f"severity: one of {', '.join(SEVERITIES)}")
        editable = ("status", "severity", "title", "body")
        fields = {k: v for k, v in changes.items() if v is not None and k in editable}
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            await self.runner.store.execute(
                f"UPDATE review_findings SET {sets}, updated_at = ? WHERE id = ?",
                (*fields.values(), time.time(), finding_id),
            )
        return await self.finding(finding_id)

    async def dedup(self, ticket_id: str) -> dict[str, Any]:
        """Fold open findings on the same file that say the same thing (same line or title)."""
        order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
        open_ = [f for f in await self.findings(ticket_id) if f["status"] == "open"]
        open_.sort(key=lambda f: (order[f["severity"]], f["createdAt"]))
        kept: list[dict[str, Any]] = []
        merged = 0
        for f in open_:
            twin = next((k for k in kept if _same(k, f)), None)
            if twin is None:
                kept.append(f)
                continue
            merged += 1
            await self.runner.store.execute(
                "UPDATE review_findings SET status = 'duplicate', duplicate_of = ?, updated_at = ?"
                " WHERE id = ?",
                (twin["id"], time.time(), f["id"]),
            )
        return {"ticketId": ticket_id, "merged": merged, "findings": await self.findings(ticket_id)}

    async def verdict(self, ticket_id: str, verdict: str | None, reason: str | None) -> dict[str, Any]:
        """Record ``verdict``, or derive it: request-changes while a high/critical one is open."""
        await self.runner.ticket(ticket_id)
        open_ = [f for f in await self.findings(ticket_id) if f["status"] in ("open", "accepted")]
        blocking = [f["id"] for f in open_ if f["severity"] in BLOCKING]
        if verdict is None:
            source = "derived"
            verdict = "request-changes" if blocking else "approve"
            why = f"{len(blocking)} blocking finding(s) open" if blocking else "no blocking findings"
            reason = reason or why
        elif verdict not in VERDICTS:
            raise BadRequest(f"verdict: one of {', '.join(VERDICTS)}")
        else:
            source = "recorded"
        now = time.time()
        await self.runner.store.execute(
            "INSERT INTO review_verdicts (ticket_id, verdict, source, reason, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (ticket_id, verdict, source, reason, now),
        )
        return {"ticketId": ticket_id, "verdict": verdict, "source": source, "reason": reason,
                "openFindings": len(open_), "blocking": blocking, "at": iso(now)}  # fmt: skip

    async def argue(
        self, ticket_id: str, finding_id: str, message: str | None, model: str | None
    ) -> dict[str, Any]:
        """The agent reads the code and accepts or contests the finding; both are recorded."""
        ticket = await self.runner.ticket(ticket_id)
        found = await self.finding(finding_id)
        if found["ticketId"] != ticket_id:
            raise NotFound(f"findingId: no finding {finding_id!r} on ticket {ticket_id}")
        where = f"{found['file'] or '?'}:{found['line'] or '?'}"
        text = f"[{found['severity']}] {where} {found['title']}\n{found['body']}"
        prompt = ARGUE_PROMPT.format(finding=text, message=f"The author says: {message}" if message else "")
        record, said = await self.runner.ask(
            ticket, PROVIDER, prompt, ArgueOutcome, role="argue", model=model,
            labels={"findingId": finding_id},
        )  # fmt: skip
        outcome_ = said.outcome
        argument = said.argument[:5000]
        status = "accepted" if outcome_ == "accept" else "contested"
        await self.runner.store.execute(
            "UPDATE review_findings SET status = ?, argument = ?, updated_at = ? WHERE id = ?",
            (status, argument, time.time(), finding_id),
        )
        return {"ticketId": ticket_id, "outcome": outcome_, "argument": argument, "processId": record.id,
                "finding": await self.finding(finding_id)}  # fmt: skip
