"""Loops: agent run, then judges, then the next run with the failed judges' feedback.

A loop is one supervised job (kind ``symphony_loop``) whose children are the agent runs and the
judges, so killing the job kills whichever child is current, tree and all, and nothing starts
after it. The job's log carries its children's lines, so one seq space covers the whole loop.
Every verdict is stored per iteration as it lands, so ``judges/:ticketId`` shows progress.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..agents.providers import Provider
from ..agents.replies import JudgeVerdict
from ..engine import Job
from ..errors import AgentReplyError, BadRequest
from ..spec import ProcessRecord, ProcessSpec, State
from .model import JudgeSpec, Ticket, Verdict, outcome, short_argv
from .runner import Runner
from .settings import Limits

#: A failed judge and what the next iteration's prompt tells the agent about it.
Failure = tuple[JudgeSpec, Verdict, str]


class Loops:
    """``loop``, its judges, and ``judges/:ticketId``."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def start(
        self,
        ticket_id: str,
        repo_id: str,
        prompt: str,
        judges: Sequence[Any],
        max_iterations: int = 3,
        provider: str | None = "claude",
        model: str | None = None,
        base_ref: str | None = None,
        limits: Mapping[str, Any] | None = None,
        node: str | None = None,
    ) -> ProcessRecord:
        """Start a loop job (kind ``symphony_loop``); returns its record once it runs.

        The job runs here; its agent and judge children on ``node`` (``Runner.node_for``).
        """
        prov, lim = self.runner.check_request(ticket_id, repo_id, prompt, provider, limits)
        where = self.runner.node_for(node)
        if isinstance(max_iterations, bool) or not isinstance(max_iterations, int):
            raise BadRequest("maxIterations: must be an integer")
        if not 1 <= max_iterations <= self.runner.settings.max_iterations:
            raise BadRequest(f"maxIterations: must be in 1..{self.runner.settings.max_iterations}")
        if not isinstance(judges, list | tuple) or not judges:
            raise BadRequest("judges: must be a non-empty list")
        specs = [JudgeSpec.parse(j, i, self.runner.registry) for i, j in enumerate(judges)]
        names = [j.name for j in specs]
        if len(set(names)) != len(names):
            raise BadRequest("judges: names must be unique")
        exe = self.runner.executable(prov)
        for j in specs:
            if j.provider:
                self.runner.executable(self.runner.registry.get(j.provider))
        async with self.runner.prepared(ticket_id, repo_id, base_ref, prov, "a loop") as ticket:

            async def body(job: Job) -> None:
                await self._loop_body(job, ticket, prov, exe, prompt, specs, max_iterations, model, lim)

            job = await self.runner.start_agent_job(
                "symphony_loop",
                body,
                ticket,
                prov,
                labels={"maxIterations": str(max_iterations), "judges": ",".join(names)},
                description=[f"maxIterations={max_iterations}", *names],
                node=where,
            )
        return job.record

    async def _loop_body(
        self,
        job: Job,
        ticket: Ticket,
        prov: Provider,
        exe: str,
        prompt: str,
        judges: list[JudgeSpec],
        max_iterations: int,
        model: str | None,
        lim: Limits,
    ) -> None:
        record = job.record
        failures: list[Failure] = []
        session_id: str | None = None
        for iteration in range(1, max_iterations + 1):
            record.labels["iteration"] = str(iteration)
            self.runner.sup.table.touch(record)
            job.note(f"[symphony] iteration {iteration}/{max_iterations}")
            text = prompt if iteration == 1 else feedback_prompt(prompt, iteration, max_iterations, failures)
            opts = self.runner.run_options(prov, model)
            if session_id:
                argv = prov.resume_argv(exe, session_id, text, opts)
            else:
                argv = prov.run_argv(exe, text, opts)
            labels = {"mode": "loop", "iteration": str(iteration)}
            summary = await self.runner.agent_in_job(job, ticket, prov, argv, lim, labels)
            session_id = summary.session_id or session_id
            failures = []
            for judge in judges:
                verdict, feedback = await self._judge(job, ticket, judge, iteration, prompt)
                await self.runner.db.save_verdict(ticket.ticket_id, verdict)
                mark = "passed" if verdict.passed else "failed"
                job.note(f"[symphony] judge {judge.name}: {mark} (score {verdict.score:.2f})")
                if not verdict.passed:
                    failures.append((judge, verdict, feedback))
            if not failures:
                record.labels["outcome"] = "passed"
                job.note(f"[symphony] all judges passed in iteration {iteration}")
                self.runner.sup.table.touch(record)
                return
        record.labels["outcome"] = "exhausted"
        job.note(f"[symphony] judges still failing after {max_iterations} iteration(s): exhausted")
        self.runner.sup.table.touch(record)

    def _judge_labels(self, ticket: Ticket, judge: JudgeSpec, iteration: int) -> dict[str, str]:
        return {
            "role": "judge",
            "judge": judge.name,
            "iteration": str(iteration),
            "worktree": str(ticket.worktree),
            "repoId": ticket.repo_id,
        }

    async def _judge(
        self, job: Job, ticket: Ticket, judge: JudgeSpec, iteration: int, task: str
    ) -> tuple[Verdict, str]:
        """Run one judge as a child of the loop; (its verdict, feedback for the next prompt)."""
        if judge.command is not None:
            return await self._command_judge(job, ticket, judge, iteration)
        return await self._provider_judge(job, ticket, judge, iteration, task)

    async def _command_judge(
        self, job: Job, ticket: Ticket, judge: JudgeSpec, iteration: int
    ) -> tuple[Verdict, str]:
        """Passes on exit 0 (score 1 or 0); the output's tail is the feedback."""
        assert judge.command is not None
        began = time.monotonic()
        spec = ProcessSpec(
            argv=list(judge.command),
            kind="symphony",
            cwd=str(ticket.worktree),
            env=dict(self.runner.settings.judge_env),
            ticket_id=ticket.ticket_id,
            labels=self._judge_labels(ticket, judge, iteration),
            stop_grace=self.runner.settings.stop_grace,
            max_runtime=judge.timeout or self.runner.settings.judge_timeout,
        )
        try:
            record = await self.runner.run_child(job, spec)
        except OSError as exc:
            ms = int((time.monotonic() - began) * 1000)
            text = f"cannot run judge command: {exc}"
            return Verdict(iteration, judge.name, False, 0.0, judge.threshold, text, ms, None, job.id), text
        passed = record.state is State.EXITED and record.exit_code == 0
        output = "\n".join(
            line.text for line in self.runner.sup.log(record.id).read() if line.stream in ("stdout", "stderr")
        )
        tail = output[-self.runner.settings.feedback_chars :]
        how = "exit code 0" if passed else outcome(record)
        score = 1.0 if passed else 0.0
        ms = int((time.monotonic() - began) * 1000)
        verdict = Verdict(
            iteration, judge.name, passed and score >= judge.threshold, score, judge.threshold,
            f"{how}\n{tail}".strip(), ms, record.id, job.id,
        )  # fmt: skip
        return verdict, f"`{short_argv(judge.command)}` ended with {how}. Output:\n{tail}"

    async def _provider_judge(
        self, job: Job, ticket: Ticket, judge: JudgeSpec, iteration: int, task: str
    ) -> tuple[Verdict, str]:
        """Asks a model (read-only) for a ``JudgeVerdict``, its schema enforced by the CLI.

        A judge that crashed or was stopped is a failing verdict saying so; a judge that answered
        outside the schema is an ``AgentReplyError`` that fails the loop (a verdict nobody gave
        must not steer the next iteration).
        """
        began = time.monotonic()
        prov = self.runner.registry.get(judge.provider or "claude")
        exe = self.runner.executable(prov)
        timeout = judge.timeout or self.runner.settings.judge_timeout
        criteria = judge.criteria or task
        prompt = (
            "You are a strict judge reviewing the work in this repository (the current directory). "
            "Do not change any file.\n\nThe task was:\n"
            f"{task}\n\nJudge it against these criteria:\n{criteria}\n\n"
            "Answer with your verdict: passed (true or false), a score from 0 to 1 and a one or "
            "two sentence justification, in the structured form you are given."
        )
        argv = prov.judge_argv(exe, prompt, self.runner.reply_options(JudgeVerdict, judge.model))
        lim = replace(
            self.runner.settings.defaults, max_runtime=min(timeout, self.runner.settings.defaults.max_runtime)
        )
        labels = self._judge_labels(ticket, judge, iteration)
        spec = self.runner.agent_spec(prov, argv, ticket, lim, labels=labels, role="judge")
        record = await self.runner.run_child(job, spec)
        summary = self.runner.conclude(record, prov)
        ms = int((time.monotonic() - began) * 1000)
        who = f"judge {judge.name!r} ({prov.name}, {record.id})"
        if record.state is not State.EXITED and not summary.reply_rejected:
            text = f"judge run failed: {record.error or outcome(record)}"
            return Verdict(
                iteration, judge.name, False, 0.0, judge.threshold, text, ms, record.id, job.id
            ), text
        try:
            said = self.runner.structured_reply(prov, summary, JudgeVerdict, who)
        except AgentReplyError as exc:
            job.note(f"[symphony] {exc}")
            job.record.labels["outcome"] = "bad_agent_reply"
            raise
        passed = said.passed and said.score >= judge.threshold
        why = said.justification
        score = said.score
        verdict = Verdict(iteration, judge.name, passed, score, judge.threshold, why, ms, record.id, job.id)
        return verdict, why

    async def judges(self, ticket_id: str, job_id: str | None = None) -> dict[str, Any]:
        """Verdicts per iteration of the ticket's latest loop (or of ``job_id``)."""
        await self.runner.known_ticket(ticket_id)
        if job_id is None:
            loops = self.runner.records(ticket_id, kinds=("symphony_loop",))
            job_id = loops[-1].id if loops else None
        verdicts = [v.to_json() for v in await self.runner.db.verdicts(ticket_id, job_id)]
        iterations: dict[int, list[dict[str, Any]]] = {}
        for v in verdicts:
            iterations.setdefault(v["iteration"], []).append(v)
        job = self.runner.sup.table.get(job_id) if job_id else None
        return {
            "ticketId": ticket_id,
            "jobId": job_id,
            "outcome": job.labels.get("outcome") if job else None,
            "state": job.state.value if job else None,
            "verdicts": verdicts,
            "iterations": [
                {"iteration": n, "passed": all(v["passed"] for v in vs), "verdicts": vs}
                for n, vs in sorted(iterations.items())
            ],
        }


def feedback_prompt(task: str, iteration: int, max_iterations: int, failures: list[Failure]) -> str:
    """The next iteration's prompt: the task, then each failed judge's score and feedback."""
    parts = [
        task,
        "",
        "---",
        f"Iteration {iteration} of {max_iterations}. The previous iteration did not pass these checks. "
        "Fix the problems they report:",
    ]
    for judge, verdict, feedback in failures:
        parts += [
            "",
            f"## Judge `{judge.name}` failed (score {verdict.score:.2f} < threshold {verdict.threshold:.2f})",
            feedback,
        ]
    return "\n".join(parts)
