"""Fixtures for the dashboard tests (helpers live in ``dashboard_harness``)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_harness import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    Gateway,
    PageErrors,
    free_port,
    gateway_command,
    new_page,
    sign_in,
)
from playwright.sync_api import Browser, Page, sync_playwright

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without Debian's Chromium the browser tests skip, saying why; the rest still run."""
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium)"
    )
    for item in items:
        if item.path.is_relative_to(HERE) and "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    state = tmp_path_factory.mktemp("gw") / "state"
    port = free_port()
    log = (state.parent / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [*gateway_command(), "serve", "--state-dir", str(state), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    info = state / "gateway.json"
    deadline = time.monotonic() + 20
    # Polling for a file another process writes: the gateway offers no other ready signal.
    while not info.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"gateway did not start:\n{(state.parent / 'gateway.log').read_text()[-3000:]}")
        time.sleep(0.05)
    port = json.loads(info.read_text())["port"]
    gw = Gateway(state, proc, port)
    try:
        yield gw
    finally:
        gw.client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(browser: Browser, page_errors: PageErrors) -> Iterator[Page]:
    p = new_page(browser, page_errors)
    try:
        yield p
    finally:
        p.context.close()
    assert not page_errors, page_errors


@pytest.fixture
def signed_in(page: Page, gateway: Gateway) -> Page:
    return sign_in(page, gateway)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
