"""desktop-gateway's engine: supervised child processes, tree kills, logs and the process table.

Nothing here speaks HTTP; the front (``gateway.http``) takes a ``Supervisor`` and the services.
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

__version__ = "0.1.0"
