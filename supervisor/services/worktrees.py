"""Per-ticket git worktrees, in ClosedLoop's layout (``<parent>/<repoName>-<ticketId>``), on
``symphony/<ticketId>``.

Git runs as short supervised children (kind ``git``, argv lists, a maximum run time), so every
git call is in the process table like any other child and a hung git is killed, tree and all.
A worktree is created once per ticket from ``baseRef`` (default: the repo's default branch) and
reused by later runs; only a teardown that asks for it removes it (the branch stays).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from ..engine import Supervisor
from ..errors import Conflict
from ..spec import ProcessSpec, State
from .paths import Layout

GIT_TIMEOUT = 60.0
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_BAD_REF = re.compile(r"(^[-/.])|(\.\.)|([\s~^:?*\[\\\x00-\x1f\x7f])|(@\{)|(/$)|(\.lock$)|(\.$)")


class GitError(Conflict):
    """git ran and refused; the message carries the command and git's own last words."""

    code = "git_failed"

    def __init__(self, argv: list[str], exit_code: int | None, output: str) -> None:
        short = " ".join(argv[1:4])
        super().__init__(f"git {short} failed ({exit_code}): {output.strip()[-800:]}")
        self.argv = argv
        self.exit_code = exit_code
        self.output = output


def check_id(value: str, field: str) -> str:
    """Ticket and repo ids become path components and branch names: keep them boring."""
    if not isinstance(value, str) or not _SAFE_ID.match(value) or value in (".", ".."):
        raise ValueError(f"{field}: must match [A-Za-z0-9][A-Za-z0-9._-]* (at most 100 characters)")
    return value


def check_ref(value: str, field: str = "baseRef") -> str:
    if not value or len(value) > 200 or _BAD_REF.search(value):
        raise ValueError(f"{field}: not a valid git ref name")
    return value


@dataclass(slots=True)
class GitResult:
    code: int | None
    stdout: str
    stderr: str
    record_id: str

    @property
    def ok(self) -> bool:
        return self.code == 0


class Git:
    """Runs git as supervised short children.

    ``which`` finds the binary at each call (the gateway passes its binary-path settings, so
    a ``PATCH /settings/binary-paths {"git": ...}`` applies to the next git call).
    """

    def __init__(
        self,
        sup: Supervisor,
        exe: str | None = None,
        timeout: float = GIT_TIMEOUT,
        which: Callable[[str], str | None] = shutil.which,
        kind: str = "git",
    ) -> None:
        self.sup = sup
        self._exe = exe
        self._which = which
        self.timeout = timeout
        self.kind = kind

    def locate(self, name: str) -> str | None:
        """Where binary ``name`` is now (the binary-path settings, else PATH)."""
        return self._which(name)

    @property
    def exe(self) -> str:
        return self._exe or self._which("git") or "git"

    def available(self) -> bool:
        """Whether a git binary is configured or on the lookup path right now."""
        return self._exe is not None or self._which("git") is not None

    async def run(
        self, args: list[str], cwd: str | Path, *, ticket_id: str | None = None, check: bool = True
    ) -> GitResult:
        argv = [self.exe, *args]
        spec = ProcessSpec(
            argv=argv,
            kind=self.kind,
            cwd=str(cwd),
            ticket_id=ticket_id,
            env={"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
            max_runtime=self.timeout,
            stop_grace=2.0,
        )
        record = await self.sup.start(spec)
        final = await self.sup.wait(record.id)
        lines = self.sup.log(record.id).read()
        out = "\n".join(line.text for line in lines if line.stream == "stdout")
        err = "\n".join(line.text for line in lines if line.stream == "stderr")
        code = final.exit_code if final.state in (State.EXITED, State.FAILED) else None
        result = GitResult(code, out, err, record.id)
        if check and not result.ok:
            raise GitError(argv, code, err or out or f"state {final.state.value}")
        return result


@dataclass(slots=True)
class Worktree:
    repo_id: str
    ticket_id: str
    path: Path
    branch: str
    base_ref: str
    created: bool

    def to_json(self) -> dict[str, object]:
        return {
            "repoId": self.repo_id,
            "ticketId": self.ticket_id,
            "path": str(self.path),
            "branch": self.branch,
            "baseRef": self.base_ref,
            "created": self.created,
        }


def branch_for(ticket_id: str) -> str:
    return f"symphony/{ticket_id}"


#: Where ClosedLoop keeps a worktree's own files (chat history, attachments, logs).
WORK_DIR = ".closedloop-ai/"


def exclude_work_dir(repo: Path) -> None:
    """Keep ``.closedloop-ai/`` out of ``git status`` and commits in every worktree of ``repo``
    (its shared ``info/exclude``); ClosedLoop leaves that to a plugin's ``.gitignore``."""
    exclude = repo / ".git" / "info" / "exclude"
    if not (repo / ".git").is_dir():
        return
    try:
        lines = exclude.read_text(encoding="utf-8").splitlines() if exclude.exists() else []
        if f"/{WORK_DIR}" not in lines:
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with exclude.open("a", encoding="utf-8") as out:
                out.write(("\n" if lines and lines[-1] else "") + f"/{WORK_DIR}\n")
    except OSError:
        return


class Worktrees:
    def __init__(
        self, sup: Supervisor, git: Git | None = None, root: Path | None = None, layout: Layout | None = None
    ) -> None:
        self.sup = sup
        self.git = git or Git(sup)
        self.root = root or (sup.state_dir / "worktrees")
        #: ClosedLoop's layout, from the repo registry (set by the composition root).
        self.layout = layout

    def path_for(self, repo_id: str, ticket_id: str) -> Path:
        """``<worktreeParentDir or the repo's parent>/<repoName>-<ticketId>`` (ClosedLoop's
        layout, so the path ClosedLoop's web app computes is this one); without a layout that
        knows the repo, ``<state>/worktrees/<repoId>/<ticketId>``."""
        check_id(repo_id, "repoId")
        check_id(ticket_id, "ticketId")
        where = self.layout.worktree(repo_id, ticket_id) if self.layout is not None else None
        return where if where is not None else self.root / repo_id / ticket_id

    async def default_branch(self, repo: Path) -> str:
        res = await self.git.run(["symbolic-ref", "--quiet", "--short", "HEAD"], repo, check=False)
        if res.ok and res.stdout.strip():
            return res.stdout.strip()
        res = await self.git.run(["rev-parse", "--abbrev-ref", "HEAD"], repo)
        return res.stdout.strip()

    async def ensure(self, repo: Path, repo_id: str, ticket_id: str, base_ref: str | None = None) -> Worktree:
        """Create the ticket's worktree, or reuse it when it is already there."""
        path = self.path_for(repo_id, ticket_id)
        branch = branch_for(ticket_id)
        if (path / ".git").exists():
            return Worktree(repo_id, ticket_id, path, branch, base_ref or "", created=False)
        if base_ref is not None:
            check_ref(base_ref)
        base = base_ref or await self.default_branch(repo)
        verify = await self.git.run(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{base}^{{commit}}"],
            repo,
            ticket_id=ticket_id,
            check=False,
        )
        if not verify.ok:
            raise LookupError(f"baseRef: {base!r} is not a commit in {repo}")
        path.parent.mkdir(parents=True, exist_ok=True)
        exists = await self.git.run(
            ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            repo,
            ticket_id=ticket_id,
            check=False,
        )
        # A stale registration (folder deleted by hand) would make `worktree add` refuse.
        await self.git.run(["worktree", "prune"], repo, ticket_id=ticket_id, check=False)
        if exists.ok:
            await self.git.run(["worktree", "add", str(path), branch], repo, ticket_id=ticket_id)
        else:
            await self.git.run(
                ["worktree", "add", "-b", branch, str(path), verify.stdout.strip()], repo, ticket_id=ticket_id
            )
        await trio.to_thread.run_sync(exclude_work_dir, repo)
        return Worktree(repo_id, ticket_id, path, branch, base, created=True)

    async def remove(self, repo: Path, repo_id: str, ticket_id: str) -> bool:
        path = self.path_for(repo_id, ticket_id)
        if not path.exists():
            return False
        await self.git.run(["worktree", "remove", "--force", str(path)], repo, ticket_id=ticket_id)
        return True

    async def current_branch(self, path: Path) -> str:
        res = await self.git.run(["rev-parse", "--abbrev-ref", "HEAD"], path)
        return res.stdout.strip()
