"""desktop-gateway's engine: supervised child processes, tree kills, logs and the process table.

Nothing here speaks HTTP; the front (``gateway.http``) takes a ``Supervisor`` and the store.
"""

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

__version__ = "0.1.0"
