"""Helpers the ``git/pr`` tests share with their fixtures."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.http.serve import GatewayHandle


async def register(handle: GatewayHandle, path: Path, repo_id: str = "r1") -> None:
    """Register ``path`` with the gateway, as ``POST /api/gateway/repos`` would."""
    await handle.context.sup.store.execute(
        "INSERT INTO repos (id, path, name, default_branch, created_at) VALUES (?, ?, ?, ?, ?)",
        (repo_id, str(path), path.name, "main", time.time()),
    )
