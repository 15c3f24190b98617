"""Symphony: ticket-bound agent activities on per-ticket worktrees.

``service.Symphony`` holds one ``runner.Runner`` (the state, the worktree lock, agent children)
and one object per activity: ``runs``, ``loops``, ``plans``, ``chat``, ``learnings``,
``reviews``, ``scoped_chats``. ``workspace.Workspaces`` resolves repo-or-ticket targets for the
git, file and deploy routes and applies the worktree lock to commits and pulls. ``store`` has
all of Symphony's SQL and registers its tables; ``settings`` the watchdog limits.
"""

from .model import JudgeSpec, Ticket, Verdict
from .runner import Runner
from .service import Symphony, log_line_json, open_symphony
from .settings import Limits, SymphonySettings
from .workspace import Workspaces

__all__ = [
    "JudgeSpec",
    "Limits",
    "Runner",
    "Symphony",
    "SymphonySettings",
    "Ticket",
    "Verdict",
    "Workspaces",
    "log_line_json",
    "open_symphony",
]
