"""``gateway serve`` with a relay configured: the settings, ``gateway status``, and a gateway
killed with commands in flight that comes back without running any of them twice."""

from __future__ import annotations

import json
import signal
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import KEY
from gwtest import GATEWAY_BIN, launch_serve, wait_serving
from relay_double import RelayDouble

from gateway.http.relay import RelayConfig, load_config, relay_status, run_relay
from gateway.http.serve import GatewayHandle

from support import wait_until


def _env(double: RelayDouble) -> dict[str, str]:
    return {"GATEWAY_CLOSEDLOOP_RELAY_URL": double.url, "GATEWAY_CLOSEDLOOP_API_KEY": KEY}


def test_settings_come_from_the_environment_then_the_state_dir(tmp_path: Path) -> None:
    assert load_config(tmp_path, {}) == RelayConfig(None, None)
    settings = {"relayUrl": "https://relay.example/", "apiKey": "k1"}
    (tmp_path / "closedloop.json").write_text(json.dumps(settings))
    assert load_config(tmp_path, {}) == RelayConfig("https://relay.example", "k1")
    env = {"GATEWAY_CLOSEDLOOP_API_KEY": "k2"}
    assert load_config(tmp_path, env) == RelayConfig("https://relay.example", "k2")
    assert RelayConfig("https://relay.example", None).problem == "GATEWAY_CLOSEDLOOP_API_KEY is not set"
    assert RelayConfig("ftp://relay.example", "k").problem is not None
    assert "use https://" in (RelayConfig("http://relay.example", "k").problem or "")
    assert RelayConfig("http://127.0.0.1:9", "k").problem is None  # loopback: a local relay
    assert RelayConfig("https://relay.example", "k").problem is None


async def test_no_relay_is_off_and_a_relay_without_key_is_degraded(
    gateway: GatewayHandle, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_CLOSEDLOOP_RELAY_URL", raising=False)
    monkeypatch.delenv("GATEWAY_CLOSEDLOOP_API_KEY", raising=False)
    assert await nursery.start(run_relay, gateway.context) is None
    assert relay_status(gateway.context) == {"state": "off"}
    config = RelayConfig("http://127.0.0.1:9", None)
    client = await nursery.start(partial(run_relay, gateway.context, config))
    assert client is not None
    status = relay_status(gateway.context)
    assert status["state"] == "degraded" and status["lastError"] == "GATEWAY_CLOSEDLOOP_API_KEY is not set"


def _status_cli(state_dir: Path) -> str:
    done = subprocess.run(
        [GATEWAY_BIN, "status", "--state-dir", str(state_dir)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_restart_with_commands_in_flight_runs_nothing_twice(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with RelayDouble(keys={KEY}) as double:
        sp = launch_serve(state, tmp_path / "serve1.log", "--port", "0", env=_env(double))
        try:
            await trio.to_thread.run_sync(wait_serving, sp)
            await wait_until(lambda: double.online, 15, "the gateway to come online")
            status = await trio.to_thread.run_sync(_status_cli, state)
            assert f"relay      connected; to {double.url}; 0 running, 0 queued" in status
            token = sp.token

            async def dispatch(**command: Any) -> str:
                return str(await trio.to_thread.run_sync(partial(double.dispatch, **command)))

            side_effect = await dispatch(
                operationId="process_control", method="POST", path="/api/gateway/processes",
                body={"argv": ["true"], "labels": {"test": "restart"}},
            )  # fmt: skip
            await wait_until(lambda: double.terminal(side_effect), 10, "the side effect")
            held = await dispatch(
                operationId="health_check", path="/api/gateway/version", requiresApproval=True, lockKey="k"
            )
            queued = await dispatch(operationId="health_check", path="/api/gateway/version", lockKey="k")
            async with httpx.AsyncClient(
                base_url=sp.url, headers={"X-Desktop-Gateway-Token": token}, trust_env=False
            ) as api:

                async def approvals() -> list[dict[str, Any]]:
                    return list((await api.get("/api/gateway/approvals")).json()["approvals"])

                with trio.fail_after(10):
                    while not await approvals():
                        await trio.sleep(0.02)
            await wait_until(lambda: double.stored(queued).acks and double.events(held), 10, "acks")
            status = await trio.to_thread.run_sync(_status_cli, state)
            assert "1 running, 1 queued" in status
            assert f"{held[:8]}  GET /api/gateway/version (health_check)" in status
        finally:
            sp.stop(signal.SIGKILL)  # a crash: nothing gets to say goodbye

        assert not double.terminal(held) and not double.terminal(queued)
        sp2 = launch_serve(state, tmp_path / "serve2.log", "--port", "0", env=_env(double))
        try:
            await trio.to_thread.run_sync(wait_serving, sp2)
            await wait_until(lambda: double.terminal(held) and double.terminal(queued), 20, "both to end")
            # the held command was running when the gateway died: closed, not run again
            events = double.events(held)
            assert [e["eventType"] for e in events] == ["status", "error"]
            assert events[1]["data"]["code"] == "gateway_restarted" and events[1]["data"]["terminal"] is True
            # the queued one never ran: it runs now, once
            assert [e["eventType"] for e in double.events(queued)] == ["status", "result", "done"]

            await trio.to_thread.run_sync(double.redispatch, side_effect)
            await wait_until(lambda: len(double.stored(side_effect).acks) == 2, 10, "the re-ack")
            async with httpx.AsyncClient(
                base_url=sp2.url, headers={"X-Desktop-Gateway-Token": sp2.token}, trust_env=False
            ) as api:
                processes = (await api.get("/api/gateway/processes")).json()["processes"]
                assert [p["labels"].get("test") for p in processes].count("restart") == 1
                assert (await api.get("/api/gateway/approvals")).json()["approvals"] == []
                health = (await api.get("/api/gateway/health-check")).json()
                assert health["relay"]["state"] == "connected"
            assert double.envelope_errors == []
            assert sp2.stop() == 0
        finally:
            if sp2.proc.poll() is None:
                sp2.stop(signal.SIGKILL)
