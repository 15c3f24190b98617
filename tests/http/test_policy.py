"""Approval policy over real HTTP: deny, ask -> approve/deny, always-allow and its expiry,
held-request expiry, and withdrawal when the client goes away."""

from __future__ import annotations

from functools import partial

import httpx
import trio
from gwtest import ManualClock, wait_until

from gateway.http.serve import GatewayHandle

VERSION = "/api/gateway/version"  # health_check: tier low


async def pending(api: httpx.AsyncClient) -> list[dict]:
    return (await api.get("/api/gateway/approvals")).json()["approvals"]


async def held_call(api: httpx.AsyncClient, url: str, out: list[httpx.Response], **kw: object) -> None:
    out.append(await api.get(url, **kw))


async def test_deny_rule_gives_operation_denied(api: httpx.AsyncClient) -> None:
    rule = await api.post("/api/gateway/policy/rules", json={"effect": "deny", "operation": "health_check"})
    assert rule.status_code == 201
    denied = await api.get(VERSION)
    assert denied.status_code == 403
    assert denied.json() == {
        "error": "health_check is denied by policy", "code": "operation_denied", "operation": "health_check"
    }  # fmt: skip
    assert (await api.get("/api/gateway/processes")).status_code == 200  # other operations run
    assert (await api.delete(f"/api/gateway/policy/rules/{rule.json()['id']}")).status_code == 200
    assert (await api.get(VERSION)).status_code == 200


async def test_ask_then_approve_runs(api: httpx.AsyncClient) -> None:
    assert (await api.put("/api/gateway/policy", json={"thresholds": {"gateway": "none"}})).status_code == 200
    results: list[httpx.Response] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(held_call, api, VERSION, results)
        await wait_until(lambda: pending(api))
        [held] = await pending(api)
        assert held["operation"] == "health_check" and held["principal"] == "gateway"
        assert held["path"] == VERSION and held["status"] == "pending"
        assert not results  # still held
        decided = await api.post(f"/api/gateway/approvals/{held['id']}", json={"decision": "approved"})
        assert decided.status_code == 200
    assert results[0].status_code == 200 and "version" in results[0].json()
    again = await api.post(f"/api/gateway/approvals/{held['id']}", json={"decision": "approved"})
    assert again.status_code == 409


async def test_person_denies(api: httpx.AsyncClient) -> None:
    await api.put("/api/gateway/policy", json={"thresholds": {"gateway": "none"}})
    results: list[httpx.Response] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(held_call, api, VERSION, results)
        await wait_until(lambda: pending(api))
        [held] = await pending(api)
        await api.post(f"/api/gateway/approvals/{held['id']}", json={"decision": "denied"})
    assert results[0].status_code == 403 and results[0].json()["code"] == "approval_denied"


async def test_force_header_asks_even_when_policy_allows(api: httpx.AsyncClient) -> None:
    results: list[httpx.Response] = []
    async with trio.open_nursery() as nursery:
        headers = {"X-Desktop-Force-Approval": "1", "X-Desktop-Approval-Reason": "check me"}
        nursery.start_soon(partial(held_call, api, VERSION, results, headers=headers))
        await wait_until(lambda: pending(api))
        [held] = await pending(api)
        assert held["reason"] == "check me"
        await api.post(f"/api/gateway/approvals/{held['id']}", json={"decision": "approved"})
    assert results[0].status_code == 200


async def test_always_allow_until_rule_expires(api: httpx.AsyncClient, clock: ManualClock) -> None:
    await api.put("/api/gateway/policy", json={"thresholds": {"gateway": "none"}})
    results: list[httpx.Response] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(held_call, api, VERSION, results)
        await wait_until(lambda: pending(api))
        [held] = await pending(api)
        await api.post(f"/api/gateway/approvals/{held['id']}", json={"decision": "always_allow"})
    assert results[0].status_code == 200
    assert (await api.get(VERSION)).status_code == 200  # no asking now
    rules = (await api.get("/api/gateway/policy")).json()["rules"]
    assert [r["effect"] for r in rules] == ["allow"] and rules[0]["pathPrefix"] == VERSION
    clock.advance(7 * 24 * 3600 + 1)  # the default 7-day expiry
    results.clear()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(held_call, api, VERSION, results)
        await wait_until(lambda: pending(api))  # asked again
        [held] = await pending(api)
        await api.post(f"/api/gateway/approvals/{held['id']}", json={"decision": "approved"})
    assert results[0].status_code == 200


async def test_held_request_expires(api: httpx.AsyncClient, gateway: GatewayHandle) -> None:
    gateway.context.approvals.timeout = 0.2
    await api.put("/api/gateway/policy", json={"thresholds": {"gateway": "none"}})
    response = await api.get(VERSION)
    assert response.status_code == 403 and response.json()["code"] == "approval_expired"
    assert await pending(api) == []


async def test_client_gone_withdraws(gateway: GatewayHandle, api: httpx.AsyncClient) -> None:
    await api.put("/api/gateway/policy", json={"thresholds": {"gateway": "none", "session": "high"}})
    # The approvals API itself is never held (gateway_admin), so it can release the others.
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=dict(api.headers), trust_env=False
    ) as doomed, trio.open_nursery() as nursery:
        nursery.start_soon(held_call, doomed, VERSION, [])
        await wait_until(lambda: pending(api))
        [held] = await pending(api)
        nursery.cancel_scope.cancel()  # the client hangs up
    await wait_until(lambda: not gateway.context.approvals.pending)
    gone = (await api.get("/api/gateway/approvals", params={"all": 1})).json()["approvals"]
    assert [a["status"] for a in gone if a["id"] == held["id"]] == ["withdrawn"]
    late = await api.post(f"/api/gateway/approvals/{held['id']}", json={"decision": "approved"})
    assert late.status_code == 409
