"""``health-check`` as ClosedLoop's web app reads it: an array of checks.

ClosedLoop (``apps/desktop/src/server/operations/health-check.ts``) answers 200 with
``{checks: [{id, label, required, passed, version?, error?, remediation?}], allRequiredPassed,
mcpServers: {claude, codex}}``; the web app's zod schema
(``apps/app/lib/engineer/queries/health-check.ts``) rejects anything else and throws on a non-2xx.
The binary checks keep ClosedLoop's ids and labels (``git``, ``claude-cli``, ``gh-cli``,
``codex`` (optional), ``python3``); ours follow (``database``, ``disk``, ``supervisor``), with
their figures in ``details``. ClosedLoop's plugin checks are not ours (no ClosedLoop plugins here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

VERSION = re.compile(r"(\d+\.\d+[\w.-]*)")

#: id, binary, label, required, remediation when missing
BINARY_CHECKS = (
    ("git", "git", "Git", True, "Install git, or set its path in Settings (binary-paths)"),
    (
        "claude-cli",
        "claude",
        "Claude CLI",
        True,
        "Install Claude Code: npm install -g @anthropic-ai/claude-code",
    ),
    ("gh-cli", "gh", "GitHub CLI", False, "Install the GitHub CLI (apt-get install gh / brew install gh)"),
    ("codex", "codex", "Codex CLI", False, "Install Codex: npm install -g @openai/codex"),
    ("python3", "python3", "python3", True, "Install Python 3.10 or later"),
)


def parse_version(text: str | None) -> str | None:
    match = VERSION.search(text or "")
    return match.group(1) if match else None


def binary_checks(binaries: Mapping[str, tuple[str | None, str | None]]) -> list[dict[str, Any]]:
    """``binaries``: name -> (resolved path or None, ``--version`` first line or None)."""
    checks: list[dict[str, Any]] = []
    for check_id, name, label, required, remediation in BINARY_CHECKS:
        path, version_line = binaries.get(name, (None, None))
        check: dict[str, Any] = {"id": check_id, "label": label, "required": required}
        if path is None:
            check |= {"passed": False, "error": "Not found", "remediation": remediation}
        else:
            check["passed"] = True
            version = parse_version(version_line)
            if version:
                check["version"] = version
        checks.append(check)
    return checks


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text.lstrip("vV"))[:3])


def app_version_check(current: str, latest: str) -> dict[str, Any]:
    """ClosedLoop's ``app-version`` check (``?latestVersion=``): passed when not behind."""
    passed = version_tuple(current) >= version_tuple(latest)
    check: dict[str, Any] = {"id": "app-version", "label": "Gateway Version", "required": False,
                             "passed": passed, "version": current}  # fmt: skip
    if not passed:
        check |= {"error": f"Update available: {latest}", "remediation": "Update desktop-gateway"}
    return check


def worktree_dir_check(parent: str | None, confirmed: bool) -> dict[str, Any]:
    """ClosedLoop's ``worktree-dir``; optional here (without it worktrees go next to the repo)."""
    check: dict[str, Any] = {"id": "worktree-dir", "label": "Worktree Directory", "required": False}
    if parent and confirmed:
        return check | {"passed": True, "version": parent}
    return check | {
        "passed": False,
        "error": "Not configured",
        "remediation": "Set the parent directory where git worktrees will be created",
    }


def no_mcp(checked_at: str) -> dict[str, Any]:
    """What ``mcpServers.<provider>`` says: this gateway does not inspect the CLIs' MCP config."""
    return {"available": False, "serverName": None, "matchedUrl": None, "checkedAt": checked_at,
            "error": None, "closedloopAvailable": False}  # fmt: skip
