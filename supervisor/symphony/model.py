"""Symphony's vocabulary: its errors, the ticket, judge specs and verdicts, small formatters.

Kept apart from the service so that the store, the settings and the HTTP front can share these
types without importing the service (and so without import cycles).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agents.providers import ProviderRegistry
from ..errors import BadRequest, TooLarge
from ..spec import ProcessRecord, iso

#: Every kind Symphony starts at the top level (what ``status`` lists and locks consider).
SYMPHONY_KINDS = ("symphony", "symphony_loop", "plan_loop", "chat")
#: The kinds whose latest record is a ticket's log by default.
TOP_KINDS = ("symphony", "symphony_loop", "plan_loop")


@dataclass(slots=True)
class Ticket:
    """What Symphony remembers of a ticket: where its worktree is and who worked on it last."""

    ticket_id: str
    repo_id: str
    worktree: Path
    branch: str
    base_ref: str | None
    provider: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ticketId": self.ticket_id,
            "repoId": self.repo_id,
            "worktree": str(self.worktree),
            "branch": self.branch,
            "baseRef": self.base_ref,
            "provider": self.provider,
        }


@dataclass(frozen=True, slots=True)
class JudgeSpec:
    """One judge of a loop: a command (passes on exit 0) or a provider asked for a verdict."""

    name: str
    command: tuple[str, ...] | None = None
    provider: str | None = None
    criteria: str | None = None
    threshold: float = 1.0
    model: str | None = None
    timeout: float | None = None

    @classmethod
    def parse(cls, raw: Any, index: int, registry: ProviderRegistry) -> JudgeSpec:
        """Check one ``judges[index]`` entry; errors name the field (``judges.0.command``)."""
        where = f"judges.{index}"
        if not isinstance(raw, Mapping):
            raise BadRequest(f"{where}: must be an object with name and command or provider")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(f"{where}.name: required string")
        command = raw.get("command")
        provider = raw.get("provider")
        if (command is None) == (provider is None):
            raise BadRequest(f"{where}: give exactly one of command (argv list) or provider")
        if command is not None and (
            not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command)
        ):
            raise BadRequest(f"{where}.command: must be a non-empty list of strings (argv, no shell)")
        if provider is not None and provider not in registry:
            raise BadRequest(f"{where}.provider: must be one of {', '.join(registry.names())}")
        threshold = raw.get("threshold", 1.0 if command is not None else 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            raise BadRequest(f"{where}.threshold: must be a number in 0..1")
        criteria = raw.get("criteria", raw.get("prompt"))
        if criteria is not None and not isinstance(criteria, str):
            raise BadRequest(f"{where}.criteria: must be a string")
        model = raw.get("model")
        if model is not None and not isinstance(model, str):
            raise BadRequest(f"{where}.model: must be a string")
        timeout = raw.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise BadRequest(f"{where}.timeout: must be a positive number of seconds")
        return cls(
            name=name.strip(),
            command=tuple(command) if command is not None else None,
            provider=provider,
            criteria=criteria,
            threshold=float(threshold),
            model=model,
            timeout=float(timeout) if timeout is not None else None,
        )


@dataclass(slots=True)
class Verdict:
    """One judge's answer in one iteration, as stored and as ``judges/:ticketId`` lists it."""

    iteration: int
    name: str
    passed: bool
    score: float
    threshold: float
    justification: str
    duration_ms: int
    process_id: str | None = None
    job_id: str | None = None
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "name": self.name,
            "passed": self.passed,
            "score": self.score,
            "threshold": self.threshold,
            "justification": self.justification,
            "durationMs": self.duration_ms,
            "processId": self.process_id,
            "jobId": self.job_id,
            "createdAt": iso(self.created_at),
        }


def require_text(value: Any, name: str) -> None:
    """A required, non-blank string field; the error names it."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{name}: required non-empty string")


#: The most a prompt or chat message may be, in UTF-8 bytes. Prompts over ~100 KB reach the agent
#: CLI on stdin (``runner.ARGV_PROMPT_MAX_BYTES``), so this is not argv's 128 KiB: it only keeps
#: one request from handing an agent more than any context window holds.
MAX_PROMPT_BYTES = 1 << 20


def check_prompt_size(value: str, name: str) -> str:
    """``value`` if at most ``MAX_PROMPT_BYTES`` of UTF-8, else ``TooLarge`` (413) naming it."""
    if len(value) > MAX_PROMPT_BYTES // 4 and len(value.encode("utf-8")) > MAX_PROMPT_BYTES:
        raise TooLarge(f"{name}: at most {MAX_PROMPT_BYTES} bytes (1 MiB)", code="prompt_too_large")
    return value


def short_argv(argv: Sequence[str], limit: int = 160) -> str:
    """An argv for a log line: prompts can be pages long."""
    text = " ".join(argv)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def outcome(record: ProcessRecord) -> str:
    """How a child ended, in words, for verdicts and error messages."""
    if record.stop_reason is not None:
        return f"{record.state.value} ({record.stop_reason.value})"
    if record.signal:
        return f"signal {record.signal}"
    return f"exit code {record.exit_code}"
