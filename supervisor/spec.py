"""What a caller asks the supervisor to run, and the record it keeps of every run."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class State(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"
    FAILED = "failed"
    KILLED = "killed"
    LOST = "lost"

    @property
    def ended(self) -> bool:
        return self in _ENDED


_ENDED = frozenset({State.EXITED, State.FAILED, State.KILLED, State.LOST})
ACTIVE_STATES = frozenset({State.STARTING, State.RUNNING, State.STOPPING})


class StopReason(StrEnum):
    KILL = "kill"
    TEARDOWN = "teardown"
    STALLED = "stalled"
    TIMEOUT = "timeout"
    RESULT_IDLE = "result-idle"
    SHUTDOWN = "shutdown"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """``never``, or ``on-failure`` with exponential backoff capped at ``max_backoff``."""

    mode: str = "never"
    max_restarts: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.mode not in ("never", "on-failure"):
            raise ValueError(f"restart mode must be 'never' or 'on-failure', not {self.mode!r}")
        if self.max_restarts < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("restart limits must not be negative")

    def delay(self, restarts_done: int) -> float:
        """Backoff before restart number ``restarts_done + 1``: backoff * 2**n, capped."""
        return min(self.backoff * (2**restarts_done), self.max_backoff)


TeardownHook = Callable[["ProcessRecord"], Awaitable[None]]
ResultDetector = Callable[[bytes], bool]


@dataclass(slots=True)
class ProcessSpec:
    """A child to run. ``argv`` is a list: request data never becomes a shell string.

    Watchdogs are deadlines in seconds (``math.inf`` = off): ``stall_timeout`` fires after that
    long without output, ``max_runtime`` after that long in total, and ``result_idle_timeout``
    that long after ``result_detector`` recognised the final result line of an agent CLI that
    then failed to exit. A result-idle stop counts as success.

    ``stdin``: None gives the child ``/dev/null``; bytes are written to a pipe on its stdin,
    which is then closed (EOF), from the child's own task, so a child that reads slowly never
    blocks the gateway. This is how a prompt too long for one argv element (Linux's 128 KiB
    ``MAX_ARG_STRLEN``) reaches an agent CLI. Cancellation: when the child exits or is killed,
    the write is abandoned at once and the pipe closed; a child that exits without reading
    everything is not an error. A restarted child is fed the same bytes again.
    """

    argv: Sequence[str]
    kind: str = "command"
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ticket_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_grace: float = 5.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    teardown_hooks: Sequence[TeardownHook] = ()
    stall_timeout: float = math.inf
    max_runtime: float = math.inf
    result_idle_timeout: float = math.inf
    result_detector: ResultDetector | None = None
    event_parser: str | None = None
    inherit_env: bool = True
    stdin: bytes | None = None
    #: Resource limits, applied through the child's cgroup (``memory.max`` in bytes,
    #: ``cpu.max`` in CPUs, ``pids.max``); asking for one where its controller is not
    #: delegated to the gateway fails the start.
    memory_max: int | None = None
    cpu_max: float | None = None
    pids_max: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.argv, str | bytes):
            raise TypeError("argv must be a sequence of strings, not a shell string")
        self.argv = [str(a) for a in self.argv]
        if self.stdin is not None and not isinstance(self.stdin, bytes):
            raise TypeError("stdin must be bytes or None")
        if not self.argv:
            raise ValueError("argv must not be empty")
        for name in ("stop_grace", "stall_timeout", "max_runtime", "result_idle_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be positive")
        for name in ("memory_max", "cpu_max", "pids_max"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive")


@dataclass(slots=True)
class ProcessRecord:
    """One row of the process table; ``to_json`` is the contract's process record."""

    id: str
    kind: str
    argv: list[str]
    cwd: str | None
    ticket_id: str | None = None
    state: State = State.STARTING
    pid: int | None = None
    pid_start: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    signal: str | None = None
    restarts: int = 0
    last_seq: int = 0
    torn_down: bool = False
    stop_reason: StopReason | None = None
    labels: dict[str, str] = field(default_factory=dict)
    job_id: str | None = None
    event_parser: str | None = None
    error: str | None = None
    #: Where the child runs: ``local`` or the name of a node (see ``placement``).
    node: str = "local"
    version: int = 0
    #: How the tree is found and killed: ``"cgroup"`` (its own cgroup v2) or ``"proc"``.
    kill_method: str | None = None
    cpu_usec: int | None = None
    memory_peak: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "ticketId": self.ticket_id,
            "state": self.state.value,
            "pid": self.pid,
            "argv": list(self.argv),
            "cwd": self.cwd,
            "startedAt": iso(self.started_at),
            "endedAt": iso(self.ended_at),
            "exitCode": self.exit_code,
            "signal": self.signal,
            "restarts": self.restarts,
            "lastSeq": self.last_seq,
            "tornDown": self.torn_down,
            "stopReason": self.stop_reason.value if self.stop_reason else None,
            "labels": dict(self.labels),
            "jobId": self.job_id,
            "error": self.error,
            "killMethod": self.kill_method,
            "cpuUsec": self.cpu_usec,
            "memoryPeak": self.memory_peak,
            "node": self.node,
        }


def iso(ts: float | None) -> str | None:
    """Wall-clock seconds as ISO-8601 UTC with milliseconds, as the contract shows them."""
    if ts is None:
        return None
    import datetime as _dt

    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
