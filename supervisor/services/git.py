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
from .git_wire import (
    branch_list,
    name_status,
    sanitize_branch,
    status_files,
    ticket_of,
    unquote,
    worktree_list,
)
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

    async def run(self, args: list[str], where: Path, *, ticket_id: str | None = None,
                  check: bool = True) -> GitResult:  # fmt: skip
        """git ``args`` in ``where`` (our global options first); ``GitFailed`` on a refusal
        when ``check``, ``GitTimeout`` when it was killed at its time limit."""
        return await self._run(args, where, ticket_id=ticket_id, check=check)

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


# ---- ClosedLoop's git wire ---------------------------------------------------------------
# The answers of ``apps/desktop/src/server/operations/git-action.ts``, ``git-diff.ts`` and
# ``git-branches.ts``, computed with the same supervised git children as everything above.


def wire_failure(action: str, exc: GitFailed) -> GitFailed:
    """ClosedLoop's code and ``details`` for a git refusal (``classifyGitActionError``)."""
    text = exc.message.lower()
    details: dict[str, Any] = {
        "action": action,
        "category": "git_command_failed",
        "stderrExcerpt": exc.message[-1200:],
    }
    message = exc.message
    if action == "commit" and ("hook" in text or "husky" in text or "pre-commit" in text):
        details["category"], message = "pre_commit_hook", "Pre-commit hook failed"
    elif action == "push" and any(
        s in text for s in ("authentication failed", "permission denied", "could not read username", "403")
    ):
        details["category"], message = "git_push_auth", "Git push authentication failed"
    return GitFailed(message, code="PROCESS_FAILED", details=details)


class GitWire:
    """ClosedLoop-shaped git operations on one work tree (``where``)."""

    def __init__(self, ops: GitOps) -> None:
        self.ops = ops

    async def _out(self, action: str, args: list[str], where: Path, tid: str | None = None) -> str:
        try:
            result = await self.ops.run(args, where, ticket_id=tid)
        except GitFailed as exc:
            raise wire_failure(action, exc) from None
        return result.stdout

    async def current_branch(self, where: Path, action: str = "status") -> str:
        return (await self._out(action, ["rev-parse", "--abbrev-ref", "HEAD"], where)).strip()

    async def status(self, where: Path) -> dict[str, Any]:
        branch = await self.current_branch(where)
        porcelain = await self._out("status", ["status", "--porcelain", "--untracked-files=all"], where)
        files = status_files(porcelain)
        changed = any(len(line) >= 4 for line in porcelain.split("\n"))
        return {"currentBranch": branch or "unknown", "hasChanges": changed, "files": files}

    async def branch(self, where: Path, name: str, tid: str | None) -> dict[str, Any]:
        clean = _ref(sanitize_branch(name), "branchName")
        listed = await self._out("branch", ["branch", "--list", "--end-of-options", clean], where, tid)
        if listed.strip():
            await self._out("branch", ["checkout", "--end-of-options", clean], where, tid)
        else:
            await self._out("branch", ["checkout", "-b", clean], where, tid)
        return {"success": True, "branchName": clean, "message": f"Switched to branch '{clean}'"}

    async def commit(self, where: Path, message: str, tid: str | None) -> dict[str, Any]:
        await self._out("commit", ["add", "--all"], where, tid)
        await self._out("commit", ["commit", "--quiet", "-m", message], where, tid)
        head = (await self._out("commit", ["rev-parse", "--short", "HEAD"], where, tid)).strip()
        return {"success": True, "commit": head, "message": "Committed changes"}

    async def push(self, where: Path, tid: str | None) -> dict[str, Any]:
        branch = _ref(await self.current_branch(where, "push"), "branch")
        await self._out(
            "push",
            ["push", "--porcelain", "--set-upstream", "origin", f"HEAD:refs/heads/{branch}"],
            where,
            tid,
        )
        return {"success": True, "pushed": True, "message": f"Pushed branch '{branch}' to remote"}

    async def pull(self, where: Path, tid: str | None) -> dict[str, Any]:
        """ClosedLoop pulls ``origin <branch>``; ours fast-forwards only (no surprise merge)."""
        branch = _ref(await self.current_branch(where, "pull"), "branch")
        await self._out("pull", ["pull", "--ff-only", "--quiet", "origin", branch], where, tid)
        return {"success": True, "message": f"Pulled latest changes for '{branch}'"}

    async def branch_diff(self, where: Path, base: str) -> dict[str, Any]:
        base = _ref(base, "baseBranch")
        branch = await self.current_branch(where, "branch-diff")
        out = await self._out(
            "branch-diff", ["diff", "--name-status", "--end-of-options", f"origin/{base}...HEAD"], where
        )
        files = name_status(out)
        total = sum(len(v) for v in files.values())
        return {"baseBranch": base, "currentBranch": branch, "files": files, "totalChanges": total}

    async def sync_status(self, where: Path) -> dict[str, Any]:
        await self._out("sync-status", ["fetch", "--quiet", "origin"], where)
        branch = await self.current_branch(where, "sync-status")
        remotes = await self._out("sync-status", ["branch", "-r", "--format=%(refname:short)"], where)
        names = set(remotes.split())
        tracking = next((t for t in ("origin/main", "origin/master") if t in names), None)
        if tracking is None:
            return {
                "isUpToDate": True,
                "behindBy": 0,
                "aheadBy": 0,
                "currentBranch": branch,
                "trackingBranch": None,
            }
        counts = await self._out(
            "sync-status", ["rev-list", "--left-right", "--count", f"HEAD...{tracking}"], where
        )
        ahead, behind = ([*counts.split(), "0", "0"])[:2]
        a, b = int(ahead) if ahead.isdigit() else 0, int(behind) if behind.isdigit() else 0
        return {"isUpToDate": a == 0 and b == 0, "behindBy": b, "aheadBy": a,
                "currentBranch": branch, "trackingBranch": tracking}  # fmt: skip

    async def blob(self, where: Path, rev: str, path: str) -> str | None:
        """The text of ``rev:path`` (None when it does not exist there)."""
        spec = f"{rev}:{path}"
        size = await self.ops.run(["cat-file", "-s", "--end-of-options", spec], where, check=False)
        if not size.ok or not size.stdout.strip().isdigit():
            return None
        shown = await self.ops.run(["cat-file", "-p", "--end-of-options", spec], where, check=False)
        if not shown.ok:
            return None
        text = shown.stdout
        # The log keeps lines, not the last newline: put it back when the sizes say so.
        if len(text.encode()) + 1 == int(size.stdout.strip()):
            text += "\n"
        return text

    async def file_status(self, where: Path, path: str) -> str:
        out = await self._out("status", ["status", "--porcelain", "--untracked-files=all", "--", path], where)
        return next((line[:2] for line in out.split("\n") if len(line) >= 4), "")

    async def branches(self, repo: Path) -> dict[str, Any]:
        symbolic = await self.ops.run(["symbolic-ref", "refs/remotes/origin/HEAD"], repo, check=False)
        if symbolic.ok and symbolic.stdout.strip():
            default = symbolic.stdout.strip().removeprefix("refs/remotes/origin/")
        else:
            current = await self.ops.run(["branch", "--show-current"], repo, check=False)
            default = current.stdout.strip() or "main"
        listed = await self.ops.run(["worktree", "list", "--porcelain"], repo, check=False)
        top = str(repo)
        worktrees = [
            {"path": w["path"], "branch": w["branch"],
             "ticketId": ticket_of(Path(w["path"]).name) or ticket_of(w["branch"])}
            for w in worktree_list(listed.stdout if listed.ok else "")
            if w["path"] != top
        ]  # fmt: skip
        fmt = "--format=%(refname)|%(committerdate:iso-strict)"
        refs = await self.ops.run(
            ["for-each-ref", fmt, "refs/heads", "refs/remotes/origin"], repo, check=False
        )
        head = await self.ops.run(["rev-parse", "--verify", "--quiet", "HEAD"], repo, check=False)
        out: dict[str, Any] = {
            "defaultBranch": default,
            "worktrees": worktrees,
            "branches": branch_list(refs.stdout if refs.ok else "", default),
        }
        if not head.ok:
            out["isEmpty"] = True
        return out

    async def worktree_for_branch(self, repo: Path, branch: str) -> str | None:
        """ClosedLoop's ``findWorktreeForBranch``: the work tree with ``branch`` checked out."""
        listed = await self.ops.run(["worktree", "list", "--porcelain"], repo, check=False)
        for w in worktree_list(listed.stdout if listed.ok else ""):
            if w["branch"] == branch:
                return w["path"]
        return None
