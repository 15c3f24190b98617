"""The cloud relay client: reach this gateway through ClosedLoop's relay (docs/relay.md).

``run_relay(gw)`` is the one entry point the server calls; it returns at once when no relay
is configured. ``relay_status(gw)`` is what ``/health``, ``health-check`` and the dashboard
show: ``off``, ``connecting``, ``connected`` or ``degraded``, the last error and the
commands in flight.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from gateway.http.context import GatewayContext
from gateway.http.relay.client import RelayClient
from gateway.http.relay.config import RelayConfig, load_config

__all__ = ["RelayClient", "RelayConfig", "load_config", "relay_status", "run_relay"]

log = logging.getLogger("gateway.relay")

#: After an unexpected failure of the client, a fresh one (state reloaded from the database:
#: commands that were running are closed as ``gateway_restarted``) starts after this delay.
RESTART_DELAY = 5.0


async def run_relay(
    gw: GatewayContext,
    config: RelayConfig | None = None,
    *,
    task_status: trio.TaskStatus[RelayClient | None] = trio.TASK_STATUS_IGNORED,
    **knobs: Any,
) -> None:
    """Run the relay client until cancelled; ``config`` defaults to env + state dir settings.

    Link failures are the client's own business (it reconnects). Anything else that escapes it
    is logged and the client is built again, so the HTTP server never stops for the relay.
    ``knobs`` are :class:`RelayClient`'s keyword options (tests shorten the backoff).
    """
    config = config if config is not None else load_config(gw.state.root)
    if not config.enabled:
        gw.relay = None
        task_status.started(None)
        return
    started = False
    while True:
        client = RelayClient(gw, config, **knobs)
        gw.relay = client
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                if not started:
                    started = True
                    task_status.started(client)
            return
        except Exception:  # a bug or a broken disk must never take the gateway down
            log.exception("relay: the client failed; starting it again in %g s", RESTART_DELAY)
            client.state, client.last_error = "degraded", "the relay client failed; restarting"
            await trio.sleep(RESTART_DELAY)


def relay_status(gw: GatewayContext, *, public: bool = False) -> dict[str, Any]:
    """The relay's state; ``public`` (unauthenticated ``/health``) leaves out the commands."""
    client = gw.relay
    if client is None:
        return {"state": "off"}
    status = client.status()
    if public:
        status.pop("inFlight", None)
        status.pop("url", None)
    return status
