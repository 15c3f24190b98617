"""Fixtures for the relay client: a relay double (python-socketio under Hypercorn, in a thread)
and a real gateway whose relay client is connected to it."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest
import trio
from relay_double import RelayDouble

from gateway.http.relay import RelayClient, RelayConfig, run_relay
from gateway.http.serve import GatewayHandle

from support import wait_until

KEY = "cl-test-key"
FAST = {"backoff_base": 0.05, "backoff_max": 0.4}


@pytest.fixture
def double() -> Iterator[RelayDouble]:
    with RelayDouble(keys={KEY}) as relay:
        yield relay


@pytest.fixture
async def relay(gateway: GatewayHandle, double: RelayDouble, nursery: trio.Nursery) -> RelayClient:
    """The gateway's relay client, online with the double."""
    client: RelayClient = await nursery.start(
        partial(run_relay, gateway.context, RelayConfig(double.url, KEY), **FAST)
    )
    await wait_until(lambda: client.state == "connected", 10, "the relay client to connect")
    return client
