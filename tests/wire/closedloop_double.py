"""A loopback double of the ClosedLoop cloud API, for the gateway's outbound calls.

It serves what ClosedLoop's desktop gateway calls on its API origin and records every request:

- ``POST /compute-targets/local-auth/verify`` (``apps/desktop/src/main/local-auth-verifier.ts``):
  the challenge verification of ``/gateway-auth/exchange``. The double keeps a table of
  challenges it "minted" (``mint``), each bound to the browser Origin it was minted for; it
  answers ``{"success": true, "data": {"ok": true, "sessionTtlSeconds": ttl}}`` (the wrapped form
  ClosedLoop's ``unwrapApiResultData`` accepts) for a live one, and 401/410 ``{"error"}`` otherwise.
- anything else: 404 ``{"error": "not found"}``, recorded (later issues script the loop callbacks).

A stdlib ``ThreadingHTTPServer`` in a daemon thread, like the model double: it works from trio
tests without blocking the loop. ``hold()`` makes the verify endpoint stall (for the timeout path).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERIFY_PATH = "/compute-targets/local-auth/verify"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Minted:
    origin: str
    expires_at: float
    used: bool = False


@dataclass
class ClosedLoopApiDouble:
    """``with ClosedLoopApiDouble(api_key="k") as cl: cl.origin ...``"""

    api_key: str = field(default_factory=lambda: secrets.token_hex(16))
    session_ttl: int = 300
    wrap: bool = True
    requests: list[Recorded] = field(default_factory=list)
    _challenges: dict[str, Minted] = field(default_factory=dict)
    _release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        self._release.set()

    # ---- scripting ------------------------------------------------------------------------

    def mint(self, origin: str, ttl: float = 60.0) -> str:
        """A challenge as the cloud would mint it for a browser on ``origin``."""
        token = f"clc_{secrets.token_urlsafe(24)}"
        self._challenges[token] = Minted(origin, time.time() + ttl)
        return token

    def expire(self, token: str) -> None:
        self._challenges[token].expires_at = 0.0

    def hold(self) -> None:
        """Stall verify calls until ``release`` (a gateway timeout test)."""
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    def verify_calls(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == VERIFY_PATH]

    # ---- serving ----------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ClosedLoopApiDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                headers = {k.lower(): v for k, v in self.headers.items()}
                double.requests.append(Recorded("POST", self.path, headers, body))
                status, payload = double.answer(self.path, headers, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def answer(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        if path != VERIFY_PATH:
            return 404, {"error": "not found"}
        self._release.wait(30)
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": "invalid API key"}
        if not isinstance(body, dict) or not isinstance(body.get("challengeToken"), str):
            return 400, {"error": "challengeToken required"}
        minted = self._challenges.get(body["challengeToken"])
        if minted is None or minted.used:
            return 401, {"error": "challenge not found or already used"}
        if minted.expires_at < time.time():
            return 410, {"error": "challenge expired"}
        if body.get("requestOrigin") != minted.origin:
            return 403, {"error": "origin mismatch"}
        minted.used = True
        data = {"ok": True, "sessionTtlSeconds": self.session_ttl}
        return 200, {"success": True, "data": data} if self.wrap else data
