"""Retention seen over HTTP: a dropped record leaves the listing and the status stream says so."""

from __future__ import annotations

import json

import httpx
import trio

from gateway.http.serve import GatewayHandle


async def test_status_stream_reports_removals(gateway: GatewayHandle, api: httpx.AsyncClient) -> None:
    sup = gateway.context.sup
    sup.config.keep_ended["command"] = 1
    sup.config.keep_grace = 0.0
    since = sup.table.version
    first = (await api.post("/api/gateway/processes", json={"argv": ["true"]})).json()
    await sup.wait(first["id"])
    second = (await api.post("/api/gateway/processes", json={"argv": ["true"]})).json()
    await sup.wait(second["id"])
    removed: list[str] = []
    with trio.fail_after(10):
        async with api.stream("GET", "/api/gateway/processes/stream", params={"since": since}) as r:
            async for line in r.aiter_lines():
                item = json.loads(line)
                if item["type"] == "removed":
                    removed.append(item["id"])
                    break
    assert removed == [first["id"]]
    assert (await api.get(f"/api/gateway/processes/{first['id']}")).status_code == 404
    assert (await api.get(f"/api/gateway/processes/{second['id']}")).status_code == 200
