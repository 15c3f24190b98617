"""The five external binaries: where each is (override or PATH) and which version it is.

Versions are probed once at start and again when an override changes, never per request:
``/health`` must stay cheap, and ``claude --version`` can take a second.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

import trio

from gateway.supervisor import Store

log = logging.getLogger("gateway.http")

BINARIES = ("claude", "gh", "codex", "python3", "git")
#: What ``PATCH /settings/binary-paths`` accepts (ClosedLoop's keys): the five probed binaries,
#: and two more agent CLIs ClosedLoop knows, stored as overrides only.
OVERRIDABLE = (*BINARIES, "cursor", "opencode")
_KEY = "binary_paths"
PROBE_TIMEOUT = 5.0
CAPS_TTL = 5.0


class BinaryPathError(ValueError):
    """A rejected override; ``field`` names the binary."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def validate_path(name: str, path: str) -> str:
    if not os.path.isabs(path):
        raise BinaryPathError(name, f"{name}: path must be absolute")
    if not os.path.isfile(path):
        raise BinaryPathError(name, f"{name}: {path} is not a file")
    if not os.access(path, os.X_OK):
        raise BinaryPathError(name, f"{name}: {path} is not executable")
    return path


@dataclass(slots=True)
class BinaryInfo:
    path: str | None
    override: str | None
    version: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "override": self.override,
            "source": "override" if self.override else ("PATH" if self.path else None),
            "version": self.version,
        }


class Binaries:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.overrides: dict[str, str] = {}
        self.versions: dict[str, str | None] = {}
        self._caps: tuple[float, dict[str, dict[str, Any] | None]] | None = None

    async def load(self) -> None:
        row = await self.store.fetchone("SELECT value FROM settings WHERE key = ?", (_KEY,))
        if row is not None:
            data = json.loads(row[0])
            self.overrides = {k: v for k, v in data.items() if k in OVERRIDABLE and isinstance(v, str)}

    def path(self, name: str) -> str | None:
        """The binary to run: the override if set, else the first on PATH, else None."""
        return self.overrides.get(name) or shutil.which(name)

    def info(self, name: str) -> BinaryInfo:
        path = self.path(name)
        return BinaryInfo(path, self.overrides.get(name), self.versions.get(name) if path else None)

    def capabilities(self) -> dict[str, dict[str, Any] | None]:
        """The contract's ``{"path", "version"} | null`` per binary.

        Cached for a few seconds: ``/health`` is polled, and five PATH scans per poll cost more
        than the rest of the answer. Probes and overrides drop the cache at once.
        """
        now = time.monotonic()
        if self._caps is not None and now - self._caps[0] < CAPS_TTL:
            return self._caps[1]
        out: dict[str, dict[str, Any] | None] = {}
        for name in BINARIES:
            info = self.info(name)
            out[name] = {"path": info.path, "version": info.version} if info.path else None
        self._caps = (now, out)
        return out

    async def set_overrides(self, changes: dict[str, str | None]) -> None:
        """Validate first (all or nothing), then persist and re-probe the changed ones."""
        for name, value in changes.items():
            if value is not None:
                validate_path(name, value)
        for name, value in changes.items():
            if value is None:
                self.overrides.pop(name, None)
            else:
                self.overrides[name] = value
        await self.store.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (_KEY, json.dumps(self.overrides)),
        )
        async with trio.open_nursery() as nursery:
            for name in changes:
                nursery.start_soon(self.probe, name)
        self._caps = None

    async def probe_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for name in BINARIES:
                nursery.start_soon(self.probe, name)

    async def probe(self, name: str) -> None:
        path = self.path(name)
        if path is None:
            self.versions[name] = None
        else:
            self.versions[name] = await probe_version(path)
        self._caps = None


async def probe_version(path: str) -> str | None:
    """First line of ``<path> --version`` (stdin closed, bounded by a timeout), or None."""
    try:
        with trio.move_on_after(PROBE_TIMEOUT):
            done = await trio.run_process(
                [path, "--version"],
                stdin=b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            text = (done.stdout or done.stderr).decode("utf-8", "replace").strip()
            return text.splitlines()[0][:200] if text else None
    except OSError as exc:
        log.warning("cannot probe %s: %s", path, exc)
    return None
