"""Where the relay is and how to authenticate: ``GATEWAY_CLOSEDLOOP_RELAY_URL`` and
``GATEWAY_CLOSEDLOOP_API_KEY``, from the environment, else from the state dir's
``closedloop.json`` (``{"relayUrl": ..., "apiKey": ...}``, the file the other ClosedLoop
settings live in; the environment wins, per setting). Read once, when the gateway starts.

No URL means no relay: the gateway serves without one. A URL without a key, or a plain
``http://`` relay that is not on loopback (the key would cross the network in clear), is a
misconfiguration the gateway reports (``degraded``) rather than a reason not to start.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.http.relay.sio import engine_url

URL_SETTING = "GATEWAY_CLOSEDLOOP_RELAY_URL"
KEY_SETTING = "GATEWAY_CLOSEDLOOP_API_KEY"
SETTINGS_FILE = "closedloop.json"
#: The settings file's key for each setting.
FILE_KEYS = {URL_SETTING: "relayUrl", KEY_SETTING: "apiKey"}


@dataclass(frozen=True)
class RelayConfig:
    url: str | None
    api_key: str | None

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def problem(self) -> str | None:
        """Why a configured relay cannot be used, or None."""
        if not self.url:
            return None
        try:
            engine_url(self.url)
        except ValueError as exc:
            return f"{URL_SETTING}: {exc}"
        parts = urlsplit(self.url)
        if parts.scheme in ("http", "ws") and not _loopback(parts.hostname or ""):
            return f"{URL_SETTING}: use https:// (the API key must not cross the network in clear)"
        if not self.api_key:
            return f"{KEY_SETTING} is not set"
        return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(state_root: Path) -> dict[str, str]:
    """The state dir's ``closedloop.json`` string values; a missing or broken file is empty."""
    try:
        data = json.loads((state_root / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)}


def load_config(state_root: Path, env: Mapping[str, str] | None = None) -> RelayConfig:
    env = os.environ if env is None else env
    settings = load_settings(state_root)

    def pick(name: str) -> str | None:
        value = (env.get(name) or settings.get(FILE_KEYS[name]) or "").strip()
        return value or None

    url = pick(URL_SETTING)
    return RelayConfig(url.rstrip("/") if url else None, pick(KEY_SETTING))
