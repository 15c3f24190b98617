"""Shared fixtures: a supervisor on a fresh state dir, and ways to look at real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.supervisor import Supervisor, open_supervisor


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def sup(state_dir: Path) -> AsyncIterator[Supervisor]:
    async with open_supervisor(state_dir) as s:
        yield s
