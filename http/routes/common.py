"""What several route modules share: the services, and small request readers.

A route parses its input and calls one service method; these helpers are the parsing that
more than one family needs, as public names, so no route module reaches into another's
private helpers.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from quart import request

from gateway.http.context import Services, current_gateway
from gateway.http.errors import ApiError, describe_validation
from gateway.supervisor.symphony import Symphony

ModelT = TypeVar("ModelT", bound=BaseModel)

__all__ = [
    "json_object",
    "optional_body",
    "query_str",
    "required",
    "services",
    "symphony",
    "validated",
]


def services() -> Services:
    """The gateway's domain services, built once at start (``gateway.http.serve``)."""
    return current_gateway().services


def symphony() -> Symphony:
    """The Symphony service."""
    return current_gateway().services.symphony


def required(value: str | None, name: str) -> str:
    """``value``, or a 400 naming the missing field."""
    if value is None:
        raise ApiError(400, "invalid_request", f"{name}: Field required")
    return value


async def optional_body(model: type[ModelT]) -> ModelT:
    """An optional JSON body checked against ``model`` (absent: the model's defaults)."""
    raw = await request.get_data()
    if not raw.strip():
        return model()
    data = await request.get_json(force=True)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_request", describe_validation(exc)) from None


def query_str(name: str) -> str | None:
    """An optional short query argument that may end up in an argv."""
    raw = request.args.get(name) or None
    if raw is not None and ("\x00" in raw or len(raw) > 200):
        raise ApiError(400, "invalid_query", f"{name}: at most 200 characters, no NUL")
    return raw


async def json_object(message: str = "Invalid JSON body") -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``), else ClosedLoop's 400.

    ClosedLoop's handlers read loose bodies (``parseBody``) and ignore fields they do not know;
    so do the routes that speak its wire: each checks the fields it reads.
    """
    raw = await request.get_data(as_text=False)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "Invalid JSON body") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", message)
    return data


def validated(model: type[ModelT], data: Any) -> ModelT:
    """``data`` checked against ``model``; a 400 naming the fields otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, "invalid_request", describe_validation(exc)) from None
