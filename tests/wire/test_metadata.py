"""Metadata as ClosedLoop's web app reads it: health-check, version, repos, binary paths.

Derived from ``closedloop-ai/closedloop-ai``: ``apps/app/lib/engineer/queries/health-check.ts``
(the zod schema of the answer), ``apps/desktop/src/server/operations/health-check.ts``,
``.../metadata-routes.ts`` (version), ``apps/app/lib/engineer/queries/repos.ts`` and
``apps/app/lib/git/repos.ts`` (repos), ``.../operations/repos-config.ts``,
``.../operations/binary-paths.ts``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from wire_support import World

from support import init_repo

CHECK_KEYS = {"id", "label", "required", "passed"}


async def test_health_check_as_the_web_app_reads_it(web: httpx.AsyncClient) -> None:
    """queries/health-check.ts ``buildHealthCheckRequest`` + ``healthCheckResponseSchema``."""
    answer = await web.get(
        "/api/gateway/health-check?expectedMcpUrl=https%3A%2F%2Fmcp.closedloop.ai%2Fmcp&latestVersion=0.0.1"
    )
    assert answer.status_code == 200
    body = answer.json()
    assert isinstance(body["allRequiredPassed"], bool)
    ids = set()
    for check in body["checks"]:
        assert set(check) >= CHECK_KEYS
        assert isinstance(check["id"], str) and check["id"] and isinstance(check["label"], str)
        assert isinstance(check["required"], bool) and isinstance(check["passed"], bool)
        for key in ("version", "error", "remediation"):
            assert key not in check or isinstance(check[key], str)
        ids.add(check["id"])
    assert {"git", "claude-cli", "codex", "python3", "database", "app-version"} <= ids
    assert body["allRequiredPassed"] == all(c["passed"] for c in body["checks"] if c["required"])
    for provider in ("claude", "codex"):
        mcp = body["mcpServers"][provider]
        assert isinstance(mcp["available"], bool) and isinstance(mcp["checkedAt"], str)
        assert "serverName" in mcp and "matchedUrl" in mcp


async def test_version(web: httpx.AsyncClient) -> None:
    """metadata-routes.ts ``/version``; VersionBadge reads ``version``, ChangelogDialog ``commits``."""
    body = (await web.get("/api/gateway/version")).json()
    assert isinstance(body["version"], str) and body["version"]
    for commit in body["commits"]:
        assert {"hash", "shortHash", "subject", "body", "author", "date", "relativeDate"} <= set(commit)


async def test_repos_add_list_settings_remove(web: httpx.AsyncClient, home: Path, world: World) -> None:
    """queries/repos.ts ``addRepo``/``removeRepo``/``updateRepoSettings``; git/repos.ts ``reposOptions``."""
    other = home / "work" / "other"
    other.mkdir()
    (other / "a.txt").write_text("a\n")
    init_repo(other)
    added = await web.post("/api/gateway/repos", headers={"Content-Type": "application/json"},
                           json={"path": str(other)})  # fmt: skip
    assert added.status_code == 200
    assert added.json()["success"] is True and added.json()["repo"]["path"] == "~/work/other"
    assert isinstance(added.json()["repo"]["addedAt"], str)
    again = await web.post("/api/gateway/repos", json={"path": "~/work/other"})
    assert again.status_code == 400 and again.json()["error"] == "Repository already configured"
    missing = await web.post("/api/gateway/repos", json={"path": str(home / "nope")})
    assert missing.status_code == 400 and missing.json()["error"] == "Path does not exist"

    patched = await web.patch("/api/gateway/repos", json={"worktreeParentDir": str(home / "trees"),
                                                          "worktreeParentDirConfirmed": True})  # fmt: skip
    assert patched.status_code == 200 and patched.json() == {"success": True}
    nothing = await web.patch("/api/gateway/repos", json={})
    assert nothing.status_code == 400 and nothing.json()["error"] == "No settings to update"

    listed = (await web.get("/api/gateway/repos")).json()
    paths = [r["path"] for r in listed["repos"]]
    assert paths == [world.repo_display, "~/work/other"]
    assert listed["settings"] == {
        "worktreeParentDir": str(home / "trees"),
        "worktreeParentDirConfirmed": True,
    }

    removed = await web.delete(f"/api/gateway/repos?path={httpx.QueryParams({'p': '~/work/other'})['p']}")
    assert removed.status_code == 200 and removed.json() == {"success": True}
    gone = await web.delete("/api/gateway/repos", params={"path": "~/work/other"})
    assert gone.status_code == 400 and gone.json()["error"] == "Repository not found"
    assert [r["path"] for r in (await web.get("/api/gateway/repos")).json()["repos"]] == [world.repo_display]


async def test_worktree_parent_dir_moves_new_worktrees(web: httpx.AsyncClient, relay: httpx.AsyncClient,
                                                       home: Path, world: World) -> None:  # fmt: skip
    """git/worktree.ts ``getWorktreePath``: ``{worktreeParentDir}/{repoName}-{ticketId}``."""
    trees = home / "trees"
    await web.patch(
        "/api/gateway/repos", json={"worktreeParentDir": "~/trees", "worktreeParentDirConfirmed": True}
    )
    made = await relay.post(
        "/api/gateway/git/worktree", json={"repoPath": str(world.repo), "ticketId": "ENG-7"}
    )
    assert made.status_code in (200, 201), made.text
    assert made.json()["path"] == str(trees / "proj-ENG-7")
    assert (trees / "proj-ENG-7" / "README.md").is_file()


async def test_binary_paths(web: httpx.AsyncClient) -> None:
    """operations/binary-paths.ts: ``{binaryPaths}``; PATCH ``{key: path|null}``."""
    body = (await web.get("/api/gateway/settings/binary-paths")).json()
    assert body["binaryPaths"] == {}
    git = "/usr/bin/git"
    set_ = await web.patch("/api/gateway/settings/binary-paths", json={"git": git})
    assert set_.status_code == 200 and set_.json()["binaryPaths"] == {"git": git}
    unknown = await web.patch("/api/gateway/settings/binary-paths", json={"ls": "/bin/ls"})
    assert unknown.status_code == 400 and unknown.json()["error"] == "unknown key: ls"
    empty = await web.patch("/api/gateway/settings/binary-paths", json={"git": " "})
    assert empty.status_code == 400 and empty.json()["error"] == "value for git must not be empty"
    cleared = await web.patch("/api/gateway/settings/binary-paths", json={"git": None})
    assert cleared.status_code == 200 and cleared.json()["binaryPaths"] == {}


async def test_symphony_routes_find_the_worktree_git_made_under_worktree_parent_dir(
    web: httpx.AsyncClient, relay: httpx.AsyncClient, home: Path, world: World
) -> None:
    """git/worktree.ts ``getWorktreePath`` and symphony-utils.ts ``resolveWorktreeDir`` name the
    same folder: a ticket's chat history (symphony-chat-history.ts) lands in the worktree that
    ``git/worktree`` made under ``worktreeParentDir``, not beside the repository."""
    await web.patch(
        "/api/gateway/repos", json={"worktreeParentDir": "~/trees", "worktreeParentDirConfirmed": True}
    )
    made = await relay.post(
        "/api/gateway/git/worktree", json={"repoPath": str(world.repo), "ticketId": "ENG-8"}
    )
    assert made.status_code in (200, 201), made.text
    tree = home / "trees" / "proj-ENG-8"
    message = {"id": "m1", "role": "user", "content": "hi", "timestamp": "2026-01-01T00:00:00.000Z"}
    saved = await relay.post(
        "/api/gateway/symphony/chat-history/ENG-8",
        params={"repo": str(world.repo), "provider": "claude"},
        json={"message": message},
    )
    assert saved.status_code == 200, saved.text
    assert (tree / ".closedloop-ai" / "work").is_dir()
    assert not (world.repo.parent / "proj-ENG-8").exists()
