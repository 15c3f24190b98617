"""Agent runs on a ticket's worktree: the lock, the argv and spec, and what a finished run said.

``SymphonyRuns`` is the base of the service: it owns what every Symphony activity shares (the
provider registry, the worktrees, the store, the per-worktree lock, the background watchers)
and the one activity everything else is built from: starting an agent child with watchdogs
and folding its events when it ends. ``launch`` (kind ``symphony``) is that, on its own; loops,
plans and chat (the sibling modules) run it inside jobs or as chat turns.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

from ..agents.providers import (
    ClaudeProvider,
    CodexProvider,
    MissingBinary,
    Provider,
    ProviderRegistry,
    RunOptions,
    RunSummary,
    summarize,
)
from ..agents.replies import AgentReply, parse_reply, schema_file, schema_text
from ..engine import Job, KillReceipt, Supervisor
from ..errors import AgentFailed, AgentReplyError, BadRequest, Conflict, NotFound, Unavailable
from ..logs import LogLine, ProcessLog
from ..services.worktrees import Git, Worktrees, check_id
from ..spec import ACTIVE_STATES, ProcessRecord, ProcessSpec, State, StopReason
from .model import SYMPHONY_KINDS, Ticket, outcome, require_text, short_argv
from .settings import Limits, SymphonySettings
from .store import SymphonyStore

_TRANSCRIPT_CHARS = 30_000
#: A prompt longer than this (UTF-8 bytes) goes to the agent CLI on stdin, not in argv: one argv
#: element may not exceed Linux's MAX_ARG_STRLEN (128 KiB with its NUL). Shorter prompts stay in
#: argv, where the process table shows them.
ARGV_PROMPT_MAX_BYTES = 100_000
R = TypeVar("R", bound=AgentReply)


class Runner:
    """What every Symphony activity shares: the state, the worktree lock, and agent children.

    Activities (runs, loops, plans, chat, reviews, learnings, scoped chats) each hold one
    ``Runner``; none of them inherits from it, so a reader of ``svc.loops.start`` finds the
    method in ``loops.py`` and every shared step here, under one name.
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
        self.sup = sup
        self.store = sup.store
        self.db = SymphonyStore(sup.store)
        self.settings = settings or SymphonySettings()
        if registry is None:
            registry = ProviderRegistry([ClaudeProvider(), CodexProvider(self.settings.codex_sandbox)])
        self.registry = registry
        self.git = git or Git(sup)
        self.worktrees = Worktrees(sup, self.git)
        self.nursery = nursery
        self._busy: set[str] = set()
        self.post_done: dict[str, trio.Event] = {}
        self._watchers: set[trio.CancelScope] = set()
        self._closed = False

    def spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run a watcher in the service's nursery; ``close`` cancels every one still running."""

        async def run() -> None:
            with trio.CancelScope() as scope:
                self._watchers.add(scope)
                try:
                    await fn(*args)
                finally:
                    self._watchers.discard(scope)

        self.nursery.start_soon(run)

    def close(self) -> None:
        """Stop the watchers (the app is stopping; the supervisor stops the children)."""
        self._closed = True
        for scope in list(self._watchers):
            scope.cancel()

    # ---- the worktree lock --------------------------------------------------------------

    def active(self, *, ticket_id: str | None = None, worktree: str | None = None) -> list[ProcessRecord]:
        out = []
        for r in self.sup.table.records.values():
            if r.state not in ACTIVE_STATES or r.kind not in SYMPHONY_KINDS:
                continue
            by_ticket = ticket_id is not None and r.ticket_id == ticket_id
            if by_ticket or (worktree is not None and r.labels.get("worktree") == worktree):
                out.append(r)
        return out

    @contextmanager
    def reserve(self, ticket_id: str, worktree: str, what: str) -> Iterator[None]:
        """The worktree lock: held while setting up; the started record holds it after.

        The lock is the process table itself (an active record on the ticket or worktree) plus
        ``_busy`` for the window before the record exists, so a crash cannot leave it held.
        """
        busy = self.active(ticket_id=ticket_id, worktree=worktree)
        if worktree in self._busy or ticket_id in self._busy or busy:
            holder = busy[0] if busy else None
            detail = f" ({holder.kind} {holder.id} is {holder.state.value})" if holder else ""
            raise Conflict(f"ticket {ticket_id} is busy{detail}; cannot start {what} in its worktree")
        self._busy.update((worktree, ticket_id))
        try:
            yield
        finally:
            self._busy.discard(worktree)
            self._busy.discard(ticket_id)

    # ---- lookups ------------------------------------------------------------------------

    def node_for(self, node: str | None) -> str:
        """Where an activity's agent children run: ``node`` (a node's name, ``local``, or
        ``auto`` for placement's pick), else the configured default (``local`` unless the user
        set ``--default-node``). Resolved once per activity: a loop's children share a node.

        The child's cwd (the ticket's worktree, made on this machine) must exist on that node:
        on one machine every node shares it, across machines it must be at the same path.
        """
        return self.sup.placement.choose(node)

    def provider(self, name: str | None) -> Provider:
        name = name or "claude"
        if name not in self.registry:
            raise BadRequest(f"provider: must be one of {', '.join(self.registry.names())}")
        return self.registry.get(name)

    def executable(self, provider: Provider) -> str:
        try:
            return self.registry.executable(provider.name)
        except MissingBinary as exc:
            raise Unavailable(str(exc), exc.binary) from None

    async def repo_path(self, repo_id: str) -> Path:
        path = await self.db.repo_path(repo_id)
        if path is None:
            raise NotFound(f"repoId: no managed repository {repo_id!r}")
        if not await trio.to_thread.run_sync(path.is_dir):
            raise NotFound(f"repoId: the repository folder {path} is gone")
        return path

    async def ticket(self, ticket_id: str) -> Ticket:
        ticket = await self.db.ticket(ticket_id)
        if ticket is None:
            raise NotFound(f"ticketId: no Symphony ticket {ticket_id!r}")
        return ticket

    def records(
        self, ticket_id: str | None = None, kinds: Sequence[str] = SYMPHONY_KINDS
    ) -> list[ProcessRecord]:
        """The ticket's (or every ticket's) records of ``kinds``, oldest first."""
        recs = [
            r
            for r in self.sup.table.records.values()
            if r.kind in kinds and (ticket_id is None or r.ticket_id == ticket_id)
        ]
        recs.sort(key=lambda r: (r.started_at or 0.0, r.id))
        return recs

    async def known_ticket(self, ticket_id: str) -> None:
        """NotFound unless the ticket has runs or a stored row."""
        if self.records(ticket_id):
            return
        await self.ticket(ticket_id)

    async def kill_kind(self, ticket_id: str, kinds: Sequence[str], what: str) -> KillReceipt:
        """Kill the ticket's latest top-level record of ``kinds`` (active first); its receipt."""
        recs = [r for r in self.records(ticket_id, kinds) if r.job_id is None]
        if not recs:
            raise NotFound(f"ticketId: no {what} for {ticket_id!r}")
        active = [r for r in recs if r.state in ACTIVE_STATES]
        target = active[-1] if active else recs[-1]
        return await self.sup.kill(target.id, StopReason.KILL)

    def check_request(
        self,
        ticket_id: str,
        repo_id: str,
        prompt: str,
        provider: str | None,
        limits: Mapping[str, Any] | None,
    ) -> tuple[Provider, Limits]:
        """The checks every agent activity makes first, so their 400s come in the same order."""
        self.validate_ids(ticket_id, repo_id)
        require_text(prompt, "prompt")
        return self.provider(provider), self.settings.limits(limits)

    @asynccontextmanager
    async def prepared(
        self, ticket_id: str, repo_id: str, base_ref: str | None, provider: Provider, what: str
    ) -> AsyncIterator[Ticket]:
        """Take the worktree lock, create or reuse the worktree and remember the ticket.

        The body starts ``what`` while the lock is held, so nothing else can start in between.
        """
        worktree = str(self.worktrees.path_for(repo_id, ticket_id))
        with self.reserve(ticket_id, worktree, what):
            ticket, _created = await self.ensure_ticket(ticket_id, repo_id, base_ref, provider.name)
            yield ticket

    async def ensure_ticket(
        self, ticket_id: str, repo_id: str, base_ref: str | None, provider: str | None
    ) -> tuple[Ticket, bool]:
        """Create or reuse the worktree and remember the ticket (caller holds the lock)."""
        repo = await self.repo_path(repo_id)
        try:
            wt = await self.worktrees.ensure(repo, repo_id, ticket_id, base_ref)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        ticket = Ticket(ticket_id, repo_id, wt.path, wt.branch, wt.base_ref or None, provider)
        await self.db.save_ticket(ticket)
        return ticket, wt.created

    def validate_ids(self, ticket_id: Any, repo_id: Any) -> None:
        for value, name in ((ticket_id, "ticketId"), (repo_id, "repoId")):
            if not isinstance(value, str):
                raise BadRequest(f"{name}: required string")
            try:
                check_id(value, name)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None

    # ---- agent children -----------------------------------------------------------------

    def run_options(
        self, provider: Provider, model: str | None, *, read_only: bool = False, **kw: Any
    ) -> RunOptions:
        """Run options with the settings' permissions filled in (never a blanket skip).

        ``read_only``: claude gets only its reading tools, codex the read-only sandbox.
        """
        opts = RunOptions(model=model, **kw)
        if read_only:
            if provider.name == "claude":
                opts.allowed_tools = ("Read", "Glob", "Grep")
            else:
                opts.sandbox = "read-only"
        if provider.name == "claude":
            if opts.allowed_tools is None and self.settings.claude_allowed_tools is not None:
                opts.allowed_tools = self.settings.claude_allowed_tools
            if opts.permission_mode is None:
                opts.permission_mode = self.settings.claude_permission_mode
        elif provider.name == "codex" and opts.sandbox is None:
            opts.sandbox = self.settings.codex_sandbox
        return opts

    def agent_spec(
        self,
        provider: Provider,
        argv: list[str],
        ticket: Ticket | None,
        limits: Limits,
        *,
        kind: str = "symphony",
        role: str = "agent",
        labels: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ProcessSpec:
        """An agent child in the ticket's worktree (or ``cwd``), with all three watchdogs armed."""
        where = cwd if cwd is not None else ticket.worktree if ticket is not None else None
        if where is None:
            raise ValueError("an agent child needs a ticket or a cwd")
        place = {"repoId": ticket.repo_id, "worktree": str(ticket.worktree)} if ticket is not None else {}
        stdin: bytes | None = None
        if argv and len(argv[-1].encode("utf-8")) > ARGV_PROMPT_MAX_BYTES:
            moved = provider.prompt_on_stdin(argv)
            if moved is not None:
                argv, stdin = moved
                labels = {**(labels or {}), "promptOnStdin": str(len(stdin))}
        return ProcessSpec(
            argv=argv,
            stdin=stdin,
            kind=kind,
            cwd=str(where),
            env={**self.settings.env, **self.settings.provider_env.get(provider.name, {})},
            inherit_env=self.settings.inherit_env,
            ticket_id=ticket.ticket_id if ticket is not None else None,
            labels={"role": role, "provider": provider.name, **place, **(labels or {})},
            stop_grace=self.settings.stop_grace,
            stall_timeout=limits.stall_timeout,
            max_runtime=limits.max_runtime,
            result_idle_timeout=limits.result_idle_timeout,
            result_detector=provider.is_result_line,
            event_parser=provider.name,
        )

    def transcript(self, record: ProcessRecord) -> str:
        """A run's own parsed events as text (agent texts, tool calls, results), the last
        ``_TRANSCRIPT_CHARS`` of it: what learnings and run-viewer chats hand an agent."""
        prov = self.provider(record.labels.get("provider") or record.event_parser)
        parts: list[str] = []
        lines = (line.raw for line in self.sup.log(record.id).read() if line.stream == "stdout")
        for event in prov.parse_lines(lines):
            kind = event["type"]
            if kind == "text":
                parts.append(f"AGENT: {event['text']}")
            elif kind == "tool_use":
                parts.append(f"TOOL {event.get('name', '')}: {json.dumps(event.get('input'))[:2000]}")
            elif kind == "tool_result":
                parts.append(f"RESULT: {str(event.get('output') or event.get('text') or '')[:2000]}")
            elif kind == "error":
                parts.append(f"ERROR: {event['message']}")
        text = "\n".join(parts)
        return text[-_TRANSCRIPT_CHARS:]

    @staticmethod
    def reply_text(final: ProcessRecord, summary: RunSummary) -> str:
        """What a chat turn said, as stored in a conversation (errors and stops marked)."""
        if final.state is State.FAILED:
            return f"[error] {final.error or 'the agent failed'}"
        if final.state is State.KILLED:
            return summary.final_text or "[stopped]"
        return summary.final_text

    def reply_options(self, reply: type[AgentReply], model: str | None = None) -> RunOptions:
        """Options asking the CLI to enforce ``reply``'s schema (claude: the text; codex: a file
        under ``<state dir>/schemas``, written once per schema version)."""
        path = schema_file(reply, self.sup.state_dir / "schemas")
        return RunOptions(model=model, json_schema=schema_text(reply), schema_file=str(path))

    @staticmethod
    def structured_reply(provider: Provider, summary: RunSummary, reply: type[R], who: str) -> R:
        """The run's structured reply checked against ``reply``; ``AgentReplyError`` if the CLI
        gave up on it (claude retries a schema-breaking call 5 times), it is missing or breaks
        the schema."""
        if summary.reply_rejected:
            raise AgentReplyError(f"{who} broke the {reply.__name__} schema: {summary.error}")
        return parse_reply(reply, provider.structured(summary), who)

    async def ask(
        self,
        ticket: Ticket,
        provider: str | None,
        prompt: str,
        reply: type[R],
        *,
        role: str,
        model: str | None = None,
        kind: str = "symphony",
        labels: Mapping[str, str] | None = None,
    ) -> tuple[ProcessRecord, R]:
        """One read-only agent turn in the ticket's worktree, waited for; its structured reply.

        The CLI is asked for ``reply``'s schema. A reply that breaks it is an
        ``AgentReplyError``; a turn that did not exit cleanly otherwise is ``AgentFailed``.
        Cancelling the caller leaves the child to the supervisor's watchdogs.
        """
        prov = self.provider(provider or ticket.provider)
        exe = self.executable(prov)
        argv = prov.judge_argv(exe, prompt, self.reply_options(reply, model))
        spec = self.agent_spec(
            prov, argv, ticket, self.settings.defaults, kind=kind, role=role,
            labels={"mode": role, **(labels or {})},
        )  # fmt: skip
        record = await self.sup.start(spec)
        final = await self.sup.wait(record.id)
        summary = self.conclude(final, prov)
        who = f"the {role} turn {final.id} ({prov.name})"
        if final.state is not State.EXITED and not summary.reply_rejected:
            raise AgentFailed(f"{role} failed: {final.error or outcome(final)}")
        return final, self.structured_reply(prov, summary, reply, who)

    def conclude(self, record: ProcessRecord, provider: Provider) -> RunSummary:
        """Fold the child's events; an error result or a bad exit makes it ``failed``.

        The engine only knows exit codes: a CLI that exits 0 after an error result (or with no
        result at all) is a failed run here, with the reason in the record and the log.
        """
        log = self.sup.log(record.id)
        summary = summarize(provider, (line.raw for line in log.read() if line.stream == "stdout"))
        reason: str | None = None
        if record.state is State.EXITED and summary.ok is False:
            reason = summary.error
        elif record.state is State.EXITED and summary.result is None and record.stop_reason is None:
            reason = f"{provider.name} exited without a final result"
        elif record.state is State.FAILED:
            detail = summary.error or (_stderr_tail(log) or None)
            reason = f"{provider.name} exited with code {record.exit_code}" + (
                f": {detail}" if detail else ""
            )
        if reason is not None:
            record.state = State.FAILED
            record.error = record.error or reason[:2000]
            log.system(f"[symphony] run failed: {reason[:2000]}")
            record.last_seq = log.last_seq
            self.sup.table.touch(record)
        return summary

    async def note_session(
        self, ticket: Ticket, provider: Provider, session_id: str | None, *, unread: int = 1
    ) -> dict[str, Any]:
        """Remember the provider session a run used (chat resumes it); count a reply unread."""
        return await self.db.note_session(ticket.ticket_id, provider.name, session_id, unread)

    async def watch_run(self, record: ProcessRecord, provider: Provider, ticket: Ticket) -> None:
        done = self.post_done.setdefault(record.id, trio.Event())
        try:
            final = await self.sup.wait(record.id)
            summary = self.conclude(final, provider)
            if summary.session_id or summary.result is not None:
                await self.note_session(ticket, provider, summary.session_id)
        finally:
            done.set()

    async def settled(self, record_id: str) -> None:
        """Wait until a run's or chat turn's results are stored (its record is final)."""
        event = self.post_done.get(record_id)
        if event is not None:
            await event.wait()
        else:
            await self.sup.wait(record_id)

    # ---- agent children inside jobs (loops, plans) --------------------------------------

    async def start_agent_job(
        self,
        kind: str,
        body: Callable[[Job], Awaitable[None]],
        ticket: Ticket,
        provider: Provider,
        labels: Mapping[str, str] | None = None,
        description: Sequence[str] = (),
        node: str | None = None,
    ) -> Job:
        """Start a job (loop, plan loop) on the ticket's worktree whose log parses as ``provider``.

        Call under ``prepared``: the started record then holds the worktree lock. The job runs
        here; its children run on ``node`` (``run_child``), the job's ``node`` label says so.
        """
        worktree = str(self.worktrees.path_for(ticket.repo_id, ticket.ticket_id))
        job = await self.sup.start_job(
            kind,
            body,
            ticket_id=ticket.ticket_id,
            labels={
                "provider": provider.name,
                "repoId": ticket.repo_id,
                "worktree": worktree,
                **({"node": node} if node is not None else {}),
                **(labels or {}),
            },
            description=[kind, ticket.ticket_id, *description],
            node=node,
        )
        job.record.event_parser = provider.name
        job.record.cwd = worktree
        self.sup.table.touch(job.record)
        return job

    async def run_child(self, job: Job, spec: ProcessSpec) -> ProcessRecord:
        """``Job.run`` that also copies the child's lines into the job's log as they come."""
        record = await self.sup.start(spec, job_id=job.id, node=job.node)
        job.current = record.id
        job.children.append(record.id)
        role = spec.labels.get("role", "child")
        job.note(f"[symphony] {role} {record.id} started: {short_argv(spec.argv)}")
        copied = 0

        async def copy() -> None:
            nonlocal copied
            async for batch in self.sup.log(record.id).follow(since=copied):
                append_lines(job, batch)
                copied = batch[-1].seq

        ended = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(copy)
                final = await self.sup.wait(record.id)
                ended = True
            return final
        finally:
            # Cancelled (the job was killed) or failed: the child goes the way of a direct kill.
            # (A nursery may wrap Cancelled in a group, so this is not an `except Cancelled`.)
            if not ended:
                with trio.CancelScope(shield=True):
                    job.last_receipt = await self.sup.kill(record.id, job.stop_reason or StopReason.KILL)
                    append_lines(job, self.sup.log(record.id).read(copied))
            job.current = None

    async def agent_in_job(
        self,
        job: Job,
        ticket: Ticket,
        prov: Provider,
        argv: list[str],
        lim: Limits,
        labels: dict[str, str],
    ) -> RunSummary:
        """One agent child of a job; a failed one fails the job (``AgentFailed``)."""
        spec = self.agent_spec(prov, argv, ticket, lim, labels=labels)
        record = await self.run_child(job, spec)
        summary = self.conclude(record, prov)
        if summary.session_id or summary.result is not None:
            await self.note_session(ticket, prov, summary.session_id)
        if record.state is State.FAILED:
            raise AgentFailed(record.error or f"agent run {record.id} failed")
        return summary


def _stderr_tail(log: ProcessLog, limit: int = 500) -> str:
    text = "\n".join(line.text for line in log.tail(20) if line.stream == "stderr")
    return text[-limit:].strip()


def append_lines(job: Job, lines: list[LogLine]) -> None:
    """Copy a child's lines into its job's log, grouped into records by stream and time."""
    i = 0
    while i < len(lines):
        j = i
        while (
            j + 1 < len(lines) and lines[j + 1].stream == lines[i].stream and lines[j + 1].ts == lines[i].ts
        ):
            j += 1
        group = lines[i : j + 1]
        data = b"\n".join(line.raw for line in group) + b"\n"
        job.log.append(lines[i].stream, data, len(group), lines[i].ts)
        i = j + 1
