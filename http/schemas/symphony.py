"""Request and response bodies of the Symphony routes, as pydantic models.

They give the OpenAPI document its Symphony schemas and reject malformed bodies with a 400
naming the field (quart-schema's ``validate_request``; ``errors.py`` words the message). They
check shape only: what needs the service's knowledge (a known provider, a limit within the
configured maximum, a safe ticket id, an existing repo) is checked by the service, whose errors
name the field too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationInfo,
)

from gateway.http.schemas.core import NODE_HELP, NodeName, ProcessOut, ReceiptOut, Strict
from gateway.supervisor.symphony.model import check_prompt_size


def _no_nul(value: str) -> str:
    """Strings end up in argv, paths or SQL: a NUL would be a 500 deep down, not a 400 here."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _prompt_size(value: str, info: ValidationInfo) -> str:
    """Over ``MAX_PROMPT_BYTES``: ``TooLarge`` (not a ValueError, so pydantic lets it through
    and the answer is 413 ``prompt_too_large``, not a 400)."""
    return check_prompt_size(value, info.field_name or "prompt")


NoNul = AfterValidator(_no_nul)
PromptSize = AfterValidator(_prompt_size)
Id = Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]
#: Prompts and messages: up to 1 MiB of UTF-8 (long ones reach the agent on stdin).
Prompt = Annotated[str, StringConstraints(min_length=1), NoNul, PromptSize]
Short = Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]
Long = Annotated[str, StringConstraints(max_length=50_000), NoNul]
Seconds = Annotated[float, Field(gt=0)]
# Booleans and ids are strict: "yes" or "1" is a client bug to report, not to guess at.


class LimitsIn(Strict):
    """Watchdogs of the run in seconds; each at most the configured maximum."""

    result_idle_timeout: Seconds | None = Field(None, alias="resultIdleTimeout")
    stall_timeout: Seconds | None = Field(None, alias="stallTimeout")
    max_runtime: Seconds | None = Field(None, alias="maxRuntime")

    def as_request(self) -> dict[str, float]:
        """The contract's names of the limits that were given (what the service takes)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class SymphonyLimitsIn(Strict):
    """A change of the stored watchdog limits; what is left out keeps its current value.

    Maxima may exceed the built-in ones (a user may allow longer runs); the defaults must stay
    within the resulting maxima. Both are checked by the service, which names the field.
    """

    defaults: LimitsIn | None = None
    maximum: LimitsIn | None = None

    def as_request(self) -> dict[str, dict[str, float]]:
        return {
            name: part.as_request()
            for name, part in (("defaults", self.defaults), ("maximum", self.maximum))
            if part is not None
        }


class LimitsOut(BaseModel):
    resultIdleTimeout: float
    stallTimeout: float
    maxRuntime: float


class SymphonyLimitsOut(BaseModel):
    defaults: LimitsOut
    maximum: LimitsOut


class RunIn(Strict):
    """What ``launch`` and ``plan-loop/start`` take (``loop`` adds its judges)."""

    ticket_id: Id = Field(alias="ticketId")
    repo_id: Id = Field(alias="repoId")
    prompt: Prompt
    provider: Short | None = Field(None, description='"claude" (default) or "codex"')
    model: Short | None = None
    base_ref: Short | None = Field(None, alias="baseRef")
    limits: LimitsIn | None = None
    node: NodeName | None = Field(None, description=NODE_HELP)

    def run_args(self) -> dict[str, Any]:
        """Keyword arguments of ``Symphony.launch`` / ``loop`` / ``plan_start``."""
        return {
            "ticket_id": self.ticket_id,
            "repo_id": self.repo_id,
            "prompt": self.prompt,
            "provider": self.provider or "claude",
            "model": self.model,
            "base_ref": self.base_ref,
            "limits": self.limits.as_request() if self.limits else None,
            "node": self.node,
        }


class JudgeIn(Strict):
    """A command judge (``command``: argv, passes on exit 0) or a provider judge (``provider``)."""

    name: Short
    command: list[Annotated[str, StringConstraints(max_length=8192), NoNul]] | None = Field(
        None, max_length=1024
    )
    provider: Short | None = None
    criteria: Long | None = None
    threshold: float | None = Field(None, ge=0, le=1)
    model: Short | None = None
    timeout: Seconds | None = None


class LoopIn(RunIn):
    judges: list[JudgeIn] = Field(min_length=1, max_length=20)
    max_iterations: int = Field(3, alias="maxIterations", ge=1, le=100)

    def judge_dicts(self) -> list[dict[str, Any]]:
        return [j.model_dump(exclude_none=True) for j in self.judges]


class TicketIn(Strict):
    ticket_id: Id = Field(alias="ticketId")


class KillIn(TicketIn):
    remove_worktree: StrictBool = Field(
        False,
        alias="removeWorktree",
        description="tear the run down and remove the ticket's worktree (the branch stays)",
    )


class PlanLoopIn(Strict):
    """One body for the four ``plan-loop/*`` actions; each action says what it needs:
    ``start`` as ``launch``, ``feedback`` {ticketId, feedback}, ``approve`` {ticketId, launch?},
    ``kill`` {ticketId}."""

    ticket_id: Id = Field(alias="ticketId")
    repo_id: Id | None = Field(None, alias="repoId")
    prompt: Prompt | None = None
    provider: Short | None = None
    model: Short | None = None
    base_ref: Short | None = Field(None, alias="baseRef")
    limits: LimitsIn | None = None
    node: NodeName | None = Field(None, description=NODE_HELP)
    feedback: Prompt | None = None
    launch: StrictBool = False


class SessionIn(Strict):
    ticket_id: Id = Field(alias="ticketId")
    provider: Short | None = None
    title: Annotated[str, StringConstraints(max_length=500), NoNul] | None = None
    mark_read: StrictBool = Field(False, alias="markRead")


class SessionDeleteIn(Strict):
    """Either one session, or every session of a ticket (query arguments work too)."""

    session_id: Id | None = Field(None, alias="sessionId")
    ticket_id: Id | None = Field(None, alias="ticketId")


class ChatIn(Strict):
    message: Prompt
    provider: Short | None = None
    model: Short | None = None


class WireChatIn(BaseModel):
    """ClosedLoop's chat body (its web app sends more; unknown fields are ignored, as there)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    message: Annotated[str, NoNul, PromptSize] | None = None
    repo_path: Annotated[str, StringConstraints(max_length=4096), NoNul] | None = Field(
        None, alias="repoPath"
    )
    context_repo_paths: list[Annotated[str, StringConstraints(max_length=4096), NoNul]] | None = Field(
        None, alias="contextRepoPaths", max_length=20
    )
    provider: Short | None = Field(None, description='"claude" (default) or "codex"')
    model: Short | None = None
    display_content: str | None = Field(
        None, alias="displayContent", description="shown by the UI; not stored"
    )
    active_tab: str | None = Field(None, alias="activeTab")
    codex_available: bool | None = Field(None, alias="codexAvailable")


class ChatMessageIn(Strict):
    role: Literal["user", "assistant", "system"] = "user"
    content: Prompt


class CommentChatIn(Strict):
    ticket_id: Id = Field(alias="ticketId")
    message: Prompt
    context: Long | None = None
    provider: Short | None = None
    model: Short | None = None


class CommentPatchIn(Strict):
    resolved: StrictBool | None = None
    message_id: StrictInt | None = Field(None, alias="messageId", ge=1)
    content: Prompt | None = None


# ---- answers (documentation) --------------------------------------------------------------


class TicketOut(BaseModel):
    ticketId: str
    repoId: str
    worktree: str
    branch: str
    baseRef: str | None
    provider: str | None


class StartedOut(BaseModel):
    process: ProcessOut
    ticket: TicketOut | None = None


class WorktreeOut(BaseModel):
    path: str
    removed: bool
    exists: bool
    error: str | None


class KillOut(ReceiptOut):
    """The kill receipt; with ``removeWorktree``, what became of the worktree."""

    model_config = ConfigDict(extra="allow")
    worktree: WorktreeOut | None = None


class VerdictOut(BaseModel):
    iteration: int
    name: str
    passed: bool
    score: float
    threshold: float
    justification: str
    durationMs: int
    processId: str | None
    jobId: str | None
    createdAt: str | None


class JudgesOut(BaseModel):
    ticketId: str
    jobId: str | None
    outcome: str | None
    state: str | None
    verdicts: list[VerdictOut]
    iterations: list[dict[str, Any]]


class SessionOut(BaseModel):
    id: str
    ticketId: str
    provider: str
    providerSessionId: str | None
    title: str | None
    createdAt: str | None
    lastActivity: str | None
    unreadCount: int


class SessionListOut(BaseModel):
    sessions: list[SessionOut]


class UnreadOut(BaseModel):
    unreadCount: int
    byTicket: dict[str, int]


class ChatMessageOut(BaseModel):
    id: int
    ticketId: str
    role: str
    content: str
    provider: str | None
    processId: str | None
    createdAt: str | None


class ChatHistoryOut(BaseModel):
    ticketId: str
    messages: list[ChatMessageOut]


class CommentThreadOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    commentId: str
    ticketId: str | None
    resolved: bool
    providerSessionId: str | None
    messages: list[dict[str, Any]]


class CommitMessageOut(BaseModel):
    ticketId: str
    message: str
    empty: bool
    files: list[str]
    processId: str | None = None
