"""Transport, auth and CORS as ClosedLoop's clients meet them.

Derived from ``closedloop-ai/closedloop-ai``: ``apps/desktop/src/server/router.ts`` (CORS, auth
order, exchange, 401/404/413/501 bodies), ``apps/desktop/src/main/local-auth-verifier.ts``
(the verify call), ``apps/app/lib/engineer/local-gateway-session.ts`` (the exchange request),
``apps/app/lib/engineer/local-gateway-api-namespace.ts`` (the version probe),
``packages/shared-platform/src/gateway-probe.ts`` (the health probe) and
``apps/desktop/src/main/cloud-command-executor.ts`` (relayed commands).
"""

from __future__ import annotations

import httpx
import pytest
from closedloop_double import VERIFY_PATH, ClosedLoopApiDouble
from wire_support import WEB_ORIGIN, exchange

from gateway.http.serve import GatewayHandle

ALLOW_HEADERS = (
    "Content-Type,Authorization,X-Desktop-Gateway-Token,X-Desktop-Session-Token,X-Desktop-Source,"
    "X-Desktop-Force-Approval,X-Desktop-Approval-Reason"
)


def localhost(gw: GatewayHandle) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://localhost:{gw.port}", timeout=30, trust_env=False)


async def test_health_probe(gw: GatewayHandle) -> None:
    """gateway-probe.ts ``probeGateway``: GET /health with Accept json, no credentials."""
    async with localhost(gw) as client:
        answer = await client.get("/health", headers={"Accept": "application/json"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok" and body["port"] == gw.port
    assert isinstance(body["machineName"], str) and body["machineName"]
    assert isinstance(body["gatewayId"], str) and body["gatewayId"].strip()
    assert isinstance(body["onboardingCompleted"], bool)
    assert isinstance(body["version"], str)
    assert set(body["capabilities"]["tools"]) == {"claude", "codex", "git", "gh", "python3"}


async def test_preflight_from_the_web_app_with_private_network_access(gw: GatewayHandle) -> None:
    """router.ts ``applyCorsHeaders``: Chrome's PNA preflight from an https page to loopback."""
    async with localhost(gw) as client:
        answer = await client.options(
            "/gateway-auth/exchange",
            headers={
                "Origin": WEB_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
                "Access-Control-Request-Private-Network": "true",
            },
        )
        api = await client.options(
            "/api/gateway/git",
            headers={
                "Origin": WEB_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-desktop-session-token",
                "Access-Control-Request-Private-Network": "true",
            },
        )
    for pre in (answer, api):
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == WEB_ORIGIN
        assert pre.headers["access-control-allow-private-network"] == "true"
        assert pre.headers["access-control-allow-methods"] == "GET,POST,PUT,PATCH,DELETE,OPTIONS"
        assert pre.headers["access-control-allow-headers"] == ALLOW_HEADERS
        assert "Origin" in pre.headers["vary"]


async def test_preflight_without_pna_request_has_no_pna_header(gw: GatewayHandle) -> None:
    async with localhost(gw) as client:
        pre = await client.options(
            "/api/gateway/version", headers={"Origin": WEB_ORIGIN, "Access-Control-Request-Method": "GET"}
        )
    assert pre.status_code == 204
    assert "access-control-allow-private-network" not in pre.headers


async def test_foreign_origin_gets_no_cors(gw: GatewayHandle) -> None:
    async with localhost(gw) as client:
        pre = await client.options(
            "/api/gateway/version",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Private-Network": "true"},
        )  # fmt: skip
    assert pre.headers.get("access-control-allow-origin") != "https://evil.example"
    assert "access-control-allow-private-network" not in pre.headers


async def test_exchange_verified_by_the_cloud(gw: GatewayHandle, cloud: ClosedLoopApiDouble) -> None:
    """local-gateway-session.ts step 2, and local-auth-verifier.ts's call to the API."""
    token = await exchange(gw, cloud)
    call = cloud.verify_calls()[-1]
    assert call.headers["authorization"] == f"Bearer {cloud.api_key}"
    assert call.body["requestOrigin"] == WEB_ORIGIN and call.body["challengeToken"].startswith("clc_")
    async with localhost(gw) as client:
        ok = await client.get(
            "/api/gateway/version",
            headers={"Accept": "application/json", "x-desktop-session-token": token, "Origin": WEB_ORIGIN},
        )
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == WEB_ORIGIN
        other = await client.get(
            "/api/gateway/version",
            headers={"x-desktop-session-token": token, "Origin": "http://localhost:3000"},
        )
    assert other.status_code == 401
    assert other.json()["error"] == "unauthorized" and other.json()["reason"] == "origin_mismatch"


async def test_exchange_answer_headers_and_shape(gw: GatewayHandle, cloud: ClosedLoopApiDouble) -> None:
    async with localhost(gw) as client:
        answer = await client.post(
            "/gateway-auth/exchange",
            headers={"Content-Type": "application/json", "Origin": WEB_ORIGIN},
            json={"challengeToken": cloud.mint(WEB_ORIGIN)},
        )
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert set(answer.json()) == {"sessionToken", "expiresAt"}


@pytest.mark.parametrize("case", ["reused", "expired", "wrong-origin", "unknown"])
async def test_exchange_rejected(gw: GatewayHandle, cloud: ClosedLoopApiDouble, case: str) -> None:
    challenge = cloud.mint(WEB_ORIGIN)
    origin = WEB_ORIGIN
    if case == "reused":
        await exchange(gw, cloud)  # a different one, to show the table works
        async with localhost(gw) as client:
            first = await client.post("/gateway-auth/exchange", headers={"Origin": origin},
                                      json={"challengeToken": challenge})  # fmt: skip
        assert first.status_code == 200
    elif case == "expired":
        cloud.expire(challenge)
    elif case == "wrong-origin":
        origin = "http://localhost:3000"
    else:
        challenge = "clc_never-minted"
    async with localhost(gw) as client:
        answer = await client.post(
            "/gateway-auth/exchange", headers={"Origin": origin}, json={"challengeToken": challenge}
        )
    assert answer.status_code in (401, 403, 410)
    assert isinstance(answer.json()["error"], str) and answer.json()["error"]
    assert answer.headers["cache-control"] == "no-store"
    assert "sessionToken" not in answer.json()


async def test_exchange_needs_origin_and_a_challenge(gw: GatewayHandle) -> None:
    """router.ts ``handleExchange``: 400 without Origin, 400 without ``challengeToken``."""
    async with localhost(gw) as client:
        no_origin = await client.post("/gateway-auth/exchange", json={"challengeToken": "x"})
        no_token = await client.post("/gateway-auth/exchange", headers={"Origin": WEB_ORIGIN}, json={})
        big = await client.post(
            "/gateway-auth/exchange", headers={"Origin": WEB_ORIGIN}, content=b"{" + b" " * 5000 + b"}"
        )
    assert no_origin.status_code == 400 and no_origin.json()["error"] == "Origin header required"
    assert no_token.status_code == 400
    assert no_token.json()["error"] == "invalid request body: challengeToken required"
    assert big.status_code == 413 and big.json()["maxBytes"] == 4096


async def test_exchange_without_cloud_settings_is_503(
    gw: GatewayHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_CLOSEDLOOP_API_KEY")
    async with localhost(gw) as client:
        no_key = await client.post(
            "/gateway-auth/exchange", headers={"Origin": WEB_ORIGIN}, json={"challengeToken": "clc_x"}
        )
        monkeypatch.setenv("GATEWAY_CLOSEDLOOP_API_KEY", "k")
        monkeypatch.delenv("GATEWAY_CLOSEDLOOP_API_ORIGIN")
        no_origin = await client.post(
            "/gateway-auth/exchange", headers={"Origin": WEB_ORIGIN}, json={"challengeToken": "clc_x"}
        )
    assert no_key.status_code == 503 and "API key" in no_key.json()["error"]
    assert no_origin.status_code == 503 and "API origin" in no_origin.json()["error"]


async def test_exchange_of_a_local_challenge(gw: GatewayHandle, cloud: ClosedLoopApiDouble) -> None:
    """Our own ``auth/challenge`` (the dashboard and CLI) is accepted and never sent to the cloud."""
    token = {"X-Desktop-Gateway-Token": gw.context.auth.gateway_token}
    async with localhost(gw) as client:
        minted = (await client.post("/api/gateway/auth/challenge", headers=token)).json()
    async with localhost(gw) as client:
        answer = await client.post(
            "/gateway-auth/exchange", headers={"Origin": WEB_ORIGIN},
            json={"challengeToken": minted["challengeToken"]},
        )  # fmt: skip
        again = await client.post(
            "/gateway-auth/exchange", headers={"Origin": WEB_ORIGIN},
            json={"challengeToken": minted["challengeToken"]},
        )  # fmt: skip
    assert answer.status_code == 200
    assert again.status_code == 401 and isinstance(again.json()["error"], str)
    assert cloud.verify_calls() == []


async def test_verify_timeout_is_504(gw: GatewayHandle, cloud: ClosedLoopApiDouble) -> None:
    gw.context.verify_timeout = 0.5
    cloud.hold()
    try:
        async with localhost(gw) as client:
            answer = await client.post(
                "/gateway-auth/exchange", headers={"Origin": WEB_ORIGIN},
                json={"challengeToken": cloud.mint(WEB_ORIGIN)},
            )  # fmt: skip
    finally:
        cloud.release()
    assert answer.status_code == 504 and answer.json()["error"] == "verify request timed out"


async def test_relayed_command_with_an_origin_is_not_refused(relay: httpx.AsyncClient) -> None:
    """cloud-command-executor.ts forwards the command's headers (an Origin among them) with the
    gateway token; router.ts checks the token first."""
    answer = await relay.get("/api/gateway/version", headers={"Origin": "https://relay.closedloop.ai"})
    assert answer.status_code == 200 and "version" in answer.json()


async def test_unauthorized_body(gw: GatewayHandle) -> None:
    async with localhost(gw) as client:
        answer = await client.get("/api/gateway/version", headers={"Origin": WEB_ORIGIN})
    assert answer.status_code == 401
    body = answer.json()
    assert body["error"] == "unauthorized" and isinstance(body["reason"], str)


async def test_unknown_routes(relay: httpx.AsyncClient) -> None:
    """router.ts: 501 for an unknown /api/gateway/* operation, 404 elsewhere."""
    nope = await relay.get("/api/gateway/no-such-thing")
    assert nope.status_code == 501
    assert nope.json() == {"error": "operation not implemented", "code": "not_implemented",
                           "method": "GET", "path": "/api/gateway/no-such-thing"}  # fmt: skip
    wrong_method = await relay.delete("/api/gateway/version")
    assert wrong_method.status_code == 405  # ours: a known path answers 405 with Allow
    other = await relay.get("/nowhere")
    assert other.status_code == 404 and other.json()["error"] == "route not found"


async def test_body_limit(relay: httpx.AsyncClient) -> None:
    """router.ts ``resolveRequestBodyLimit``: 256 KiB for generic JSON routes."""
    answer = await relay.post(
        "/api/gateway/git", content=b"{" + b" " * (256 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert answer.status_code == 413
    assert answer.json() == {"error": "request body too large", "code": "request_body_too_large",
                             "maxBytes": 256 * 1024}  # fmt: skip


async def test_errors_are_strings(relay: httpx.AsyncClient) -> None:
    """Clients do ``new Error(data.error)`` (api-error-response.ts: ``error`` must be a string)."""
    answer = await relay.post("/api/gateway/git", json={"action": "status"})
    assert answer.status_code == 400
    body = answer.json()
    assert isinstance(body["error"], str) and isinstance(body["code"], str)


async def test_namespace_probe(web: httpx.AsyncClient) -> None:
    """local-gateway-api-namespace.ts ``probeNamespace``."""
    answer = await web.get("/api/gateway/version", headers={"Accept": "application/json"})
    assert answer.status_code == 200
    assert isinstance(answer.json()["version"], str) and isinstance(answer.json()["commits"], list)
    assert VERIFY_PATH  # the session came from a cloud-verified exchange (fixture ``web``)
