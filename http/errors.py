"""JSON errors for every failure path, so a client never parses HTML or a traceback.

This is the one place where failures become answers. The domain raises the transport-neutral
family of ``gateway.supervisor.errors``; ``STATUS`` gives each class its HTTP status (the
nearest class in its MRO wins, so a ``GitFailed`` answers as the ``Conflict`` it is). The front
raises ``ApiError`` for what only HTTP knows (a bad query string, a missing header).
werkzeug's HTTP exceptions (404, 405, 413, 415, bad JSON) and quart-schema's validation errors
are translated here too, and anything else is a real bug: a 500 with a generic message, logged
with its traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from quart_trio.wrappers import TrioRequest
from werkzeug.exceptions import HTTPException

from gateway.http.telemetry import current_operation
from gateway.supervisor.errors import (
    AgentFailed,
    AgentReplyError,
    BadRequest,
    Conflict,
    Forbidden,
    GatewayError,
    NotFound,
    Rejected,
    Timeout,
    TooLarge,
    Unavailable,
    UpstreamFailed,
)
from gateway.supervisor.symphony.cloud_loops import ApiOriginMissing
from gateway.supervisor.symphony.plan_loop_wire import ApiKeyMissing

log = logging.getLogger("gateway.http")

#: Quart's own cap (the guard enforces each route's smaller limit first); see ``gateway.http.app``.
MAX_CONTENT = 210 * 1024 * 1024

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_body_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    501: "not_implemented",
    503: "unavailable",
}


#: The HTTP status of each domain error class (looked up along the raised class's MRO).
STATUS: dict[type[GatewayError], int] = {
    ApiOriginMissing: 503,
    ApiKeyMissing: 503,
    BadRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Rejected: 422,
    AgentFailed: 502,
    UpstreamFailed: 502,
    AgentReplyError: 502,
    Unavailable: 503,
    Timeout: 504,
    TooLarge: 413,
    GatewayError: 500,
}


def status_of(exc: GatewayError) -> int:
    """The status of the nearest mapped class of ``exc``."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


class ApiError(Exception):
    """An error answer: HTTP status, a stable machine code and a message for people.

    ``extra`` goes to the top level of the body, ``details`` under ``details``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})
        self.details = dict(details or {})


def error_payload(
    code: str,
    message: str,
    extra: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The one error shape, ClosedLoop's: ``{"error": "<message>", "code", "details"?, ...}``.

    ClosedLoop's clients do ``new Error(data.error)`` and parse ``{error?: string, code?: string,
    details?: object}`` (``packages/app/shared/api/api-error-response.ts``): ``error`` is always
    the human message, ``code`` the stable machine code. ``extra`` fields sit at the top level
    where ClosedLoop puts them (``reason``, ``maxBytes``, ``method``, ``path``, ...); ``details``
    carries what the domain error knows (``exc.details``).
    """
    body: dict[str, Any] = {"error": message, "code": code}
    operation = current_operation()
    if operation is not None:
        body["operation"] = operation  # which operation answered (ours; clients ignore it)
    if extra:
        body.update({k: v for k, v in extra.items() if k not in ("error", "code")})
    if details:
        body["details"] = dict(details)
    return body


def error_response(
    status: int,
    code: str,
    message: str,
    extra: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
) -> Response:
    response = jsonify(error_payload(code, message, extra, details))
    response.status_code = status
    return response


def wire_error_response(exc: GatewayError) -> Response:
    """A domain error in ClosedLoop's envelope, ``{"error": "<message>", "code", "details"?}``.

    ClosedLoop's clients do ``new Error(data.error)``, so the message is the string ``error``.
    The status is the ``STATUS`` table's, like every other answer; the route families that speak
    ClosedLoop's wire register this for ``GatewayError`` on their blueprint.
    """
    body: dict[str, Any] = {"error": exc.message, "code": exc.code}
    if exc.details:
        body["details"] = exc.details
    response = jsonify(body)
    response.status_code = status_of(exc)
    return response


def describe_validation(exc: BaseException | None) -> str:
    """Name the offending fields, e.g. ``argv.0: Input should be a valid string``."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ())) or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return "; ".join(parts)
    if exc is not None and str(exc):
        return str(exc)
    return "request body does not match the schema"


class GatewayRequest(TrioRequest):
    """Quart's request, with JSON decoding failures as our JSON errors (not a bare 400)."""

    async def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        if not force and not self.is_json and not silent:
            # Quart answers None here, which a schema then reports as a wrong type; the
            # contract's answer for a body in another format is 415. No body and no
            # Content-Type stays a schema error (400: the body is missing).
            content_type = self.headers.get("Content-Type")
            if content_type or (await self.get_data()).strip():
                got = f"got {content_type[:100]}" if content_type else "no Content-Type"
                message = f"send the body as JSON with Content-Type: application/json ({got})"
                raise ApiError(415, "unsupported_media_type", message)
        try:
            return await super().get_json(force=force, silent=silent, cache=cache)
        except UnicodeDecodeError:  # decoded before parsing, so on_json_loading_failed misses it
            if silent:
                return None
            raise ApiError(400, "invalid_json", "request body is not valid UTF-8") from None

    def on_json_loading_failed(self, error: Exception | None) -> Any:
        if error is None:
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {str(error)[:200]}")


def register_error_handlers(app: Quart) -> None:
    app.request_class = GatewayRequest

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.extra, exc.details)

    @app.errorhandler(GatewayError)
    async def _domain_error(exc: GatewayError) -> Response:
        return error_response(status_of(exc), exc.code, exc.message, None, exc.details)

    @app.errorhandler(RequestSchemaValidationError)
    async def _schema_error(exc: RequestSchemaValidationError) -> Response:
        return error_response(400, "invalid_request", describe_validation(exc.validation_error))

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        extra: dict[str, Any] = {}
        if status == 404:
            message = "route not found"  # ClosedLoop's router.ts answer for an unknown route
        if status == 413:
            message, extra = "request body too large", {"maxBytes": MAX_CONTENT}
        if status == 405:
            allowed = getattr(exc, "valid_methods", None) or []
            message = f"method not allowed; allowed: {', '.join(sorted(allowed))}"
        response = error_response(status, _CODES.get(status, "http_error"), message, extra)
        if status == 413:
            # The rest of the body was never read: this connection cannot carry another request.
            response.headers["Connection"] = "close"
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(sorted(getattr(exc, "valid_methods", [])))
        return response

    @app.errorhandler(Exception)
    async def _bug(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal", "internal error (a bug); see the gateway log")
