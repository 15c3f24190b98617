"""Symphony's watchdog limits: persisted in the ``settings`` table, validated, read at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from gateway.http.routes_symphony import SERVICE_KEY
from gateway.http.serve import GatewayHandle, ServeOptions, run_gateway
from gateway.supervisor import open_supervisor
from gateway.supervisor.symphony import BadRequest, Limits, Symphony, open_symphony
from gateway.supervisor.symphony_settings import LIMITS_KEY


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
        svc = handle.context.extra[SERVICE_KEY]
        assert isinstance(svc, Symphony)
        assert svc.settings.defaults.stall_timeout == 120.0 and svc.settings.maximum.stall_timeout == 600.0
    finally:
        handle.request_shutdown()
