from ..errors import AgentFailed, BadRequest, Conflict, GatewayError, NotFound, Unavailable
from .model import JudgeSpec, Ticket, Verdict
from .service import Symphony, log_line_json, open_symphony
from .settings import Limits, SymphonySettings

__all__ = [
    "AgentFailed",
    "BadRequest",
    "Conflict",
    "GatewayError",
    "JudgeSpec",
    "Limits",
    "NotFound",
    "Symphony",
    "SymphonySettings",
    "Ticket",
    "Unavailable",
    "Verdict",
    "log_line_json",
    "open_symphony",
]
