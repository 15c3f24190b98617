"""Pull requests through the real GitHub CLI (``gh``), as ClosedLoop's desktop gateway serves them.

``gh`` runs through ``gh.Gh`` (supervised short children, argv only, a time limit, bodies in
private files). Request data never becomes a ``gh`` option: numbers are ints formatted here,
repository names are checked segments (never a leading ``-``), branch names are checked refs
that follow ``--``, titles are option values and bodies go through files.

The owner/repo a local repository stands for is read from its ``origin`` URL, as ClosedLoop
does (``git remote get-url origin``), but only a remote whose host is github.com counts.
A repository must be registered with the gateway (or be a worktree of one): anything else is
refused before any child runs.

Failures are the shared family (``gateway.supervisor.errors``); ``gh.classify`` turns a failed
gh run into one (GitHub's refusals are ``Rejected`` in its words). Here: an unregistered
repository is ``Forbidden`` (``repo_not_allowed``), a remote not on github.com ``BadRequest``
(``not_github``), a refused push ``Conflict`` (``push_failed``).

Cancellation: every call awaits supervised children (git, gh); cancelling the caller (a client
that goes away) leaves the supervisor to finish or time out the child.

Reference: ``closedloop-ai/closedloop-electron`` ``apps/desktop/src/server/operations/git-pr.ts``
(the version the web app's ``apps/app/lib/engineer/queries/git.ts`` reads), ``git-pr-utils.ts``
and ``git-helpers.ts``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from ..engine import Supervisor
from ..errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Rejected,
    Timeout,
    Unavailable,
    UpstreamFailed,
)
from .gh import BODY, HOST, PAYLOAD, BodyFile, Gh, GhResult, api_args, classify, one_json
from .repos import Repos
from .worktrees import Git, GitResult, check_ref

PUSH_TIMEOUT = 120.0
#: ``gh pr list --limit``, as ClosedLoop asks.
LIST_LIMIT = 50
#: GitHub refuses comment bodies over 65536 characters; titles are far shorter.
MAX_BODY = 65536
MAX_TITLE = 1024
MAX_PATH = 4096

_SEGMENT = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9._-]{0,99}$")  # never a leading "-"
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
_PR_URL = re.compile(r"/pull/(\d+)")
# https://github.com/o/r(.git), ssh://git@github.com(:22)/o/r(.git), git@github.com:o/r(.git)
_REMOTE = (
    re.compile(r"^(?:https?|git|ssh)://(?:[^@/]+@)?(?:www\.)?github\.com(?::\d+)?/([^/]+)/([^/]+?)(?:\.git)?/?$",
               re.IGNORECASE),
    re.compile(r"^(?:[^@/]+@)?github\.com:/?([^/]+)/([^/]+?)(?:\.git)?/?$", re.IGNORECASE),
)


def bad_request(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_request")


def parse_remote(url: str) -> str | None:
    """``owner/repo`` of a github.com remote URL, or None for any other host or shape."""
    for pattern in _REMOTE:
        match = pattern.match(url.strip())
        if match and _SEGMENT.match(match[1]) and _SEGMENT.match(match[2]):
            owner, repo = match[1], match[2]
            if "." not in (owner, repo) and ".." not in (owner, repo):
                return f"{owner}/{repo}"
    return None


def check_slug(owner: str, repo: str) -> str:
    if not (_SEGMENT.match(owner) and _SEGMENT.match(repo)) or {owner, repo} & {".", ".."}:
        raise bad_request("owner and repo must be GitHub names ([A-Za-z0-9._-], at most 100 characters)")
    return f"{owner}/{repo}"


def pr_number(value: Any, field_name: str) -> int:
    """A positive PR (or comment) number from JSON or a query string; ``"12"`` and ``12`` both do."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or not 0 < value < 2**53:
        raise bad_request(f"{field_name}: must be a positive integer")
    return value


def parse_pr_number(url: str) -> int | None:
    match = _PR_URL.search(url.strip())
    return int(match[1]) if match else None


@dataclass(slots=True)
class Target:
    """A local repository (or worktree) a request names, and the GitHub repo its origin is."""

    path: Path
    slug: str

    @property
    def repo_arg(self) -> str:
        """``--repo`` with the host spelled out, so a ``GH_HOST`` in the environment cannot
        send the request to another GitHub than the remote's."""
        return f"{HOST}/{self.slug}"


@dataclass
class PullRequests:
    """The eight ``git/pr`` operations. Every method returns the JSON answer ClosedLoop gives."""

    sup: Supervisor
    git: Git
    gh: Gh
    repos: Repos
    worktree_root: Path | None = None
    push_timeout: float = PUSH_TIMEOUT

    # ---- which repository --------------------------------------------------------------

    async def _registered(self) -> list[tuple[str, Path]]:
        """Registered repositories whose folder still exists, by real path."""
        out = []
        for repo in await self.repos.list():
            real = Path(await trio.to_thread.run_sync(os.path.realpath, repo["path"]))
            if await trio.to_thread.run_sync(real.is_dir):
                out.append((repo["id"], real))
        return out

    async def _git(self, args: list[str], where: Path, git: Git | None = None) -> GitResult:
        """A git child (exit code in the result); git that cannot be started is a 503."""
        try:
            return await (git or self.git).run(args, where, check=False)
        except OSError as exc:
            raise Unavailable(
                f"cannot run git: {exc.strerror or exc}; install git or set its path with "
                'PATCH /api/gateway/settings/binary-paths {"git": "/abs/path/to/git"}',
                "git",
            ) from None

    async def resolve(self, raw: Any, field_name: str = "repoPath") -> Target:
        """The registered repository (or one of its worktrees) at ``raw``, with its GitHub slug."""
        if not isinstance(raw, str) or not raw.strip():
            raise bad_request(f"{field_name} is required")
        if "\x00" in raw or len(raw) > MAX_PATH:
            raise bad_request(f"{field_name}: not a usable path")
        expanded = os.path.expanduser(raw.strip())  # noqa: ASYNC240 - reads $HOME, no I/O
        if not os.path.isabs(expanded):
            raise bad_request(f"{field_name}: must be an absolute path (or start with ~/)")
        real = Path(await trio.to_thread.run_sync(os.path.realpath, expanded))
        if not await self._allowed(real):
            raise Forbidden(
                f"directory not allowed: {raw[:300]} is not a registered repository or one of its "
                "worktrees (register it with POST /api/gateway/repos)",
                code="repo_not_allowed",
            )
        if not await trio.to_thread.run_sync(real.is_dir):
            raise NotFound(f"{raw[:300]} does not exist", code="repo_not_found")
        return Target(real, await self.slug_of(real))

    async def _allowed(self, real: Path) -> bool:
        repos = await self._registered()
        if any(real.is_relative_to(path) for _id, path in repos):
            return True
        if self.worktree_root is not None:
            root = Path(await trio.to_thread.run_sync(os.path.realpath, self.worktree_root))
            ids = {repo_id for repo_id, _path in repos}
            if real.is_relative_to(root) and real != root and real.relative_to(root).parts[0] in ids:
                return True
        for _id, path in repos:
            listed = await self._git(["worktree", "list", "--porcelain"], path)
            for line in listed.stdout.splitlines():
                if line.startswith("worktree "):
                    tree = await trio.to_thread.run_sync(os.path.realpath, line[len("worktree ") :])
                    if real.is_relative_to(tree):
                        return True
        return False

    async def slug_of(self, where: Path) -> str:
        res = await self._git(["remote", "get-url", "origin"], where)
        url = res.stdout.strip()
        if not res.ok or not url:
            raise BadRequest(f"{where} has no remote named origin", code="no_github_remote")
        slug = parse_remote(url)
        if slug is None:
            raise BadRequest(
                f"origin of {where} is not a GitHub repository ({url[:200]}); "
                "pull requests need a github.com remote",
                code="not_github",
            )
        return slug

    async def by_slug(self, owner: Any, repo: Any) -> Target:
        """The registered repository whose origin is ``owner/repo`` on GitHub (403 if none)."""
        if not isinstance(owner, str) or not isinstance(repo, str) or not owner or not repo:
            raise bad_request("owner, repo, and number are required")
        slug = check_slug(owner, repo)
        for _id, path in await self._registered():
            try:
                found = await self.slug_of(path)
            except BadRequest:
                continue
            if found.lower() == slug.lower():
                return Target(path, found)
        raise Forbidden(
            f"{slug} is not the GitHub repository of any registered repository", code="repo_not_allowed"
        )

    # ---- create -----------------------------------------------------------------------------

    async def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Push the current branch, ``gh pr create``; an existing PR for it is answered as such."""
        title = _text(body.get("title"), "title", MAX_TITLE, required=True) or ""
        description = _text(body.get("body"), "body", MAX_BODY) or ""
        ticket_url = _text(body.get("ticketUrl"), "ticketUrl", 2000)
        base = body.get("baseBranch")
        if base is not None:
            base = _ref(base, "baseBranch")
        target = await self.resolve(body.get("repoPath"))
        full_body = f"{description}\n\n---\nLinear: {ticket_url}".strip() if ticket_url else description
        head = await self._git(["rev-parse", "--abbrev-ref", "HEAD"], target.path)
        branch = head.stdout.strip()
        if not head.ok or not branch or branch == "HEAD":
            raise Conflict("cannot open a pull request from a detached HEAD", code="detached_head")
        branch = _ref(branch, "branch")
        await self._push(target.path, branch)
        args: list[str | BodyFile] = [
            "pr", "create", "--repo", target.repo_arg, "--head", branch, "--title", title,
            "--body-file", BODY,
        ]  # fmt: skip
        if base:
            args += ["--base", base]
        result = await self.gh.run(args, target.path, files={BODY.name: full_body})
        if not result.ok:
            if "already exists" in (result.stderr + result.stdout):
                number, url = await self._view_branch(target, branch)
                return {"success": True, "url": url, "number": number,
                        "message": f"PR #{number} already exists", "created": False}  # fmt: skip
            raise classify(result, "gh pr create")
        url = result.stdout.strip().splitlines()[-1].strip() if result.stdout.strip() else ""
        found = parse_pr_number(url)
        if found is None:  # gh printed something else than the URL: ask for the branch's PR
            found, url = await self._view_branch(target, branch)
        return {"success": True, "url": url, "number": found, "message": f"Created PR #{found}",
                "created": True}  # fmt: skip

    async def _push(self, where: Path, branch: str) -> None:
        res = await self._git(
            ["push", "--porcelain", "-u", "origin", f"refs/heads/{branch}:refs/heads/{branch}"],
            where,
            Git(self.sup, exe=self.git.exe, timeout=self.push_timeout),
        )
        if res.code is None:
            raise Timeout(f"git push did not finish within {self.push_timeout:g} s", code="git_timeout")
        if not res.ok:
            said = (res.stderr or res.stdout).strip()[-800:]
            raise Conflict(f"git push failed: {said}", code="push_failed", details={"exitCode": res.code})

    async def _view_branch(self, target: Target, branch: str) -> tuple[int, str]:
        res = await self.gh.call(
            ["pr", "view", "--repo", target.repo_arg, "--json", "url,number", "--", branch],
            target.path,
            "gh pr view",
        )
        view = one_json(res)
        return int(view["number"]), str(view["url"])

    # ---- reads ------------------------------------------------------------------------------

    async def list(self, repo: Any, state: Any) -> dict[str, Any]:
        if not repo:
            raise bad_request("Missing 'repo' query parameter")
        state = state or "open"
        if state not in ("open", "merged"):
            raise bad_request("state must be 'open' or 'merged'")
        target = await self.resolve(repo, "repo")
        res = await self.gh.call(
            ["pr", "list", "--repo", target.repo_arg, "--state", state, "--limit", str(LIST_LIMIT),
             "--json", "number,title,url,author,state,createdAt,headRefName"],
            target.path,
            "gh pr list",
        )
        rows = one_json(res)
        return {
            "prs": [
                {
                    "number": row.get("number"),
                    "title": row.get("title"),
                    "url": row.get("url"),
                    "author": (row.get("author") or {}).get("login") or "unknown",
                    "state": row.get("state"),
                    "createdAt": row.get("createdAt"),
                    "headRefName": row.get("headRefName"),
                }
                for row in rows or []
            ]
        }

    async def comments(self, repo: Any, pr: Any) -> dict[str, Any]:
        """Issue comments, review bodies and inline review comments, newest first.

        Ids and lines as ClosedLoop gives them: issue comments and reviews keep their GraphQL
        node ids, inline comments are ``IC_<databaseId>`` with ``line = original_line ?? line``
        and ``inReplyToId``. ``databaseId`` is what a thread reply needs: 0 where there is no
        thread (issue comments and review bodies), the REST id for inline comments.
        """
        if not repo:
            raise bad_request("Missing 'repo' query parameter")
        if not pr:
            raise bad_request("Missing 'pr' query parameter")
        if not (isinstance(pr, str) and pr.isdigit()):
            raise bad_request("Invalid PR number")
        number = pr_number(pr, "pr")
        target = await self.resolve(repo, "repo")
        try:
            view = await self.gh.call(
                ["pr", "view", str(number), "--repo", target.repo_arg,
                 "--json", "number,url,comments,reviews",
                 "--jq", '{t: "pr", number, url}, (.comments[]? | {t: "comment"} + .),'
                 ' (.reviews[]? | {t: "review"} + .)'],
                target.path,
                "gh pr view",
            )
        except NotFound as exc:  # ClosedLoop's words, GitHub's in details
            details = {**exc.details, "github": exc.message}
            raise NotFound(f"PR #{number} not found", code=exc.code, details=details) from None
        comments: list[dict[str, Any]] = []
        seen: set[str] = set()
        head: dict[str, Any] = {}
        for row in view.json_lines():
            kind = row.get("t")
            if kind == "pr":
                head = row
            elif kind == "comment":
                comments.append(_comment(row, row.get("createdAt"), is_review=False))
            elif kind == "review" and (row.get("body") or "").strip():
                comments.append(_comment(row, row.get("submittedAt"), is_review=True, url=""))
        seen.update(c["id"] for c in comments)
        inline = await self.gh.call(
            api_args(f"repos/{target.slug}/pulls/{number}/comments?per_page=100", "--paginate",
                     "--jq", ".[]"),
            target.path,
            "gh api pulls/comments",
        )
        for row in inline.json_lines():
            cid = f"IC_{row.get('id')}"
            if cid in seen:
                continue
            seen.add(cid)
            item = {
                "id": cid,
                "databaseId": row.get("id"),
                "author": (row.get("user") or {}).get("login") or "unknown",
                "body": row.get("body") or "",
                "createdAt": row.get("created_at"),
                "path": row.get("path"),
                "line": row.get("original_line") if row.get("original_line") is not None else row.get("line"),
                "isReview": True,
                "url": row.get("html_url") or "",
            }
            if row.get("in_reply_to_id") is not None:
                item["inReplyToId"] = row["in_reply_to_id"]
            comments.append({k: v for k, v in item.items() if v is not None})
        comments.sort(key=lambda c: _when(c.get("createdAt")), reverse=True)
        return {"comments": comments, "prNumber": head.get("number", number), "prUrl": head.get("url", "")}

    async def reviews(self, owner: Any, repo: Any, number: Any) -> dict[str, Any]:
        """Each author's latest review, the approval and changes-requested counts, the decision."""
        if not (owner and repo and number):
            raise bad_request("owner, repo, and number are required")
        n = pr_number(number, "number")
        target = await self.by_slug(owner, repo)
        res = await self.gh.call(
            ["pr", "view", str(n), "--repo", target.repo_arg, "--json", "reviewDecision,reviews"],
            target.path,
            "gh pr view",
        )
        data = one_json(res)
        latest: dict[str, dict[str, Any]] = {}
        for review in data.get("reviews") or []:
            author = (review.get("author") or {}).get("login") or "unknown"
            mine = {"author": author, "state": review.get("state"), "submittedAt": review.get("submittedAt")}
            if author not in latest or _when(mine["submittedAt"]) > _when(latest[author]["submittedAt"]):
                latest[author] = mine
        reviews = list(latest.values())
        return {
            "reviewDecision": data.get("reviewDecision") or None,
            "reviews": reviews,
            "approvalCount": sum(r["state"] == "APPROVED" for r in reviews),
            "changesRequestedCount": sum(r["state"] == "CHANGES_REQUESTED" for r in reviews),
        }

    async def files(self, repo: Any, pr: Any) -> dict[str, Any]:
        """The changed files' names, every page of them."""
        if not (repo and pr):
            raise bad_request("repo and pr are required")
        number = pr_number(pr, "pr")
        target = await self.resolve(repo, "repo")
        res = await self.gh.call(
            api_args(f"repos/{target.slug}/pulls/{number}/files?per_page=100", "--paginate",
                 "--jq", ".[].filename | tojson"),
            target.path,
            "gh api pulls/files",
        )
        return {"files": [name for name in res.json_lines() if isinstance(name, str)]}

    async def head_sha(self, repo: Any, pr: Any) -> dict[str, Any]:
        if not (repo and pr):
            raise bad_request("repo and pr are required")
        number = pr_number(pr, "pr")
        target = await self.resolve(repo, "repo")
        res = await self.gh.call(
            api_args(f"repos/{target.slug}/pulls/{number}", "--jq", ".head.sha"), target.path, "gh api pulls"
        )
        sha = res.stdout.strip()
        if not sha:
            raise UpstreamFailed("Could not get head SHA", code="gh_bad_output")
        return {"sha": sha}

    # ---- writes -----------------------------------------------------------------------------

    async def reply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A thread reply (``commentId``), a request for changes, or a general PR comment."""
        if not isinstance(body.get("repoPath"), str) or not body["repoPath"].strip():
            raise bad_request("Missing 'repoPath' in request body")
        text = _text(body.get("body"), "body", MAX_BODY)
        if not text:
            raise bad_request("Missing 'body' in request body")
        if body.get("prNumber") in (None, "", 0):
            raise bad_request("prNumber is required")
        number = pr_number(body.get("prNumber"), "prNumber")
        comment_id = body.get("commentId")
        comment = None if comment_id in (None, "", 0) else pr_number(comment_id, "commentId")
        target = await self.resolve(body.get("repoPath"))
        if body.get("requestChanges") is True:
            res = await self.gh.call(
                ["pr", "review", str(number), "--repo", target.repo_arg, "--request-changes",
                 "--body-file", BODY],
                target.path,
                "gh pr review",
                files={BODY.name: text},
            )
            return {"success": True, "message": "Changes requested", "output": res.stdout.strip()}
        if comment is not None:
            res = await self.gh.call(
                api_args(f"repos/{target.slug}/pulls/{number}/comments/{comment}/replies",
                     "--method", "POST", "--input", PAYLOAD),
                target.path,
                "gh api replies",
                files={PAYLOAD.name: json.dumps({"body": text})},
            )
            return {"success": True, "message": "Reply posted successfully", "output": res.stdout.strip()}
        res = await self._general_comment(target, number, text)
        return {"success": True, "message": "Comment posted successfully", "output": res.stdout.strip()}

    async def _general_comment(self, target: Target, number: int, text: str) -> GhResult:
        return await self.gh.call(
            ["pr", "comment", str(number), "--repo", target.repo_arg, "--body-file", BODY],
            target.path,
            "gh pr comment",
            files={BODY.name: text},
        )

    async def inline_comment(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A line comment; if GitHub refuses it, a file-level one; then a general PR comment.

        Only GitHub's refusals (its 422 or 404) fall through to the next form; an unauthenticated or
        missing gh, or a timeout, is the answer at once.
        """
        if not isinstance(body.get("repoPath"), str) or not body["repoPath"].strip():
            raise bad_request("repoPath is required")
        if body.get("prNumber") in (None, "", 0):
            raise bad_request("prNumber is required")
        number = pr_number(body.get("prNumber"), "prNumber")
        text = _text(body.get("body"), "body", MAX_BODY)
        if not text:
            raise bad_request("body is required")
        path = _text(body.get("path"), "path", MAX_PATH)
        line = None if body.get("line") in (None, "", 0) else pr_number(body.get("line"), "line")
        sha = _text(body.get("commitSha"), "commitSha", 64)
        if sha is not None and not _SHA.match(sha):
            raise bad_request("commitSha: must be a hex commit id")
        target = await self.resolve(body.get("repoPath"))
        refused: list[dict[str, Any]] = []
        attempts: list[tuple[str, dict[str, Any]]] = []
        if path and line and sha:
            line_comment = {"body": text, "path": path, "line": line, "commit_id": sha, "side": "RIGHT"}
            attempts.append(("line", line_comment))
        if path and sha:
            file_comment = {"body": text, "path": path, "commit_id": sha, "subject_type": "file"}
            attempts.append(("file", file_comment))
        for kind, payload in attempts:
            try:
                res = await self.gh.call(
                    api_args(f"repos/{target.slug}/pulls/{number}/comments", "--method", "POST",
                         "--input", PAYLOAD),
                    target.path,
                    "gh api pulls/comments",
                    files={PAYLOAD.name: json.dumps(payload)},
                )
            except (Rejected, NotFound) as exc:  # GitHub's refusal: try the next form
                status = exc.details.get("githubStatus")
                refused.append({"kind": kind, "status": status, "error": exc.message})
                continue
            return {"success": True, "output": res.stdout.strip(), "posted": kind, "refused": refused}
        res = await self._general_comment(target, number, text)
        return {"success": True, "output": res.stdout.strip(), "posted": "general", "refused": refused}


def _text(value: Any, name: str, limit: int, *, required: bool = False) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise bad_request(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name}: must be a string")
    if len(value) > limit or "\x00" in value:
        raise bad_request(f"{name}: at most {limit} characters, no NUL")
    return value


def _ref(value: Any, name: str) -> str:
    try:
        return check_ref(value if isinstance(value, str) else "", name)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def _comment(
    row: Mapping[str, Any], created: Any, *, is_review: bool, url: str | None = None
) -> dict[str, Any]:
    return {
        "id": row.get("id"),
        "databaseId": 0,
        "author": (row.get("author") or {}).get("login") or "unknown",
        "body": row.get("body") or "",
        "createdAt": created or "",
        "isReview": is_review,
        "url": (row.get("url") or "") if url is None else url,
    }


def _when(value: Any) -> float:
    if not isinstance(value, str) or not value:
        return float("-inf")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("-inf")
