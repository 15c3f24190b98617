"""Git operations a desktop UI asks for, on a managed repo or a ticket's worktree.

Every call is a short supervised child (``worktrees.Git``: kind ``git``, argv only, a maximum
run time, the whole tree killed when it hangs), so a push stuck on a credential helper or a
hook that never ends shows in the process table and can be killed like anything else.

Request data never reaches git as an option: refs are checked (``check_ref``) and follow
``--end-of-options``, paths follow ``--`` with pathspec magic off (``--literal-pathspecs``), and
messages are option values (``-m``), never parsed by a shell. Output is read without ``-z``
(the log splits very long lines), so quoted paths are unquoted here.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadRequest, Conflict, Timeout
from .worktrees import Git, GitResult, check_ref

#: Patches are cut here (and say so): a UI shows a diff, it does not page through gigabytes.
MAX_PATCH = 2 * 1024 * 1024
MAX_PATHS = 1000
ACTIONS = ("status", "branch", "commit", "push", "pull", "branch-diff", "sync-status")
_GLOBAL = ["--literal-pathspecs", "-c", "core.quotepath=off", "-c", "color.ui=never"]


class GitFailed(Conflict):
    """git ran and refused (a rejected push, a conflict): the answer carries git's words."""

    code = "git_failed"


class GitTimeout(Timeout):
    """A git child ran past its time limit and was killed."""

    code = "git_timeout"


def _ref(value: str, field: str) -> str:
    try:
        return check_ref(value, field)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


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


def check_paths(paths: list[str], root: Path) -> list[str]:
    """Relative paths inside the work tree, or BadRequest naming the first bad one."""
    if len(paths) > MAX_PATHS:
        raise BadRequest(f"paths: at most {MAX_PATHS}")
    out = []
    for i, p in enumerate(paths):
        norm = posixpath.normpath(p) if isinstance(p, str) else ""
        if not norm or "\x00" in norm or norm.startswith(("/", "../")) or norm in ("..", "."):
            raise BadRequest(f"paths.{i}: must be a relative path inside the work tree")
        if (root / norm).resolve().is_relative_to(root.resolve()) is False:
            raise BadRequest(f"paths.{i}: leads outside the work tree (a symlink)")
        out.append(norm)
    return out


@dataclass(slots=True)
class FileChange:
    path: str
    index: str
    worktree: str
    orig_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "index": self.index, "worktree": self.worktree}
        if self.orig_path is not None:
            out["origPath"] = self.orig_path
        return out


def parse_status(text: str) -> dict[str, Any]:
    """``git status --porcelain=v2 --branch`` as JSON: branch, upstream, ahead/behind, files."""
    head: dict[str, Any] = {"branch": None, "head": None, "upstream": None, "ahead": 0, "behind": 0}
    files: list[FileChange] = []
    for line in text.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split(" ", 2)[2]
            head["head"] = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            name = line.split(" ", 2)[2]
            head["branch"] = None if name == "(detached)" else name
        elif line.startswith("# branch.upstream "):
            head["upstream"] = line.split(" ", 2)[2]
        elif line.startswith("# branch.ab "):
            ahead, behind = line.split(" ")[2:4]
            head["ahead"], head["behind"] = int(ahead), -int(behind)
        elif line.startswith("1 "):
            parts = line.split(" ", 8)
            files.append(FileChange(unquote(parts[8]), parts[1][0], parts[1][1]))
        elif line.startswith("2 "):
            parts = line.split(" ", 9)
            path, _, orig = parts[9].partition("\t")
            files.append(FileChange(unquote(path), parts[1][0], parts[1][1], unquote(orig)))
        elif line.startswith("u "):
            parts = line.split(" ", 10)
            files.append(FileChange(unquote(parts[10]), "U", "U"))
        elif line.startswith("? "):
            files.append(FileChange(unquote(line[2:]), "?", "?"))
    return {**head, "clean": not files, "files": [f.to_json() for f in files]}


def parse_numstat(text: str) -> list[dict[str, Any]]:
    """``--numstat`` lines: additions and deletions per file (None for binary files)."""
    out = []
    for line in text.splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        added, deleted, path = parts
        out.append(
            {
                "path": unquote(path),
                "additions": int(added) if added.isdigit() else None,
                "deletions": int(deleted) if deleted.isdigit() else None,
            }
        )
    return out


class GitOps:
    """The operations of the git routes on one work tree (a repo or a ticket's worktree)."""

    def __init__(self, git: Git) -> None:
        self.git = git

    async def _run(self, args: list[str], where: Path, *, ticket_id: str | None = None,
                   check: bool = True) -> GitResult:  # fmt: skip
        result = await self.git.run([*_GLOBAL, *args], where, ticket_id=ticket_id, check=False)
        if result.code is None:
            raise GitTimeout(f"git {args[0]} did not finish within {self.git.timeout:g} s (killed)")
        if check and not result.ok:
            said = (result.stderr or result.stdout).strip()[-800:]
            raise GitFailed(f"git {args[0]} failed (exit {result.code}): {said}")
        return result

    async def status(self, where: Path, ticket_id: str | None = None) -> dict[str, Any]:
        res = await self._run(
            ["status", "--porcelain=v2", "--branch", "--untracked-files=all"], where, ticket_id=ticket_id
        )
        return parse_status(res.stdout)

    async def branch(self, where: Path, ticket_id: str | None = None) -> dict[str, Any]:
        st = await self.status(where, ticket_id)
        return {"branch": st["branch"], "detached": st["branch"] is None, "head": st["head"]}

    async def commit(
        self, where: Path, message: str, paths: list[str] | None, ticket_id: str | None = None
    ) -> dict[str, Any]:
        """Stage ``paths`` (or everything) and commit; 409 ``nothing_to_commit`` if nothing is."""
        if not message.strip():
            raise BadRequest("message: must not be empty")
        if paths:
            await self._run(["add", "--all", "--", *check_paths(paths, where)], where, ticket_id=ticket_id)
        else:
            await self._run(["add", "--all"], where, ticket_id=ticket_id)
        staged = await self._run(["diff", "--cached", "--quiet"], where, ticket_id=ticket_id, check=False)
        if staged.ok:
            raise Conflict("nothing to commit: no staged changes")
        await self._run(["commit", "--quiet", "-m", message], where, ticket_id=ticket_id)
        st = await self.status(where, ticket_id)
        subject = message.strip().splitlines()[0][:200]
        return {"commit": st["head"], "branch": st["branch"], "subject": subject, "clean": st["clean"]}

    async def push(self, where: Path, remote: str, ticket_id: str | None = None) -> dict[str, Any]:
        """Push the current branch; the first push sets its upstream on ``remote``."""
        _ref(remote, "remote")
        st = await self.status(where, ticket_id)
        if st["branch"] is None:
            raise Conflict("cannot push a detached HEAD: check out a branch first")
        args = ["push", "--porcelain"]
        if st["upstream"] is None:
            args += ["--set-upstream", remote, f"HEAD:refs/heads/{st['branch']}"]
        await self._run(args, where, ticket_id=ticket_id)
        after = await self.status(where, ticket_id)
        return {"pushed": True, **{k: after[k] for k in ("branch", "upstream", "head")}}

    async def pull(self, where: Path, ticket_id: str | None = None) -> dict[str, Any]:
        """Fast-forward only: a pull that would merge is git's refusal (409), not a surprise merge."""
        before = await self.status(where, ticket_id)
        if before["upstream"] is None:
            raise Conflict("the current branch has no upstream to pull from")
        await self._run(["pull", "--ff-only", "--quiet"], where, ticket_id=ticket_id)
        after = await self.status(where, ticket_id)
        return {"updated": after["head"] != before["head"], "head": after["head"], "branch": after["branch"]}

    async def sync_status(self, where: Path, fetch: bool, ticket_id: str | None = None) -> dict[str, Any]:
        if fetch:
            await self._run(["fetch", "--quiet", "--prune"], where, ticket_id=ticket_id)
        st = await self.status(where, ticket_id)
        return {key: st[key] for key in ("branch", "upstream", "ahead", "behind", "head")}

    async def diff(
        self,
        where: Path,
        *,
        base: str | None = None,
        staged: bool = False,
        paths: list[str] | None = None,
        merge_base: bool = False,
        ticket_id: str | None = None,
    ) -> dict[str, Any]:
        """A unified diff with per-file counts; against ``base`` (its merge base if asked)."""
        args: list[str] = []
        if staged:
            args.append("--cached")
        resolved = None
        if base is not None:
            _ref(base, "base")
            if merge_base:
                mb = await self._run(
                    ["merge-base", "--end-of-options", base, "HEAD"], where, ticket_id=ticket_id
                )
                resolved = mb.stdout.strip()
                args.append(resolved)
            else:
                args += ["--end-of-options", base]
        tail = ["--", *check_paths(paths, where)] if paths else []
        stat = await self._run(["diff", "--numstat", *args, *tail], where, ticket_id=ticket_id)
        patch = await self._run(["diff", "--no-ext-diff", *args, *tail], where, ticket_id=ticket_id)
        text = patch.stdout + ("\n" if patch.stdout else "")
        truncated = len(text.encode()) > MAX_PATCH
        if truncated:
            text = text.encode()[:MAX_PATCH].decode("utf-8", "ignore")
        out: dict[str, Any] = {"files": parse_numstat(stat.stdout), "patch": text, "truncated": truncated}
        if base is not None:
            out["base"] = base
        if resolved is not None:
            out["mergeBase"] = resolved
        return out

    async def branches(self, where: Path, ticket_id: str | None = None) -> dict[str, Any]:
        fmt = "%(refname)%09%(objectname)%09%(upstream:short)%09%(HEAD)"
        res = await self._run(
            ["for-each-ref", f"--format={fmt}", "refs/heads", "refs/remotes"], where, ticket_id=ticket_id
        )
        local, remote, current = [], [], None
        for line in res.stdout.splitlines():
            ref, sha, upstream, mark = [*line.split("\t"), "", "", ""][:4]
            if ref.startswith("refs/heads/"):
                name = ref[len("refs/heads/") :]
                is_current = mark == "*"
                local.append({"name": name, "head": sha, "upstream": upstream or None, "current": is_current})
                current = name if is_current else current
            elif ref.startswith("refs/remotes/") and not ref.endswith("/HEAD"):
                remote.append({"name": ref[len("refs/remotes/") :], "head": sha})
        return {"current": current, "branches": local, "remotes": remote}

    async def branch_worktree(self, repo: Path, branch: str) -> str | None:
        """The work tree that has ``branch`` checked out, if any (``git worktree list``)."""
        _ref(branch, "branch")
        res = await self._run(["worktree", "list", "--porcelain"], repo)
        path = None
        for line in res.stdout.splitlines():
            if line.startswith("worktree "):
                path = line[len("worktree ") :]
            elif line == f"branch refs/heads/{branch}":
                return path
        return None

    async def ls_files(self, where: Path, ticket_id: str | None = None) -> list[str]:
        """Tracked and untracked-but-not-ignored files: what a "go to file" picker offers."""
        res = await self._run(
            ["ls-files", "--cached", "--others", "--exclude-standard", "--deduplicate"],
            where,
            ticket_id=ticket_id,
        )
        return [unquote(line) for line in res.stdout.splitlines() if line]

    async def user(self, where: Path | None) -> dict[str, Any]:
        """The identity commits get here (the repo's config, else the user's global one)."""
        cwd = where or Path.home()
        out: dict[str, Any] = {}
        for key in ("name", "email"):
            res = await self._run(["config", "--get", f"user.{key}"], cwd, check=False)
            out[key] = res.stdout.strip() or None
        return out
