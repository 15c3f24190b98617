"""desktop-gateway's engine: supervised child processes, tree kills, logs and the process table.

Nothing here speaks HTTP; the front (``gateway.http``) takes a ``Supervisor`` and the services.

The names below are loaded on first use (PEP 562): ``gateway ps`` needs only ``statedir`` to
find a running gateway, and importing the engine (trio, SQLite, psutil) would cost it most of
its start-up time.
"""

# General layout:
#
# The engine is flat at this package's root. engine.py owns children (Supervisor, jobs, kill
# and teardown), spec.py the spec and the record, proctree.py the /proc sweep and prctl,
# logs.py per-process logs, table.py the process table, store.py SQLite and the migration
# runner, statedir.py the state folder. errors.py is the one error family, shared by every
# floor, with no transport in it.
#
# Above the engine, each floor a package:
#   agents/    the claude and codex providers: argv building and stream parsing
#   services/  agent-free domain services: worktrees, git, repos, deploys, files
#   symphony/  ticket-bound agent activities: one Runner, one object per activity
#
# Imports point down only: symphony -> services -> agents -> engine. The engine imports none
# of the floors; services never import symphony; nothing here imports gateway.http. No
# _private name crosses a module. tests/test_layout.py checks all of it.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import (
        Job,
        KillReceipt,
        SignalSent,
        Supervisor,
        SupervisorConfig,
        new_id,
        open_supervisor,
        spawn_labels,
    )
    from .logs import LogLimits, LogLine, ProcessLog
    from .spec import ProcessRecord, ProcessSpec, RestartPolicy, State, StopReason, iso
    from .statedir import StateDir, resolve_state_dir
    from .store import Store

__all__ = [
    "Job",
    "KillReceipt",
    "LogLimits",
    "LogLine",
    "ProcessLog",
    "ProcessRecord",
    "ProcessSpec",
    "RestartPolicy",
    "SignalSent",
    "State",
    "StateDir",
    "StopReason",
    "Store",
    "Supervisor",
    "SupervisorConfig",
    "iso",
    "new_id",
    "open_supervisor",
    "resolve_state_dir",
    "spawn_labels",
]

_HOMES = {
    "engine": (
        "Job",
        "KillReceipt",
        "SignalSent",
        "Supervisor",
        "SupervisorConfig",
        "new_id",
        "open_supervisor",
        "spawn_labels",
    ),
    "logs": ("LogLimits", "LogLine", "ProcessLog"),
    "spec": ("ProcessRecord", "ProcessSpec", "RestartPolicy", "State", "StopReason", "iso"),
    "statedir": ("StateDir", "resolve_state_dir"),
    "store": ("Store",),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
