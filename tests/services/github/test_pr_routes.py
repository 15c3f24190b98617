"""The eight ``git/pr`` routes over real HTTP, driving the real ``gh`` against the GitHub double.

Each test names the ClosedLoop file its requests and answers come from: the desktop server's
``closedloop-ai/closedloop-electron`` ``apps/desktop/src/server/operations/git-pr.ts`` (EL) and
the web app that reads it, ``closedloop-ai/closedloop-ai`` (AI). Every test asserts both what the
route answered and what GitHub (the double) received.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from github_double import HEAD_SHA, OWNER, REPO, GitHubDouble
from pr_support import register

from gateway.http.serve import GatewayHandle

from support import git

PR = "/api/gateway/git/pr"


def gh_kinds(gateway: GatewayHandle) -> set[str]:
    return {r.kind for r in gateway.context.sup.table.records.values()}


# ---- create ------------------------------------------------------------------------------------


async def test_create_pushes_the_ticket_worktree_branch_and_opens_the_pr(
    client: httpx.AsyncClient,
    gateway: GatewayHandle,
    double: GitHubDouble,
    repo: Path,
    origin: Path,
    tmp_path: Path,
) -> None:
    """EL git-pr.ts ``POST /api/gateway/git/pr``; AI ``apps/app/components/engineer/TicketList.tsx``
    sends the ticket's sibling worktree ``<parent>/<repo>-<ticket>`` as ``repoPath``."""
    worktree = tmp_path / "repo-TICKET-7"
    git(repo, "worktree", "add", "-q", "-b", "ticket-7", str(worktree))
    (worktree / "feature.txt").write_text("new\n")
    git(worktree, "add", "-A")
    git(worktree, "commit", "-qm", "feature")

    r = await client.post(
        PR,
        json={
            "repoPath": str(worktree),
            "title": "--draft",
            "body": "--web",
            "ticketUrl": "https://linear.app/t/7",
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "success": True,
        "url": f"https://github.com/{OWNER}/{REPO}/pull/3",
        "number": 3,
        "message": "Created PR #3",
        "created": True,
    }
    # The branch was pushed (to origin's push URL) and tracks origin.
    assert git(origin, "rev-parse", "refs/heads/ticket-7") == git(worktree, "rev-parse", "HEAD")
    assert git(worktree, "rev-parse", "--abbrev-ref", "@{upstream}") == "origin/ticket-7"
    # Title and body are values, never gh flags; the ticket link is appended as ClosedLoop does.
    (created,) = double.graphql("PullRequestCreate")
    given = created.variables["input"]
    assert given["title"] == "--draft" and given["body"] == "--web\n\n---\nLinear: https://linear.app/t/7"
    assert (given["headRefName"], given["baseRefName"], given["draft"]) == ("ticket-7", "main", False)
    assert gh_kinds(gateway) == {"git", "gh"}


async def test_create_answers_the_pr_that_already_exists(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path, origin: Path
) -> None:
    """EL git-pr.ts: gh's "already exists" becomes ``gh pr view`` and "PR #N already exists"."""
    git(repo, "checkout", "-q", "-b", "feature")
    r = await client.post(PR, json={"repoPath": str(repo), "title": "Again", "baseBranch": "main"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "success": True,
        "url": f"https://github.com/{OWNER}/{REPO}/pull/1",
        "number": 1,
        "message": "PR #1 already exists",
        "created": False,
    }
    assert double.graphql("PullRequestCreate") == []
    assert git(origin, "rev-parse", "refs/heads/feature") == git(repo, "rev-parse", "HEAD")


async def test_create_with_nothing_to_propose_is_githubs_422(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path, origin: Path
) -> None:
    """EL git-pr.ts ``parseGhError`` ("No commits between"): GitHub's GraphQL refusal, in its words."""
    git(repo, "checkout", "-q", "-b", "empty")
    double.state.empty_branches.add("empty")
    r = await client.post(PR, json={"repoPath": str(repo), "title": "Nothing"})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "github_unprocessable"
    assert "No commits between main and empty" in r.json()["error"]
    (refused,) = double.graphql("PullRequestCreate")
    assert refused.variables["input"]["headRefName"] == "empty"
    assert git(origin, "rev-parse", "refs/heads/empty") == git(repo, "rev-parse", "HEAD")


async def test_create_refuses_bad_requests_before_anything_runs(
    client: httpx.AsyncClient, gateway: GatewayHandle, double: GitHubDouble, repo: Path
) -> None:
    """EL git-pr.ts: ``repoPath is required``, ``title is required``; a detached HEAD is a 409."""
    for body, message in (
        ({"title": "x"}, "repoPath is required"),
        ({"repoPath": str(repo)}, "title is required"),
        (
            {"repoPath": str(repo), "title": "x", "baseBranch": "--force"},
            "baseBranch: not a valid git ref name",
        ),
    ):
        r = await client.post(PR, json=body)
        assert r.status_code == 400 and r.json() == {"error": message, "code": "invalid_request"}
    bad = await client.post(PR, content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"] == "Invalid JSON body"
    git(repo, "checkout", "-q", "--detach")
    detached = await client.post(PR, json={"repoPath": str(repo), "title": "x"})
    assert detached.status_code == 409 and detached.json()["code"] == "detached_head"
    assert double.calls() == [] and "gh" not in gh_kinds(gateway)


# ---- reads ---------------------------------------------------------------------------------------


async def test_list_open_and_merged(client: httpx.AsyncClient, double: GitHubDouble, repo: Path) -> None:
    """EL git-pr.ts ``GET pr/list?repo&state``; AI ``apps/app/lib/engineer/queries/git.ts``
    ``prListOptions`` reads ``{prs: PRListItem[]}``."""
    r = await client.get(f"{PR}/list", params={"repo": str(repo), "state": "open"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "prs": [
            {
                "number": 1,
                "title": "Add the feature",
                "url": f"https://github.com/{OWNER}/{REPO}/pull/1",
                "author": "alice",
                "state": "OPEN",
                "createdAt": "2026-11-20T10:00:00Z",
                "headRefName": "feature",
            }
        ]
    }
    merged = (await client.get(f"{PR}/list", params={"repo": str(repo), "state": "merged"})).json()
    assert [(p["number"], p["state"], p["author"]) for p in merged["prs"]] == [(2, "MERGED", "bob")]
    asked = [
        (c.variables["state"], c.variables["limit"], c.variables["owner"], c.variables["repo"])
        for c in double.graphql("PullRequestList")
    ]
    assert asked == [(["OPEN"], 50, OWNER, REPO), (["MERGED"], 50, OWNER, REPO)]
    closed = await client.get(f"{PR}/list", params={"repo": str(repo), "state": "closed"})
    assert closed.status_code == 400 and closed.json()["error"] == "state must be 'open' or 'merged'"
    missing = await client.get(f"{PR}/list")
    assert missing.status_code == 400 and missing.json()["error"] == "Missing 'repo' query parameter"


async def test_comments_merge_issue_comments_reviews_and_inline_comments(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path
) -> None:
    """EL git-pr.ts ``GET pr/comments?repo&pr``: ``gh pr view --json number,url,comments,reviews``
    plus every page of ``pulls/N/comments`` as ``IC_<id>`` with ``original_line ?? line``; AI
    ``queries/git.ts`` ``prCommentsOptions`` and ``PRBrowserDialog.tsx`` read ``PRCommentItem``."""
    r = await client.get(f"{PR}/comments", params={"repo": str(repo), "pr": "1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["prNumber"] == 1 and body["prUrl"] == f"https://github.com/{OWNER}/{REPO}/pull/1"
    url = f"https://github.com/{OWNER}/{REPO}/pull/1"
    assert body["comments"] == [  # newest first
        {
            "id": "PRR_r2",
            "databaseId": 0,
            "author": "dave",
            "body": "Ship it",
            "createdAt": "2026-11-21T09:00:00Z",
            "isReview": True,
            "url": "",
        },
        {
            "id": "PRR_r3",
            "databaseId": 0,
            "author": "erin",
            "body": "Please rename",
            "createdAt": "2026-11-20T15:00:00Z",
            "isReview": True,
            "url": "",
        },
        {
            "id": "IC_102",
            "databaseId": 102,
            "author": "alice",
            "body": "Done",
            "createdAt": "2026-11-20T14:30:00Z",
            "path": "src/app.py",
            "line": 4,
            "isReview": True,
            "url": f"{url}#discussion_r102",
            "inReplyToId": 101,
        },
        {
            "id": "IC_101",
            "databaseId": 101,
            "author": "erin",
            "body": "Rename this",
            "createdAt": "2026-11-20T14:00:00Z",
            "path": "src/app.py",
            "line": 3,
            "isReview": True,
            "url": f"{url}#discussion_r101",
        },
        {
            "id": "IC_kwDOissue1",
            "databaseId": 0,
            "author": "carol",
            "body": "Looks promising",
            "createdAt": "2026-11-20T11:00:00Z",
            "isReview": False,
            "url": f"{url}#issuecomment-11",
        },
        {
            "id": "IC_103",
            "databaseId": 103,
            "author": "dave",
            "body": "Nice",
            "createdAt": "2026-11-19T09:00:00Z",
            "path": "README.md",
            "isReview": True,
            "url": f"{url}#discussion_r103",
        },
    ]
    (view,) = double.graphql("PullRequestByNumber")
    assert view.variables == {"owner": OWNER, "repo": REPO, "pr_number": 1}
    pages = [
        c.query.get("page", ["1"])[0] for c in double.calls("GET", f"/repos/{OWNER}/{REPO}/pulls/1/comments")
    ]
    assert pages == ["1", "2"]  # three inline comments, two to a page: both pages were read

    missing = await client.get(f"{PR}/comments", params={"repo": str(repo), "pr": "99"})
    assert missing.status_code == 404 and missing.json()["code"] == "github_not_found"
    assert missing.json()["error"] == "PR #99 not found"
    assert "Could not resolve to a PullRequest" in missing.json()["details"]["github"]
    for pr, message in (("1 --web", "Invalid PR number"), ("", "Missing 'pr' query parameter")):
        bad = await client.get(f"{PR}/comments", params={"repo": str(repo), "pr": pr})
        assert bad.status_code == 400 and bad.json()["error"] == message


async def test_reviews_latest_per_author_counts_and_decision(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path
) -> None:
    """EL git-pr.ts ``GET pr/reviews?owner&repo&number``; AI ``queries/git.ts`` ``prReviewsOptions``
    reads ``{reviewDecision, approvalCount, changesRequestedCount}``."""
    r = await client.get(f"{PR}/reviews", params={"owner": OWNER, "repo": REPO, "number": "1"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "reviewDecision": "CHANGES_REQUESTED",
        "reviews": [
            {"author": "dave", "state": "APPROVED", "submittedAt": "2026-11-21T09:00:00Z"},
            {"author": "erin", "state": "CHANGES_REQUESTED", "submittedAt": "2026-11-20T15:00:00Z"},
            {"author": "frank", "state": "COMMENTED", "submittedAt": "2026-11-20T16:00:00Z"},
        ],
        "approvalCount": 1,
        "changesRequestedCount": 1,
    }
    merged = (await client.get(f"{PR}/reviews", params={"owner": OWNER, "repo": REPO, "number": 2})).json()
    assert merged == {
        "reviewDecision": "APPROVED",
        "reviews": [],
        "approvalCount": 0,
        "changesRequestedCount": 0,
    }
    assert [c.variables["pr_number"] for c in double.graphql("PullRequestByNumber")] == [1, 2]
    # Only the GitHub repository of a registered repository may be asked about.
    other = await client.get(f"{PR}/reviews", params={"owner": "someone", "repo": "else", "number": "1"})
    assert other.status_code == 403 and other.json()["code"] == "repo_not_allowed"
    flag = await client.get(f"{PR}/reviews", params={"owner": "--repo", "repo": REPO, "number": "1"})
    assert flag.status_code == 400
    assert len(double.calls()) == 2


async def test_files_every_page_and_head_sha(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path
) -> None:
    """EL git-pr.ts ``GET pr/files?repo&pr`` (``--paginate``, file names) and ``GET pr/head-sha``;
    AI ``apps/app/components/engineer/PRBrowserDialog.tsx`` reads ``data.files`` and ``data.sha``."""
    r = await client.get(f"{PR}/files", params={"repo": str(repo), "pr": "1"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "files": ["src/app.py", "README.md", "docs/a b.md", "src/util.py", "tests/test_app.py"]
    }
    pages = [
        c.query.get("page", ["1"])[0] for c in double.calls("GET", f"/repos/{OWNER}/{REPO}/pulls/1/files")
    ]
    assert pages == ["1", "2", "3"]
    sha = await client.get(f"{PR}/head-sha", params={"repo": str(repo), "pr": "1"})
    assert sha.status_code == 200 and sha.json() == {"sha": HEAD_SHA}
    assert len(double.calls("GET", f"/repos/{OWNER}/{REPO}/pulls/1")) == 1
    for route in ("files", "head-sha"):
        bad = await client.get(f"{PR}/{route}", params={"repo": str(repo)})
        assert bad.status_code == 400 and bad.json()["error"] == "repo and pr are required"
    gone = await client.get(f"{PR}/head-sha", params={"repo": str(repo), "pr": "42"})
    assert gone.status_code == 404 and gone.json()["code"] == "github_not_found"


# ---- writes --------------------------------------------------------------------------------------


async def test_reply_in_a_thread_as_a_general_comment_and_as_a_change_request(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path
) -> None:
    """EL git-pr.ts ``POST pr/reply``; AI ``apps/app/hooks/engineer/useCommentChat.ts`` (thread
    reply with ``commentId``, else a general comment) and ``lib/engineer/review-findings-api.ts``
    (``requestChanges: true``)."""
    thread = await client.post(
        f"{PR}/reply",
        json={
            "repoPath": str(repo),
            "prNumber": 1,
            "commentId": 101,
            "body": "--fixed in abc",
        },
    )
    assert thread.status_code == 200, thread.text
    assert thread.json()["success"] is True and thread.json()["message"] == "Reply posted successfully"
    (posted,) = double.calls("POST", f"/repos/{OWNER}/{REPO}/pulls/1/comments/101/replies")
    assert posted.body == {"body": "--fixed in abc"}

    general = await client.post(
        f"{PR}/reply", json={"repoPath": str(repo), "prNumber": "1", "body": "@carol thanks"}
    )
    assert general.status_code == 200 and general.json()["message"] == "Comment posted successfully"
    (comment,) = double.graphql("CommentCreate")
    assert comment.variables["input"] == {"subjectId": "PR_node1", "body": "@carol thanks"}
    assert general.json()["output"].endswith("#issuecomment-5002")

    decline = await client.post(
        f"{PR}/reply",
        json={
            "repoPath": str(repo),
            "prNumber": 1,
            "body": "Decline",
            "requestChanges": True,
        },
    )
    assert decline.status_code == 200 and decline.json()["message"] == "Changes requested"
    (review,) = double.graphql("PullRequestReviewAdd")
    assert review.variables["input"] == {
        "pullRequestId": "PR_node1",
        "body": "Decline",
        "event": "REQUEST_CHANGES",
    }

    for body, message in (
        ({"prNumber": 1, "body": "x"}, "Missing 'repoPath' in request body"),
        ({"repoPath": str(repo), "prNumber": 1}, "Missing 'body' in request body"),
        ({"repoPath": str(repo), "body": "x"}, "prNumber is required"),
        ({"repoPath": str(repo), "body": "x", "prNumber": "1 --web"}, "prNumber: must be a positive integer"),
        (
            {"repoPath": str(repo), "body": "x", "prNumber": 1, "commentId": "-5"},
            "commentId: must be a positive integer",
        ),
    ):
        bad = await client.post(f"{PR}/reply", json=body)
        assert bad.status_code == 400 and bad.json()["error"] == message, bad.text


async def test_a_github_422_comes_back_with_githubs_message(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path
) -> None:
    """EL git-pr.ts ``POST pr/reply`` with a ``commentId`` GitHub refuses (a reply to a reply)."""
    r = await client.post(
        f"{PR}/reply", json={"repoPath": str(repo), "prNumber": 1, "commentId": 102, "body": "x"}
    )
    assert r.status_code == 422, r.text
    assert r.json() == {
        "error": "Validation Failed: in_reply_to_id cannot be a reply; reply to the thread's first comment",
        "code": "github_unprocessable",
        "details": {"exitCode": 1, "githubStatus": 422},
    }
    (refused,) = double.calls("POST", f"/repos/{OWNER}/{REPO}/pulls/1/comments/102/replies")
    assert refused.status == 422


async def test_inline_comment_on_a_line_of_the_diff(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path
) -> None:
    """EL git-pr.ts ``POST pr/inline-comment``: ``{body, path, line, commit_id, side: "RIGHT"}``;
    AI ``apps/app/hooks/engineer/use-review-execution.ts`` sends ``{repoPath, prNumber, body,
    path, line, commitSha}``."""
    r = await client.post(
        f"{PR}/inline-comment",
        json={
            "repoPath": str(repo),
            "prNumber": 1,
            "body": "Off by one?",
            "path": "src/app.py",
            "line": 5,
            "commitSha": HEAD_SHA,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True and r.json()["posted"] == "line" and r.json()["refused"] == []
    (posted,) = double.calls("POST", f"/repos/{OWNER}/{REPO}/pulls/1/comments")
    assert posted.body == {
        "body": "Off by one?",
        "path": "src/app.py",
        "line": 5,
        "commit_id": HEAD_SHA,
        "side": "RIGHT",
    }
    assert posted.status == 201


async def test_inline_comment_falls_back_to_the_file_when_the_line_is_not_in_the_diff(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path
) -> None:
    """EL git-pr.ts ``POST pr/inline-comment``: a refused line comment becomes a file-level one
    (``subject_type: "file"``)."""
    r = await client.post(
        f"{PR}/inline-comment",
        json={
            "repoPath": str(repo),
            "prNumber": "1",
            "body": "Whole file",
            "path": "src/util.py",
            "line": 99,
            "commitSha": HEAD_SHA,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["posted"] == "file"
    assert r.json()["refused"] == [
        {
            "kind": "line",
            "status": 422,
            "error": "Validation Failed: pull_request_review_thread.line must be part of the diff",
        }
    ]
    line, whole = double.calls("POST", f"/repos/{OWNER}/{REPO}/pulls/1/comments")
    assert (line.status, line.body["line"]) == (422, 99)
    assert whole.status == 201
    assert whole.body == {
        "body": "Whole file",
        "path": "src/util.py",
        "commit_id": HEAD_SHA,
        "subject_type": "file",
    }
    assert double.graphql("CommentCreate") == []


async def test_inline_comment_falls_back_to_a_general_comment(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path
) -> None:
    """EL git-pr.ts ``POST pr/inline-comment``: when GitHub refuses the line and the file, a general
    PR comment (``gh pr comment``); with no path or commit it is general at once."""
    r = await client.post(
        f"{PR}/inline-comment",
        json={
            "repoPath": str(repo),
            "prNumber": 1,
            "body": "Not in this PR",
            "path": "elsewhere.py",
            "line": 3,
            "commitSha": HEAD_SHA,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["posted"] == "general"
    assert [x["kind"] for x in r.json()["refused"]] == ["line", "file"]
    assert all(c.status == 422 for c in double.calls("POST", f"/repos/{OWNER}/{REPO}/pulls/1/comments"))
    (general,) = double.graphql("CommentCreate")
    assert general.variables["input"] == {"subjectId": "PR_node1", "body": "Not in this PR"}

    double.clear()
    plain = await client.post(
        f"{PR}/inline-comment", json={"repoPath": str(repo), "prNumber": 1, "body": "General"}
    )
    assert plain.status_code == 200 and plain.json()["posted"] == "general" and plain.json()["refused"] == []
    assert double.calls("POST", f"/repos/{OWNER}/{REPO}/pulls/1/comments") == []
    assert [c.variables["input"]["body"] for c in double.graphql("CommentCreate")] == ["General"]

    bad = await client.post(
        f"{PR}/inline-comment",
        json={
            "repoPath": str(repo),
            "prNumber": 1,
            "body": "x",
            "path": "a",
            "commitSha": "--output=/tmp/x",
        },
    )
    assert bad.status_code == 400 and bad.json()["error"] == "commitSha: must be a hex commit id"


# ---- refusals --------------------------------------------------------------------------------------


async def test_an_unregistered_repository_is_403_and_a_non_github_remote_400(
    client: httpx.AsyncClient, gateway: GatewayHandle, double: GitHubDouble, repo: Path, tmp_path: Path
) -> None:
    """EL git-pr.ts ``assertRepoAllowed`` (403 ``directory not allowed``) and ``getRepoSlug``."""
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    git(stranger, "init", "-q", "-b", "main")
    git(stranger, "remote", "add", "origin", f"https://github.com/{OWNER}/{REPO}.git")
    gone = tmp_path / "gone"  # a registered repository whose folder was deleted is skipped
    gone.mkdir()
    await register(gateway, gone, "r3")
    gone.rmdir()
    for where in (str(stranger), f"{repo}/../stranger"):
        r = await client.get(f"{PR}/list", params={"repo": where})
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "repo_not_allowed" and r.json()["error"].startswith(
            "directory not allowed"
        )
    post = await client.post(f"{PR}/reply", json={"repoPath": str(stranger), "prNumber": 1, "body": "x"})
    assert post.status_code == 403

    gitlab = tmp_path / "gitlab"
    gitlab.mkdir()
    git(gitlab, "init", "-q", "-b", "main")
    git(gitlab, "remote", "add", "origin", "https://gitlab.com/OWNER/REPO.git")
    await register(gateway, gitlab, "r2")
    r = await client.get(f"{PR}/list", params={"repo": str(gitlab)})
    assert r.status_code == 400 and r.json()["code"] == "not_github"
    assert "https://gitlab.com/OWNER/REPO.git" in r.json()["error"]
    relative = await client.get(f"{PR}/list", params={"repo": "repo"})
    assert relative.status_code == 400
    missing = await client.get(f"{PR}/reviews", params={"owner": "gone", "repo": "gone", "number": "1"})
    assert missing.status_code == 403
    assert double.calls() == [] and "gh" not in gh_kinds(gateway)


async def test_gh_missing_is_503_with_how_to_install_it(
    client: httpx.AsyncClient,
    gateway: GatewayHandle,
    gh_path: str,
    double: GitHubDouble,
    repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EL git-pr.ts ``resolveBinaryFromLoginShell("gh", getOverrideBinaryPaths()?.gh)``: here the
    gateway finds no ``gh`` (not on PATH, no ``settings/binary-paths`` override), then is given
    its path."""
    bin_dir = tmp_path / "bin-without-gh"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git") or "/usr/bin/git")  # git stays, gh is gone
    monkeypatch.setenv("PATH", str(bin_dir))
    r = await client.get(f"{PR}/files", params={"repo": str(repo), "pr": "1"})
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "gh_missing"
    assert "apt-get install gh" in r.json()["error"] and "settings/binary-paths" in r.json()["error"]
    assert r.json()["details"]["binary"] == "gh"
    assert double.calls() == []

    # Setting its path is enough: the next call runs that gh.
    elsewhere = tmp_path / "tools" / "gh"
    elsewhere.parent.mkdir()
    elsewhere.symlink_to(gh_path)
    patched = await client.patch("/api/gateway/settings/binary-paths", json={"gh": str(elsewhere)})
    assert patched.status_code == 200, patched.text
    r = await client.get(f"{PR}/files", params={"repo": str(repo), "pr": "1"})
    assert r.status_code == 200 and len(r.json()["files"]) == 5, r.text
    ran = {rec.argv[0] for rec in gateway.context.sup.table.records.values() if rec.kind == "gh"}
    assert ran == {str(elsewhere)}


async def test_gh_unauthenticated_says_to_run_gh_auth_login_or_set_gh_token(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EL git-pr.ts ``parseGhError`` ("not logged in" -> "Run 'gh auth login'"): no token at all
    (gh exits 4 without asking GitHub), then a token GitHub refuses (401)."""
    monkeypatch.delenv("GH_TOKEN")
    r = await client.get(f"{PR}/head-sha", params={"repo": str(repo), "pr": "1"})
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "gh_unauthenticated" and r.json()["details"]["exitCode"] == 4
    assert "gh auth login" in r.json()["error"] and "GH_TOKEN" in r.json()["error"]
    assert double.calls() == []

    monkeypatch.setenv("GH_TOKEN", "revoked")
    r = await client.get(f"{PR}/list", params={"repo": str(repo)})
    assert r.status_code == 503 and r.json()["code"] == "gh_unauthenticated", r.text
    assert [c.status for c in double.calls()] == [401]


async def test_a_comment_longer_than_a_log_line_comes_back_whole(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path
) -> None:
    """EL git-pr.ts ``GET pr/comments``: gh prints each comment on one line; the process log
    cuts lines at 256 KiB, the runner glues them back. A 65,536-character body (GitHub's limit)
    of 4-byte characters is past that."""
    long_body = "\U0001f600" * 65536
    double.state.issue_comments[1].append({
        "id": "IC_kwDOlong", "author": "gina", "body": long_body, "createdAt": "2026-11-22T08:00:00Z",
        "url": f"https://github.com/{OWNER}/{REPO}/pull/1#issuecomment-12",
    })  # fmt: skip
    r = await client.get(f"{PR}/comments", params={"repo": str(repo), "pr": "1"})
    assert r.status_code == 200, r.text
    first = r.json()["comments"][0]
    assert first["id"] == "IC_kwDOlong" and first["body"] == long_body


async def test_the_family_is_served_and_documented(client: httpx.AsyncClient) -> None:
    """No ``git/pr`` route is a 501 stub any more; each is in the OpenAPI document under ``git_pr``."""
    doc = (await client.get("/api/gateway/openapi.json")).json()
    for path, method in (
        ("", "post"), ("/list", "get"), ("/comments", "get"), ("/reviews", "get"), ("/reply", "post"),
        ("/files", "get"), ("/head-sha", "get"), ("/inline-comment", "post"),
    ):  # fmt: skip
        op = doc["paths"][f"{PR}{path}"][method]
        assert "git_pr" in op["tags"] and "not-implemented" not in op["tags"], path
        assert {"200", "403", "503"} <= set(op["responses"]), path
    comments = doc["paths"][f"{PR}/comments"]["get"]
    assert {p["name"] for p in comments["parameters"]} == {"repo", "pr"}


async def test_gh_host_in_the_environment_cannot_redirect_the_calls(
    client: httpx.AsyncClient, double: GitHubDouble, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EL git-pr.ts ``getRepoSlug`` (a github.com remote): gh is told the host (``--repo
    github.com/o/r``, ``gh api --hostname github.com``) whatever ``GH_HOST`` says; the double
    tunnels only api.github.com."""
    monkeypatch.setenv("GH_HOST", "ghe.example.invalid")
    listed = await client.get(f"{PR}/list", params={"repo": str(repo)})
    assert listed.status_code == 200 and [p["number"] for p in listed.json()["prs"]] == [1], listed.text
    sha = await client.get(f"{PR}/head-sha", params={"repo": str(repo), "pr": "1"})
    assert sha.status_code == 200 and sha.json() == {"sha": HEAD_SHA}, sha.text
    assert [(c.method, c.path) for c in double.calls()] == [
        ("POST", "/graphql"), ("GET", f"/repos/{OWNER}/{REPO}/pulls/1"),
    ]  # fmt: skip
