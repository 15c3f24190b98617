"""The route table as data: every route the gateway serves, its methods and its operation ID.

One table drives registration (stubs for families not built yet), auth (which routes are
public), policy (the operation's risk tier), telemetry labels and the capabilities listed by
``/health``. A route cannot exist without an operation, because the guard looks
every request's rule up here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum


class Tier(IntEnum):
    """Risk tiers, ordered so that a threshold compares with ``<=``."""

    NONE = 0  # only as a threshold: "ask for everything"
    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @classmethod
    def parse(cls, value: str) -> Tier:
        return cls[value.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()


# The 28 operation IDs of the endpoint reference, in its order.
REFERENCE_OPERATIONS: tuple[str, ...] = (
    "symphony_launch", "symphony_loop", "symphony_loop_kill", "symphony_plan_loop",
    "symphony_status", "symphony_kill", "symphony_chat", "symphony_comment_chat",
    "symphony_commit_message", "symphony_sessions", "symphony_plan", "symphony_judges",
    "symphony_logs", "symphony_chat_history", "terminal_chat", "ticket_chat",
    "run_viewer_chat", "codex_review", "codex_argue", "git_action", "git_pr",
    "git_branch_worktree", "health_check", "repos_config", "deploy", "learnings",
    "filesystem", "binary_paths_settings",
)  # fmt: skip

# Extensions this product adds (documented in docs/api.md).
#   process_table   read the process table and logs        (low)
#   process_control start, kill and tear down processes     (high)
#   gateway_admin   approvals, policy, challenge minting, metrics, the OpenAPI document.
#                   Exempt from approval policy: the route that releases a held request
#                   must never itself be held.
#   symphony_settings  read and change the agent runs' watchdog defaults and maxima (medium)
EXTENSION_OPERATIONS: tuple[str, ...] = (
    "process_table", "process_control", "gateway_admin", "symphony_settings",
)  # fmt: skip

OPERATIONS: tuple[str, ...] = REFERENCE_OPERATIONS + EXTENSION_OPERATIONS

_LOW = {"health_check", "symphony_status", "symphony_logs", "git_branch_worktree", "process_table"}
_HIGH = {"deploy", "process_control"}

POLICY_EXEMPT = frozenset({"gateway_admin"})


def tier_of(operation: str | None) -> Tier:
    """The contract's tiers; an unknown operation counts as high."""
    if operation in _LOW:
        return Tier.LOW
    if operation in _HIGH:
        return Tier.HIGH
    if operation in OPERATIONS:
        return Tier.MEDIUM
    return Tier.HIGH


@dataclass(frozen=True, slots=True)
class Route:
    """One path of the table. ``path`` uses the reference's syntax (``:param``, ``*rest``)."""

    path: str
    methods: tuple[str, ...]
    operation: str
    public: bool = False
    extension: bool = False

    @property
    def rule(self) -> str:
        return to_rule(self.path)


def to_rule(path: str) -> str:
    """Reference syntax to a Quart rule: ``:id`` -> ``<id>``, ``*rest`` -> ``<path:rest>``.

    A bare trailing ``*`` (``plan-loop/*``) names its segment ``action``.
    """
    path = re.sub(r"\*([A-Za-z_]\w*)", r"<path:\1>", path)
    path = re.sub(r"/\*$", "/<action>", path)
    return re.sub(r"/:([A-Za-z_]\w*)", r"/<\1>", path)


def _r(path: str, methods: str, operation: str, **kw: bool) -> Route:
    return Route(path, tuple(methods.split()), operation, **kw)


ROUTES: tuple[Route, ...] = (
    # ---- metadata
    _r("/health", "GET", "health_check", public=True),
    _r("/api/gateway/health-check", "GET", "health_check"),
    _r("/api/gateway/version", "GET", "health_check"),
    _r("/api/gateway/repos", "GET POST DELETE PATCH", "repos_config"),
    _r("/api/gateway/settings/binary-paths", "GET PATCH", "binary_paths_settings"),
    _r("/api/gateway/mcp-auth", "GET", "health_check"),
    _r("/gateway-auth/exchange", "POST", "health_check", public=True),
    # ---- extension: the dashboard's static shell (public by contract; see routes_dashboard)
    _r("/", "GET", "health_check", public=True, extension=True),
    _r("/dashboard/*assetPath", "GET", "health_check", public=True, extension=True),
    # ---- git
    _r("/api/gateway/git", "POST", "git_action"),
    _r("/api/gateway/git/branches", "GET", "git_action"),
    _r("/api/gateway/git/diff", "POST", "git_action"),
    _r("/api/gateway/git/worktree", "POST DELETE", "git_action"),
    _r("/api/gateway/git/branch-worktree", "GET", "git_branch_worktree"),
    _r("/api/gateway/git/repo-path", "GET", "git_action"),
    _r("/api/gateway/git/pr", "POST", "git_pr"),
    _r("/api/gateway/git/pr/list", "GET", "git_pr"),
    _r("/api/gateway/git/pr/comments", "GET", "git_pr"),
    _r("/api/gateway/git/pr/reviews", "GET", "git_pr"),
    _r("/api/gateway/git/pr/reply", "POST", "git_pr"),
    _r("/api/gateway/git/pr/files", "GET", "git_pr"),
    _r("/api/gateway/git/pr/head-sha", "GET", "git_pr"),
    _r("/api/gateway/git/pr/inline-comment", "POST", "git_pr"),
    _r("/api/gateway/git/user", "GET", "git_action"),
    # ---- filesystem
    _r("/api/gateway/directories", "GET", "filesystem"),
    _r("/api/gateway/files/search", "GET", "filesystem"),
    _r("/api/gateway/run-viewer-extract", "GET POST DELETE", "filesystem"),
    _r("/api/gateway/work-directory/:ticketId", "GET", "filesystem"),
    _r("/api/gateway/symphony/attachments/*attachmentPath", "GET", "filesystem"),
    _r("/api/gateway/symphony/upload/:ticketId", "POST", "filesystem"),
    # ---- symphony
    _r("/api/gateway/symphony/launch", "POST", "symphony_launch"),
    _r("/api/gateway/symphony/loop", "POST", "symphony_loop"),
    _r("/api/gateway/symphony/loop/kill", "POST", "symphony_loop_kill"),
    _r("/api/gateway/symphony/plan-loop/*", "POST", "symphony_plan_loop"),
    _r("/api/gateway/symphony/plan-loop/:ticketId/prepare", "POST", "symphony_plan_loop"),
    _r("/api/gateway/symphony/plan-loop/:ticketId/confirm", "POST", "symphony_plan_loop"),
    _r("/api/gateway/symphony/plan-loop/:ticketId/cancel", "POST", "symphony_plan_loop"),
    _r("/api/gateway/symphony/plan-loop/:ticketId/select-artifact/prepare", "POST", "symphony_plan_loop"),
    _r("/api/gateway/symphony/plan-loop/:ticketId/select-artifact/confirm", "POST", "symphony_plan_loop"),
    _r("/api/gateway/symphony/status", "GET", "symphony_status"),
    _r("/api/gateway/symphony/status/:ticketId", "GET", "symphony_status"),
    _r("/api/gateway/symphony/kill", "POST", "symphony_kill"),
    _r("/api/gateway/symphony/logs/:ticketId", "GET", "symphony_logs"),
    _r("/api/gateway/symphony/plan/:ticketId", "GET", "symphony_plan"),
    _r("/api/gateway/symphony/judges/:ticketId", "GET", "symphony_judges"),
    _r("/api/gateway/symphony/sessions", "GET POST DELETE", "symphony_sessions"),
    _r("/api/gateway/symphony/sessions/unread-count", "GET", "symphony_sessions"),
    _r("/api/gateway/symphony/chat/:ticketId", "POST", "symphony_chat"),
    _r("/api/gateway/symphony/comment-chat/:commentId", "GET POST PATCH DELETE",
       "symphony_comment_chat"),
    _r("/api/gateway/symphony/commit-message/:ticketId", "GET", "symphony_commit_message"),
    _r("/api/gateway/symphony/chat-history/:ticketId", "GET POST DELETE", "symphony_chat_history"),
    # ---- codex
    _r("/api/gateway/codex/available", "GET", "codex_review"),
    _r("/api/gateway/codex/review/:ticketId", "POST", "codex_review"),
    _r("/api/gateway/codex/status/:ticketId", "GET DELETE", "codex_review"),
    _r("/api/gateway/codex/stop/:ticketId", "POST DELETE", "codex_review"),
    _r("/api/gateway/codex/review-findings/:ticketId", "GET POST", "codex_review"),
    _r("/api/gateway/codex/review-dedup/:ticketId", "POST", "codex_review"),
    _r("/api/gateway/codex/review-extract/:ticketId", "POST", "codex_review"),
    _r("/api/gateway/codex/review-verdict/:ticketId", "POST", "codex_review"),
    _r("/api/gateway/codex/argue/:ticketId", "POST", "codex_argue"),
    _r("/api/gateway/codex/chat/:ticketId", "POST", "codex_argue"),
    _r("/api/gateway/codex/finding-chat/:findingId", "GET POST PATCH DELETE", "codex_argue"),
    # ---- chat sessions
    _r("/api/gateway/terminal-chat", "GET POST DELETE", "terminal_chat"),
    _r("/api/gateway/ticket-chat", "GET POST DELETE", "ticket_chat"),
    _r("/api/gateway/run-viewer-chat", "GET POST DELETE", "run_viewer_chat"),
    # ---- deploy
    _r("/api/gateway/deploy", "POST", "deploy"),
    _r("/api/gateway/deploy/health", "POST", "deploy"),
    _r("/api/gateway/deploy/kill", "POST", "deploy"),
    _r("/api/gateway/deploy/teardown", "POST", "deploy"),
    _r("/api/gateway/deploy/status/:ticketId", "GET", "deploy"),
    _r("/api/gateway/deploy/check-existing", "POST", "deploy"),
    _r("/api/gateway/deploy/detect", "POST", "deploy"),
    _r("/api/gateway/deploy/redetect", "POST", "deploy"),
    _r("/api/gateway/deploy/extract-info", "POST", "deploy"),
    # ---- learnings
    _r("/api/gateway/learnings", "GET", "learnings"),
    _r("/api/gateway/symphony/extract-learnings", "POST", "learnings"),
    _r("/api/gateway/symphony/process-learnings", "GET POST", "learnings"),
    _r("/api/gateway/symphony/process-all-learnings", "GET POST", "learnings"),
    _r("/api/gateway/symphony/pending-learnings", "GET", "learnings"),
    _r("/api/gateway/symphony/learnings-status/:ticketId", "GET", "learnings"),
    _r("/api/gateway/symphony/record-learning-use", "POST", "learnings"),
    # ---- extensions: the process table
    _r("/api/gateway/processes", "GET", "process_table", extension=True),
    _r("/api/gateway/processes", "POST", "process_control", extension=True),
    _r("/api/gateway/processes/kill", "POST", "process_control", extension=True),
    _r("/api/gateway/processes/teardown", "POST", "process_control", extension=True),
    _r("/api/gateway/processes/stream", "GET", "process_table", extension=True),
    _r("/api/gateway/processes/:processId", "GET", "process_table", extension=True),
    _r("/api/gateway/processes/:processId/logs", "GET", "process_table", extension=True),
    _r("/api/gateway/processes/:processId/kill", "POST", "process_control", extension=True),
    _r("/api/gateway/processes/:processId/teardown", "POST", "process_control", extension=True),
    # ---- extensions: node agents on other machines
    _r("/api/gateway/nodes", "GET", "process_table", extension=True),
    _r("/api/gateway/nodes", "POST", "process_control", extension=True),
    _r("/api/gateway/nodes/:name", "GET", "process_table", extension=True),
    # ---- extensions: settings
    _r("/api/gateway/settings/symphony", "GET PATCH", "symphony_settings", extension=True),
    # ---- extensions: administration
    _r("/api/gateway/auth/challenge", "POST", "gateway_admin", extension=True),
    _r("/api/gateway/approvals", "GET", "gateway_admin", extension=True),
    _r("/api/gateway/approvals/stream", "GET", "gateway_admin", extension=True),
    _r("/api/gateway/approvals/:approvalId", "POST", "gateway_admin", extension=True),
    _r("/api/gateway/policy", "GET PUT", "gateway_admin", extension=True),
    _r("/api/gateway/policy/rules", "POST", "gateway_admin", extension=True),
    _r("/api/gateway/policy/rules/:ruleId", "DELETE", "gateway_admin", extension=True),
    _r("/api/gateway/metrics", "GET", "gateway_admin", extension=True),
    _r("/api/gateway/openapi.json", "GET", "gateway_admin", extension=True),
)

# (rule, method) -> operation: what the guard looks up for every request.
OPERATION_BY_RULE: dict[tuple[str, str], str] = {
    (route.rule, method): route.operation for route in ROUTES for method in route.methods
}
PUBLIC_RULES = frozenset(route.rule for route in ROUTES if route.public)


def operation_for(rule: str | None, method: str) -> str | None:
    if rule is None:
        return None
    if method == "HEAD":
        method = "GET"
    return OPERATION_BY_RULE.get((rule, method))


def route_table() -> list[dict[str, object]]:
    """The mapping as JSON, for ``/health`` capabilities and the docs."""
    return [
        {
            "path": r.path,
            "methods": list(r.methods),
            "operation": r.operation,
            "tier": tier_of(r.operation).label,
            "public": r.public,
            "extension": r.extension,
        }
        for r in ROUTES
    ]
