"""Symphony: agent runs, loops with judges, plan loops, sessions and chat on per-ticket worktrees.

Everything that runs is a supervised child or job of the engine:

- a **run** (``runs.launch``) is one agent child of kind ``symphony`` in the ticket's worktree
  (``runs.py``; what every activity shares is the ``Runner`` in ``runner.py``);
- a **loop** is a job of kind ``symphony_loop``: agent run, then each judge, then (if a judge
  failed) the next agent run with the failed judges' feedback in its prompt, until every judge
  passes (outcome ``passed``) or ``maxIterations`` (outcome ``exhausted``) (``loops.py``);
- a **plan loop** is a job of kind ``plan_loop``: the agent writes a plan without editing, waits
  for feedback (revise) or approval (done) (``plans.py``);
- a **chat** turn is a child of kind ``chat`` resuming the ticket's provider session
  (``chat.py``).

Safety rails: one lock per worktree (a second run, loop, chat or git operation on it is a
``Conflict``, answered 409), and every agent child has a result-idle watchdog, a stall timeout
and a maximum run time, per request within the limits in ``SymphonySettings``
(``settings.py``, persisted in the ``settings`` table). All SQL is in ``store.py``.

This module is the service as the HTTP front sees it: the activities above, plus what spans
them (status, kill, teardown with worktree removal, the log a ticket shows).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from ..agents.providers import ProviderRegistry, parse_event
from ..engine import KillReceipt, Supervisor
from ..errors import GatewayError, NotFound
from ..logs import LogLine
from ..services.worktrees import Git
from ..spec import ACTIVE_STATES, ProcessRecord, StopReason, iso
from .chat import Chat
from .cloud_loops import CloudLoops
from .codex_wire import CodexWire
from .learnings import Learnings
from .loops import Loops
from .model import SYMPHONY_KINDS, TOP_KINDS, Ticket
from .plan_loop_wire import PlanLoopWire
from .plans import Plans
from .reviews import Reviews
from .runner import Runner
from .runs import Runs
from .scoped_chat import ScopedChats
from .session_registry import SessionRegistry
from .settings import SymphonySettings, load_limits, save_limits
from .side_chats import SideChats
from .ticket_views import TicketViews
from .work_learnings import WorkLearnings
from .workchat import WorkChats
from .workfiles import JsonFiles

#: Set on the record a ``kill`` with ``removeWorktree`` tears down; the teardown hook acts on
#: it only, so a plain teardown (e.g. ``POST /processes/:id/teardown``) keeps the worktree.
REMOVE_WORKTREE = "removeWorktree"


class Symphony:
    """The Symphony domain service: one ``Runner`` and the activities that hold it.

    ``svc.runs.launch``, ``svc.loops.start``, ``svc.plans.start``, ``svc.chat.turn``,
    ``svc.reviews.start``, ``svc.learnings.extract``, ``svc.scoped_chats.turn``: each activity
    lives in its own module. What spans them (status, kill, teardown with worktree removal,
    the log a ticket shows, worktrees outside runs, the settings) is here.

    Create with ``open_symphony`` (it owns the nursery the background watchers run in).
    """

    def __init__(
        self,
        sup: Supervisor,
        nursery: trio.Nursery,
        *,
        registry: ProviderRegistry | None = None,
        settings: SymphonySettings | None = None,
        git: Git | None = None,
    ) -> None:
        self.runner = Runner(sup, nursery, registry=registry, settings=settings, git=git)
        self.runs = Runs(self.runner)
        self.loops = Loops(self.runner)
        self.plans = Plans(self.runner, self.runs)
        self.chat = Chat(self.runner)
        self.learnings = Learnings(self.runner)
        self.reviews = Reviews(self.runner)
        self.scoped_chats = ScopedChats(self.runner)
        #: ClosedLoop's JSON work files (chat histories, review state), one lock per file.
        self.files = JsonFiles()
        self.work_chats = WorkChats(self.runner, self.files)
        self.views = TicketViews(self)
        self.work_learnings = WorkLearnings(self.runner, self.files)
        self.cloud_loops = CloudLoops(self.runner)
        self.plan_loop_wire = PlanLoopWire(self.runner, self.cloud_loops)
        self.codex_wire = CodexWire(self.runner, self.files)
        self.side_chats = SideChats(self.runner, self.files)
        self.session_registry = SessionRegistry(self.runner, self.files)
        for kind in SYMPHONY_KINDS:
            sup.register_teardown(kind, self._teardown_worktree)

    @property
    def sup(self) -> Supervisor:
        return self.runner.sup

    @property
    def git(self) -> Git:
        return self.runner.git

    @property
    def settings(self) -> SymphonySettings:
        return self.runner.settings

    @settings.setter
    def settings(self, value: SymphonySettings) -> None:
        self.runner.settings = value

    async def ticket(self, ticket_id: str) -> Ticket:
        """The stored ticket, or ``NotFound``."""
        return await self.runner.ticket(ticket_id)

    async def repo_path(self, repo_id: str) -> Path:
        """The managed repository's folder, or ``NotFound``."""
        return await self.runner.repo_path(repo_id)

    async def settled(self, record_id: str) -> None:
        """Wait until a run's or chat turn's results are stored (its record is final)."""
        await self.runner.settled(record_id)

    def close(self) -> None:
        """Stop the background watchers (the supervisor stops the children)."""
        self.runner.close()

    # ---- status -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Every ticket's records, and per ticket whether something is active."""
        runs = self.runner.records()
        tickets: dict[str, dict[str, Any]] = {}
        for r in runs:
            t = tickets.setdefault(r.ticket_id or "", {"ticketId": r.ticket_id, "active": False, "runs": 0})
            t["runs"] += 1
            t["active"] = t["active"] or r.state in ACTIVE_STATES
        return {"runs": [r.to_json() for r in runs], "tickets": list(tickets.values())}

    async def ticket_status(self, ticket_id: str) -> dict[str, Any]:
        runs = self.runner.records(ticket_id)
        try:
            ticket: Ticket | None = await self.runner.ticket(ticket_id)
        except NotFound:
            if not runs:
                raise
            ticket = None
        active = [r for r in runs if r.state in ACTIVE_STATES and r.job_id is None]
        return {
            "ticketId": ticket_id,
            "ticket": ticket.to_json() if ticket else None,
            "active": active[-1].to_json() if active else None,
            "runs": [r.to_json() for r in runs],
        }

    def log_target(self, ticket_id: str, process_id: str | None = None) -> ProcessRecord:
        """The record whose log ``logs/:ticketId`` serves: ``process_id``, else the latest run."""
        if process_id:
            record = self.sup.table.get(process_id)
            if record is None or record.ticket_id != ticket_id:
                raise NotFound(f"processId: no process {process_id!r} for ticket {ticket_id!r}")
            return record
        top = [r for r in self.runner.records(ticket_id, TOP_KINDS) if r.job_id is None]
        if not top:
            top = list(self.runner.records(ticket_id, ("chat",)))
        if not top:
            raise NotFound(f"ticketId: no runs for {ticket_id!r}")
        return top[-1]

    # ---- kill and teardown --------------------------------------------------------------

    def _stop_target(self, ticket_id: str) -> ProcessRecord:
        """The ticket's active loop or plan loop, else its run, else its chat turn, else the
        latest record of any of those kinds."""
        for kinds in (("symphony_loop", "plan_loop"), ("symphony",), ("chat",)):
            active = [
                r
                for r in self.runner.records(ticket_id, kinds)
                if r.state in ACTIVE_STATES and r.job_id is None
            ]
            if active:
                return active[-1]
        recs = [r for r in self.runner.records(ticket_id) if r.job_id is None]
        if not recs:
            raise NotFound(f"ticketId: no run for {ticket_id!r}")
        return recs[-1]

    async def kill(self, ticket_id: str) -> KillReceipt:
        """Kill the ticket's active loop or plan loop, else its active run, else its chat turn."""
        return await self.sup.kill(self._stop_target(ticket_id).id, StopReason.KILL)

    async def kill_loop(self, ticket_id: str) -> KillReceipt:
        return await self.runner.kill_kind(ticket_id, ("symphony_loop",), "loop")

    async def teardown(self, ticket_id: str, *, remove_worktree: bool = True) -> dict[str, Any]:
        """Tear down what ``kill`` would kill; with ``remove_worktree``, remove the worktree too.

        The removal runs as the engine's teardown hook of the record (after its tree is gone),
        under the worktree lock: if anything else still works in the worktree it stays, and the
        answer says why. The branch ``symphony/<ticketId>`` is kept; a later run recreates the
        worktree from it.
        """
        target = self._stop_target(ticket_id)
        if remove_worktree:
            target.labels[REMOVE_WORKTREE] = "requested"
        earlier = target.torn_down
        receipt = await self.sup.teardown(target.id)
        out = receipt.to_json()
        if not remove_worktree:
            return out
        error: str | None = None
        if earlier:  # the engine runs a record's hooks once: do it here
            try:
                await self._remove_worktree(target)
            except GatewayError as exc:
                error = str(exc)
        elif target.labels.get(REMOVE_WORKTREE) != "removed":
            error = target.error or "the worktree was not removed"
        ticket = await self.runner.ticket(ticket_id)
        out["worktree"] = {
            "path": str(ticket.worktree),
            "removed": target.labels.get(REMOVE_WORKTREE) == "removed",
            "exists": ticket.worktree.exists(),
            "error": error,
        }
        return out

    async def _teardown_worktree(self, record: ProcessRecord) -> None:
        """The teardown hook of every Symphony kind: removes the worktree only when asked."""
        if record.labels.get(REMOVE_WORKTREE) == "requested":
            await self._remove_worktree(record)

    async def _remove_worktree(self, record: ProcessRecord) -> None:
        if record.ticket_id is None:
            return
        ticket = await self.runner.ticket(record.ticket_id)
        with self.runner.reserve(ticket.ticket_id, str(ticket.worktree), "a worktree removal"):
            repo = await self.runner.repo_path(ticket.repo_id)
            removed = await self.runner.worktrees.remove(repo, ticket.repo_id, ticket.ticket_id)
        record.labels[REMOVE_WORKTREE] = "removed"
        what = "removed" if removed else "already gone"
        self.sup.log(record.id).system(f"[symphony] worktree {ticket.worktree} {what}")

    # ---- worktrees outside runs (the git routes) -----------------------------------------

    async def open_worktree(
        self, ticket_id: str, repo_id: str, base_ref: str | None = None
    ) -> tuple[Ticket, bool]:
        """Create or reuse a ticket's worktree without starting anything; True if created.

        Under the worktree lock, like a run, and the ticket is remembered, so later runs,
        ``work-directory`` and the git routes all find the same worktree.
        """
        self.runner.validate_ids(ticket_id, repo_id)
        worktree = str(self.runner.worktrees.path_for(repo_id, ticket_id))
        with self.runner.reserve(ticket_id, worktree, "a worktree"):
            return await self.runner.ensure_ticket(ticket_id, repo_id, base_ref, None)

    def hold_worktree(self, ticket: Ticket, what: str) -> AbstractContextManager[None]:
        """The worktree lock for ``what`` (a commit, a pull): 409 while a run is active there,
        and no run starts in the worktree until it is released."""
        return self.runner.reserve(ticket.ticket_id, str(ticket.worktree), what)

    async def close_worktree(self, ticket_id: str) -> bool:
        """Remove the ticket's worktree (the branch stays); 409 while anything runs in it."""
        ticket = await self.runner.ticket(ticket_id)
        with self.runner.reserve(ticket.ticket_id, str(ticket.worktree), "a worktree removal"):
            repo = await self.runner.repo_path(ticket.repo_id)
            return await self.runner.worktrees.remove(repo, ticket.repo_id, ticket.ticket_id)

    # ---- settings -----------------------------------------------------------------------

    async def load_settings(self) -> SymphonySettings:
        """Apply the limits stored in the ``settings`` table (called when the service starts)."""
        return await load_limits(self.runner.store, self.runner.settings)

    async def save_limits(self, raw: dict[str, Any]) -> dict[str, dict[str, float]]:
        """Validate, persist and apply ``{"defaults", "maximum"}``; answers the limits now."""
        await save_limits(self.runner.store, self.runner.settings, raw)
        return self.runner.settings.limits_json()


@asynccontextmanager
async def open_symphony(sup: Supervisor, **kw: Any) -> AsyncIterator[Symphony]:
    """The service for the body of the block; its background watchers end with it."""
    async with trio.open_nursery() as nursery:
        svc = Symphony(sup, nursery, **kw)
        await svc.runner.db.open()
        try:
            yield svc
        finally:
            svc.close()


def log_line_json(record: ProcessRecord, line: LogLine) -> dict[str, Any]:
    """One NDJSON ``log`` line, with the provider's parsed ``event`` when there is one."""
    out: dict[str, Any] = {
        "type": "log",
        "seq": line.seq,
        "ts": iso(line.ts),
        "stream": line.stream,
        "text": line.text,
        "processId": record.id,
    }
    if line.stream == "stdout" and record.event_parser:
        event = parse_event(record.event_parser, line.raw)
        if event is not None:
            out["event"] = event
    return out


__all__ = ["REMOVE_WORKTREE", "Symphony", "log_line_json", "open_symphony"]
