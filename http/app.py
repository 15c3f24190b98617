"""Builds the Quart-Trio app: blueprints, the guard, JSON errors, stubs and OpenAPI.

Every route of ``operations.ROUTES`` is registered: families with a blueprint serve their own
views, and every (path, method) left over gets a stub answering 501 with the operation's name,
so the whole reference table is served, authenticated and tagged before its family lands.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quart import Response, request
from quart_schema import QuartSchema, tag
from quart_schema.extension import QUART_SCHEMA_TAG_ATTRIBUTE
from quart_schema.openapi import QUART_SCHEMA_OPERATION_ID_ATTRIBUTE
from quart_schema.validation import QUART_SCHEMA_RESPONSE_ATTRIBUTE
from quart_trio import QuartTrio

from gateway.http.context import GatewayContext
from gateway.http.errors import MAX_CONTENT, error_response, register_error_handlers
from gateway.http.guard import install_guard
from gateway.http.operations import ROUTES, operation_for
from gateway.http.routes import (
    admin,
    chat,
    codex,
    dashboard,
    deploy,
    files,
    git,
    learnings,
    meta,
    nodes,
    pr,
    processes,
    symphony,
)
from gateway.http.schemas.core import ErrorResponse, JsonObject

NOT_IMPLEMENTED_TAG = "not-implemented"

#: Body limits above (or below) the guard's 256 KiB, by rule: ClosedLoop's own table
#: (``apps/desktop/src/server/router.ts`` ``resolveRequestBodyLimit``).
#: Ours: the chat routes take 4 MiB, so that a message up to the 1 MiB prompt cap
#: (``symphony.model.MAX_PROMPT_BYTES``, 413 ``prompt_too_large`` beyond) fits with the copy the
#: chat panel sends as ``displayContent`` and JSON's escapes; ClosedLoop's 256 KiB would stop a
#: chat message at ~128 KiB.
CHAT_BODY_LIMIT = 4 * 1024 * 1024
BODY_LIMITS = {
    "/gateway-auth/exchange": 4 * 1024,
    "/api/gateway/symphony/loop": 1024 * 1024,
    "/api/gateway/symphony/upload/<ticketId>": 50 * 1024 * 1024,
    "/api/gateway/run-viewer-extract": MAX_CONTENT,
    "/api/gateway/symphony/chat/<ticketId>": CHAT_BODY_LIMIT,
    "/api/gateway/symphony/comment-chat/<commentId>": CHAT_BODY_LIMIT,
    "/api/gateway/terminal-chat": CHAT_BODY_LIMIT,
    "/api/gateway/ticket-chat": CHAT_BODY_LIMIT,
    "/api/gateway/run-viewer-chat": CHAT_BODY_LIMIT,
    "/api/gateway/codex/chat/<ticketId>": CHAT_BODY_LIMIT,
    "/api/gateway/codex/finding-chat/<findingId>": CHAT_BODY_LIMIT,
}


def _stub(operation: str, path: str) -> Callable[..., Any]:
    @tag([NOT_IMPLEMENTED_TAG])
    async def not_implemented(**_params: str) -> Response:
        return error_response(
            501,
            "not_implemented",
            "operation not implemented",
            {"method": request.method, "path": request.path, "operation": operation},
        )

    not_implemented.__doc__ = f"Not implemented yet (operation {operation})."
    return not_implemented


def create_app(gw: GatewayContext) -> QuartTrio:
    app = QuartTrio(__name__, root_path=str(Path(__file__).parent), instance_path=str(gw.state.root))
    app.config.update(
        # The guard enforces each route's limit before Quart reads a byte; Quart's own cap
        # only has to admit the largest of them (uploads).
        MAX_CONTENT_LENGTH=MAX_CONTENT,
        RESPONSE_TIMEOUT=None,  # NDJSON followers stream for as long as they read
        BODY_TIMEOUT=60,
        JSON_SORT_KEYS=False,
        PROPAGATE_EXCEPTIONS=False,
    )
    app.extensions["gateway"] = gw
    QuartSchema(
        app,
        openapi_path="/api/gateway/openapi.json",
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info={"title": "desktop-gateway", "version": meta.VERSION},
        security_schemes={
            "gatewayToken": {"type": "apiKey", "in_": "header", "name": "X-Desktop-Gateway-Token"},
            "sessionToken": {"type": "apiKey", "in_": "header", "name": "X-Desktop-Session-Token"},
        },
        security=[{"gatewayToken": []}, {"sessionToken": []}],
    )
    # After QuartSchema: it installs its own JSON provider, which sorts keys by default.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    _plain_json_skips_schema_dump(app)
    register_error_handlers(app)
    for blueprint in (
        meta.public,
        meta.bp,
        admin.public,
        admin.bp,
        processes.bp,
        nodes.bp,
        dashboard.bp,
        symphony.bp,
        symphony.settings_bp,
        git.bp,
        pr.bp,
        files.bp,
        deploy.bp,
        learnings.bp,
        chat.bp,
        codex.bp,
    ):
        app.register_blueprint(blueprint)

    served = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in (rule.methods or ())
    }
    for route in ROUTES:
        missing = [m for m in route.methods if (route.rule, m) not in served]
        if missing:
            app.add_url_rule(
                route.rule,
                endpoint=f"stub:{route.rule}",
                view_func=_stub(route.operation, route.path),
                methods=missing,
            )
    _tag_operations(app)
    install_guard(
        app,
        gw,
        {"/health": meta.health_bytes, "/api/gateway/processes": processes.listing_bytes},
        BODY_LIMITS,
        {"/api/gateway/processes": processes.start_fast},
    )
    return app


def _plain_json_skips_schema_dump(app: QuartTrio) -> None:
    """Hand plain values straight to Quart; only models go through quart-schema's conversion.

    quart-schema wraps ``make_response`` and dumps every dict or list a view returns through a
    freshly built pydantic ``TypeAdapter``: about 0.1 ms per answer, a third of a small
    answer's whole cost (``benchmarks/bench_http.py``, ``/api/gateway/version``). Our views
    return JSON-ready dicts and lists, for which that dump is the identity.
    """
    converting = app.make_response
    plain = getattr(converting, "__wrapped__", None)
    if plain is None:  # quart-schema changed how it hooks in: keep its conversion
        return

    async def make_response(result: Any) -> Any:
        parts = result if isinstance(result, tuple) else (result,)
        if all(isinstance(p, _PLAIN) for p in parts):
            return await plain(result)
        return await converting(result)

    app.make_response = make_response  # type: ignore[method-assign]


_PLAIN = (dict, list, str, bytes, int, Response)


def _tag_operations(app: QuartTrio) -> None:
    """Tag every documented view with its operation ID(s), so the OpenAPI shows the mapping.

    OpenAPI ``operationId``s are ``<method>_<function name>``; where two views share a name
    (``status`` of deploy and of Symphony) each is told apart by its blueprint."""
    named: dict[str, set[tuple[str, Any]]] = {}
    for endpoint, fn in app.view_functions.items():
        if not inspect.ismethod(fn):
            named.setdefault(fn.__name__, set()).add((endpoint, fn))
    for views in named.values():
        if len({f for _e, f in views}) > 1:
            for endpoint, fn in views:
                unique = endpoint.replace(".", "_").replace(":", "_")
                setattr(fn, QUART_SCHEMA_OPERATION_ID_ATTRIBUTE, unique)
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        if view is None or inspect.ismethod(view):  # bound methods (static, openapi) take no attributes
            continue
        ops = {operation_for(rule.rule, m) for m in rule.methods or ()} - {None}
        if ops:
            existing = set(getattr(view, QUART_SCHEMA_TAG_ATTRIBUTE, set()))
            setattr(view, QUART_SCHEMA_TAG_ATTRIBUTE, existing | ops)
        # Every operation states its answers (a valid OpenAPI document needs at least one):
        # a view that documents none answers a JSON object, and any view can answer an error.
        responses = dict(getattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {}))
        if not responses:
            stub = getattr(view, QUART_SCHEMA_TAG_ATTRIBUTE, set()) >= {NOT_IMPLEMENTED_TAG}
            responses[501 if stub else 200] = (ErrorResponse if stub else JsonObject, None)
        responses.setdefault(400, (ErrorResponse, None))
        setattr(view, QUART_SCHEMA_RESPONSE_ATTRIBUTE, responses)
