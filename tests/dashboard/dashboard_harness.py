"""Helpers for the dashboard tests: a real ``gateway serve`` and Debian's headless Chromium.

The gateway runs as a subprocess on a free loopback port with a tmp ``--state-dir`` and is
found through ``<state>/gateway.json``; one gateway serves the whole module. The browser is
/usr/bin/chromium driven by Playwright's sync API (plain ``def`` tests, so pytest-trio leaves
them alone). Screenshots go to ``test-artifacts/dashboard/`` (gitignored).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Page, expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    """A running ``gateway serve`` and a gateway-token client for it."""

    def __init__(self, state: Path, proc: subprocess.Popen[bytes], port: int) -> None:
        self.state = state
        self.proc = proc
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.token = (state / "gateway-token").read_text().strip()
        self.client = httpx.Client(
            base_url=self.base, headers={"X-Desktop-Gateway-Token": self.token}, timeout=30
        )

    def api(self, method: str, path: str, **kw: Any) -> Any:
        response = self.client.request(method, path, **kw)
        response.raise_for_status()
        return response.json()

    def challenge(self) -> str:
        return self.api("POST", "/api/gateway/auth/challenge")["challenge"]

    def sign_in_url(self, challenge: str | None = None) -> str:
        return f"{self.base}/#challenge={challenge or self.challenge()}"

    def start(self, argv: list[str], **kw: Any) -> dict[str, Any]:
        return self.api("POST", "/api/gateway/processes", json={"argv": argv, **kw})

    def record(self, process_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/gateway/processes/{process_id}")

    def set_threshold(self, principal: str, tier: str) -> None:
        self.api("PUT", "/api/gateway/policy", json={"thresholds": {principal: tier}})


class PageErrors(list):
    """Uncaught errors in the page; a test fails if any appear."""


def new_page(browser: Browser, errors: PageErrors, width: int = 1280, height: int = 800) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(5000)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # No network fetch may leave the gateway's origin.
    def local_only(request: Any) -> None:
        if not request.url.startswith(("http://127.0.0.1:", "data:")):
            errors.append(f"external fetch: {request.url}")

    page.on("request", local_only)
    return page


def sign_in(page: Page, gateway: Gateway) -> Page:

    page.goto(gateway.sign_in_url())
    expect(page.locator("#tabs")).to_be_visible()
    return page


def shot(page: Page, artifacts: Path, name: str) -> Path:
    path = artifacts / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def python_child(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


def is_gone(pid: int, create_time: float) -> bool:
    """True when ``pid`` names no process, or a different (newer) one than we saw."""
    import psutil

    try:
        return abs(psutil.Process(pid).create_time() - create_time) > 0.01
    except psutil.NoSuchProcess:
        return True
