from .model import (
    AgentFailed,
    BadRequest,
    Conflict,
    JudgeSpec,
    NotFound,
    SymphonyError,
    Ticket,
    Unavailable,
    Verdict,
)
from .service import Symphony, log_line_json, open_symphony
from .settings import Limits, SymphonySettings

__all__ = [
    "AgentFailed",
    "BadRequest",
    "Conflict",
    "JudgeSpec",
    "Limits",
    "NotFound",
    "Symphony",
    "SymphonyError",
    "SymphonySettings",
    "Ticket",
    "Unavailable",
    "Verdict",
    "log_line_json",
    "open_symphony",
]
