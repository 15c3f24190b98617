"""A running loop's heartbeats to the ClosedLoop API, off the child's path.

ClosedLoop's desktop tells its cloud a loop is alive with ``POST <api>/loops/<id>/heartbeat``
(``Authorization: Bearer <loop token>``, no body, no nonce) every 30 minutes
(``CLOSEDLOOP_HEARTBEAT_INTERVAL_MS``) while the loop runs, and classifies the answer
(closedloop-ai/closedloop-electron ``apps/desktop/src/server/operations/loop-http.ts``
``postLoopHeartbeat``, ``getCloudLoopStatus``; ``apps/desktop/src/main/loop-heartbeat.ts``,
``loop-status-classifier.ts``):

- 2xx: alive. 5xx, 429 and network errors: transient, the next tick tries again.
- 404: the endpoint is gone for this loop; heartbeats stop (ClosedLoop disables the endpoint).
- 401 or 410: terminal for the cloud, but ClosedLoop keeps a loop whose process still runs.
  Here ``GET <api>/loops/<id>`` (Bearer) then says what the cloud thinks: ``status:
  "TIMED_OUT"`` stops the heartbeats and calls ``on_timed_out`` (the cloud has finalized the
  loop, as ClosedLoop's boot recovery marks it); anything else keeps beating.

One ``LoopHeartbeat`` per loop, run as its own task beside the loop's watcher: it never touches
the child or its log, and a slow or dead API only delays the next beat.

Cancellation: ``run`` returns (``done`` set) when cancelled, which is how the loop's end stops
it; a beat in flight is abandoned at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
import trio

#: ClosedLoop's default, 30 minutes; ``GATEWAY_CLOSEDLOOP_HEARTBEAT_INTERVAL`` (seconds) changes it.
DEFAULT_INTERVAL = 30 * 60.0
ENV_INTERVAL = "GATEWAY_CLOSEDLOOP_HEARTBEAT_INTERVAL"


def heartbeat_interval() -> float:
    """The configured interval in seconds (a bad or non-positive value gives the default)."""
    try:
        value = float(os.environ.get(ENV_INTERVAL, ""))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


@dataclass
class LoopHeartbeat:
    api_origin: str
    loop_id: str
    token: str
    interval: float = DEFAULT_INTERVAL
    timeout: float = 10.0
    #: Called once when the cloud says the loop timed out (after the heartbeats stopped).
    on_timed_out: Callable[[], None] | None = None
    #: Each beat's HTTP status (None: no answer), for the loop's log and tests.
    beats: list[int | None] = field(default_factory=list)
    #: Why the heartbeats stopped before the loop ended: "not_found" or "timed_out".
    stopped: str | None = None
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def _base(self) -> str:
        return f"{self.api_origin.rstrip('/')}/loops/{quote(self.loop_id, safe='')}"

    async def run(self) -> None:
        """Beat every ``interval`` until cancelled or the cloud ends it (see the module)."""
        try:
            async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
                while True:
                    await trio.sleep(self.interval)
                    status = await self._beat(client)
                    if status == 404:
                        self.stopped = "not_found"
                        return
                    if status in (401, 410) and await self._cloud_status(client) == "TIMED_OUT":
                        self.stopped = "timed_out"
                        if self.on_timed_out is not None:
                            self.on_timed_out()
                        return
        finally:
            self.done.set()

    async def _beat(self, client: httpx.AsyncClient) -> int | None:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            response = await client.post(f"{self._base}/heartbeat", headers=headers, timeout=self.timeout)
        except (httpx.HTTPError, httpx.InvalidURL):  # never let the API break the loop's watcher
            status = None
        else:
            status = response.status_code
        self.beats.append(status)
        return status

    async def _cloud_status(self, client: httpx.AsyncClient) -> str | None:
        """``status`` of ``GET /loops/<id>``, or None (no answer, not 2xx, not that shape)."""
        try:
            response = await client.get(
                self._base, headers={"Authorization": f"Bearer {self.token}"}, timeout=self.timeout
            )
            body = response.json() if response.is_success else None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError):
            return None
        status = body.get("status") if isinstance(body, dict) else None
        return status if isinstance(status, str) else None
