"""Symphony's settings: watchdog limits of agent runs, and how agent children are started.

The watchdog defaults and maxima are user settings: they live in the gateway database's
``settings`` table under ``symphony.limits`` (JSON ``{"defaults": {...}, "maximum": {...}}``
with the contract's camelCase names) and are read when the service starts. Stored values are
validated like request values; a bad stored value is reported and the built-in one kept, so a
hand-edited database never stops the gateway from starting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import BadRequest
from ..store import Store

log = logging.getLogger("gateway.symphony")

#: The ``settings`` table key of the persisted limits.
LIMITS_KEY = "symphony.limits"

#: The contract's names of the limits, and the ``Limits`` attribute each sets.
LIMIT_FIELDS = {
    "resultIdleTimeout": "result_idle_timeout",
    "stallTimeout": "stall_timeout",
    "maxRuntime": "max_runtime",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Watchdogs of one agent run, in seconds."""

    result_idle_timeout: float = 30.0
    stall_timeout: float = 900.0
    max_runtime: float = 3600.0

    def to_json(self) -> dict[str, float]:
        return {name: getattr(self, attr) for name, attr in LIMIT_FIELDS.items()}


#: Built-in maxima a request (and the stored defaults) cannot exceed: 10 min / 6 h / 24 h.
DEFAULT_MAXIMUM = Limits(600.0, 6 * 3600.0, 24 * 3600.0)


def _seconds(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise BadRequest(f"{where}.{key}: must be a positive number of seconds")
    return float(value)


def merge_limits(base: Limits, raw: Mapping[str, Any] | None, ceiling: Limits, where: str) -> Limits:
    """``base`` overridden by ``raw`` (contract names), each value at most ``ceiling``'s."""
    out = base
    for key, value in (raw or {}).items():
        attr = LIMIT_FIELDS.get(key)
        if attr is None:
            raise BadRequest(f"{where}.{key}: unknown limit (known: {', '.join(LIMIT_FIELDS)})")
        seconds = _seconds(where, key, value)
        top = getattr(ceiling, attr)
        if seconds > top:
            raise BadRequest(f"{where}.{key}: at most {top:g} seconds")
        out = replace(out, **{attr: seconds})
    return out


@dataclass(slots=True)
class SymphonySettings:
    """Everything the service needs to start agent children; tests build their own."""

    defaults: Limits = field(default_factory=Limits)
    maximum: Limits = field(default_factory=lambda: DEFAULT_MAXIMUM)
    stop_grace: float = 5.0
    judge_timeout: float = 900.0
    max_iterations: int = 20
    feedback_chars: int = 4000
    diff_chars: int = 20000
    #: Added to the environment of every agent child (tests point the CLIs at a model double).
    env: dict[str, str] = field(default_factory=dict)
    #: Per provider, added on top of ``env`` (e.g. each CLI's HOME / CODEX_HOME).
    provider_env: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Whether agent children start from the gateway's environment (tests pass a clean one).
    inherit_env: bool = True
    #: Environment of command judges (on top of the gateway's own).
    judge_env: dict[str, str] = field(default_factory=dict)
    claude_allowed_tools: tuple[str, ...] | None = None
    claude_permission_mode: str = "default"
    #: codex's ``--sandbox`` for runs. ``workspace-write`` needs codex's Linux sandbox
    #: (landlock/seccomp); where that cannot run (some containers: codex then hangs rather
    #: than failing), set ``danger-full-access`` explicitly, as the tests do.
    codex_sandbox: str = "workspace-write"

    def limits(self, request: Mapping[str, Any] | None) -> Limits:
        """The defaults, overridden by a request's ``limits`` within the maximum."""
        return merge_limits(self.defaults, request, self.maximum, "limits")

    def limits_json(self) -> dict[str, dict[str, float]]:
        return {"defaults": self.defaults.to_json(), "maximum": self.maximum.to_json()}


def parse_stored_limits(raw: Any, base: SymphonySettings) -> tuple[Limits, Limits]:
    """``{"defaults", "maximum"}`` -> (defaults, maximum); BadRequest names a bad field.

    Stored maxima only need to be positive (a user may allow longer runs than the built-in
    caps); the defaults must not exceed the resulting maxima.
    """
    if not isinstance(raw, Mapping):
        raise BadRequest("symphony.limits: must be an object with defaults and maximum")
    unknown = set(raw) - {"defaults", "maximum"}
    if unknown:
        raise BadRequest(f"symphony.limits.{sorted(unknown)[0]}: unknown key (known: defaults, maximum)")
    for key in ("defaults", "maximum"):
        if raw.get(key) is not None and not isinstance(raw[key], Mapping):
            raise BadRequest(f"symphony.limits.{key}: must be an object")
    unbounded = Limits(*(float("inf") for _ in fields(Limits)))
    maximum = merge_limits(base.maximum, raw.get("maximum"), unbounded, "maximum")
    defaults = merge_limits(base.defaults, raw.get("defaults"), maximum, "defaults")
    for name, attr in LIMIT_FIELDS.items():
        if getattr(defaults, attr) > getattr(maximum, attr):
            raise BadRequest(f"defaults.{name}: above maximum.{name} ({getattr(maximum, attr):g} s)")
    return defaults, maximum


async def load_limits(store: Store, settings: SymphonySettings) -> SymphonySettings:
    """Apply the stored limits to ``settings`` (in place, and returned); bad ones are logged."""
    row = await store.fetchone("SELECT value FROM settings WHERE key = ?", (LIMITS_KEY,))
    if row is None:
        return settings
    try:
        settings.defaults, settings.maximum = parse_stored_limits(json.loads(row[0]), settings)
    except (ValueError, BadRequest) as exc:
        log.warning("ignoring the stored %s (keeping the built-in limits): %s", LIMITS_KEY, exc)
    return settings


async def save_limits(store: Store, settings: SymphonySettings, raw: Mapping[str, Any]) -> SymphonySettings:
    """Validate ``raw`` against ``settings``, persist the result and apply it (all or nothing)."""
    settings_defaults, settings_maximum = parse_stored_limits(raw, settings)
    value = json.dumps({"defaults": settings_defaults.to_json(), "maximum": settings_maximum.to_json()})
    await store.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (LIMITS_KEY, value),
    )
    settings.defaults, settings.maximum = settings_defaults, settings_maximum
    return settings
