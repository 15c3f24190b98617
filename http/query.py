"""Query arguments the routes share, each a 400 ``invalid_query`` naming the argument if bad.

The process routes and the Symphony routes read the same arguments (``since``, ``tail``,
``limit``, ``follow``) for their NDJSON logs; reading them here keeps their rules identical.
"""

from __future__ import annotations

from dataclasses import dataclass

from quart import request

from gateway.http.errors import ApiError
from gateway.supervisor import ProcessLog


def int_arg(name: str) -> int | None:
    """An optional non-negative integer (absent or empty: ``None``)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name}: must be a non-negative integer") from None
    if value < 0:
        raise ApiError(400, "invalid_query", f"{name}: must be a non-negative integer")
    return value


def flag(name: str, default: str = "0") -> bool:
    """A boolean given as 1/0/true/false (empty: false)."""
    raw = request.args.get(name, default).lower()
    if raw not in ("0", "1", "true", "false", ""):
        raise ApiError(400, "invalid_query", f"{name}: must be 1 or 0")
    return raw in ("1", "true")


@dataclass(frozen=True, slots=True)
class LogWindow:
    """Which lines of a log a request wants: after ``since``, at most ``limit``, then follow?"""

    since: int
    limit: int | None
    follow: bool


def log_window(log: ProcessLog) -> LogWindow:
    """``since``/``tail`` pick the start (the later of the two), ``limit`` caps, ``follow`` streams on."""
    since = int_arg("since") or 0
    tail = int_arg("tail")
    limit = int_arg("limit")
    follow = flag("follow")
    if tail is not None:
        since = max(since, log.last_seq - tail)
    return LogWindow(since, limit, follow)
