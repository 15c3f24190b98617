"""Pure parsers for git output in the shapes ClosedLoop's web app reads (no I/O here).

Sources: ``apps/desktop/src/server/operations/git-action.ts`` (status, branch-diff, sync-status),
``git-branches.ts`` (branches, worktrees), ``git-helpers.ts`` (``owner/repo`` from the origin URL).
Where ClosedLoop's parsing loses information we parse git's machine formats instead
(quoted names are unquoted; the first status line is not trimmed away).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_FULL_NAME = re.compile(r"[:/]([^/:]+/[^/]+?)(?:\.git)?$")
_TICKET_DIR = re.compile(r"[A-Z]+-\d+$")
_TICKET_BRANCH = re.compile(r"([A-Z]+-\d+)")
_BRANCH_UNSAFE = re.compile(r"[^a-zA-Z0-9\-_/]")


def unquote(path: str) -> str:
    """git's C-style quoting of unusual paths (``"a\\tb"``, octal bytes) undone."""
    if len(path) < 2 or not (path.startswith('"') and path.endswith('"')):
        return path
    body, out, i = path[1:-1], bytearray(), 0
    escapes = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in escapes:
                out.append(escapes[nxt])
                i += 2
                continue
            if body[i + 1 : i + 4].isdigit():
                out.append(int(body[i + 1 : i + 4], 8) & 0xFF)
                i += 4
                continue
        out.extend(ch.encode())
        i += 1
    return out.decode("utf-8", "replace")


def _new_name(name: str, renamed: bool) -> str:
    if renamed and " -> " in name:
        if name.startswith('"'):
            end = name.find('" -> ')
            if end > 0:
                return unquote(name[end + 5 :])
        return unquote(name.split(" -> ", 1)[1])
    return unquote(name)


def status_files(porcelain: str) -> dict[str, list[str]]:
    """``git status --porcelain`` -> ``{modified, created, deleted, staged}`` by ClosedLoop's
    rules (``git-action.ts``): M anywhere -> modified; A anywhere or ``??`` -> created; D
    anywhere -> deleted; an index column other than space and ``?`` -> staged. A rename lists
    its new name. Unlike ClosedLoop, the output is not trimmed first, so the first line keeps
    its leading space and every name is whole."""
    files: dict[str, list[str]] = {"modified": [], "created": [], "deleted": [], "staged": []}
    for line in porcelain.split("\n"):
        if len(line) < 4:
            continue
        code = line[:2]
        name = _new_name(line[3:], code[0] in "RC")
        if "M" in code:
            files["modified"].append(name)
        if "A" in code or code == "??":
            files["created"].append(name)
        if "D" in code:
            files["deleted"].append(name)
        if code[0] not in " ?":
            files["staged"].append(name)
    return files


def name_status(output: str) -> dict[str, list[str]]:
    """``git diff --name-status`` -> ``{modified, created, deleted}`` (A created, D deleted,
    anything else modified; a rename counts as modified under its new name)."""
    files: dict[str, list[str]] = {"modified": [], "created": [], "deleted": []}
    for line in output.split("\n"):
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0]:
            continue
        code, name = fields[0], unquote(fields[-1])
        if code.startswith("A"):
            files["created"].append(name)
        elif code.startswith("D"):
            files["deleted"].append(name)
        else:
            files["modified"].append(name)
    return files


def worktree_list(porcelain: str) -> list[dict[str, str]]:
    """``git worktree list --porcelain`` -> ``[{path, branch}]`` (branch without refs/heads/)."""
    found: list[dict[str, str]] = []
    for block in porcelain.split("\n\n"):
        path = branch = ""
        for line in block.splitlines():
            if line.startswith("worktree "):
                path = line[len("worktree ") :]
            elif line.startswith("branch "):
                branch = line[len("branch ") :].removeprefix("refs/heads/")
        if path:
            found.append({"path": path, "branch": branch})
    return found


def ticket_of(name: str) -> str | None:
    match = _TICKET_DIR.search(name)
    if match:
        return match.group(0)
    match = _TICKET_BRANCH.search(name)
    return match.group(1) if match else None


def branch_list(output: str, default: str) -> list[dict[str, Any]]:
    """``git for-each-ref --format=%(refname)|%(committerdate:iso-strict) refs/heads refs/remotes/origin``
    -> ClosedLoop's ``branches``: local first when a name is both, ``origin/`` stripped, the
    symbolic ``origin/HEAD`` skipped, the default branch first, then newest first."""
    seen: set[str] = set()
    branches: list[dict[str, Any]] = []
    for line in output.splitlines():
        ref, _, date = line.partition("|")
        if ref.startswith("refs/heads/"):
            name, remote = ref[len("refs/heads/") :], False
        elif ref.startswith("refs/remotes/origin/"):
            name, remote = ref[len("refs/remotes/origin/") :], True
        else:
            continue
        if not name or name == "HEAD" or name in seen:
            continue
        seen.add(name)
        entry: dict[str, Any] = {"name": name, "isRemote": remote}
        if date:
            entry["lastCommitDate"] = date
        branches.append(entry)

    # ISO-8601 with offsets sorts by text only within one offset: compare as instants.
    def when(b: dict[str, Any]) -> float:
        try:
            return datetime.fromisoformat(b.get("lastCommitDate", "")).timestamp()
        except ValueError:
            return 0.0

    branches.sort(key=lambda b: (b["name"] != default, -when(b)))
    return branches


def full_name(remote_url: str) -> str | None:
    """``owner/repo`` from an origin URL, as ClosedLoop's ``resolveRepoFullName``."""
    match = _FULL_NAME.search(remote_url.strip())
    return match.group(1) if match else None


def sanitize_branch(name: str) -> str:
    """ClosedLoop's ``branch`` action: anything but ``[a-zA-Z0-9-_/]`` becomes ``-``."""
    return _BRANCH_UNSAFE.sub("-", name)
