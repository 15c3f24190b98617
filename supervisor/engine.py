"""The supervisor: one nursery owning every child, with verified tree kills and watchdogs.

Each child is owned by one task in the supervisor's nursery (``_child_task``). That task spawns
the process, pumps its pipes into its log, waits for it to exit *or* for a reason to stop it (a
kill request, a teardown, a watchdog deadline), and when stopping, kills the whole tree and
reaps it before it writes the final record. Callers of ``kill`` only ask and wait: a client that
goes away half-way cannot leave a kill half done.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
import secrets
import shutil
import signal as _signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from . import proctree
from .cgroups import Cgroup, CgroupError, Cgroups, EventsWatch
from .logs import LogLimits, ProcessLog
from .placement import LOCAL, Placement
from .spec import ProcessRecord, ProcessSpec, State, StopReason, TeardownHook
from .store import Store
from .table import ProcessTable

_READ_SIZE = 256 * 1024
_PIPE_SIZE = 256 * 1024
_POLL = 0.02
_KILL_RETRY = 0.002
#: While a cgroup kill waits for ``populated 0``, how often it looks for members forked since.
_RECHECK = 0.05
_KILL_HARD_LIMIT = 10.0


_ID_SALT = secrets.token_hex(3)
_ID_COUNTER = itertools.count()


#: Labels added to every record started from this context (a task and the tasks it starts).
#: The HTTP front sets it while it serves a relayed command, so that the command's children
#: can be found (and killed) by label. The engine merges the labels in and never reads them.
spawn_labels: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("spawn_labels", default=())


def new_id(prefix: str = "p") -> str:
    """Sortable by start time, unique across gateway runs (it is also the tree marker).

    Milliseconds, then a per-run random salt, then a per-run counter: no system call per id
    (``secrets`` costs a getrandom each, a visible share of a spawn).
    """
    return f"{prefix}_{int(time.time() * 1000):011x}{_ID_SALT}{next(_ID_COUNTER) & 0xFFFF:04x}"


@dataclass(slots=True)
class SignalSent:
    signal: str
    at: float
    pids: list[int]

    def to_json(self) -> dict[str, Any]:
        from .spec import iso

        return {"signal": self.signal, "at": iso(self.at), "pids": self.pids}


@dataclass(slots=True)
class KillReceipt:
    """What a kill did; returned only once nothing of the tree is left alive."""

    process: ProcessRecord
    signals: list[SignalSent] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)
    elapsed_ms: int = 0
    already_ended: bool = False
    #: ``"cgroup"`` (members from cgroup.procs, ``cgroup.kill``) or ``"proc"`` (/proc scans).
    method: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "process": self.process.to_json(),
            "signals": [s.to_json() for s in self.signals],
            "survivors": self.survivors,
            "elapsedMs": self.elapsed_ms,
            "alreadyEnded": self.already_ended,
            "method": self.method,
            "node": self.process.node,
        }


def _default_keep() -> dict[str, int]:
    return {"git": 200, "gh": 200}


@dataclass(slots=True)
class SupervisorConfig:
    state_dir: Path
    log_limits: LogLimits = field(default_factory=LogLimits)
    reap_interval: float = 1.0
    #: Retention per kind: at most this many ended records (and their logs) are kept; the
    #: oldest go first. Kinds not listed (agent runs, ad-hoc commands) are kept for good. Short
    #: helpers like ``git`` and ``gh`` would otherwise grow the table by one record per UI poll.
    keep_ended: dict[str, int] = field(default_factory=_default_keep)
    #: A record younger than this stays whatever the count: its caller may still read its log.
    keep_grace: float = 60.0
    #: A cgroup v2 per child where the gateway may create them (else the /proc path).
    cgroups: bool = True


class _TreeScanner:
    """Coalesces /proc scans: every kill that asks within the same instant shares one scan.

    There is no cheap way to list a process's children on every kernel (``/proc/<pid>/task/
    <tid>/children`` is optional), so finding a tree means reading every process's stat. 200
    concurrent kills must not mean 200 scans: a caller joins the scan that is about to run, or
    schedules one after a short gathering window. A scan always starts after the caller asked,
    so nothing that existed when it asked can be missed. The scan runs in a worker thread.
    """

    def __init__(self, window: float = 0.002) -> None:
        self._window = window
        self._pending: trio.Event | None = None
        self._snap: proctree.Snapshot | None = None
        self.scans = 0

    async def fresh(self) -> proctree.Snapshot:
        pending = self._pending
        if pending is not None:
            await pending.wait()
            assert self._snap is not None
            return self._snap
        self._pending = pending = trio.Event()
        try:
            await trio.sleep(self._window)
            self._pending = None
            self._snap = await trio.to_thread.run_sync(proctree.Snapshot)
            self.scans += 1
        finally:
            self._pending = None if self._pending is pending else self._pending
            pending.set()
        return self._snap


class _Child:
    """The live state of one supervised child, owned by its ``_child_task``."""

    def __init__(self, spec: ProcessSpec, record: ProcessRecord, log: ProcessLog) -> None:
        self.spec = spec
        self.record = record
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self.stop_reason: StopReason | None = None
        self.wait_scope = trio.CancelScope()
        self.backoff_scope = trio.CancelScope()
        self.stall_scope = trio.CancelScope()
        self.result_scope = trio.CancelScope()
        self.exited = trio.Event()
        self.finished = trio.Event()
        self.receipt: KillReceipt | None = None
        self.cgroup: Cgroup | None = None
        self.out: trio.lowlevel.FdStream | None = None
        self.err: trio.lowlevel.FdStream | None = None
        self.stdin: trio.lowlevel.FdStream | None = None  # our end of its stdin pipe, if fed
        #: Set by a bulk kill that already sent the SIGTERM (``Supervisor._presignal``).
        self.presignal: _Presignal | None = None


class _Presignal:
    """The first step of a cgroup kill, taken for many children in one pass by ``kill_many``:
    when the grace began, the SIGTERM sent and the members it went to."""

    __slots__ = ("began", "child", "members", "sent")

    def __init__(self, child: _Child, began: float, sent: SignalSent, members: set[int]) -> None:
        self.child = child
        self.began = began
        self.sent = sent
        self.members = members


class Job:
    """A supervised task that runs children one after another (a loop, a review pipeline).

    Killing the job cancels its scope; ``run`` then kills the current child exactly like a
    direct kill, and since the job body is cancelled no further child starts. The job itself
    runs here; its children run on ``node`` (None or ``local``: here too).
    """

    def __init__(
        self, sup: Supervisor, record: ProcessRecord, log: ProcessLog, node: str | None = None
    ) -> None:
        self.sup = sup
        self.record = record
        self.log = log
        self.node = node
        self.scope = trio.CancelScope()
        self.finished = trio.Event()
        self.stop_reason: StopReason | None = None
        self.current: str | None = None
        self.children: list[str] = []
        self.last_receipt: KillReceipt | None = None

    @property
    def id(self) -> str:
        return self.record.id

    async def run(self, spec: ProcessSpec) -> ProcessRecord:
        """Start ``spec`` as the job's current child and wait for its end."""
        record = await self.sup.start(spec, job_id=self.id, node=self.node)
        self.current = record.id
        self.children.append(record.id)
        try:
            return await self.sup.wait(record.id)
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                self.last_receipt = await self.sup.kill(record.id, self.stop_reason or StopReason.KILL)
            raise
        finally:
            self.current = None

    def note(self, text: str) -> None:
        self.log.system(text)


JobBody = Callable[[Job], Awaitable[Any]]


class Supervisor:
    """Owns every child of the gateway. Create with ``open_supervisor``."""

    def __init__(self, config: SupervisorConfig, store: Store, nursery: trio.Nursery) -> None:
        self.config = config
        self.state_dir = config.state_dir
        self.logs_dir = config.state_dir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.table = ProcessTable(store)
        self._nursery = nursery
        self._children: dict[str, _Child] = {}
        self._jobs: dict[str, Job] = {}
        self._logs: dict[str, ProcessLog] = {}
        self._known: set[int] = set()
        self._roots: set[int] = set()
        self._scanner = _TreeScanner()
        self._kind_hooks: dict[str, list[TeardownHook]] = {}
        self._prefix = proctree.pdeathsig_prefix()
        self._key = proctree.state_key(str(config.state_dir))
        self.cgroups = Cgroups.open(self._key) if config.cgroups else None
        self.cgroup_events: EventsWatch | None = None
        #: Emptied cgroups whose removal waits for an adopted zombie to be reaped.
        self._busy_cgroups: set[Cgroup] = set()
        if self.cgroups is not None:
            try:
                self.cgroup_events = EventsWatch()
            except OSError:
                self.cgroup_events = None  # kills then watch each member's pidfd
        self._found_executables: set[tuple[str, str | None, str | None]] = set()
        self._closing = False
        self.lines_ingested = 0
        self.bytes_ingested = 0
        self.recovered: list[KillReceipt] = []
        #: The spec's own teardown hooks of remote records: callables cannot travel to a node,
        #: so they run here, on the gateway, like the kinds' hooks (see ``teardown``).
        self._remote_hooks: dict[str, list[TeardownHook]] = {}
        #: Remote nodes: records whose ``node`` is not ``local`` are started, killed and
        #: waited for through their node's backend.
        self.placement = Placement()

    # ---- public API ---------------------------------------------------------------------

    def log(self, record_id: str) -> ProcessLog:
        """The log of any record, live or historical. Raises KeyError for unknown ids."""
        log = self._logs.get(record_id)
        if log is None:
            if record_id not in self.table.records:
                raise KeyError(record_id)
            log = ProcessLog(self.logs_dir / record_id, self.config.log_limits)
            log.ended = True
            self._logs[record_id] = log
        return log

    def register_teardown(self, kind: str, hook: TeardownHook) -> None:
        """A teardown step for every record of ``kind``, including ones from earlier runs."""
        self._kind_hooks.setdefault(kind, []).append(hook)

    def job(self, record_id: str) -> Job | None:
        return self._jobs.get(record_id)

    async def start_service(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``fn`` in the supervisor's nursery (``nursery.start`` protocol) until shutdown.

        For helpers that must outlive the HTTP front and still serve ``shutdown`` (a node's
        connection): they are cancelled only after every child was stopped.
        """
        return await self._nursery.start(fn, *args)

    async def start(
        self, spec: ProcessSpec, *, job_id: str | None = None, node: str | None = None
    ) -> ProcessRecord:
        """Start ``spec``; returns the record once the child runs (or raises if it cannot).

        ``node`` places it on a remote node (``placement``); None or ``local`` runs it here.
        """
        if self._closing:
            raise RuntimeError("supervisor is shutting down")
        if node is not None and node != LOCAL:
            remote = await self.placement.get(node).start(spec, job_id=job_id)
            if spec.teardown_hooks:
                self._remote_hooks[remote.id] = list(spec.teardown_hooks)
            return remote
        limits = (spec.memory_max, spec.cpu_max, spec.pids_max)
        if any(v is not None for v in limits):
            if self.cgroups is None:
                raise CgroupError("resource limits need cgroup v2 delegated to the gateway (not here)")
            why = self.cgroups.supports(*limits)
            if why is not None:
                raise CgroupError(why)
        record = ProcessRecord(
            id=new_id("p"),
            kind=spec.kind,
            argv=list(spec.argv),
            cwd=spec.cwd,
            ticket_id=spec.ticket_id,
            labels={**spec.labels, **dict(spawn_labels.get())},
            job_id=job_id,
            event_parser=spec.event_parser,
        )
        log = ProcessLog(self.logs_dir / record.id, self.config.log_limits, new=True)
        child = _Child(spec, record, log)
        self._logs[record.id] = log
        self._children[record.id] = child
        try:
            await self._nursery.start(self._child_task, child)
        except BaseException:
            self._children.pop(record.id, None)
            raise
        # Persistence is write-behind: a crash before the flush loses no child, because the
        # next start sweeps by state key, not by what the database remembers.
        return record

    async def start_job(
        self,
        kind: str,
        body: JobBody,
        *,
        ticket_id: str | None = None,
        labels: dict[str, str] | None = None,
        description: list[str] | None = None,
        node: str | None = None,
    ) -> Job:
        """Run ``body(job)`` as a supervised job; returns once its record is running.

        The job runs here; ``node`` is where ``Job.run`` starts its children.
        """
        if self._closing:
            raise RuntimeError("supervisor is shutting down")
        record = ProcessRecord(
            id=new_id("j"),
            kind=kind,
            argv=description or [kind],
            cwd=None,
            ticket_id=ticket_id,
            labels={**(labels or {}), **dict(spawn_labels.get())},
        )
        log = ProcessLog(self.logs_dir / record.id, self.config.log_limits, new=True)
        self._logs[record.id] = log
        job = Job(self, record, log, node)
        self._jobs[record.id] = job
        await self._nursery.start(self._job_task, job, body)
        return job

    async def wait(self, record_id: str) -> ProcessRecord:
        """Wait until the record has ended for good (after any restarts) and return it."""
        child = self._children.get(record_id)
        if child is not None:
            await child.finished.wait()
            return child.record
        job = self._jobs.get(record_id)
        if job is not None:
            await job.finished.wait()
            return job.record
        record = self.table.get(record_id)
        if record is None:
            raise KeyError(record_id)
        remote = self.placement.remote(record)
        if remote is not None:
            return await remote.wait(record_id)
        return record

    async def kill(
        self, record_id: str, reason: StopReason = StopReason.KILL, *, grace: float | None = None
    ) -> KillReceipt:
        """Stop the record's whole tree and return once all of it is gone and reaped.

        Idempotent: a record that already ended answers a receipt with ``already_ended``.
        Shielded inside: a caller that is cancelled stops waiting, the kill still completes.
        """
        began = trio.current_time()
        job = self._jobs.get(record_id)
        if job is not None:
            return await self._kill_job(job, reason, began)
        remote = self.placement.remote(self.table.get(record_id))
        if remote is not None:
            return await remote.kill(record_id, reason, grace=grace)
        child = self._children.get(record_id)
        if child is None or child.finished.is_set():
            record = self.table.get(record_id) if child is None else child.record
            if record is None:
                raise KeyError(record_id)
            return KillReceipt(process=record, already_ended=True)
        if child.stop_reason is None:
            child.stop_reason = reason
            if grace is not None:
                child.spec.stop_grace = grace
            child.wait_scope.cancel()
            child.backoff_scope.cancel()
        await child.finished.wait()
        if child.receipt is None:
            return KillReceipt(process=child.record, already_ended=True)
        return child.receipt

    async def kill_many(
        self, record_ids: Iterable[str], reason: StopReason = StopReason.KILL, *, teardown: bool = False
    ) -> list[KillReceipt]:
        """Kill (or tear down) every record at once; the receipts in the order asked.

        The kills run concurrently, so their waits overlap: the whole batch takes about as
        long as its slowest tree. Unknown ids raise ``KeyError`` before anything is killed.
        Like ``kill``, each kill completes even if the caller is cancelled.
        """
        ids = list(dict.fromkeys(record_ids))
        for record_id in ids:
            if record_id not in self.table.records and record_id not in self._children:
                raise KeyError(record_id)
        receipts: dict[str, KillReceipt] = {}
        batch = self._presignal(ids, StopReason.TEARDOWN if teardown else reason)

        async def one(record_id: str) -> None:
            if teardown:
                receipts[record_id] = await self.teardown(record_id)
            else:
                receipts[record_id] = await self.kill(record_id, reason)

        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for record_id in ids:
                    child = self._children.get(record_id)
                    if teardown or child is None or child.presignal is None:
                        nursery.start_soon(one, record_id)
                # A bulk-signalled child needs no task of its own here: its kill is under
                # way, and its receipt is there once it finished.
                for pre in batch:
                    if not pre.child.finished.is_set():  # (no checkpoint per finished one)
                        await pre.child.finished.wait()
        for pre in batch:
            record = pre.child.record
            if record.id not in receipts:
                receipts[record.id] = pre.child.receipt or KillReceipt(process=record, already_ended=True)
        return [receipts[record_id] for record_id in ids]

    def _presignal(self, ids: list[str], reason: StopReason) -> list[_Presignal]:
        """SIGTERM every member of every cgroup child in ``ids``, in one synchronous pass.

        A kill of many trees is bound by the kernel's work: each signal wakes a process that
        then exits, mostly on the signalling CPU. Sent from one loop before any child's task
        runs, the trees die while the loop goes on, and their tasks then mostly find empty
        cgroups, instead of each task interleaving its signals with everyone's bookkeeping
        (the signals of 200 trees were spread over the whole kill that way). Each child's
        task then does the rest of its kill (the grace from the same start, ``cgroup.kill``,
        the receipt) as for a single kill. Only running children under a cgroup that no one
        asked to stop yet are taken; the others take the ordinary path. Synchronous: no
        cancellation point.

        Two other senders were slower. A worker thread: ``os.kill`` holds the GIL while the
        victim preempts the sender. A ``/bin/sh`` helper sending them all (the exits then no
        longer stall this thread): over 20 interleaved rounds of 200 hard trees it took 146 ms
        against 139 ms from here, and 56 ms of this process's CPU against 35, because every
        child's task then woke before its tree was gone and paid the waiting path.
        """
        began = trio.current_time()
        batch = []
        for record_id in ids:
            child = self._children.get(record_id)
            if (
                child is None
                or child.cgroup is None
                or child.popen is None
                or child.stop_reason is not None
                or child.finished.is_set()
                or child.record.state is not State.RUNNING
                or child.exited.is_set()
            ):
                continue
            root = child.popen.pid
            members = child.cgroup.procs()
            if root not in members and proctree.alive(root):
                members.add(root)  # its ``sh`` prefix has not joined the cgroup yet
            sent = SignalSent("SIGTERM", time.time(), sorted(child.cgroup.signal(members, _signal.SIGTERM)))
            child.presignal = pre = _Presignal(child, began, sent, members)
            batch.append(pre)
            child.stop_reason = reason
            child.wait_scope.cancel()
        return batch

    async def teardown(self, record_id: str) -> KillReceipt:
        """Kill, then run the kind's and the spec's teardown hooks once; logs are kept.

        Hooks run here, also for a remote record (its spec's hooks were kept when it started;
        a gateway restart forgets them, the kinds' hooks stay): a hook that touches files
        touches this machine's, the node's only where both share the path.
        """
        receipt = await self.kill(record_id, StopReason.TEARDOWN)
        record = receipt.process
        if record.torn_down:
            return receipt
        child = self._children.get(record_id)
        hooks = list(self._kind_hooks.get(record.kind, ()))
        if child is not None:
            hooks.extend(child.spec.teardown_hooks)
        hooks.extend(self._remote_hooks.pop(record_id, ()))
        log = self.log(record_id)
        # Mark first: a second teardown racing this one must not run the hooks again.
        record.torn_down = True
        for hook in hooks:
            try:
                with trio.CancelScope(shield=True):
                    await hook(record)
            except Exception as exc:  # a failed hook is reported, the rest still run
                note = f"teardown hook failed: {exc}"
                # Keep the run's own failure reason: the hook's comes after it.
                record.error = f"{record.error}; {note}" if record.error else note
                log.system(f"[gateway] teardown hook failed: {exc!r}")
        log.system("[gateway] torn down")
        record.last_seq = log.last_seq
        self.table.touch(record)
        await self.table.persisted(record)
        return receipt

    # ---- the child task -----------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        """Fork from the event loop's thread: PR_SET_PDEATHSIG follows the forking thread."""
        spec, record = child.spec, child.record
        env = dict(os.environ) if spec.inherit_env else {}
        env.update(spec.env)
        env[proctree.MARKER_VAR] = proctree.marker_for(record.id, self._key)
        exe = (spec.argv[0], env.get("PATH"), spec.cwd)
        if exe not in self._found_executables:
            _check_executable(*exe)
            self._found_executables.add(exe)
        if self.cgroups is not None and child.cgroup is None:
            try:
                child.cgroup = self.cgroups.create(record.id)
            except OSError:
                child.cgroup = None  # this child takes the /proc path
            if child.cgroup is not None:
                child.cgroup.set_limits(spec.memory_max, spec.cpu_max, spec.pids_max)
        record.kill_method = "proc" if child.cgroup is None else "cgroup"
        join = child.cgroup.join_argv() if child.cgroup is not None else []
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        _widen_pipe(out_r)
        # Both ends are close-on-exec; Popen dup2s the child's end onto fd 0.
        in_r, in_w = os.pipe() if spec.stdin is not None else (None, None)
        try:
            child.popen = subprocess.Popen(
                [*self._prefix, *join, *spec.argv],
                cwd=spec.cwd,
                env=env,
                stdin=subprocess.DEVNULL if in_r is None else in_r,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,
                close_fds=True,
                preexec_fn=None if self._prefix else proctree.make_child_setup(os.getpid()),  # type: ignore[call-overload]
            )
        except BaseException:
            for fd in (out_r, err_r, in_w):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
            if in_r is not None:
                os.close(in_r)
        child.out = trio.lowlevel.FdStream(out_r)
        child.err = trio.lowlevel.FdStream(err_r)
        child.stdin = trio.lowlevel.FdStream(in_w) if in_w is not None else None
        record.pid = child.popen.pid
        self._roots.add(child.popen.pid)
        record.pid_start = proctree.start_time(child.popen.pid)

    async def _child_task(self, child: _Child, *, task_status: trio.TaskStatus[None]) -> None:
        record, spec, log = child.record, child.spec, child.log
        first = True
        try:
            while True:
                try:
                    self._spawn(child)
                except OSError as exc:
                    record.state = State.FAILED
                    record.error = f"cannot start {spec.argv[0]}: {exc.strerror or exc}"
                    record.ended_at = time.time()
                    log.system(f"[gateway] {record.error}")
                    self.table.touch(record)
                    if first:
                        raise
                    break
                if first:
                    record.started_at = time.time()
                record.state = State.RUNNING
                record.ended_at = record.exit_code = record.signal = None
                self.table.touch(record)
                if first:
                    task_status.started()
                    first = False
                    await trio.to_thread.run_sync(log.prepare)
                await self._supervise_once(child)
                if not self._should_restart(child):
                    break
                delay = spec.restart.delay(record.restarts)
                log.system(f"[gateway] exited with {record.exit_code}; restart in {delay:g}s")
                record.state = State.STARTING
                self.table.touch(record)
                with child.backoff_scope:
                    await trio.sleep(delay)
                if child.backoff_scope.cancelled_caught or child.stop_reason is not None:
                    record.state = State.KILLED
                    record.stop_reason = child.stop_reason
                    child.receipt = KillReceipt(process=record, elapsed_ms=0)
                    break
                child.backoff_scope = trio.CancelScope()
                child.wait_scope = trio.CancelScope()
                child.exited = trio.Event()
                record.restarts += 1
                log.reopen()
        finally:
            with trio.CancelScope(shield=True):
                # ``finished`` is set whatever happens here: a kill waits on it, and an error
                # of this task surfaces only once the supervisor's body is done waiting.
                try:
                    if child.popen is not None and child.popen.poll() is None:
                        # Cancelled from outside (a crashed sibling task cancelled the
                        # supervisor's nursery): never leave the tree running behind the record.
                        child.stop_reason = child.stop_reason or StopReason.SHUTDOWN
                        with trio.move_on_after(spec.stop_grace + _KILL_HARD_LIMIT + 1):
                            async with trio.open_nursery() as nursery:
                                nursery.start_soon(self._wait_exit, child)
                                child.receipt = await self._kill_tree(child, began=trio.current_time())
                    if record.state in (State.STARTING, State.RUNNING, State.STOPPING):
                        record.state = State.KILLED
                        record.stop_reason = record.stop_reason or StopReason.SHUTDOWN
                    record.ended_at = record.ended_at or time.time()
                    record.last_seq = log.last_seq
                    if child.cgroup is not None:
                        self._retire_cgroup(child)
                    if child.stdin is not None:
                        child.stdin.close()  # idempotent; fed or not, never leak the fd
                    log.close()
                    self.table.touch(record)
                    if record.kind in self.config.keep_ended:
                        # Before ``finished``: whoever waits on this child sees the cap applied.
                        await self._retain((record.kind,))
                finally:
                    child.finished.set()

    def _should_restart(self, child: _Child) -> bool:
        record, policy = child.record, child.spec.restart
        return (
            policy.mode == "on-failure"
            and child.stop_reason is None
            and not self._closing
            and record.state == State.FAILED
            and record.restarts < policy.max_restarts
        )

    async def _supervise_once(self, child: _Child) -> None:
        """One run of the child: pump, watch, stop if asked, reap, record the outcome."""
        spec, record, log = child.spec, child.record, child.log
        assert child.popen is not None
        began = trio.current_time()
        child.stall_scope = trio.CancelScope(deadline=began + spec.stall_timeout)
        child.result_scope = trio.CancelScope()
        watchdog: StopReason | None = None
        assert child.out is not None and child.err is not None  # set by the spawn above
        async with trio.open_nursery() as pumps:
            pumps.start_soon(self._pump, child, child.out, "stdout")
            pumps.start_soon(self._pump, child, child.err, "stderr")
            pumps.start_soon(self._wait_exit, child)
            if child.stdin is not None and spec.stdin is not None:
                pumps.start_soon(self._feed, child, child.stdin, spec.stdin)
            with trio.CancelScope(deadline=began + spec.max_runtime) as max_scope:  # noqa: SIM117
                with child.stall_scope, child.result_scope, child.wait_scope:
                    await child.exited.wait()
            if child.presignal is not None or not child.exited.is_set():
                if child.stop_reason is not None:
                    pass
                elif child.result_scope.cancelled_caught:
                    watchdog = StopReason.RESULT_IDLE
                elif child.stall_scope.cancelled_caught:
                    watchdog = StopReason.STALLED
                elif max_scope.cancelled_caught:
                    watchdog = StopReason.TIMEOUT
                if child.stop_reason is None:
                    child.stop_reason = watchdog or StopReason.KILL
                    log.system(f"[gateway] watchdog: {child.stop_reason.value}")
                record.state = State.STOPPING
                record.stop_reason = child.stop_reason
                self.table.touch(record)
                with trio.CancelScope(shield=True):
                    began = child.presignal.began if child.presignal is not None else trio.current_time()
                    child.receipt = await self._kill_tree(child, began=began)
            else:
                # Exited by itself: leftovers of its tree (backgrounded children) go too.
                with trio.CancelScope(shield=True):
                    leftovers = await self._tree(child)
                    if leftovers:
                        log.system(f"[gateway] main process exited; stopping {len(leftovers)} leftover(s)")
                        await self._kill_tree(child, began=trio.current_time())
            # Pipes close once the tree is gone; don't hang on a descriptor held elsewhere.
            pumps.cancel_scope.deadline = trio.current_time() + 2.0
        rc = child.popen.returncode
        self._roots.discard(child.popen.pid)
        record.exit_code = rc if rc is not None and rc >= 0 else None
        record.signal = _signal.Signals(-rc).name if rc is not None and rc < 0 else None
        record.pid_start = None
        if child.stop_reason is not None:
            record.stop_reason = child.stop_reason
            # An agent that printed its final result and then hung did its work.
            record.state = State.EXITED if child.stop_reason is StopReason.RESULT_IDLE else State.KILLED
        else:
            record.state = State.EXITED if rc == 0 else State.FAILED
        record.ended_at = time.time()
        record.last_seq = log.last_seq
        outcome = f"exit code {rc}" if rc is not None and rc >= 0 else f"signal {record.signal}"
        log.system(f"[gateway] process ended ({record.state.value}, {outcome})")
        if child.receipt is not None:
            child.receipt.process = record
        self.table.touch(record)

    async def _root_exited(self, child: _Child) -> None:
        """Until the child's root process has exited (and is reaped): ``child.exited``.

        That event is set by the child's ``_wait_exit`` task, which runs beside the pumps; when
        the whole supervisor is cancelled (a cancelled caller, Ctrl-C) that task is cancelled
        with them while a kill goes on shielded, and the event would never be set. So a kill
        waits here instead: on the event while the watcher runs, and by polling the root
        itself (``Popen.poll``, which reaps it) in case the watcher is gone. Cancellation: the
        kill paths call this shielded; unshielded it is an ordinary checkpoint.
        """
        popen = child.popen
        while not child.exited.is_set():
            if popen is None or popen.poll() is not None:
                child.exited.set()
                return
            with trio.move_on_after(_POLL):
                await child.exited.wait()

    async def _wait_exit(self, child: _Child) -> None:
        popen = child.popen
        assert popen is not None
        try:
            pidfd = os.pidfd_open(popen.pid)
        except (OSError, AttributeError):
            pidfd = None
        try:
            while popen.poll() is None:
                if pidfd is not None:
                    await trio.lowlevel.wait_readable(pidfd)
                else:
                    await trio.sleep(_POLL)
        finally:
            if pidfd is not None:
                os.close(pidfd)
        child.exited.set()

    async def _feed(self, child: _Child, stream: trio.lowlevel.FdStream, data: bytes) -> None:
        """Write ``spec.stdin`` to the child's stdin, then close it (the child sees EOF).

        Cancellation: the write stops as soon as the child has exited (or was killed), and the
        pipe is closed whatever happened; a child that stopped reading early is not an error.
        """
        async with stream, trio.open_nursery() as nursery:

            async def stop_when_exited() -> None:
                await child.exited.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_when_exited)
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            nursery.cancel_scope.cancel()

    async def _pump(self, child: _Child, stream: trio.lowlevel.FdStream, name: str) -> None:
        """Drain one pipe into the log, whole chunks at a time; never waits on a reader.

        A read is cut at its last newline and the complete lines go to the log as they are;
        only a line longer than ``max_line`` (rare: a quick check finds none in ~two
        ``rfind`` calls per chunk) makes the chunk go through the splitting path.
        """
        log, spec = child.log, child.spec
        max_line = log.limits.max_line
        detector = spec.result_detector
        stall = spec.stall_timeout
        carry = b""
        try:
            async with stream:
                while True:
                    data = await stream.receive_some(_READ_SIZE)
                    if not data:
                        break
                    if stall != math.inf:
                        child.stall_scope.deadline = trio.current_time() + stall
                    buf = carry + data if carry else data
                    cut = buf.rfind(b"\n") + 1
                    if cut == 0:
                        carry = buf
                        while len(carry) >= max_line:
                            self._ingest(child, name, carry[:max_line] + b"\n", 1)
                            carry = carry[max_line:]
                        continue
                    if cut == len(buf):
                        complete, carry = buf, b""
                    else:
                        complete, carry = buf[:cut], buf[cut:]
                    if len(complete) > max_line and has_long_line(complete, max_line):
                        complete, count = _split_long(complete, max_line)
                    else:
                        count = complete.count(b"\n")
                    self._ingest(child, name, complete, count)
                    if detector is not None and child.result_scope.deadline == math.inf:
                        for line in complete.splitlines():
                            if detector(line):
                                child.result_scope.deadline = trio.current_time() + spec.result_idle_timeout
                                break
                    while len(carry) >= max_line:
                        self._ingest(child, name, carry[:max_line] + b"\n", 1)
                        carry = carry[max_line:]
        except (trio.ClosedResourceError, trio.BrokenResourceError, OSError):
            pass
        finally:
            if carry:
                self._ingest(child, name, carry + b"\n", 1)

    def _ingest(self, child: _Child, stream: str, data: bytes, count: int) -> None:
        child.log.append(stream, data, count)
        child.record.last_seq = child.log.last_seq
        self.lines_ingested += count
        self.bytes_ingested += len(data)

    # ---- killing trees ------------------------------------------------------------------

    async def _tree(self, child: _Child) -> set[int]:
        if child.cgroup is not None:
            return child.cgroup.procs()
        return (await self._tree_and_snapshot(child))[0]

    async def _tree_and_snapshot(self, child: _Child) -> tuple[set[int], proctree.Snapshot]:
        snap = await self._scanner.fresh()
        root = child.popen.pid if child.popen is not None else None
        marker = proctree.marker_for(child.record.id, self._key)
        members = proctree.find_tree(snap, marker, root, exclude=self._roots)
        if root is not None:
            self._known.update(members - {root})
        return members, snap

    async def _kill_tree(self, child: _Child, began: float) -> KillReceipt:
        """SIGTERM the tree, wait its grace, SIGKILL what is left, repeat until none is left.

        Deaths are watched cheaply (the root's pidfd, one stat read per known member); a full
        /proc scan confirms the end, and catches anything forked while the kill ran.
        """
        if child.cgroup is not None:
            return await self._kill_cgroup(child, began)
        record, log = child.record, child.log
        root = child.popen.pid if child.popen is not None else None
        receipt = KillReceipt(process=record, method="proc")
        grace_end = began + child.spec.stop_grace
        hard_end = grace_end + _KILL_HARD_LIMIT
        members, snap = await self._tree_and_snapshot(child)
        sent = proctree.signal_pids(members, _signal.SIGTERM, group=root, snap=snap)
        receipt.signals.append(SignalSent("SIGTERM", time.time(), sorted(sent)))
        log.system(f"[gateway] SIGTERM sent to {len(sent)} process(es)")
        signalled = set(members)
        escalated = False
        while True:
            with trio.move_on_at(hard_end if escalated else grace_end):
                await self._root_exited(child)
                await _wait_gone(members - {root} if root is not None else members)
            members, snap = await self._tree_and_snapshot(child)
            if root is not None and child.exited.is_set():
                members.discard(root)
            if not members and (child.exited.is_set() or root is None):
                break
            now = trio.current_time()
            if now < grace_end:
                # Forked after the first SIGTERM: they get the same courtesy.
                fresh = members - signalled
                signalled |= fresh
                proctree.signal_pids(fresh, _signal.SIGTERM)
                continue
            if now >= hard_end and escalated:
                receipt.survivors = sorted(members)
                log.system(f"[gateway] survivors after SIGKILL: {sorted(members)}")
                break
            sent = proctree.signal_pids(members, _signal.SIGKILL, group=root, snap=snap)
            if sent:
                receipt.signals.append(SignalSent("SIGKILL", time.time(), sorted(sent)))
                if not escalated:
                    log.system(f"[gateway] grace over: SIGKILL sent to {len(sent)} process(es)")
            escalated = True
        proctree.reap_adopted(self._known)
        await self._root_exited(child)
        receipt.elapsed_ms = int((trio.current_time() - began) * 1000)
        return receipt

    async def _kill_cgroup(self, child: _Child, began: float) -> KillReceipt:
        """SIGTERM the cgroup's members, wait the grace, ``cgroup.kill``, confirm it is empty.

        Members come from ``cgroup.procs``: no /proc scan, and no way out of it (``setsid``,
        ``env -i``, double forks). Deaths are watched through pidfds; the end is confirmed by
        ``cgroup.events`` saying ``populated 0``.
        """
        cgroup = child.cgroup
        assert cgroup is not None
        record, log = child.record, child.log
        root = child.popen.pid if child.popen is not None else None
        receipt = KillReceipt(process=record, method="cgroup")
        grace_end = began + child.spec.stop_grace

        def current() -> set[int]:
            # The root joins from its ``sh`` prefix, a moment after the spawn returned: until
            # then (a kill right after a start) it is a member only by being the root.
            found = cgroup.procs()
            if root is not None and root not in found and not child.exited.is_set() and proctree.alive(root):
                found.add(root)
            return found

        pre, child.presignal = child.presignal, None
        emptied = False
        if pre is None:
            members = current()
            sent = cgroup.signal(members, _signal.SIGTERM)
            receipt.signals.append(SignalSent("SIGTERM", time.time(), sorted(sent)))
            signalled = set(members)
        else:
            # A bulk kill sent the SIGTERM already; most trees are gone by now.
            sent = pre.sent.pids
            receipt.signals.append(pre.sent)
            signalled = set(pre.members)
            emptied = not cgroup.populated()  # read once: most trees of a bulk kill are gone
            members = set() if emptied else current()
            fresh = members - signalled  # forked meanwhile: the same courtesy
            if fresh and trio.current_time() < grace_end:
                signalled |= fresh
                cgroup.signal(fresh, _signal.SIGTERM)
        log.system(f"[gateway] SIGTERM sent to {len(sent)} process(es) of its cgroup")
        while members and trio.current_time() < grace_end:
            await self._wait_cgroup(cgroup, members, min(grace_end, trio.current_time() + _RECHECK))
            self._known.update(members - {root})
            members = current()
            fresh = members - signalled  # forked after the first SIGTERM: the same courtesy
            if fresh and trio.current_time() < grace_end:
                signalled |= fresh
                cgroup.signal(fresh, _signal.SIGTERM)
        if members or (not emptied and cgroup.populated()):
            cgroup.kill()
            cgroup.signal(current() - cgroup.procs(), _signal.SIGKILL)  # a root not joined yet
            receipt.signals.append(SignalSent("SIGKILL", time.time(), sorted(members)))
            log.system(f"[gateway] grace over: SIGKILL sent to {len(members)} process(es) (cgroup.kill)")
            hard_end = trio.current_time() + _KILL_HARD_LIMIT
            while (cgroup.populated() or current()) and trio.current_time() < hard_end:
                left = current()
                self._known.update(left - {root})
                await self._wait_cgroup(cgroup, left, min(hard_end, trio.current_time() + _RECHECK))
                if cgroup.populated() or current():
                    cgroup.kill()  # a fork that raced the first write
                    cgroup.signal(current(), _signal.SIGKILL)
                    await trio.sleep(_KILL_RETRY)
            if cgroup.populated():
                receipt.survivors = sorted(cgroup.procs())
                log.system(f"[gateway] survivors after cgroup.kill: {receipt.survivors}")
        # Only this tree's adopted zombies (a bulk kill must not re-read every tree's pids once
        # per tree). Every member was in the cgroup, so ours to reap once adopted; what is left (alive
        # under a parent that is not this process) stays known for the periodic reaper.
        tree = (signalled | members) - {root}
        proctree.reap_adopted(tree)
        self._known.update(tree)
        await self._root_exited(child)
        receipt.elapsed_ms = int((trio.current_time() - began) * 1000)
        return receipt

    async def _wait_cgroup(self, cgroup: Cgroup, members: set[int], until: float) -> None:
        """Until ``cgroup`` is empty (its ``cgroup.events`` changed) or ``until``.

        One inotify descriptor serves every kill; a root that has not joined its cgroup yet
        (or a machine without inotify) is watched through pidfds instead.
        """
        watch = self.cgroup_events
        changed = watch.changed(cgroup) if watch is not None else None
        if changed is not None and cgroup.populated():
            with trio.move_on_at(until):
                await changed.wait()
            return
        with trio.move_on_at(until):
            await _wait_gone(members)

    def _retire_cgroup(self, child: _Child) -> None:
        """Record what the child's cgroup accounted, then remove it (kept while populated)."""
        cgroup = child.cgroup
        assert cgroup is not None
        usage = cgroup.usage()
        child.record.cpu_usec, child.record.memory_peak = usage.cpu_usec, usage.memory_peak
        try:
            removed = cgroup.remove()
            if not removed and not cgroup.populated():
                # Empty but busy: an adopted member's zombie; reap what is known and retry,
                # else the reaper retries every second.
                proctree.reap_adopted(self._known)
                removed = cgroup.remove()
                if not removed:
                    self._busy_cgroups.add(cgroup)
                    removed = True  # nothing of it runs: not worth a line in the log
        except OSError:
            removed = False
        if self.cgroup_events is not None:
            self.cgroup_events.forget(cgroup)
        if not removed:
            child.log.system(f"[gateway] cgroup {cgroup.name} still populated; kept for the next sweep")

    async def _retain(self, kinds: Iterable[str], now: float | None = None) -> list[str]:
        """Forget the oldest ended records of capped kinds (``keep_ended``), logs included."""
        now = time.time() if now is None else now
        doomed: list[str] = []
        for kind in kinds:
            keep = self.config.keep_ended.get(kind)
            if keep is None:
                continue
            ended = sorted(
                (r for r in self.table.records.values() if r.kind == kind and r.state.ended),
                key=lambda r: r.ended_at or 0.0,
            )
            excess = ended[: max(len(ended) - keep, 0)]
            doomed += [r.id for r in excess if (r.ended_at or 0.0) < now - self.config.keep_grace]
        files: list[Path] = []
        for record_id in self.table.forget(doomed):
            self._children.pop(record_id, None)
            self._jobs.pop(record_id, None)
            self._remote_hooks.pop(record_id, None)
            log = self._logs.pop(record_id, None)
            files += log.segment_files() if log is not None else [self.logs_dir / f"{record_id}.*"]
        if files:
            await trio.to_thread.run_sync(_unlink_logs, files)
        return doomed

    def _reap(self) -> None:
        if self._known:
            proctree.reap_adopted(self._known)
        for cgroup in list(self._busy_cgroups):
            with contextlib.suppress(OSError):
                if cgroup.remove():
                    self._busy_cgroups.discard(cgroup)

    async def _reaper(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reap adopted orphans that died outside a kill (the subreaper's side of the deal)."""
        task_status.started()
        while True:
            await trio.sleep(self.config.reap_interval)
            self._reap()

    async def _kill_job(self, job: Job, reason: StopReason, began: float) -> KillReceipt:
        if job.finished.is_set():
            return KillReceipt(process=job.record, already_ended=True)
        if job.stop_reason is None:
            job.stop_reason = reason
            job.record.state = State.STOPPING
            job.record.stop_reason = reason
            self.table.touch(job.record)
            job.log.system(f"[gateway] job stop requested ({reason.value})")
            job.scope.cancel()
        await job.finished.wait()
        inner = job.last_receipt
        return KillReceipt(
            process=job.record,
            signals=list(inner.signals) if inner else [],
            survivors=list(inner.survivors) if inner else [],
            elapsed_ms=int((trio.current_time() - began) * 1000),
        )

    async def _job_task(self, job: Job, body: JobBody, *, task_status: trio.TaskStatus[None]) -> None:
        record = job.record
        record.state = State.RUNNING
        record.started_at = time.time()
        self.table.touch(record)
        task_status.started()
        try:
            with job.scope:
                await body(job)
            if job.stop_reason is not None:
                record.state = State.KILLED
            else:
                record.state = State.EXITED
        except Exception as exc:
            record.state = State.FAILED
            record.error = f"{type(exc).__name__}: {exc}"
            job.log.system(f"[gateway] job failed: {record.error}")
        finally:
            with trio.CancelScope(shield=True):
                if record.state in (State.RUNNING, State.STOPPING):
                    record.state = State.KILLED
                    record.stop_reason = record.stop_reason or StopReason.SHUTDOWN
                record.ended_at = time.time()
                job.log.system(f"[gateway] job ended ({record.state.value})")
                record.last_seq = job.log.last_seq
                job.log.close()
                self.table.touch(record)
                job.finished.set()

    # ---- start-up recovery and shutdown -------------------------------------------------

    async def _recover(self) -> None:
        """Kill what a crashed earlier gateway left running and mark those records ``lost``.

        Leftovers are found by this state dir's marker key, plus any recorded pid whose start
        time still matches (a reused pid never does). Records left active are marked lost.
        """
        marked = proctree.find_marked(self._key)
        # A remote record's tree is its node's to sweep: the node client settles it.
        stale = {r.id: r for r in self.table.records.values() if not r.state.ended and r.node == LOCAL}
        # A leftover's cgroup holds all of its tree, also what left the marker behind
        # (``env -i``) or its session (``setsid``).
        cgroups = self.cgroups.leftovers() if self.cgroups is not None else {}
        for record_id in marked.keys() | stale.keys() | cgroups.keys():
            record = stale.get(record_id) or self.table.get(record_id)
            pids = set(marked.get(record_id, ()))
            same = record is not None and record.pid and record.pid_start
            if same and proctree.start_time(record.pid) == record.pid_start:  # type: ignore[union-attr,arg-type]
                pids.add(record.pid)  # type: ignore[union-attr,arg-type]
            began = trio.current_time()
            receipt = await _kill_foreign(pids, cgroups.get(record_id))
            receipt.elapsed_ms = int((trio.current_time() - began) * 1000)
            if record is None:
                continue  # its record never reached the database; the tree is gone all the same
            log = self.log(record_id)
            log.system(f"[gateway] found after a gateway crash; {len(pids)} process(es) of its tree stopped")
            log.close()
            if not record.state.ended:
                record.state = State.LOST
                record.stop_reason = StopReason.LOST
                record.ended_at = time.time()
            record.last_seq = log.last_seq
            receipt.process = record
            self.table.touch(record)
            self.recovered.append(receipt)

    async def shutdown(self) -> None:
        """Stop every child and job (reason ``shutdown``) and wait for all of them."""
        self._closing = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.placement.shutdown)
            for job in list(self._jobs.values()):
                if not job.finished.is_set():
                    nursery.start_soon(self.kill, job.id, StopReason.SHUTDOWN)
        async with trio.open_nursery() as nursery:
            for child in list(self._children.values()):
                if not child.finished.is_set():
                    nursery.start_soon(self.kill, child.record.id, StopReason.SHUTDOWN)


@asynccontextmanager
async def open_supervisor(
    state_dir: Path | str | SupervisorConfig, *, log_limits: LogLimits | None = None
) -> AsyncIterator[Supervisor]:
    """Run a supervisor for the body of the block; leaving it stops every child first.

    On entry it opens (and migrates) ``<state>/gateway.db``, loads the process table and
    recovers from a crashed predecessor. On exit, also when cancelled, it kills every child's
    tree in a shielded scope, then flushes the table and closes the database.
    """
    if isinstance(state_dir, SupervisorConfig):
        config = state_dir
    else:
        config = SupervisorConfig(Path(state_dir), log_limits=log_limits or LogLimits())
    config.state_dir.mkdir(parents=True, exist_ok=True)
    proctree.become_subreaper()
    store = Store(config.state_dir / "gateway.db")
    await store.open()
    opened: Supervisor | None = None
    try:
        async with trio.open_nursery() as nursery:
            sup = opened = Supervisor(config, store, nursery)
            await sup.table.load()
            await nursery.start(sup.table.flusher)
            await nursery.start(sup._reaper)
            if sup.cgroup_events is not None:
                await nursery.start(sup.cgroup_events.run)
            await sup._recover()
            await sup._retain(config.keep_ended)
            try:
                yield sup
            finally:
                with trio.CancelScope(shield=True):
                    await sup.shutdown()
                    await sup.table.flush()
                nursery.cancel_scope.cancel()
    finally:
        if opened is not None and opened.cgroups is not None:
            opened._reap()  # adopted zombies would keep their emptied cgroups busy
            opened.cgroups.close()  # once every child task removed its own cgroup
        with trio.CancelScope(shield=True):
            await store.close()


def _unlink_logs(paths: list[Path]) -> None:
    """Delete log segments; a ``<id>.*`` entry (a record from an earlier run) is globbed."""
    for path in paths:
        targets = path.parent.glob(path.name + ".log") if path.name.endswith(".*") else [path]
        for target in targets:
            target.unlink(missing_ok=True)


def has_long_line(data: bytes, max_line: int) -> bool:
    """Whether ``data`` (complete lines) holds a line longer than ``max_line`` bytes.

    Each step looks for the last newline within ``max_line + 1`` bytes of a line start: none
    means that line is too long; else the next line start is just past it. So a chunk costs
    about ``len(data) / max_line`` searches, however many lines it holds.
    """
    start, end = 0, len(data)
    while end - start > max_line:
        nl = data.rfind(b"\n", start, start + max_line + 1)
        if nl < 0:
            return True
        start = nl + 1
    return False


def _split_long(complete: bytes, max_line: int) -> tuple[bytes, int]:
    """Cut lines longer than ``max_line`` into pieces; the rare path of chunked ingest."""
    out: list[bytes] = []
    for line in complete.split(b"\n")[:-1]:
        if len(line) <= max_line:
            out.append(line)
            continue
        out.extend(line[i : i + max_line] for i in range(0, len(line), max_line))
    return b"\n".join(out) + b"\n", len(out)


def _check_executable(program: str, path: str | None, cwd: str | None) -> None:
    """Fail like exec would, before the setpriv prefix turns a missing binary into exit 127."""
    if "/" in program:
        full = os.path.join(cwd or os.getcwd(), program)
        if os.path.isfile(full) and os.access(full, os.X_OK):
            return
    elif shutil.which(program, path=path) is not None:
        return
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


async def _wait_gone(pids: set[int]) -> None:
    """Return once every pid has exited (a zombie counts as gone).

    A pidfd turns readable the moment its process exits, child or not, so a kill learns of
    each death at once and sleeps meanwhile; a kernel without pidfds gets a short poll.
    """
    fds: list[int] = []
    polled: list[int] = []
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                continue  # already gone
            except (OSError, AttributeError):
                polled.append(pid)
        for fd in fds:
            await trio.lowlevel.wait_readable(fd)
        while any(proctree.alive(p) for p in polled):
            await trio.sleep(0.005)
    finally:
        for fd in fds:
            os.close(fd)


async def _kill_foreign(pids: set[int], cgroup: Cgroup | None = None) -> KillReceipt:
    """SIGTERM, a short grace, SIGKILL: for processes that are not this gateway's children.

    With ``cgroup`` (a leftover of an earlier gateway's child), its members are killed too,
    the last step is ``cgroup.kill`` and the emptied cgroup is removed.
    """
    receipt = KillReceipt(process=ProcessRecord(id="", kind="", argv=[], cwd=None), method="proc")
    if cgroup is not None:
        receipt.method = "cgroup"
        pids = pids | cgroup.procs()
        if pids:
            receipt.signals.append(SignalSent("SIGTERM", time.time(), sorted(pids)))
            proctree.signal_pids(pids, _signal.SIGTERM)
            with trio.move_on_after(2.0):
                await _wait_gone(pids)
        if cgroup.populated():
            receipt.signals.append(SignalSent("SIGKILL", time.time(), sorted(cgroup.procs())))
            cgroup.kill()
            deadline = trio.current_time() + _KILL_HARD_LIMIT
            while cgroup.populated() and trio.current_time() < deadline:
                await trio.sleep(_KILL_RETRY)
                cgroup.kill()
        receipt.survivors = sorted(cgroup.procs())
        # Members whose parent died were adopted by this subreaper: their zombies keep the
        # cgroup busy (rmdir says EBUSY) until reaped.
        proctree.reap_adopted(set(pids))
        with contextlib.suppress(OSError):
            cgroup.remove()
        return receipt
    if not pids:
        return receipt
    receipt.signals.append(SignalSent("SIGTERM", time.time(), sorted(pids)))
    proctree.signal_pids(pids, _signal.SIGTERM)
    deadline = trio.current_time() + 2.0
    while any(proctree.alive(p) for p in pids) and trio.current_time() < deadline:
        await trio.sleep(_POLL)
    left = [p for p in pids if proctree.alive(p)]
    if left:
        receipt.signals.append(SignalSent("SIGKILL", time.time(), sorted(left)))
        proctree.signal_pids(left, _signal.SIGKILL)
        deadline = trio.current_time() + _KILL_HARD_LIMIT
        while any(proctree.alive(p) for p in left) and trio.current_time() < deadline:
            await trio.sleep(_POLL)
    receipt.survivors = [p for p in pids if proctree.alive(p)]
    return receipt


def _widen_pipe(fd: int) -> None:
    """A 256 KiB stdout pipe: a quarter of the reads and records of the default 64 KiB.

    Pages are only used while the child is ahead of the pump, so idle children cost nothing.
    Best effort: an unprivileged user past pipe-user-pages-soft keeps the default.
    """
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
    except OSError:
        pass
