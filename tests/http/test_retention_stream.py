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


async def test_retention_prunes_the_listings_json_cache(
    gateway: GatewayHandle, api: httpx.AsyncClient
) -> None:
    """Ended records' JSON is cached for the listing; a record retention drops leaves it."""
    sup = gateway.context.sup
    sup.config.keep_ended["command"] = 2
    sup.config.keep_grace = 0.0
    cache = gateway.context.caches
    ids = []
    for _ in range(5):
        record = (await api.post("/api/gateway/processes", json={"argv": ["true"]})).json()
        await sup.wait(record["id"])
        ids.append(record["id"])
        # Each listing (the guard's fast path, paged or not) caches the ended records it shows.
        listed = (await api.get("/api/gateway/processes")).json()["processes"]
        assert record["id"] in {p["id"] for p in listed}
        await api.get("/api/gateway/processes", params={"limit": 10})
    kept = set(sup.table.records)
    assert set(ids[:3]).isdisjoint(kept) and set(ids[3:]) <= kept
    await api.get("/api/gateway/processes", params={"limit": 10})
    assert set(cache["record_json"]) == kept, "only records still in the table keep cached JSON"
