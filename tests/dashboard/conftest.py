"""Fixtures for the dashboard tests (helpers live in ``dashboard_harness``)."""

from __future__ import annotations

import signal
import subprocess
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
    new_page,
    sign_in,
)
from gwtest import launch_serve, wait_serving
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
    """A ``gateway serve`` child for the module's browser (the shared subprocess launcher)."""
    state = tmp_path_factory.mktemp("gw") / "state"
    sp = launch_serve(state, state.parent / "gateway.log", "--port", str(free_port()))
    try:
        wait_serving(sp, timeout=20)
    except AssertionError:
        sp.stop(signal.SIGKILL)
        raise
    gw = Gateway(state, sp.proc, sp.port)
    try:
        yield gw
    finally:
        gw.client.close()
        try:
            sp.stop(timeout=20)
        except subprocess.TimeoutExpired:
            sp.stop(signal.SIGKILL)


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
