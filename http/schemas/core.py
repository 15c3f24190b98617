"""Request and response bodies as pydantic models: validation and the OpenAPI document.

Request models forbid unknown fields (a typo must not be silently ignored) and bound sizes, so
bad input is a 400 naming the field, never a 500 deeper down.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Text = Annotated[str, StringConstraints(max_length=4096)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
LabelKey = Annotated[str, StringConstraints(max_length=100)]
LabelValue = Annotated[str, StringConstraints(max_length=1000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# ---- errors -------------------------------------------------------------------------------


class ErrorResponse(BaseModel):
    """ClosedLoop's error envelope: ``error`` is the message clients show (``new Error(data.error)``)."""

    model_config = ConfigDict(extra="allow")
    error: str
    code: str
    details: dict[str, Any] | None = None


# ---- processes ----------------------------------------------------------------------------


class RestartIn(Strict):
    mode: Literal["never", "on-failure"] = "never"
    max_restarts: int = Field(3, alias="maxRestarts", ge=0, le=1000)
    backoff: float = Field(1.0, ge=0, le=3600)
    max_backoff: float = Field(30.0, alias="maxBackoff", ge=0, le=86400)


#: Where a child runs: a configured node's name, ``local`` (this machine) or ``auto``
#: (placement's pick; for processes, leaving ``node`` out does the same).
NodeName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
NODE_HELP = (
    'a node\'s name, "local" (this machine) or "auto" (the least loaded node that is up); '
    "omitted: the default node (local unless the gateway runs with --default-node)"
)


class StartProcessIn(Strict):
    """An ad-hoc supervised command (``pm2 start``): argv list, never a shell string."""

    argv: list[Annotated[str, StringConstraints(min_length=1, max_length=8192)]] = Field(
        min_length=1, max_length=1024
    )
    cwd: Text | None = None
    env: dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], Text] = Field(
        default_factory=dict, max_length=256
    )
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")] = "command"
    ticket_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, alias="ticketId"
    )
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=64)
    stop_grace: float = Field(5.0, alias="stopGrace", gt=0, le=600)
    restart: RestartIn | None = None
    stall_timeout: float | None = Field(None, alias="stallTimeout", gt=0, le=7 * 86400)
    max_runtime: float | None = Field(None, alias="maxRuntime", gt=0, le=30 * 86400)
    # Applied through the child's cgroup (422 where the controller is not delegated).
    memory_max: int | None = Field(None, alias="memoryMax", ge=1 << 20, le=1 << 50)
    cpu_max: float | None = Field(None, alias="cpuMax", gt=0, le=1024)
    pids_max: int | None = Field(None, alias="pidsMax", ge=1, le=1 << 22)
    # An agent CLI's stream format: its log lines then carry parsed ``event``s (a conversation).
    event_parser: Literal["claude", "codex"] | None = Field(None, alias="eventParser")
    #: A node name (``local`` = this machine); omitted: placement picks one.
    node: NodeName | None = None

    @field_validator("argv")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        return [_no_nul(v) for v in value]

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for k, v in value.items():
            _no_nul(v)
            if "=" in k or "\x00" in k:
                raise ValueError(f"invalid variable name {k!r}")
        return value

    @field_validator("cwd")
    @classmethod
    def _cwd(cls, value: str | None) -> str | None:
        return _no_nul(value) if value is not None else None


class BulkStopIn(Strict):
    """Which processes a bulk kill or teardown stops: ``ids``, or filters that all must match
    (``labels``: every pair), or ``all: true``. Without ``ids`` a kill takes live records only,
    a teardown the ones not torn down yet."""

    ids: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] | None = Field(
        None, max_length=10_000
    )
    kind: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    ticket_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, alias="ticketId"
    )
    labels: dict[LabelKey, LabelValue] | None = Field(None, max_length=64)
    node: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    all: bool = False


class ProcessOut(BaseModel):
    """The contract's process record."""

    model_config = ConfigDict(extra="allow")
    id: str
    kind: str
    ticketId: str | None = None
    state: str
    pid: int | None = None
    argv: list[str]
    cwd: str | None = None
    startedAt: str | None = None
    endedAt: str | None = None
    exitCode: int | None = None
    signal: str | None = None
    restarts: int = 0
    lastSeq: int = 0
    tornDown: bool = False
    stopReason: str | None = None
    killMethod: str | None = Field(None, description="cgroup or proc: how its tree is found and killed")
    cpuUsec: int | None = Field(None, description="CPU time of its cgroup, once ended")
    memoryPeak: int | None = Field(None, description="peak memory of its cgroup (memory controller)")
    node: str = "local"


class ProcessListOut(BaseModel):
    processes: list[ProcessOut]
    version: int
    next: str | None = Field(None, description="with limit/after: the next page's after (null: last)")


class ProcessQuery(BaseModel):
    kind: str | None = None
    ticketId: str | None = None
    state: str | None = Field(None, description="one state or a comma-separated list")
    limit: int | None = Field(None, ge=1, le=1000, description="a page of this many (default 100)")
    after: str | None = Field(None, description="the page after this record id (the last page's next)")


class LogQuery(BaseModel):
    since: int | None = Field(None, ge=0, description="lines with seq > since")
    limit: int | None = Field(None, ge=0, description="at most this many lines")
    tail: int | None = Field(None, ge=0, description="start with the last N lines")
    follow: Literal["0", "1", "true", "false"] | None = None


class StreamQuery(BaseModel):
    since: int | None = Field(None, ge=0, description="table version; default: now")
    snapshot: Literal["0", "1", "true", "false"] | None = None


class SignalOut(BaseModel):
    signal: str
    at: str | None
    pids: list[int]


class ReceiptOut(BaseModel):
    process: ProcessOut
    signals: list[SignalOut]
    survivors: list[int]
    elapsedMs: int
    alreadyEnded: bool
    node: str = "local"
    method: str | None = None


class BulkReceiptsOut(BaseModel):
    receipts: list[ReceiptOut]
    count: int


# ---- auth, approvals, policy ---------------------------------------------------------------


class ExchangeIn(BaseModel):
    """ClosedLoop's exchange body; ``challenge`` is this gateway's older name, still accepted."""

    challengeToken: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class ExchangeOut(BaseModel):
    sessionToken: str
    expiresAt: str


class ChallengeOut(BaseModel):
    challengeToken: str
    challenge: str
    expiresAt: str
    exchangeUrl: str


class DecisionIn(Strict):
    decision: Literal["approved", "denied", "always_allow"]
    ttl_seconds: float | None = Field(None, alias="ttlSeconds", gt=0, le=365 * 86400)


class ApprovalDetailOut(BaseModel):
    """What a held request would do, read from its JSON body (env values are never shown)."""

    argv: list[str] | None = None
    cwd: str | None = None
    envKeys: list[str] | None = None
    ticketId: str | None = None
    kind: str | None = None
    repoPath: str | None = None
    branch: str | None = None
    provider: str | None = None
    mode: str | None = None
    prompt: str | None = None
    message: str | None = None


class ApprovalOut(BaseModel):
    id: str
    operation: str | None
    tier: str
    principal: str
    method: str
    path: str
    reason: str | None
    createdAt: str | None
    expiresAt: str | None
    status: str
    detail: ApprovalDetailOut | None = None


class ApprovalListOut(BaseModel):
    approvals: list[ApprovalOut]


TierName = Literal["none", "low", "medium", "high"]


class ThresholdsIn(Strict):
    gateway: TierName | None = None
    session: TierName | None = None
    relay: TierName | None = None  # commands relayed from ClosedLoop's cloud (docs/relay.md)


class PolicyIn(Strict):
    thresholds: ThresholdsIn


class RuleIn(Strict):
    effect: Literal["deny", "allow"]
    principal: Literal["gateway", "session", "relay"] | None = None
    operation: Annotated[str, StringConstraints(max_length=100)] | None = None
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] | None = None
    path_prefix: Annotated[str, StringConstraints(max_length=1000)] | None = Field(
        None, alias="pathPrefix"
    )
    ttl_seconds: float | None = Field(None, alias="ttlSeconds", gt=0, le=10 * 365 * 86400)


class RuleOut(BaseModel):
    id: str
    effect: str
    principal: str | None
    operation: str | None
    method: str | None
    pathPrefix: str | None
    createdAt: str | None
    expiresAt: str | None


class PolicyOut(BaseModel):
    thresholds: dict[str, str]
    rules: list[RuleOut]


# ---- metadata -----------------------------------------------------------------------------


class RepoIn(BaseModel):
    """``POST /repos`` as ClosedLoop's web app sends it (``name`` is ours)."""

    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    name: Name | None = None


class RepoPatchIn(BaseModel):
    """ClosedLoop's settings edit; ``{id, name?, defaultBranch?}`` (ours) edits one repo."""

    worktreeParentDir: Annotated[str, StringConstraints(max_length=4096)] | None = None
    worktreeParentDirConfirmed: bool | None = None


class RepoEditIn(Strict):
    id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    name: Name | None = None
    default_branch: Name | None = Field(None, alias="defaultBranch")


class RepoOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    path: str
    name: str
    description: str | None = None
    deployment: dict[str, Any] | None = None
    addedAt: str | None = None
    id: str
    defaultBranch: str | None = None


class RepoSettingsOut(BaseModel):
    worktreeParentDir: str | None = None
    worktreeParentDirConfirmed: bool | None = None


class RepoListOut(BaseModel):
    repos: list[RepoOut]
    settings: RepoSettingsOut


class RepoAddedOut(BaseModel):
    success: bool
    repo: RepoOut


class SuccessOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    success: bool


BinaryPath = Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None


class BinaryPathsIn(BaseModel):
    """``{<binary>: absolute path | null}``; ``null`` returns to PATH."""

    claude: BinaryPath = None
    gh: BinaryPath = None
    codex: BinaryPath = None
    cursor: BinaryPath = None
    opencode: BinaryPath = None
    python3: BinaryPath = None
    git: BinaryPath = None


class BinaryOut(BaseModel):
    path: str | None
    override: str | None
    source: str | None
    version: str | None


class BinaryPathsOut(BaseModel):
    binaryPaths: dict[str, str]
    binaries: dict[str, BinaryOut]


class CheckOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    label: str
    required: bool
    passed: bool
    version: str | None = None
    error: str | None = None
    remediation: str | None = None


class HealthCheckOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    checks: list[CheckOut]
    allRequiredPassed: bool
    mcpServers: dict[str, dict[str, Any]]


class HealthOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str
    version: str
    port: int
    pid: int
    capabilities: dict[str, Any]


class JsonObject(BaseModel):
    model_config = ConfigDict(extra="allow")
