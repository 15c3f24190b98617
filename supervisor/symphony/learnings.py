"""Learnings: what an agent run taught, extracted by the agent, kept once a person accepts it.

``extract_learnings`` gives a finished run's transcript (its own parsed events: the agent's
texts, tool calls and results) to a read-only agent turn (a supervised child of kind
``symphony``, role ``learnings``) that answers a JSON list; each item is filed as *pending*.
A person accepts or rejects them; accepted ones are listed per repository, and a client
counts each use, so the most useful float up.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..agents.replies import MAX_LEARNINGS, LearningsReply
from ..errors import BadRequest, Conflict, NotFound
from ..spec import ACTIVE_STATES, ProcessRecord
from .runner import Runner

MAX_TITLE = 200
MAX_BODY = 4000
STATUSES = ("pending", "accepted", "rejected")
_COLUMNS = (
    "id, ticket_id, repo_id, source_process_id, extractor_process_id, title, body, status, uses,"
    " created_at, decided_at, last_used_at"
)

PROMPT = (
    "Below is the transcript of a coding agent's finished run on ticket {ticket}. Extract the "
    "durable lessons a future run on this repository should know: conventions, commands that "
    "work, pitfalls and their fixes. Skip anything specific to this one change. Answer at most "
    "{n} learnings (title, body) in the structured form you are given, none if there is "
    "nothing worth keeping.\n\nTranscript:\n{transcript}"
)


def _row_json(row: Any) -> dict[str, Any]:
    from ..spec import iso

    return {
        "id": row[0],
        "ticketId": row[1],
        "repoId": row[2],
        "sourceProcessId": row[3],
        "extractorProcessId": row[4],
        "title": row[5],
        "body": row[6],
        "status": row[7],
        "uses": row[8],
        "createdAt": iso(row[9]),
        "decidedAt": iso(row[10]) if row[10] else None,
        "lastUsedAt": iso(row[11]) if row[11] else None,
    }


def learnings_of(reply: LearningsReply) -> list[dict[str, str]]:
    """A checked reply's learnings as filed: trimmed, blank ones dropped."""
    out = []
    for item in reply.learnings:
        title, body = item.title.strip(), item.body.strip()
        if title and body:
            out.append({"title": title[:MAX_TITLE], "body": body[:MAX_BODY]})
    return out


class Learnings:
    """``extract-learnings``, ``pending-learnings``, ``process-(all-)learnings``, ``learnings``,
    ``learnings-status`` and ``record-learning-use``."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def _source_run(self, ticket_id: str, process_id: str | None) -> ProcessRecord:
        runs = [r for r in self.runner.records(ticket_id, ("symphony",)) if r.labels.get("role") == "agent"]
        if process_id is not None:
            runs = [r for r in runs if r.id == process_id]
            if not runs:
                raise NotFound(f"processId: no agent run {process_id!r} on ticket {ticket_id}")
        ended = [r for r in runs if r.state not in ACTIVE_STATES]
        if not ended:
            raise Conflict(f"ticketId: {ticket_id} has no finished agent run to learn from")
        return ended[-1]

    async def extract(
        self,
        ticket_id: str,
        process_id: str | None = None,
        provider: str | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """File what the ticket's run (default: its latest finished one) taught, as pending."""
        ticket = await self.runner.ticket(ticket_id)
        source = self._source_run(ticket_id, process_id)
        transcript = self.runner.transcript(source)
        if not transcript.strip():
            raise Conflict(f"processId: run {source.id} left no transcript to learn from")
        prompt = PROMPT.format(ticket=ticket_id, n=MAX_LEARNINGS, transcript=transcript)
        record, said = await self.runner.ask(
            ticket, provider, prompt, LearningsReply, role="learnings", model=model,
            labels={"source": source.id},
        )  # fmt: skip
        items = learnings_of(said)
        now = time.time()
        rows = [
            (f"l_{secrets.token_hex(6)}", ticket_id, ticket.repo_id, source.id, record.id,
             item["title"], item["body"], "pending", 0, now, None, None)
            for item in items
        ]  # fmt: skip
        for row in rows:
            await self.runner.store.execute(
                f"INSERT INTO learnings ({_COLUMNS}) VALUES ({','.join('?' * 12)})", row
            )
        return {
            "ticketId": ticket_id,
            "sourceProcessId": source.id,
            "processId": record.id,
            "learnings": [_row_json(r) for r in rows],
        }

    async def listing(
        self, *, status: str = "accepted", repo_id: str | None = None, ticket_id: str | None = None
    ) -> list[dict[str, Any]]:
        if status not in STATUSES:
            raise BadRequest(f"status: one of {', '.join(STATUSES)}")
        sql = f"SELECT {_COLUMNS} FROM learnings WHERE status = ?"
        args: list[Any] = [status]
        if repo_id is not None:
            sql += " AND repo_id = ?"
            args.append(repo_id)
        if ticket_id is not None:
            sql += " AND ticket_id = ?"
            args.append(ticket_id)
        order = " ORDER BY uses DESC, created_at" if status == "accepted" else " ORDER BY created_at"
        return [_row_json(r) for r in await self.runner.store.fetchall(sql + order, tuple(args))]

    async def decide(self, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Accept or reject pending learnings (all or nothing); an accept may edit the text."""
        ids = [d["id"] for d in decisions]
        if len(set(ids)) != len(ids):
            raise BadRequest("decisions: an id appears twice")
        rows = {}
        for i, learning_id in enumerate(ids):
            row = await self.runner.store.fetchone(
                f"SELECT {_COLUMNS} FROM learnings WHERE id = ?", (learning_id,)
            )
            if row is None:
                raise NotFound(f"decisions.{i}.id: no learning {learning_id!r}")
            if row[7] != "pending":
                raise Conflict(f"decisions.{i}.id: {learning_id} is already {row[7]}")
            rows[learning_id] = row
        now = time.time()
        for d in decisions:
            row = rows[d["id"]]
            title = (d.get("title") or row[5])[:MAX_TITLE]
            body = (d.get("body") or row[6])[:MAX_BODY]
            await self.runner.store.execute(
                "UPDATE learnings SET status = ?, title = ?, body = ?, decided_at = ? WHERE id = ?",
                (d["decision"], title, body, now, d["id"]),
            )
        out = []
        for learning_id in ids:
            row = await self.runner.store.fetchone(
                f"SELECT {_COLUMNS} FROM learnings WHERE id = ?", (learning_id,)
            )
            out.append(_row_json(row))
        return out

    async def decide_all(
        self, decision: str, *, ticket_id: str | None = None, repo_id: str | None = None
    ) -> dict[str, Any]:
        pending = await self.listing(status="pending", ticket_id=ticket_id, repo_id=repo_id)
        decided = await self.decide([{"id": p["id"], "decision": decision} for p in pending])
        return {"decision": decision, "count": len(decided), "learnings": decided}

    async def pending_summary(self) -> dict[str, Any]:
        rows = await self.runner.store.fetchall(
            "SELECT ticket_id, COUNT(*) FROM learnings WHERE status = 'pending' GROUP BY ticket_id"
        )
        by_ticket = {r[0]: r[1] for r in rows}
        return {"pending": sum(by_ticket.values()), "byTicket": by_ticket}

    async def status(self, ticket_id: str) -> dict[str, Any]:
        rows = await self.runner.store.fetchall(
            "SELECT status, COUNT(*) FROM learnings WHERE ticket_id = ? GROUP BY status", (ticket_id,)
        )
        counts = {s: 0 for s in STATUSES} | {r[0]: r[1] for r in rows}
        runs = [
            r for r in self.runner.records(ticket_id, ("symphony",)) if r.labels.get("role") == "learnings"
        ]
        last = runs[-1] if runs else None
        return {
            "ticketId": ticket_id,
            **counts,
            "lastExtraction": None
            if last is None
            else {"processId": last.id, "state": last.state.value, "source": last.labels.get("source")},
        }

    async def record_use(self, learning_id: str) -> dict[str, Any]:
        row = await self.runner.store.fetchone(
            f"SELECT {_COLUMNS} FROM learnings WHERE id = ?", (learning_id,)
        )
        if row is None:
            raise NotFound(f"id: no learning {learning_id!r}")
        if row[7] != "accepted":
            raise Conflict(f"id: {learning_id} is {row[7]}, not accepted")
        await self.runner.store.execute(
            "UPDATE learnings SET uses = uses + 1, last_used_at = ? WHERE id = ?", (time.time(), learning_id)
        )
        row = await self.runner.store.fetchone(
            f"SELECT {_COLUMNS} FROM learnings WHERE id = ?", (learning_id,)
        )
        return _row_json(row)
