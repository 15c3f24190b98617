"""desktop-gateway's engine: supervised child processes, tree kills, logs and the process table.

Nothing here speaks HTTP; the front (``gateway.http``) takes a ``Supervisor`` and the store.

The names below are loaded on first use (PEP 562): ``gateway ps`` needs only ``statedir`` to
find a running gateway, and importing the engine (trio, SQLite, psutil) would cost it most of
its start-up time.
"""

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
