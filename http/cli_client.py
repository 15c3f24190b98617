"""The CLI's connection to a running gateway: found through the state dir, spoken over loopback.

It uses the standard library's ``http.client`` rather than httpx on purpose: a read command
such as ``gateway ps`` should answer in well under 150 ms, and importing httpx (with its TLS,
idna and h11 stacks) costs more than the whole request. The gateway only ever listens on a
local socket for the CLI, so nothing here needs TLS, redirects or connection pools.

``gateway.json`` says where the gateway listens; ``gateway-token`` authenticates, so the CLI
works for the user who runs the gateway and nobody else. Every failure is a ``CliError``: one
line for the user and an exit code (3 when no gateway runs).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from gateway.supervisor.statedir import resolve_state_dir

EXIT_ERROR = 1
EXIT_NOT_RUNNING = 3


class CliError(Exception):
    """A reason the command failed, as one line for the user, and the exit code to use."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def state_root(explicit: str | None) -> Path:
    return resolve_state_dir(explicit)


def state_hint(root: Path) -> str:
    """Where we looked and how to look elsewhere (a gateway may run with ``--state-dir``)."""
    return f"{root} (another state dir? pass --state-dir DIR or set GATEWAY_STATE_DIR)"


def read_token(root: Path) -> str:
    try:
        return (root / "gateway-token").read_text().strip()
    except OSError:
        raise CliError(f"no gateway token in {state_hint(root)}; start the gateway once") from None


def read_info(root: Path) -> dict[str, Any]:
    try:
        info = json.loads((root / "gateway.json").read_text())
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict) or not isinstance(info.get("port"), int):
        raise CliError(f"no gateway is running (no gateway.json in {state_hint(root)})", EXIT_NOT_RUNNING)
    return info


def path_of(*parts: str) -> str:
    """An API path with each variable part percent-encoded (an id never adds a path segment)."""
    return "/".join(quote(p, safe="") if i else p for i, p in enumerate(parts))


class Client:
    """A blocking client for one command's few requests (one connection each, then closed)."""

    def __init__(self, state_dir: str | None, timeout: float = 30.0) -> None:
        self.root = state_root(state_dir)
        info = read_info(self.root)
        self.token = read_token(self.root)
        self.port = int(info["port"])
        self.base = f"http://127.0.0.1:{self.port}"
        self.timeout = timeout

    def _send(
        self, method: str, path: str, params: dict[str, Any] | None, body: Any, timeout: float | None
    ) -> http.client.HTTPResponse:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        target = path + ("?" + urlencode(query) if query else "")
        headers = {"X-Desktop-Gateway-Token": self.token, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
        except ConnectionRefusedError:
            conn.close()
            raise CliError(
                f"no gateway is running (nothing answers on port {self.port}; state {self.root})",
                EXIT_NOT_RUNNING,
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise CliError(f"request failed: {exc}") from None
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        accept: tuple[int, ...] = (),
    ) -> Any:
        """The parsed JSON answer; a 4xx/5xx (other than ``accept``) is a ``CliError``."""
        response = self._send(method, path, params, json_body, self.timeout)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise CliError(f"request failed: {exc}") from None
        finally:
            response.close()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if response.status >= 400 and response.status not in accept:
            raise CliError(error_line(response.status, body))
        return body

    def stream(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """NDJSON objects as they arrive; heartbeats are dropped. Blocks while following."""
        # No read timeout: a followed log may be quiet for hours (the gateway sends heartbeats).
        response = self._send("GET", path, params, None, None)
        try:
            if response.status >= 400:
                raw = response.read()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                raise CliError(error_line(response.status, body))
            while True:
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise CliError(f"stream broke: {exc}") from None
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                obj = json.loads(line)
                if obj.get("type") != "heartbeat":
                    yield obj
        finally:
            response.close()


def error_line(status: int, body: Any) -> str:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return f"{status} {err.get('code', '')}: {err.get('message', '')}"
    if isinstance(err, str):
        return f"{status}: {err}"
    return f"HTTP {status}"


def env_exports(root: Path) -> str:
    """Shell lines that set ``PORT``, ``TOKEN``, ``H`` and ``GATEWAY_URL`` (``eval "$(gateway env)"``)."""
    import shlex

    info = read_info(root)
    token = read_token(root)
    port = int(info["port"])
    values = {
        "PORT": str(port),
        "TOKEN": token,
        "H": f"X-Desktop-Gateway-Token: {token}",
        "GATEWAY_URL": f"http://127.0.0.1:{port}",
        "GATEWAY_STATE_DIR": str(root),
    }
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())
