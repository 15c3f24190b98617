"""The ClosedLoop cloud this gateway answers to: its settings and the challenge verification.

ClosedLoop's web app gets a one-time challenge from its own API and trades it at this gateway's
``/gateway-auth/exchange``; the gateway asks the API whether the challenge is good, with the
desktop's API key, exactly as ClosedLoop's desktop gateway does
(``apps/desktop/src/main/local-auth-verifier.ts``):

- ``POST <apiOrigin>/compute-targets/local-auth/verify``, ``Authorization: Bearer <apiKey>``,
  body ``{challengeToken, requestOrigin, userAgent?}``, 5 s timeout;
- a 2xx ``{ok: true, sessionTtlSeconds: number}`` (possibly wrapped as ``{success, data}``) is
  an accepted challenge; any other 2xx is "unexpected response format" (502 here: ClosedLoop
  passes the API's 2xx status through, which makes a refusal look like success); a non-2xx is a refusal
  with the API's status and ``error``; a timeout is 504, a network failure 502.

Settings come from the environment (``GATEWAY_CLOSEDLOOP_API_ORIGIN``,
``GATEWAY_CLOSEDLOOP_API_KEY``, ``GATEWAY_WEB_APP_ORIGIN``), else from ``<state>/closedloop.json``
(``{"apiOrigin", "apiKey", "webAppOrigin"}``), read at each use so an edit applies at once.
The API key never appears in an answer or a log line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_WEB_APP_ORIGIN = "https://app.closedloop.ai"
VERIFY_PATH = "/compute-targets/local-auth/verify"
VERIFY_TIMEOUT = 5.0
SETTINGS_FILE = "closedloop.json"

ENV_API_ORIGIN = "GATEWAY_CLOSEDLOOP_API_ORIGIN"
ENV_API_KEY = "GATEWAY_CLOSEDLOOP_API_KEY"
ENV_WEB_APP_ORIGIN = "GATEWAY_WEB_APP_ORIGIN"


@dataclass(frozen=True, slots=True)
class ClosedLoopSettings:
    api_origin: str | None
    api_key: str | None
    web_app_origin: str

    @classmethod
    def load(cls, state_root: Path | None, environ: dict[str, str] | None = None) -> ClosedLoopSettings:
        """Environment first, then ``<state>/closedloop.json``; a bad file counts as absent."""
        env = os.environ if environ is None else environ
        stored: dict[str, Any] = {}
        if state_root is not None:
            try:
                raw = json.loads((state_root / SETTINGS_FILE).read_text(encoding="utf-8"))
                stored = raw if isinstance(raw, dict) else {}
            except (OSError, ValueError):
                stored = {}

        def pick(env_name: str, key: str) -> str | None:
            value = env.get(env_name) or stored.get(key)
            return value.strip() or None if isinstance(value, str) else None

        origin = pick(ENV_API_ORIGIN, "apiOrigin")
        return cls(
            api_origin=origin.rstrip("/") if origin else None,
            api_key=pick(ENV_API_KEY, "apiKey"),
            web_app_origin=(pick(ENV_WEB_APP_ORIGIN, "webAppOrigin") or DEFAULT_WEB_APP_ORIGIN).rstrip("/"),
        )


@dataclass(frozen=True, slots=True)
class Verified:
    session_ttl: float


@dataclass(frozen=True, slots=True)
class Refused:
    status: int
    error: str


def _unwrap(body: Any) -> dict[str, Any]:
    if isinstance(body, dict) and body.get("success") is True and isinstance(body.get("data"), dict):
        return body["data"]
    return body if isinstance(body, dict) else {}


async def verify_challenge(
    settings: ClosedLoopSettings,
    challenge: str,
    request_origin: str,
    user_agent: str | None,
    *,
    timeout: float = VERIFY_TIMEOUT,
) -> Verified | Refused:
    """Ask the ClosedLoop API whether ``challenge`` is good for ``request_origin``.

    The caller has checked that the origin and key are configured. Cancellation: the request is
    abandoned at once (httpx closes the connection); nothing is retried.
    """
    assert settings.api_origin and settings.api_key
    body = {"challengeToken": challenge, "requestOrigin": request_origin}
    if user_agent:
        body["userAgent"] = user_agent
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {settings.api_key}"}
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False, follow_redirects=False) as client:
            answer = await client.post(settings.api_origin + VERIFY_PATH, json=body, headers=headers)
    except httpx.TimeoutException:
        return Refused(504, "verify request timed out")
    except httpx.HTTPError as exc:
        return Refused(502, str(exc) or "network error")
    try:
        payload: Any = answer.json()
    except ValueError:
        payload = None
    if answer.is_success:
        data = _unwrap(payload)
        ttl = data.get("sessionTtlSeconds")
        if data.get("ok") is True and isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl > 0:
            return Verified(float(ttl))
        # ClosedLoop answers this with the API's own 2xx status; an error must not look like success.
        return Refused(502, "unexpected response format")
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error if isinstance(error, str) and error else f"verify failed ({answer.status_code})"
    return Refused(answer.status_code, message[:500])
