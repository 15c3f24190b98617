"""Where the gateway keeps its state, and the small files other programs read from it.

``gateway.json`` tells the CLI where a running gateway listens; it is written atomically (temp
file + rename, mode 0600) so a reader never sees half a file. ``gateway-token`` is the secret
that authenticates the CLI and internal executors.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def resolve_state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--state-dir``, else ``$GATEWAY_STATE_DIR``, else ``$XDG_STATE_HOME/desktop-gateway``."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("GATEWAY_STATE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return (Path(xdg) / "desktop-gateway").resolve()


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    import tempfile  # here, not at the top: the CLI imports this module and starts faster without

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class StateDir:
    root: Path

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    @property
    def db(self) -> Path:
        return self.root / "gateway.db"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def worktrees(self) -> Path:
        return self.root / "worktrees"

    @property
    def attachments(self) -> Path:
        return self.root / "attachments"

    @property
    def info_file(self) -> Path:
        return self.root / "gateway.json"

    @property
    def token_file(self) -> Path:
        return self.root / "gateway-token"

    def read_info(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.info_file.read_text())
        except (OSError, ValueError):
            return None

    def write_info(self, info: dict[str, Any]) -> None:
        write_atomic(self.info_file, json.dumps(info, indent=2).encode())

    def remove_info(self, pid: int) -> None:
        """Remove gateway.json if it is still ours (a newer gateway may have replaced it)."""
        info = self.read_info()
        if info is not None and info.get("pid") == pid:
            self.info_file.unlink(missing_ok=True)

    def token(self) -> str:
        """The gateway token, created on first use: 32 random bytes, url-safe, mode 0600."""
        try:
            value = self.token_file.read_text().strip()
            if len(value) >= 32:
                return value
        except OSError:
            pass
        import secrets

        value = secrets.token_urlsafe(32)
        write_atomic(self.token_file, value.encode())
        return value
