"""Plan loops: the agent writes a plan without editing, then waits for feedback or approval.

A plan loop is a supervised job (kind ``plan_loop``) that parks between versions on an event,
so a person can take their time; feedback wakes it to write the next version, approval ends it
(and can launch a run with the plan as its prompt). Every version is stored with its status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from ..agents.providers import Provider, RunOptions
from ..engine import Job, KillReceipt
from ..errors import Conflict, NotFound
from ..spec import ProcessRecord
from .model import Ticket, require_text
from .runner import Runner
from .runs import Runs
from .settings import Limits


@dataclass(slots=True)
class PlanState:
    """The rendezvous between a parked plan job and the feedback/approve routes."""

    job_id: str
    waiting: bool = False
    wake: trio.Event = field(default_factory=trio.Event)
    feedback: str | None = None
    approved: bool = False
    #: Where the plan job's children run; ``approve``'s run goes there too.
    node: str | None = None


class Plans:
    """``plan-loop/*`` and ``plan/:ticketId``."""

    def __init__(self, runner: Runner, runs: Runs) -> None:
        self.runner = runner
        self.runs = runs
        self._plans: dict[str, PlanState] = {}

    async def start(
        self,
        ticket_id: str,
        repo_id: str,
        prompt: str,
        provider: str | None = "claude",
        model: str | None = None,
        base_ref: str | None = None,
        limits: Mapping[str, Any] | None = None,
        node: str | None = None,
    ) -> ProcessRecord:
        """Start a plan loop job on the ticket's worktree; returns its record once it runs.

        Its agent children run on ``node`` (``Runner.node_for``), as does the run ``approve``
        may launch.
        """
        prov, lim = self.runner.check_request(ticket_id, repo_id, prompt, provider, limits)
        exe = self.runner.executable(prov)
        where = self.runner.node_for(node)
        async with self.runner.prepared(ticket_id, repo_id, base_ref, prov, "a plan loop") as ticket:
            # The state must exist before the body runs: start_job runs it at once.
            state = PlanState(job_id="", node=where)
            self._plans[ticket_id] = state

            async def body(job: Job) -> None:
                try:
                    await self._plan_body(job, state, ticket, prov, exe, prompt, model, lim)
                finally:
                    if self._plans.get(ticket_id) is state:
                        del self._plans[ticket_id]

            job = await self.runner.start_agent_job("plan_loop", body, ticket, prov, node=where)
            state.job_id = job.id
        return job.record

    async def _plan_body(
        self,
        job: Job,
        state: PlanState,
        ticket: Ticket,
        prov: Provider,
        exe: str,
        prompt: str,
        model: str | None,
        lim: Limits,
    ) -> None:
        record = job.record
        plan_text = ""
        feedback: str | None = None
        version = 0
        while True:
            version += 1
            record.labels["planVersion"] = str(version)
            record.labels["planStatus"] = "writing"
            self.runner.sup.table.touch(record)
            text = (
                f"Make a step-by-step implementation plan for this task. Do not change any file.\n\n{prompt}"
                if feedback is None
                else (
                    f"Revise your implementation plan for this task. Do not change any file.\n\n{prompt}\n\n"
                    f"Your previous plan:\n{plan_text}\n\nFeedback on it:\n{feedback}"
                )
            )
            argv = prov.plan_argv(exe, text, RunOptions(model=model))
            summary = await self.runner.agent_in_job(
                job, ticket, prov, argv, lim, {"mode": "plan", "planVersion": str(version)}
            )
            plan_text = summary.final_text
            await self.runner.db.add_plan(ticket.ticket_id, job.id, job.children[-1], version, plan_text)
            record.labels["planStatus"] = "awaiting-feedback"
            self.runner.sup.table.touch(record)
            job.note(f"[symphony] plan v{version} ready; waiting for feedback or approval")
            state.waiting = True
            await state.wake.wait()
            state.wake = trio.Event()
            state.waiting = False
            if state.approved:
                await self.runner.db.set_plan_status(job.id, version, "approved")
                record.labels["planStatus"] = "approved"
                record.labels["outcome"] = "approved"
                self.runner.sup.table.touch(record)
                job.note(f"[symphony] plan v{version} approved")
                return
            feedback = state.feedback or ""
            state.feedback = None
            await self.runner.db.set_plan_status(job.id, version, "revised", feedback)
            job.note(f"[symphony] feedback on plan v{version}; revising")

    def _plan_state(self, ticket_id: str) -> PlanState:
        state = self._plans.get(ticket_id)
        if state is None:
            raise NotFound(f"ticketId: no plan loop running for {ticket_id!r}")
        if not state.waiting:
            raise Conflict(f"the plan for {ticket_id} is still being written; wait for it first")
        return state

    async def feedback(self, ticket_id: str, feedback: str) -> dict[str, Any]:
        require_text(feedback, "feedback")
        state = self._plan_state(ticket_id)
        state.feedback = feedback
        state.wake.set()
        return {"ticketId": ticket_id, "jobId": state.job_id, "status": "revising"}

    async def approve(self, ticket_id: str, launch: bool = False) -> dict[str, Any]:
        """Approve the latest plan (the job ends); ``launch`` then starts a run implementing it."""
        state = self._plan_state(ticket_id)
        state.approved = True
        state.wake.set()
        job = await self.runner.sup.wait(state.job_id)
        plan = await self.get(ticket_id)
        out: dict[str, Any] = {"ticketId": ticket_id, "jobId": state.job_id, "plan": plan["plan"]}
        out["process"] = job.to_json()
        if launch and plan["plan"]:
            ticket = await self.runner.ticket(ticket_id)
            run = await self.runs.launch(
                ticket_id,
                ticket.repo_id,
                f"Implement this approved plan:\n\n{plan['plan']['plan']}",
                provider=ticket.provider,
                node=state.node,
            )
            out["run"] = run.to_json()
        return out

    async def kill(self, ticket_id: str) -> KillReceipt:
        return await self.runner.kill_kind(ticket_id, ("plan_loop",), "plan loop")

    async def get(self, ticket_id: str) -> dict[str, Any]:
        """The latest plan, every version before it, and whether the job waits for a person."""
        await self.runner.known_ticket(ticket_id)
        plans = await self.runner.db.plans(ticket_id)
        state = self._plans.get(ticket_id)
        return {
            "ticketId": ticket_id,
            "plan": plans[-1] if plans else None,
            "history": plans,
            "waitingForFeedback": bool(state and state.waiting),
        }
