"""The gateway's front door: one ASGI step every request passes before anything answers it.

Order: telemetry start -> body read (bounded) -> operation tagging -> Host guard -> Origin ->
CORS preflight -> authentication -> approval policy -> answer (fast path or Quart) ->
CORS headers, metrics and the access log on the way out.

Why in front of Quart rather than in ``before_request``:

- Nothing can route around it. Quart's own answers (404, 405, automatic OPTIONS), blueprints
  added later and error handlers all sit behind this step, so there is no path to a view,
  or to a response, that skips the Host check, auth, tagging, policy or telemetry.
- The two answers UIs poll hardest (``GET /health`` and ``GET /api/gateway/processes``) are
  served right here, after the very same checks, from bytes the routes module caches. Quart's
  per-request machinery (contexts, request and response objects, hook dispatch) cost about a
  third of the throughput on those answers (``benchmarks/bench_http.py``); the checks
  themselves cost a few microseconds.

Bodies are read whole (bounded by ``MAX_BODY``) before routing and replayed to Quart: an
answer sent over an unread body leaves a keep-alive connection mid-message, and Hypercorn
then ignores the client's next request on it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl

import trio
from quart import Quart, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import MapAdapter, RoutingException

from gateway.http.auth import GATEWAY_HEADER, SESSION_HEADER
from gateway.http.context import GatewayContext
from gateway.http.errors import ApiError, error_payload, status_of
from gateway.http.operations import PUBLIC_RULES, operation_for
from gateway.http.policy import Outcome, approval_detail
from gateway.http.telemetry import log_access, operation_var, principal_var
from gateway.supervisor import spawn_labels
from gateway.supervisor.errors import GatewayError

log = logging.getLogger("gateway.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
FastHandler = Callable[[GatewayContext, Mapping[str, str]], bytes]
#: A POST answered in the guard: (gateway, body, Content-Type) -> the 201 answer's JSON value,
#: or None to hand the request to Quart (which then answers it, errors included).
FastPost = Callable[[GatewayContext, bytes, "str | None"], Awaitable["dict[str, Any] | None"]]

#: ClosedLoop's generic JSON limit (``router.ts`` ``GENERIC_JSON_LIMIT_BYTES``); routes that take
#: more (uploads, the loop body, run-viewer zips) or less (the exchange) say so at install.
MAX_BODY = 256 * 1024
SCOPE_KEY = "gateway.admission"
#: The label every process started while serving a relayed command carries (its command id),
#: so that the relay client can kill what a cancelled or timed-out command started.
COMMAND_LABEL = "relay.commandId"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

#: ClosedLoop's CORS answer (``router.ts`` ``applyCorsHeaders``), byte for byte.
CORS_HEADERS = ",".join(
    [
        "Content-Type",
        "Authorization",
        GATEWAY_HEADER,
        SESSION_HEADER,
        "X-Desktop-Source",
        "X-Desktop-Force-Approval",
        "X-Desktop-Approval-Reason",
    ]
)
CORS_METHODS = "GET,POST,PUT,PATCH,DELETE,OPTIONS"
CORS_VARY = "Origin,Access-Control-Request-Headers,Access-Control-Request-Private-Network"
#: Methods a same-origin read may use without ``Origin`` (browsers add it to all others).
SAFE_METHODS = frozenset({"GET", "HEAD"})
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
GATEWAY_PREFIX = "/api/gateway/"


METRICS_RULE = "/api/gateway/metrics"


def bearer_token(value: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (the scheme is case-insensitive)."""
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def unauthorized(gateway_token: str | None, session_token: str | None, reason: str | None = None) -> ApiError:
    """ClosedLoop's 401 ``{"error": "unauthorized", "reason"}`` (its clients re-authenticate on
    it), with a ``message`` saying which token was wrong or missing and how to get a good one.

    ``reason``: ``missing_token``, ``bad_token``, ``session_expired``, ``origin_mismatch`` (the
    session was traded by another Origin) or ``origin_missing``."""
    how = "`gateway token` prints the right one (`eval \"$(gateway env)\"` sets $TOKEN and $H)"
    if reason in ("origin_mismatch", "origin_missing"):
        message = f"{SESSION_HEADER} must come with the Origin that traded for it (origin mismatch)"
    elif gateway_token:
        reason = "bad_token"
        message = f"{GATEWAY_HEADER} is not this gateway's token (another state dir, or an old copy?); {how}"
    elif session_token:
        reason = "session_expired"
        message = f"{SESSION_HEADER} is unknown or expired; run `gateway open` for a new sign-in link"
    else:
        reason = "missing_token"
        message = f"send {GATEWAY_HEADER} or {SESSION_HEADER}: {how}; `gateway open` signs a browser in"
    return ApiError(401, "unauthorized", "unauthorized", extra={"reason": reason, "message": message})


@dataclass(slots=True)
class Admission:
    """What the guard learned about a request; views read it from ``request.scope``."""

    operation: str | None
    principal: str | None
    t0: float


class _Gone(Exception):
    """The client hung up before its request was admitted: nobody to answer."""


def current_admission() -> Admission:
    """The guard's verdict on the request being served (for views that depend on who calls)."""
    return cast(Admission, request.scope[SCOPE_KEY])  # type: ignore[literal-required]


def install_guard(
    app: Quart,
    gw: GatewayContext,
    fast: Mapping[str, FastHandler],
    body_limits: Mapping[str, int] | None = None,
    fast_posts: Mapping[str, FastPost] | None = None,
) -> None:
    """Put the guard in front of everything Quart does (Quart's middleware slot)."""
    app.asgi_app = Guard(app.asgi_app, app, gw, fast, body_limits, fast_posts)  # type: ignore[method-assign,assignment,arg-type]


def _is_protected(path: str) -> bool:
    return path.startswith("/api/")


def relayed_command(headers: Mapping[str, str]) -> str | None:
    """The relayed command's id (``x-desktop-command-id`` from the cloud socket), if any."""
    if headers.get("x-desktop-source") != "cloud-socket":
        return None
    command_id = headers.get("x-desktop-command-id", "")
    return command_id if _UUID.match(command_id) else None


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name; the first of a repeated header wins (as in Quart)."""
    out: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        if key not in out:
            out[key] = value.decode("latin-1")
    return out


class Guard:
    """The ASGI callable Hypercorn serves: admits each request, then answers or hands it on.

    ``fast`` maps a rule to a handler producing a plain GET's JSON body; those rules must
    also have a Quart view (HEAD and the OpenAPI document use it). ``body_limits`` raises the
    body limit (``MAX_BODY``) for the rules named (uploads). ``fast_posts`` maps a rule to a
    handler answering its POST with 201 (the start route), or declining to let Quart answer.
    """

    def __init__(
        self,
        inner: ASGIApp,
        app: Quart,
        gw: GatewayContext,
        fast: Mapping[str, FastHandler],
        body_limits: Mapping[str, int] | None = None,
        fast_posts: Mapping[str, FastPost] | None = None,
    ) -> None:
        self.inner = inner
        self.app = app
        self.gw = gw
        self.fast = dict(fast)
        self.fast_posts = dict(fast_posts or {})
        self.body_limits = dict(body_limits or {})
        self._static: dict[tuple[str, str], str] | None = None
        self._adapter: MapAdapter | None = None

    # ---- routing ---------------------------------------------------------------------------

    def _rule_for(self, path: str, method: str) -> str | None:
        """The URL rule Quart will route this request to, or None (404/405/redirect).

        Rules without converters are a dict lookup; werkzeug matches the rest. Static rules
        win in werkzeug too, so the lookup order cannot disagree with Quart's own routing.
        """
        if self._static is None:
            self._static = {
                (rule.rule, m): rule.rule
                for rule in self.app.url_map.iter_rules()
                if not rule.arguments
                for m in rule.methods or ()
            }
            self._adapter = self.app.url_map.bind("gateway")
        rule = self._static.get((path, method))
        if rule is not None:
            return rule
        try:
            matched, _args = cast(MapAdapter, self._adapter).match(path, method, return_rule=True)
        except (HTTPException, RoutingException):
            return None
        return cast(str, matched.rule)

    def _unknown_path(self, path: str, method: str) -> bool:
        """No rule serves ``path`` with any method (a wrong method is Quart's 405, with Allow)."""
        try:
            cast(MapAdapter, self._adapter).match(path, method)
        except MethodNotAllowed:
            return False
        except (HTTPException, RoutingException):
            return True
        return False

    # ---- the ASGI entry point --------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            # No route speaks WebSocket; refuse the handshake rather than let one skip the
            # checks. A WebSocket family must teach this step to admit it first.
            await receive()
            await send({"type": "websocket.close", "code": 1008})
        else:  # lifespan
            await self.inner(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        headers = _headers(scope)
        origin = headers.get("origin")
        cors = origin is not None and self.gw.auth.origin_ok(origin)
        admission = Admission(None, None, t0)
        operation_var.set(None)
        principal_var.set(None)
        spawn_labels.set(())

        async def answer(status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
            fixed = [_JSON, (b"content-length", str(len(body)).encode())] if status != 204 else []
            headers_out = [*fixed, *(extra or ())]
            start: Message = {"type": "http.response.start", "status": status, "headers": headers_out}
            await self._send_start(send, start, scope, headers, admission, cors)
            await send({"type": "http.response.body", "body": body})

        async def fail(exc: ApiError, close: bool = False) -> None:
            body = json.dumps(error_payload(exc.code, exc.message, exc.extra, exc.details)).encode()
            extra = [(b"connection", b"close")] if close else []
            if exc.status == 413 or path == "/gateway-auth/exchange":
                extra.append(_NO_STORE)  # as ClosedLoop answers them
            await answer(exc.status, body, extra)

        rule = self._rule_for(path, method)
        try:
            limit = self.body_limits.get(rule or "", MAX_BODY)
            body = await self._read_body(headers, receive, limit, scope.get("http_version", ""))
        except ApiError as exc:  # 413 or 408: the rest of the body is unread, close after
            await fail(exc, close=True)
            return
        except _Gone:
            return

        try:
            admission.operation = operation_for(rule, method)
            operation_var.set(admission.operation)
            preflight = await self._admit(scope, headers, rule, admission, receive, body)
            if preflight:
                await answer(204, b"")
                return
            if rule is None and path.startswith(GATEWAY_PREFIX) and self._unknown_path(path, method):
                # ClosedLoop's router.ts: an operation it does not serve.
                where = {"method": method, "path": path}
                raise ApiError(501, "not_implemented", "operation not implemented", extra=where)
            fast = self.fast.get(rule) if method == "GET" and rule is not None else None
            if fast is not None:
                query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)[::-1])
                await answer(200, fast(self.gw, query))
                return
            post = self.fast_posts.get(rule) if method == "POST" and rule is not None else None
            if post is not None:
                made = await post(self.gw, body, headers.get("content-type"))
                if made is not None:
                    # As Quart's JSON answer for a dict (its provider, compact, a newline).
                    text = self.app.json.dumps(made, separators=(",", ":")) + "\n"
                    await answer(201, text.encode())
                    return
        except ApiError as exc:
            await fail(exc)
            return
        except GatewayError as exc:  # a fast path's domain error, as Quart's handler maps it
            await fail(ApiError(status_of(exc), exc.code, exc.message, details=exc.details))
            return
        except _Gone:
            return
        except Exception:
            log.exception("unhandled error in the guard")
            await fail(ApiError(500, "internal", "internal error (a bug); see the gateway log"))
            return

        scope[SCOPE_KEY] = admission
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._send_start(send, message, scope, headers, admission, cors)
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Shielded: within this call Hypercorn ends the exchange, queues the app's
                # ``http.disconnect`` and then closes the socket (HTTP/1.0, ``Connection:
                # close``) or re-arms keep-alive. Quart-Trio cancels the view's task as soon as
                # it sees that disconnect, which would interrupt the close half-way and leave
                # the client waiting on an open socket.
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await self.inner(scope, replay, tracked_send)

    # ---- steps -----------------------------------------------------------------------------

    async def _read_body(
        self, headers: Mapping[str, str], receive: Receive, limit: int, http_version: str
    ) -> bytes:
        too_large = ApiError(
            413, "request_body_too_large", "request body too large", extra={"maxBytes": limit}
        )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        if not declared and "transfer-encoding" not in headers and http_version in ("1.0", "1.1"):
            # HTTP/1 without Content-Length or Transfer-Encoding has no body: the server has
            # queued the empty, complete message already, so no timeout scope is needed (it
            # was a measurable share of a small answer's cost).
            return await self._drain(receive, limit, too_large)
        with trio.move_on_after(self.gw.body_timeout):
            return await self._drain(receive, limit, too_large)
        raise ApiError(408, "request_timeout", f"request body not received within {self.gw.body_timeout:g} s")

    @staticmethod
    async def _drain(receive: Receive, limit: int, too_large: ApiError) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _admit(
        self,
        scope: Scope,
        headers: Mapping[str, str],
        rule: str | None,
        admission: Admission,
        receive: Receive,
        body: bytes = b"",
    ) -> bool:
        """Raise the refusal, or return whether this is a CORS preflight to answer with 204."""
        auth = self.gw.auth
        method: str = scope["method"]
        path: str = scope["path"]
        if not auth.host_ok(headers.get("host")):
            raise ApiError(403, "host_not_allowed", "Host header must name this gateway on loopback")
        origin = headers.get("origin")
        token = headers.get(GATEWAY_HEADER.lower())
        # A browser page from an origin we do not serve is refused before anything reads its
        # request (ClosedLoop answers CORS-less instead; the browser's view is the same). A
        # program with the gateway token may carry any Origin (a relayed command does).
        relayed = _is_protected(path) and auth.check_gateway_token(token)
        if origin is not None and not auth.origin_ok(origin) and not relayed:
            raise ApiError(403, "origin_not_allowed", f"Origin {origin[:100]} is not allowed")
        if method == "OPTIONS":
            return True  # a preflight never reaches a route (router.ts: 204 on any path)

        if rule in PUBLIC_RULES or (rule is None and not _is_protected(path)):
            return False

        command_id: str | None = None
        if relayed or auth.check_gateway_token(token):
            # A relayed command holds the gateway token but is its own principal, so policy
            # can treat the cloud apart (thresholds, rules) and the access log tells them apart.
            command_id = relayed_command(headers)
            principal = "relay" if command_id else "gateway"
        elif rule == METRICS_RULE and auth.check_gateway_token(bearer_token(headers.get("authorization"))):
            principal = "gateway"  # a Prometheus server: it can send a bearer token, not our header
        else:
            session = headers.get(SESSION_HEADER.lower())
            # Browsers omit Origin on same-origin GETs (and send it on every other method);
            # Sec-Fetch-Site is a forbidden header (no page script can set it), so "same-origin"
            # vouches for a dashboard read, never for a call that changes something.
            same_origin = (
                origin is None and method in SAFE_METHODS and headers.get("sec-fetch-site") == "same-origin"
            )
            if not session:
                offered = token
                if rule == METRICS_RULE:
                    offered = offered or bearer_token(headers.get("authorization"))
                raise unauthorized(offered, None)
            reason = auth.check_session(session, origin)
            if reason is None and origin is None and not same_origin:
                reason = "origin_missing"
            if reason is not None:
                raise unauthorized(None, session, reason)
            principal = "session"
        admission.principal = principal
        principal_var.set(principal)
        spawn_labels.set(((COMMAND_LABEL, command_id),) if command_id else ())

        operation = admission.operation
        if operation is None:  # unknown path or method: Quart's routing answers 404/405
            return False
        forced = headers.get("x-desktop-force-approval") == "1"
        verdict, _rule = self.gw.policy.decide(operation, principal, method, path, forced=forced)
        if verdict == "deny":
            raise ApiError(403, "operation_denied", f"{operation} is denied by policy")
        if verdict == "ask":
            why = headers.get("x-desktop-approval-reason")
            detail = approval_detail(body, headers.get("content-type"))
            outcome = await self._hold(
                receive, operation, principal, method, path, why, command_id, detail
            )  # fmt: skip
            if outcome == "expired":
                raise ApiError(403, "approval_expired", f"{operation} was not approved in time")
            if outcome == "denied":
                raise ApiError(403, "approval_denied", f"{operation} was denied by a person")
        return False

    async def _hold(
        self,
        receive: Receive,
        operation: str,
        principal: str,
        method: str,
        path: str,
        reason: str | None,
        command_id: str | None,
        detail: dict[str, Any] | None = None,
    ) -> Outcome:
        """Wait for the person's decision; a client that hangs up withdraws its request.

        The body is already read, so the next ASGI message can only be the disconnect.
        """
        outcome: Outcome | None = None
        async with trio.open_nursery() as nursery:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                nursery.cancel_scope.cancel()  # withdraws the held approval

            nursery.start_soon(watch_disconnect)
            outcome = await self.gw.approvals.hold(
                operation,
                principal,
                method,
                path,
                reason[:500] if reason else None,
                command_id=command_id,
                detail=detail,
            )
            nursery.cancel_scope.cancel()
        if outcome is None:
            raise _Gone
        return outcome

    async def _send_start(
        self,
        send: Send,
        message: Message,
        scope: Scope,
        headers: Mapping[str, str],
        admission: Admission,
        cors: bool,
    ) -> None:
        """Add CORS headers, then count and log the answer (latency = time to headers)."""
        status: int = message["status"]
        if cors:
            extra = [
                (b"access-control-allow-origin", headers["origin"].encode("latin-1")),
                (b"vary", CORS_VARY.encode()),
            ]
            if scope["method"] == "OPTIONS":
                extra += [
                    (b"access-control-allow-methods", CORS_METHODS.encode()),
                    (b"access-control-allow-headers", CORS_HEADERS.encode()),
                    (b"access-control-max-age", b"600"),
                ]
                # Chrome's Private Network Access: an https page may reach loopback only if
                # the preflight says so (router.ts sets it when asked, for allowed origins).
                if headers.get("access-control-request-private-network", "").lower() == "true":
                    extra.append((b"access-control-allow-private-network", b"true"))
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        seconds = time.perf_counter() - admission.t0
        self.gw.metrics.observe(admission.operation, admission.principal, scope["method"], status, seconds)
        client = scope.get("client")
        log_access(
            method=scope["method"],
            path=scope["path"],
            status=status,
            seconds=seconds,
            operation=admission.operation,
            principal=admission.principal,
            remote=client[0] if client else None,
        )
        await send(message)
