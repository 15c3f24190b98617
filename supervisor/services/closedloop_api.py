"""A loop's callbacks to the ClosedLoop API: events and artifact uploads, in order, off the child's path.

ClosedLoop's desktop gateway reports a loop to its cloud with ``POST <api>/loops/<id>/events``
(``Authorization: Bearer <loop token>``, a fresh ``x-loop-event-nonce`` per call, the event
plus an ISO ``timestamp``) and ``POST <api>/loops/<id>/upload-artifacts`` (Bearer, no nonce)
(closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/loop-http.ts``). Here each
loop gets one ``LoopCallbacks``: producers only queue (``send_nowait`` never blocks, so the
agent child and its log never wait on the network) and one sender task posts in queue order,
retrying network errors and 5xx/429 with backoff. A 401/403 stops further ``output`` events
(as ClosedLoop's tailer does) but terminal events are still tried. A full queue drops the
oldest ``output``, never a lifecycle event.

Cancellation: ``run`` is the sender; cancelling it abandons what is still queued. ``close``
marks the end of the queue; ``run`` then returns once everything queued was tried (``drained``
is set either way), so callers give it a deadline (``trio.move_on_after``) at shutdown.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import trio

#: Event types whose loss would leave the cloud's loop record wrong.
LIFECYCLE = frozenset({"started", "completed", "error", "cancelled"})


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Delivery:
    """What happened to one callback (kept for the loop's log and for tests)."""

    kind: str  # "event" | "upload"
    type: str
    status: int | None
    attempts: int
    error: str | None = None


@dataclass
class LoopCallbacks:
    api_origin: str
    loop_id: str
    token: str
    max_queue: int = 256
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 10.0
    on_delivery: Callable[[Delivery], None] | None = None
    _queue: deque[tuple[str, dict[str, Any]]] = field(default_factory=deque)
    _wakeup: trio.Event = field(default_factory=trio.Event)
    _closed: bool = False
    _outputs_stopped: bool = False
    deliveries: list[Delivery] = field(default_factory=list)
    #: Set once ``run`` returned (everything queued was tried, or the sender was cancelled).
    drained: trio.Event = field(default_factory=trio.Event)

    # ---- producers (never block) ----------------------------------------------------------

    def event(self, body: dict[str, Any]) -> None:
        """Queue ``body`` (``{"type": ..., ...}``); its ``timestamp`` is set now if absent."""
        if self._closed or (body.get("type") == "output" and self._outputs_stopped):
            return
        body = {**body, "timestamp": body.get("timestamp") or iso_now()}
        self._push(("event", body))

    def upload(self, artifacts: dict[str, Any], metadata: dict[str, Any]) -> None:
        if not self._closed:
            self._push(("upload", {"artifacts": artifacts, "metadata": metadata}))

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def stop_outputs(self) -> None:
        """No more ``output`` events (queued ones are dropped); lifecycle events still go."""
        self._outputs_stopped = True

    def _push(self, item: tuple[str, dict[str, Any]]) -> None:
        if len(self._queue) >= self.max_queue:
            for i, (kind, body) in enumerate(self._queue):
                if kind == "event" and body.get("type") == "output":
                    del self._queue[i]
                    break
            else:
                if item[0] == "event" and item[1].get("type") == "output":
                    return
        self._queue.append(item)
        self._wakeup.set()

    # ---- the sender -----------------------------------------------------------------------

    async def run(self) -> None:
        """The sender: posts what is queued, in order, until ``close`` and an empty queue."""
        try:
            async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
                while True:
                    while self._queue:
                        kind, body = self._queue.popleft()
                        if kind == "event" and body.get("type") == "output" and self._outputs_stopped:
                            continue
                        await self._deliver(client, kind, body)
                    if self._closed:
                        return
                    self._wakeup = trio.Event()
                    if not self._queue and not self._closed:
                        await self._wakeup.wait()
        finally:
            self.drained.set()

    async def _deliver(self, client: httpx.AsyncClient, kind: str, body: dict[str, Any]) -> None:
        base = f"{self.api_origin.rstrip('/')}/loops/{quote(self.loop_id, safe='')}"
        url = f"{base}/events" if kind == "event" else f"{base}/upload-artifacts"
        what = str(body.get("type") or "upload") if kind == "event" else "upload-artifacts"
        status: int | None = None
        error: str | None = None
        attempt = 0
        for attempt in range(1, self.retries + 1):
            headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
            if kind == "event":
                headers["x-loop-event-nonce"] = str(uuid.uuid4())
            try:
                response = await client.post(url, json=body, headers=headers, timeout=self.timeout)
            except httpx.HTTPError as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                error = None if response.is_success else f"HTTP {status}"
                if response.is_success or (400 <= status < 500 and status != 429):
                    break
            if attempt < self.retries:
                await trio.sleep(self.backoff * 2 ** (attempt - 1))
        if status in (401, 403) and what == "output":
            self._outputs_stopped = True
        delivery = Delivery(kind, what, status, attempt, error)
        self.deliveries.append(delivery)
        if self.on_delivery is not None:
            self.on_delivery(delivery)


def api_origin(state_dir: Path) -> str | None:
    """The ClosedLoop API origin loop callbacks go to: ``GATEWAY_CLOSEDLOOP_API_ORIGIN``, else
    ``apiOrigin`` in ``<state>/closedloop.json``; None when neither is set. The request body's
    ``apiBaseUrl`` is never used (ClosedLoop ignores it too: the caller must not choose where
    the loop's token is sent)."""
    origin = os.environ.get("GATEWAY_CLOSEDLOOP_API_ORIGIN", "").strip()
    if not origin:
        try:
            data = json.loads((state_dir / "closedloop.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        value = data.get("apiOrigin") if isinstance(data, dict) else None
        origin = value.strip() if isinstance(value, str) else ""
    return origin.rstrip("/") or None


async def delete_loop(origin: str, api_key: str, loop_id: str, timeout: float) -> tuple[int | None, str]:
    """``DELETE <api>/loops/<id>`` with the desktop's API key (ClosedLoop's plan-loop cancel);
    (status, body text), or (None, why) when the API could not be reached in ``timeout``.

    Cancellation: the request is abandoned at once; nothing is retried (the caller answers).
    """
    url = f"{origin.rstrip('/')}/loops/{quote(loop_id, safe='')}"
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, follow_redirects=False) as client:
            response = await client.delete(url, headers={"Authorization": f"Bearer {api_key}"})
    except httpx.TimeoutException:
        return None, f"timed out after {timeout:g}s"
    except httpx.HTTPError as exc:
        return None, str(exc) or type(exc).__name__
    return response.status_code, response.text[:500]
