"""Auth over real HTTP: challenge -> session exchange, expiry, session limits, Origin, CORS, Host."""

from __future__ import annotations

import socket
import stat

import httpx
import pytest
import trio
from gwtest import ManualClock, new_session, token_of

from gateway.http.serve import GatewayHandle, ServeOptions, run_gateway


async def exchange(
    client: httpx.AsyncClient, challenge: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """ClosedLoop's exchange request: ``{challengeToken}`` with the page's Origin."""
    sent = {"Origin": str(client.base_url).rstrip("/"), **(headers or {})}
    return await client.post("/gateway-auth/exchange", json={"challengeToken": challenge}, headers=sent)


async def test_token_file_is_private(gateway: GatewayHandle) -> None:
    token_file = gateway.context.state.token_file
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token_file.read_text().strip()) >= 43  # 32 bytes, url-safe base64


async def test_exchange_works_once(api: httpx.AsyncClient, anon: httpx.AsyncClient, gateway) -> None:
    minted = (await api.post("/api/gateway/auth/challenge")).json()
    assert set(minted) >= {"challengeToken", "expiresAt"}
    first = await exchange(anon, minted["challengeToken"])
    assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
    session = first.json()["sessionToken"]
    reuse = await exchange(anon, minted["challengeToken"])
    assert reuse.status_code == 401
    unknown = await exchange(anon, "dgw1.never-minted")
    assert unknown.json() == reuse.json()  # a failure never reveals whether a challenge existed
    ok = await anon.get(
        "/api/gateway/version", headers={"X-Desktop-Session-Token": session, "Origin": gateway.url}
    )
    assert ok.status_code == 200
    no_origin = await anon.get("/api/gateway/version", headers={"X-Desktop-Session-Token": session})
    assert no_origin.status_code == 401
    assert no_origin.json()["reason"] == "origin_missing"
    elsewhere = await anon.get(
        "/api/gateway/version",
        headers={"X-Desktop-Session-Token": session, "Origin": f"http://localhost:{gateway.port}"},
    )
    assert elsewhere.status_code == 401  # bound to the Origin that traded for it


async def test_same_origin_fetch_without_origin_vouches_for_reads_only(
    api: httpx.AsyncClient, anon: httpx.AsyncClient, gateway
) -> None:
    """Browsers send Origin on every non-GET request, so a write without one is not a page of
    ours: ``Sec-Fetch-Site: same-origin`` stands in for Origin on GET and HEAD only."""
    session = await new_session(api)
    same = {"X-Desktop-Session-Token": session, "Sec-Fetch-Site": "same-origin"}
    assert (await anon.get("/api/gateway/version", headers=same)).status_code == 200
    assert (await anon.head("/api/gateway/version", headers=same)).status_code == 200
    writes = [
        ("POST", "/api/gateway/processes"),
        ("PATCH", "/api/gateway/repos"),
        ("DELETE", "/api/gateway/repos?id=x"),
        ("PUT", "/api/gateway/settings/binary-paths"),
    ]
    for method, path in writes:
        r = await anon.request(method, path, headers=same, json={"argv": ["true"]})
        assert r.status_code == 401, (method, r.text)  # ClosedLoop's: a session needs its Origin
        assert r.json()["reason"] == "origin_missing"
    started_any = [r for r in gateway.context.sup.table.records.values() if r.kind != "git"]
    assert not started_any  # nothing was started (a git read for /version's commits aside)
    with_origin = {**same, "Origin": gateway.url}
    started = await anon.post("/api/gateway/processes", headers=with_origin, json={"argv": ["true"]})
    assert started.status_code == 201, started.text


async def test_challenge_expires_after_60s(api, anon, clock: ManualClock) -> None:
    challenge = (await api.post("/api/gateway/auth/challenge")).json()["challengeToken"]
    clock.advance(61)
    assert (await exchange(anon, challenge)).status_code == 401


async def test_only_the_gateway_token_mints(api, anon, gateway) -> None:
    session = await new_session(api)
    response = await anon.post(
        "/api/gateway/auth/challenge", headers={"X-Desktop-Session-Token": session, "Origin": gateway.url}
    )
    assert response.status_code == 403


async def test_session_idle_expiry_and_limit(api, anon, gateway, clock: ManualClock) -> None:
    def headers(token: str) -> dict[str, str]:
        return {"X-Desktop-Session-Token": token, "Origin": gateway.url}

    s = await new_session(api)
    clock.advance(9 * 60)
    assert (await anon.get("/api/gateway/version", headers=headers(s))).status_code == 200
    clock.advance(9 * 60)  # use above extended it
    assert (await anon.get("/api/gateway/version", headers=headers(s))).status_code == 200
    clock.advance(10 * 60 + 1)
    assert (await anon.get("/api/gateway/version", headers=headers(s))).status_code == 401
    sessions = [await new_session(api) for _ in range(9)]
    assert (await anon.get("/api/gateway/version", headers=headers(sessions[0]))).status_code == 401
    for token in sessions[1:]:
        assert (await anon.get("/api/gateway/version", headers=headers(token))).status_code == 200


async def test_cors_only_for_allowed_origins(anon: httpx.AsyncClient, gateway) -> None:
    for origin in (gateway.url, f"http://localhost:{gateway.port}"):
        pre = await anon.options(
            "/api/gateway/processes",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "x-desktop-session-token,content-type"},
        )  # fmt: skip
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == origin
        assert "X-Desktop-Session-Token" in pre.headers["access-control-allow-headers"]
        assert "Authorization" in pre.headers["access-control-allow-headers"]
    bad = await anon.options(
        "/api/gateway/processes",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers


async def test_host_guard(anon: httpx.AsyncClient, gateway) -> None:
    for host in (f"localhost:{gateway.port}", f"127.0.0.1:{gateway.port}", f"[::1]:{gateway.port}"):
        assert (await anon.get("/health", headers={"Host": host})).status_code == 200
    for host in ("evil.example", f"evil.example:{gateway.port}", "127.0.0.1:1", "localhost"):
        response = await anon.get("/health", headers={"Host": host})
        assert response.status_code == 403, host


def _non_loopback_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


async def test_exchange_refuses_non_loopback_peer(tmp_path, clock, nursery: trio.Nursery) -> None:
    ip = _non_loopback_ip()
    if ip is None:
        pytest.skip("no non-loopback interface to connect from")
    opts = ServeOptions(state_dir=tmp_path / "s", host="0.0.0.0", port=0, allow_remote=True, clock=clock,
                        probe_binaries=False)  # fmt: skip
    handle: GatewayHandle = await nursery.start(run_gateway, opts)
    try:
        host = {"Host": f"127.0.0.1:{handle.port}"}
        async with httpx.AsyncClient(base_url=handle.url, trust_env=False) as local:
            minted = await local.post(
                "/api/gateway/auth/challenge", headers={"X-Desktop-Gateway-Token": token_of(handle)}
            )
            challenge = minted.json()["challengeToken"]
        async with httpx.AsyncClient(base_url=f"http://{ip}:{handle.port}", trust_env=False) as remote:
            response = await exchange(remote, challenge, headers={**host, "Origin": handle.url})
        assert response.status_code == 403
        assert response.json()["error"] == "loopback only" and response.json()["code"] == "loopback_only"
        async with httpx.AsyncClient(base_url=handle.url, trust_env=False) as local:
            assert (await exchange(local, challenge)).status_code == 200  # still unused
    finally:
        handle.request_shutdown()
