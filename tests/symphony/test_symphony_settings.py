"""Symphony's watchdog limits: persisted in the ``settings`` table, validated, read at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from gateway.http.serve import GatewayHandle, ServeOptions, run_gateway
from gateway.supervisor import open_supervisor
from gateway.supervisor.errors import BadRequest
from gateway.supervisor.symphony import Limits, Symphony, open_symphony
from gateway.supervisor.symphony.settings import LIMITS_KEY

from support import gateway_client


async def test_limits_are_validated_persisted_and_loaded(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with open_supervisor(state) as sup, open_symphony(sup) as sym:
        out = await sym.save_limits(
            {"defaults": {"resultIdleTimeout": 10, "maxRuntime": 7200}, "maximum": {"maxRuntime": 48 * 3600}}
        )
        assert out["defaults"] == {"resultIdleTimeout": 10.0, "stallTimeout": 900.0, "maxRuntime": 7200.0}
        assert out["maximum"]["maxRuntime"] == 48 * 3600.0
        # Requests are now capped by the stored maximum, and default to the stored defaults.
        assert sym.settings.limits(None) == Limits(10.0, 900.0, 7200.0)
        assert sym.settings.limits({"maxRuntime": 40 * 3600}).max_runtime == 40 * 3600.0
        with pytest.raises(BadRequest, match=r"limits\.maxRuntime: at most 172800"):
            sym.settings.limits({"maxRuntime": 50 * 3600})
        # Bad values name the field and change nothing.
        for bad, field in (
            ({"defaults": {"stallTimeout": -1}}, r"defaults\.stallTimeout"),
            ({"defaults": {"maxRuntime": 49 * 3600}}, r"defaults\.maxRuntime"),
            ({"maximum": {"bogus": 1}}, r"maximum\.bogus"),
            ({"maximum": {"stallTimeout": True}}, r"maximum\.stallTimeout"),
            ({"defaults": {"stallTimeout": 60}, "extra": {}}, r"symphony\.limits\.extra"),
        ):
            with pytest.raises(BadRequest, match=field):
                await sym.save_limits(bad)
        assert sym.settings.defaults == Limits(10.0, 900.0, 7200.0)

    # A new service on the same state dir reads them when it starts.
    async with open_supervisor(state) as sup, open_symphony(sup) as sym:
        assert sym.settings.defaults == Limits(30.0, 900.0, 3600.0)  # not loaded yet
        await sym.load_settings()
        assert sym.settings.defaults == Limits(10.0, 900.0, 7200.0)
        assert sym.settings.maximum.max_runtime == 48 * 3600.0
        # A hand-broken stored value is ignored (logged), the built-in limits stay.
        await sup.store.execute("UPDATE settings SET value = ? WHERE key = ?", ("{nope", LIMITS_KEY))
        async with open_symphony(sup) as fresh:
            await fresh.load_settings()
            assert fresh.settings.defaults == Limits()


async def test_the_gateway_reads_stored_limits_at_start(tmp_path: Path, nursery: trio.Nursery) -> None:
    state = tmp_path / "state"
    async with open_supervisor(state) as sup:
        stored = {"defaults": {"stallTimeout": 120}, "maximum": {"stallTimeout": 600}}
        await sup.store.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)", (LIMITS_KEY, json.dumps(stored))
        )
    opts = ServeOptions(state_dir=state, port=0, probe_binaries=False)
    handle: GatewayHandle = await nursery.start(run_gateway, opts)
    try:
        svc = handle.context.services.symphony
        assert isinstance(svc, Symphony)
        assert svc.settings.defaults.stall_timeout == 120.0 and svc.settings.maximum.stall_timeout == 600.0
    finally:
        handle.request_shutdown()


async def test_limits_over_http_change_persist_and_refuse_bad_input(tmp_path: Path) -> None:
    """``/api/gateway/settings/symphony``: read, change (all or nothing), survive a restart."""
    state = tmp_path / "state"
    url = "/api/gateway/settings/symphony"
    opts = ServeOptions(state_dir=state, port=0, probe_binaries=False)

    async with trio.open_nursery() as nursery:  # left only once the first gateway is down
        handle: GatewayHandle = await nursery.start(run_gateway, opts)
        async with gateway_client(handle, timeout=30) as api, gateway_client(
            handle, timeout=30, authenticated=False
        ) as anon:
            assert (await anon.get(url)).status_code == 401
            assert (await anon.patch(url, json={"defaults": {"stallTimeout": 60}})).status_code == 401
            got = (await api.get(url)).json()
            assert got == {
                "defaults": {"resultIdleTimeout": 30.0, "stallTimeout": 900.0, "maxRuntime": 3600.0},
                "maximum": {"resultIdleTimeout": 600.0, "stallTimeout": 21600.0, "maxRuntime": 86400.0},
            }
            change = {"defaults": {"stallTimeout": 60}, "maximum": {"maxRuntime": 7200}}
            changed = await api.patch(url, json=change)
            assert changed.status_code == 200, changed.text
            assert changed.json()["defaults"]["stallTimeout"] == 60.0
            assert changed.json()["maximum"]["maxRuntime"] == 7200.0
            # The default maxRuntime (3600) still fits under the new maximum; one above it does
            # not, and a refused change leaves everything as it was.
            for body, field in (
                ({"defaults": {"maxRuntime": 9000}}, "defaults.maxRuntime"),
                ({"defaults": {"stallTimeout": -5}}, "stallTimeout"),
                ({"maximum": {"bogus": 1}}, "bogus"),
                ({"defaults": {"stallTimeout": "soon"}}, "stallTimeout"),
            ):
                refused = await api.patch(url, json=body)
                assert refused.status_code == 400, refused.text
                error = refused.json()
                assert field in error["error"] and error["operation"] == "symphony_settings"
            assert (await api.get(url)).json() == changed.json()
            # A run now asking for more than the stored maximum is refused, naming the field.
            too_long = await api.post(
                "/api/gateway/symphony/launch",
                json={"ticketId": "T-1", "repoId": "nope", "prompt": "x", "limits": {"maxRuntime": 9000}},
            )
            assert too_long.status_code == 400
            assert "limits.maxRuntime" in too_long.json()["error"]
            metrics = (await api.get("/api/gateway/metrics")).text
            assert 'operation="symphony_settings"' in metrics
        handle.request_shutdown()

    # Stored in the database: a restarted gateway serves the changed limits.
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(run_gateway, opts)
        async with gateway_client(handle, timeout=30) as api:
            assert (await api.get(url)).json() == changed.json()
        handle.request_shutdown()
