"""The one before-request step every route goes through, and its after-request half.

Order: telemetry start -> Host guard -> operation tagging -> CORS preflight -> Origin ->
authentication -> approval policy. It is registered app-wide, so a route added anywhere gets
all of it; a route the table does not know has no operation and is answered 404/405 after
auth, never run.
"""

from __future__ import annotations

import time

from quart import Quart, Response, g, request

from gateway.http.auth import GATEWAY_HEADER, SESSION_HEADER
from gateway.http.context import current_gateway
from gateway.http.errors import ApiError
from gateway.http.operations import PUBLIC_RULES, operation_for
from gateway.http.telemetry import log_access, operation_var, principal_var

CORS_HEADERS = ", ".join(
    [
        "Content-Type",
        SESSION_HEADER,
        GATEWAY_HEADER,
        "X-Desktop-Force-Approval",
        "X-Desktop-Approval-Reason",
    ]
)
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"


def _is_protected(path: str) -> bool:
    return path.startswith("/api/")


async def before_request() -> Response | None:
    gw = current_gateway()
    g.t0 = time.perf_counter()
    g.principal = None
    if request.content_length or request.headers.get("Transfer-Encoding"):
        # Read (and cache) every body first, bounded by MAX_CONTENT_LENGTH (413 beyond it).
        # An answer sent over an unread body leaves the keep-alive connection mid-message:
        # Hypercorn then ignores the client's next request on it and the client times out.
        # Reading costs nothing on this loopback-only server and makes every answer safe.
        await request.get_data()
    rule = request.url_rule.rule if request.url_rule is not None else None
    operation = operation_for(rule, request.method)
    g.operation = operation
    operation_var.set(operation)
    principal_var.set(None)

    if not gw.auth.host_ok(request.headers.get("Host")):
        raise ApiError(403, "host_not_allowed", "Host header must name this gateway on loopback")

    origin = request.headers.get("Origin")
    if origin is not None and not gw.auth.origin_ok(origin):
        raise ApiError(403, "origin_not_allowed", f"Origin {origin[:100]} is not allowed")
    if request.method == "OPTIONS" and origin is not None:
        # CORS preflight from an allowed origin: answered here, never reaches a route.
        return Response("", status=204)

    if rule in PUBLIC_RULES or (rule is None and not _is_protected(request.path)):
        return None

    if gw.auth.check_gateway_token(request.headers.get(GATEWAY_HEADER)):
        principal = "gateway"
    elif gw.auth.check_session(request.headers.get(SESSION_HEADER)):
        # Browsers omit Origin on same-origin GETs; Sec-Fetch-Site is a forbidden header (no
        # page script can set it), so "same-origin" vouches for a call from the dashboard itself.
        if origin is None and request.headers.get("Sec-Fetch-Site") != "same-origin":
            raise ApiError(403, "origin_required", "session calls must send an allowed Origin")
        principal = "session"
    else:
        raise ApiError(401, "unauthorized", f"send {GATEWAY_HEADER} or {SESSION_HEADER}")
    g.principal = principal
    principal_var.set(principal)

    if operation is None:  # unknown path or method: let routing answer 404/405
        return None
    forced = request.headers.get("X-Desktop-Force-Approval") == "1"
    verdict, _rule = gw.policy.decide(operation, principal, request.method, request.path, forced=forced)
    if verdict == "deny":
        raise ApiError(403, "operation_denied", f"{operation} is denied by policy")
    if verdict == "ask":
        reason = request.headers.get("X-Desktop-Approval-Reason")
        outcome = await gw.approvals.hold(
            operation, principal, request.method, request.path, reason[:500] if reason else None
        )
        if outcome == "expired":
            raise ApiError(403, "approval_expired", f"{operation} was not approved in time")
        if outcome == "denied":
            raise ApiError(403, "approval_denied", f"{operation} was denied by a person")
    return None


async def after_request(response: Response) -> Response:
    gw = current_gateway()
    if response.status_code >= 400 and (
        request.content_length or request.headers.get("Transfer-Encoding")
    ):
        # An error may answer before the body was read; don't reuse a connection whose
        # request stream might not be at a message boundary (Hypercorn then stalls it).
        response.headers["Connection"] = "close"
    origin = request.headers.get("Origin")
    if origin is not None and gw.auth.origin_ok(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
    seconds = time.perf_counter() - g.get("t0", time.perf_counter())
    operation = g.get("operation")
    principal = g.get("principal")
    gw.metrics.observe(operation, principal, request.method, response.status_code, seconds)
    log_access(
        method=request.method,
        path=request.path,
        status=response.status_code,
        seconds=seconds,
        operation=operation,
        principal=principal,
        remote=request.remote_addr,
    )
    return response


def install_guard(app: Quart) -> None:
    app.before_request(before_request)
    app.after_request(after_request)
