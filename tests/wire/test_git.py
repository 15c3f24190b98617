"""The git family as ClosedLoop's web app calls it, on a real repository with an origin remote.

Derived from ``closedloop-ai/closedloop-ai``: ``apps/app/lib/git/queries.ts`` (status,
branch-diff, diff; at 108ac018), ``apps/app/lib/engineer/queries/git.ts`` (branches),
``apps/app/lib/engineer/queries/repo-path.ts``, ``apps/app/components/engineer/TicketList.tsx``
(worktree cleanup and removal), ``apps/app/app/(authenticated)/build/[id]/branch-view-container.tsx``
(branch-worktree), ``apps/app/hooks/engineer/use-github-user.ts``; the server side in
``apps/desktop/src/server/operations/git-action.ts``, ``git-diff.ts``, ``git-branches.ts``,
``git-worktree.ts``, ``git-branch-worktree.ts``, ``git-repo-path.ts``, ``git-helpers.ts``.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from wire_support import TICKET, World

from support import git

JSON = {"Content-Type": "application/json"}


async def test_status_of_the_ticket_worktree(web: httpx.AsyncClient, world: World) -> None:
    """git/queries.ts ``gitStatusOptions``: ``{action: "status", repoPath}``, reads ``files``."""
    wt = world.worktree
    (wt / "README.md").write_text("changed\n")
    (wt / "new file.txt").write_text("new\n")
    (wt / "src" / "app.ts").unlink()
    git(wt, "add", "src/app.ts")
    answer = await web.post("/api/gateway/git", headers=JSON, json={"action": "status", "repoPath": str(wt)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["currentBranch"] == f"symphony/{TICKET}" and body["hasChanges"] is True
    files = body["files"]
    assert files["modified"] == ["README.md"]  # real names: no first-line trim bug
    assert files["created"] == ["new file.txt"]
    assert files["deleted"] == ["src/app.ts"] and files["staged"] == ["src/app.ts"]


async def test_branch_diff_against_origin(web: httpx.AsyncClient, world: World) -> None:
    """git/queries.ts ``gitBranchDiffOptions``: ``{action: "branch-diff", repoPath}`` (base "main")."""
    git(world.repo, "checkout", "-q", world.feature)
    answer = await web.post(
        "/api/gateway/git", headers=JSON, json={"action": "branch-diff", "repoPath": str(world.repo)}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "baseBranch": "main",
        "currentBranch": world.feature,
        "files": {"modified": [], "created": ["src/login.ts"], "deleted": []},
        "totalChanges": 1,
    }


async def test_commit_push_sync_status(web: httpx.AsyncClient, world: World) -> None:
    """git-action.ts ``commit``/``push``/``sync-status``."""
    wt = world.worktree
    (wt / "feature.txt").write_text("x\n")
    committed = await web.post(
        "/api/gateway/git", json={"action": "commit", "repoPath": str(wt), "message": "add x"}
    )
    assert committed.status_code == 200, committed.text
    body = committed.json()
    assert body["success"] is True and body["message"] == "Committed changes"
    assert git(wt, "rev-parse", "HEAD").startswith(body["commit"])
    pushed = await web.post("/api/gateway/git", json={"action": "push", "repoPath": str(wt)})
    assert pushed.status_code == 200 and pushed.json()["pushed"] is True
    assert git(world.origin_remote, "rev-parse", f"refs/heads/symphony/{TICKET}") == git(
        wt, "rev-parse", "HEAD"
    )
    sync = await web.post("/api/gateway/git", json={"action": "sync-status", "repoPath": str(world.repo)})
    assert sync.status_code == 200
    assert sync.json() == {"isUpToDate": True, "behindBy": 0, "aheadBy": 0,
                           "currentBranch": "main", "trackingBranch": "origin/main"}  # fmt: skip


async def test_branch_action(web: httpx.AsyncClient, world: World) -> None:
    answer = await web.post("/api/gateway/git", json={"action": "branch", "repoPath": str(world.worktree),
                                                      "branchName": "fix me"})  # fmt: skip
    assert answer.status_code == 200
    assert answer.json() == {
        "success": True,
        "branchName": "fix-me",
        "message": "Switched to branch 'fix-me'",
    }
    missing = await web.post("/api/gateway/git", json={"action": "branch", "repoPath": str(world.worktree)})
    assert (
        missing.status_code == 400 and missing.json()["error"] == "branchName is required for branch action"
    )


async def test_git_errors(web: httpx.AsyncClient, world: World, tmp_path: Path) -> None:
    no_path = await web.post("/api/gateway/git", json={"action": "status"})
    assert no_path.status_code == 400 and no_path.json()["error"] == "repoPath is required"
    bad = await web.post("/api/gateway/git", json={"action": "rebase", "repoPath": str(world.repo)})
    assert bad.status_code == 400 and bad.json()["error"] == "Invalid action"
    outside = await web.post("/api/gateway/git", json={"action": "status", "repoPath": str(tmp_path)})
    assert outside.status_code == 403
    body = outside.json()
    assert body["error"] == "directory not allowed" and body["code"] == "REPO_NOT_ALLOWED"
    assert body["details"]["category"] == "repo_not_allowed"
    no_msg = await web.post("/api/gateway/git", json={"action": "commit", "repoPath": str(world.repo)})
    assert no_msg.status_code == 400 and no_msg.json()["error"] == "message is required for commit action"


async def test_path_escapes_are_refused(web: httpx.AsyncClient, world: World, tmp_path: Path) -> None:
    """Ours: a path must be a registered repo or one of its worktrees, symlinks resolved."""
    outside = tmp_path / "outside"
    outside.mkdir()
    git(outside, "init", "-q")
    os.symlink(outside, world.repo / "escape")
    for raw in (str(world.repo / "escape"), str(world.repo) + "/../../..", str(outside)):
        answer = await web.post("/api/gateway/git", json={"action": "status", "repoPath": raw})
        assert answer.status_code == 403, raw
    diff = await web.post(
        "/api/gateway/git/diff", json={"filePath": "../outside/x", "repoPath": str(world.repo)}
    )
    assert diff.status_code == 403
    (world.repo / "link.txt").symlink_to("/etc/passwd")
    leak = await web.post("/api/gateway/git/diff", json={"filePath": "link.txt", "repoPath": str(world.repo)})
    assert leak.status_code == 403


async def test_file_diff_working_and_branch(web: httpx.AsyncClient, world: World) -> None:
    """git/queries.ts ``gitDiffOptions``: ``{filePath, repoPath}`` and ``+ baseBranch`` in branch mode."""
    wt = world.worktree
    (wt / "README.md").write_text("hello\nworld\n")
    working = await web.post(
        "/api/gateway/git/diff", headers=JSON, json={"filePath": "README.md", "repoPath": str(wt)}
    )
    assert working.status_code == 200, working.text
    assert working.json() == {
        "filePath": "README.md", "oldContent": "hello\n", "newContent": "hello\nworld\n",
        "isNew": False, "isDeleted": False,
    }  # fmt: skip
    clean = await web.post("/api/gateway/git/diff", json={"filePath": "src/app.ts", "repoPath": str(wt)})
    assert clean.status_code == 400 and clean.json()["error"] == "File has no changes"
    git(world.repo, "checkout", "-q", world.feature)
    asked = {"filePath": "src/login.ts", "repoPath": str(world.repo), "baseBranch": "main"}
    branch = await web.post("/api/gateway/git/diff", json=asked)
    assert branch.json()["isNew"] is True and branch.json()["oldContent"] == ""
    assert branch.json()["newContent"] == "export const login = true;\n"


async def test_branches(web: httpx.AsyncClient, world: World) -> None:
    """queries/git.ts ``branchesOptions``: ``?repo=``; reads defaultBranch, worktrees, branches."""
    answer = await web.get(f"/api/gateway/git/branches?repo={world.repo}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["defaultBranch"] == "main"
    assert body["worktrees"] == [
        {"path": str(world.worktree), "branch": f"symphony/{TICKET}", "ticketId": TICKET}
    ]
    names = [(b["name"], b["isRemote"]) for b in body["branches"]]
    assert names[0] == ("main", False)
    assert (world.feature, False) in names and (f"symphony/{TICKET}", False) in names
    assert all(n != "origin" for n, _ in names)


async def test_repo_path_and_branch_worktree(web: httpx.AsyncClient, world: World) -> None:
    """queries/repo-path.ts and branch-view-container.tsx, by ``owner/repo`` from the origin URL."""
    full_name = f"{world.origin_remote.parent.name}/origin"  # ".../<tmp>/origin.git"
    found = await web.get("/api/gateway/git/repo-path", params={"repoFullName": full_name})
    assert found.status_code == 200 and found.json()["path"] == str(world.repo)
    unknown = await web.get("/api/gateway/git/repo-path", params={"repoFullName": "acme/none"})
    assert unknown.status_code == 200 and unknown.json()["path"] is None
    params = {"repoFullName": full_name, "headBranch": f"symphony/{TICKET}", "prNumber": "7"}
    branch = await web.get("/api/gateway/git/branch-worktree", params=params)
    assert branch.json() == {"path": str(world.worktree), "repoPath": str(world.repo)}
    none = await web.get(
        "/api/gateway/git/branch-worktree", params={"repoFullName": full_name, "headBranch": "nope"}
    )
    assert none.json() == {"path": None, "repoPath": str(world.repo)}


async def test_worktree_remove_and_cleanup(web: httpx.AsyncClient, world: World) -> None:
    """TicketList.tsx ``removeWorktree`` (DELETE ``{worktreePath, force}``) and the hourly
    ``POST git/worktree`` cleanup."""
    (world.worktree / "dirty.txt").write_text("x")
    dirty = await web.request("DELETE", "/api/gateway/git/worktree", headers=JSON,
                              json={"worktreePath": str(world.worktree), "force": False})  # fmt: skip
    assert dirty.status_code == 409 and dirty.json()["hasChanges"] is True
    forced = await web.request(
        "DELETE", "/api/gateway/git/worktree", json={"worktreePath": str(world.worktree), "force": True}
    )
    assert forced.status_code == 200 and forced.json()["success"] is True
    assert not world.worktree.exists()
    gone = await web.request(
        "DELETE", "/api/gateway/git/worktree", json={"worktreePath": str(world.worktree)}
    )
    assert gone.json() == {"success": True, "message": "Worktree does not exist"}
    repo_itself = await web.request(
        "DELETE", "/api/gateway/git/worktree", json={"worktreePath": str(world.repo)}
    )
    assert repo_itself.status_code == 403
    cleanup = await web.post("/api/gateway/git/worktree")
    assert cleanup.status_code == 200 and set(cleanup.json()) == {"removed", "kept", "errors"}


async def test_pr_worktree_cleanup_removes_merged(web: httpx.AsyncClient, world: World) -> None:
    """git-worktree.ts POST: a ``*-pr-N`` worktree whose branch is gone from origin is removed."""
    pr_dir = world.repo.parent / "proj-pr-12"
    git(world.repo, "worktree", "add", "-q", "-b", "pr-12-branch", str(pr_dir))
    answer = await web.post("/api/gateway/git/worktree")
    assert answer.status_code == 200
    assert answer.json()["removed"] == [str(pr_dir)] and not pr_dir.exists()
