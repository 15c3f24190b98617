"""The errors every floor of the gateway raises, named for the situation, not for a transport.

Services, Symphony and the agents raise these; nothing here knows about HTTP. The front maps
each class to an answer in exactly one place (``gateway.http.errors``), so a new error type
is a new class here and one line there, never a ``try`` in a route.

Each error carries a stable machine ``code`` (clients branch on it; the message is for people)
and optional ``details`` that travel with the answer (e.g. which binary is missing).
A subclass may refine ``code`` while keeping its parent's meaning: ``GitFailed`` is a
``Conflict`` whose code says that git refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AgentFailed",
    "AgentReplyError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "GatewayError",
    "NotFound",
    "Rejected",
    "Timeout",
    "TooLarge",
    "Unavailable",
    "UpstreamFailed",
]


class GatewayError(Exception):
    """Base of every expected failure: a stable ``code``, a message for people, ``details``."""

    code = "internal"

    def __init__(
        self, message: str, *, code: str | None = None, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details or {})


class BadRequest(GatewayError):
    """The caller asked for something malformed or impossible; asking again will not help."""

    code = "bad_request"


class Forbidden(GatewayError):
    """The request is well formed but reaches outside what it may touch (a path, a repo)."""

    code = "forbidden"


class NotFound(GatewayError):
    """The named ticket, process, session, repo or file does not exist."""

    code = "not_found"


class Conflict(GatewayError):
    """The current state forbids it: the worktree is busy, the branch diverged, the id is taken."""

    code = "conflict"


class Rejected(GatewayError):
    """A remote service (GitHub) understood the request and refused it; the message is its words."""

    code = "rejected"


class UpstreamFailed(GatewayError):
    """A helper CLI or remote service failed otherwise (gh's own error, unreadable output)."""

    code = "upstream_failed"


class TooLarge(GatewayError):
    """A value the caller sent is over a size limit (a prompt over 1 MiB); asking again with the
    same value will not help."""

    code = "too_large"


class Timeout(GatewayError):
    """A short helper child (git, gh) did not finish within its time limit and was killed."""

    code = "timeout"


class Unavailable(GatewayError):
    """A binary the request needs is missing or not runnable; ``binary`` names it for the UI."""

    code = "binary_missing"

    def __init__(self, message: str, binary: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, details={"binary": binary})
        self.binary = binary


class AgentFailed(GatewayError):
    """An agent turn ended without a usable result (it crashed, was killed or reported an error)."""

    code = "agent_failed"


class AgentReplyError(GatewayError):
    """An agent answered, but not in the shape asked for (no JSON object, a broken schema)."""

    code = "bad_agent_reply"
