"""How a work tree runs, in the ``config`` shape ClosedLoop's deploy routes answer.

ClosedLoop's ``detectDeployment`` (``apps/desktop/src/server/operations/deploy.ts``) reads
``package.json``: a ``dev`` (else ``start``) script, run with pnpm, yarn or npm by lockfile;
the framework from the dependencies; the port from ``--port N`` / ``-p N`` / ``PORT=N`` in the
script, else 5173 for vite, else 3000. It answers ``{framework, packageManager, command,
startCommand, installCommand, type, port, healthEndpoint: "/", healthCheckUrl}``.

ClosedLoop then runs ``command`` through a shell. Here ``command`` is only ever one of the fixed
strings this module produces, and ``argv_for`` maps it back to an argv list: nothing from a
request or a stored config reaches a shell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_PORT = re.compile(r"(?:--port|-p|PORT=)\s*(\d{2,5})", re.I)
_MANAGERS = ("pnpm", "yarn", "npm")


def _manager(root: Path) -> str:
    if (root / "pnpm-lock.yaml").exists():
        return "pnpm"
    if (root / "yarn.lock").exists():
        return "yarn"
    return "npm"


def _command(manager: str, script: str) -> str:
    return f"npm run {script}" if manager == "npm" else f"{manager} {script}"


def _framework(deps: dict[str, Any]) -> str | None:
    for name, framework in (
        ("next", "next"),
        ("vite", "vite"),
        ("react-scripts", "cra"),
        ("express", "express"),
    ):
        if name in deps:
            return framework
    return None


def detect_config(root: Path) -> dict[str, Any] | None:
    """ClosedLoop's deployment config for ``root``, or None (blocking: run it in a thread)."""
    try:
        pkg = json.loads((root / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(pkg, dict):
        return None
    raw_scripts = pkg.get("scripts")
    scripts: dict[str, Any] = raw_scripts if isinstance(raw_scripts, dict) else {}
    script = next((s for s in ("dev", "start") if isinstance(scripts.get(s), str)), None)
    if script is None:
        return None
    deps: dict[str, Any] = {}
    for key in ("dependencies", "devDependencies"):
        if isinstance(pkg.get(key), dict):
            deps.update(pkg[key])
    framework = _framework(deps)
    manager = _manager(root)
    text = " ".join(str(scripts[s]) for s in ("dev", "start") if isinstance(scripts.get(s), str))
    match = _PORT.search(text)
    port = int(match.group(1)) if match else (5173 if framework == "vite" else 3000)
    command = _command(manager, script)
    config: dict[str, Any] = {
        "framework": framework,
        "packageManager": pkg.get("packageManager") if isinstance(pkg.get("packageManager"), str) else None,
        "command": command,
        "startCommand": command,
        "installCommand": f"{manager} install",
        "type": framework or "node",
        "port": port,
        "healthEndpoint": "/",
        "healthCheckUrl": f"http://localhost:{port}",
    }
    return {k: v for k, v in config.items() if v is not None}


def argv_for(command: str) -> list[str] | None:
    """The argv of a command this module produced; None for anything else."""
    parts = command.split()
    if len(parts) == 2 and parts[0] in ("pnpm", "yarn") and parts[1] in ("dev", "start", "install"):
        return parts
    if parts == ["npm", "install"] or (
        len(parts) == 3 and parts[:2] == ["npm", "run"] and parts[2] in ("dev", "start")
    ):
        return parts
    return None


def needs_install(root: Path) -> bool:
    """Dependencies declared and no ``node_modules`` yet (ClosedLoop installs every time)."""
    try:
        pkg = json.loads((root / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    declared = any(isinstance(pkg.get(k), dict) and pkg[k] for k in ("dependencies", "devDependencies"))
    return declared and not (root / "node_modules").is_dir()
