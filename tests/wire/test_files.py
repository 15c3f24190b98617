"""The filesystem family as ClosedLoop's web app calls it.

Derived from ``closedloop-ai/closedloop-ai``: ``apps/app/lib/engineer/queries/files.ts``
(directories, file search), ``apps/app/components/engineer/TicketList.tsx`` (work-directory; at
108ac018), ``apps/app/components/engineer/ClosedLoopChat.tsx`` (upload, attachment URLs),
``apps/app/components/engineer/run-viewer/RunViewerDialog.tsx`` (run-viewer-extract); the server
side in ``apps/desktop/src/server/operations/filesystem-directories.ts``, ``filesystem-search.ts``,
``metadata-routes.ts``, ``symphony-upload.ts``, ``symphony-attachments.ts``, ``run-viewer-extract.ts``.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from urllib.parse import quote

import httpx
import trio
from wire_support import TICKET, World

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def test_directories(web: httpx.AsyncClient, world: World, home: Path) -> None:
    """files.ts ``directoriesOptions``: ``?path=``; reads ``directories[]``."""
    (home / "work" / "plain").mkdir()
    (home / "work" / ".hidden").mkdir()
    answer = await web.get(f"/api/gateway/directories?{httpx.QueryParams({'path': '~/work'})}")
    assert answer.status_code == 200, answer.text
    dirs = answer.json()["directories"]
    assert [d["name"] for d in dirs] == ["proj", f"proj-{TICKET}", "plain"]  # git repos first
    assert dirs[0] == {"name": "proj", "path": "~/work/proj", "isDirectory": True, "isGitRepo": True}
    missing = await web.get("/api/gateway/directories", params={"path": str(home / "nope")})
    assert missing.status_code == 200 and missing.json()["directories"] == []
    default = await web.get("/api/gateway/directories")
    assert [d["name"] for d in default.json()["directories"]] == ["work"]
    outside = await web.get("/api/gateway/directories", params={"path": "/etc"})
    assert outside.status_code == 403 and outside.json()["error"] == "directory not allowed"
    # A name longer than the file system allows is the request's fault: 400, never a 500.
    too_long = await web.get("/api/gateway/directories", params={"path": str(home / ("a" * 300))})
    assert too_long.status_code == 400 and "name too long" in too_long.json()["error"]


async def test_file_search_in_worktree_and_base(web: httpx.AsyncClient, world: World) -> None:
    """files.ts ``fileSearchOptions`` (``repo, ticket, query``) and ``fileSearchBaseOptions``
    (``repo, query, base=true``)."""
    (world.worktree / "src" / "app.test.ts").write_text("x")
    params = httpx.QueryParams({"repo": world.repo_display, "ticket": TICKET, "query": "app"})
    body = (await web.get(f"/api/gateway/files/search?{params}")).json()
    assert body == {"files": ["src/app.ts", "src/app.test.ts"], "truncated": False}
    asked = {"repo": str(world.repo), "query": "LOGIN", "base": "true"}
    base = (await web.get("/api/gateway/files/search", params=asked)).json()
    assert base == {"files": [], "truncated": False}  # login.ts is only on the feature branch
    readme = (
        await web.get(
            "/api/gateway/files/search", params={"repo": str(world.repo), "query": "read", "base": "true"}
        )
    ).json()
    assert readme["files"] == ["README.md"]
    no_ticket = await web.get("/api/gateway/files/search", params={"repo": str(world.repo), "query": "x"})
    assert no_ticket.status_code == 400 and no_ticket.json()["error"] == "ticket query parameter is required"
    no_wt = (
        await web.get(
            "/api/gateway/files/search", params={"repo": str(world.repo), "ticket": "ENG-404", "query": "a"}
        )
    ).json()
    assert no_wt == {"files": [], "truncated": False, "error": "Worktree not found"}


async def test_work_directory(web: httpx.AsyncClient, world: World) -> None:
    """TicketList.tsx ``checkWorkDirectories``: reads exists, path, pendingClaudeMd, branchStatus."""
    found = await web.get(f"/api/gateway/work-directory/{TICKET}")
    assert found.status_code == 200
    body = found.json()
    assert body["exists"] is True and body["path"] == str(world.worktree)
    assert body["pendingClaudeMd"] is None
    assert body["branchStatus"] == {"merged": True, "remoteMissing": True}  # not pushed, nothing new
    (world.worktree / "CLAUDE.md").write_text("notes\n")
    again = (await web.get(f"/api/gateway/work-directory/{TICKET}")).json()
    assert again["pendingClaudeMd"] == str(world.worktree / "CLAUDE.md")
    unknown = await web.get("/api/gateway/work-directory/ENG-404")
    assert unknown.status_code == 200
    assert unknown.json() == {"exists": False, "path": None, "pendingClaudeMd": None, "branchStatus": None}


async def test_upload_and_attachment(web: httpx.AsyncClient, world: World) -> None:
    """ClosedLoopChat.tsx: FormData ``file`` to ``symphony/upload/<ticket>?repo=``; reads
    ``files[0].path`` and ``.apiUrl``, then loads the ``apiUrl``."""
    url = f"/api/gateway/symphony/upload/{quote(TICKET)}?repo={quote(str(world.repo), safe='')}"
    answer = await web.post(url, files={"file": ("shot.png", PNG, "image/png")})
    assert answer.status_code == 200, answer.text
    saved = answer.json()["files"][0]
    assert saved["originalName"] == "shot.png" and saved["size"] == len(PNG)
    assert saved["savedName"].startswith("chat-img-") and saved["savedName"].endswith(".png")
    on_disk = world.worktree / ".closedloop-ai" / "work" / "attachments" / saved["savedName"]
    assert saved["path"] == str(on_disk) and on_disk.read_bytes() == PNG
    repo_q = quote(str(world.repo), safe="")
    name = saved["savedName"]
    assert saved["apiUrl"] == f"/api/gateway/symphony/attachments/{quote(TICKET)}/{name}?repo={repo_q}"
    served = await web.get(saved["apiUrl"])
    assert served.status_code == 200 and served.content == PNG
    assert served.headers["content-type"] == "image/png"
    html = await web.post(url, files={"file": ("x.png", b"<html><script>", "image/png")})
    assert html.status_code == 400  # declared png, is not: refused (stricter than ClosedLoop)
    text = await web.post(url, files={"file": ("x.txt", b"hi", "text/plain")})
    assert text.status_code == 400 and text.json()["error"].startswith("File type not allowed: text/plain")
    escape = await web.get(f"/api/gateway/symphony/attachments/{TICKET}/..%2F..%2FREADME.md?repo={repo_q}")
    assert escape.status_code in (403, 404)
    no_wt = await web.post(f"/api/gateway/symphony/upload/ENG-404?repo={quote(str(world.repo), safe='')}",
                           files={"file": ("a.png", PNG, "image/png")})  # fmt: skip
    assert no_wt.status_code == 404 and no_wt.json()["error"] == "Work directory not found"


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buf.getvalue()


async def test_run_viewer_extract(web: httpx.AsyncClient) -> None:
    """RunViewerDialog.tsx: FormData ``file`` (a .zip) -> ``{runDir}``; DELETE ``{runDir}``."""
    data = _zip({"run/events.jsonl": b"{}\n", "run/plan.md": b"# plan", "__MACOSX/._x": b""})
    answer = await web.post(
        "/api/gateway/run-viewer-extract", files={"file": ("run.zip", data, "application/zip")}
    )
    assert answer.status_code == 200, answer.text
    run_dir = answer.json()["runDir"]
    assert (Path(run_dir) / "run" / "plan.md").read_bytes() == b"# plan"
    listed = await web.get("/api/gateway/run-viewer-extract", params={"runDir": run_dir})
    assert listed.json() == {"files": ["run/events.jsonl", "run/plan.md"]}
    evil = _zip({"../../escape.txt": b"x"})
    refused = await web.post(
        "/api/gateway/run-viewer-extract", files={"file": ("e.zip", evil, "application/zip")}
    )
    assert refused.status_code == 400
    deleted = await web.request("DELETE", "/api/gateway/run-viewer-extract", json={"runDir": run_dir})
    assert deleted.json() == {"success": True}
    assert not await trio.to_thread.run_sync(Path(run_dir).exists)
    bad = await web.request("DELETE", "/api/gateway/run-viewer-extract", json={"runDir": "/etc"})
    assert bad.status_code == 400 and bad.json()["error"] == "Invalid runDir"


async def test_attachments_are_safe_to_serve(web: httpx.AsyncClient, world: World) -> None:
    """Ours, beyond ClosedLoop: images inline with nosniff and a sandboxing CSP; a symlink
    planted in the attachments folder never leads out of it."""
    url = f"/api/gateway/symphony/upload/{TICKET}?repo={quote(str(world.repo), safe='')}"
    saved = (await web.post(url, files={"file": ("a.png", PNG, "image/png")})).json()["files"][0]
    image = await web.get(saved["apiUrl"])
    assert image.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in image.headers["content-security-policy"]
    folder = world.worktree / ".closedloop-ai" / "work" / "attachments"
    os.symlink(world.repo / "README.md", folder / "readme-link.png")
    repo_q = quote(str(world.repo), safe="")
    for rel in (f"{TICKET}/readme-link.png", f"{TICKET}/..%2F..%2F..%2FREADME.md"):
        bad = await web.get(f"/api/gateway/symphony/attachments/{rel}?repo={repo_q}")
        assert bad.status_code in (403, 404), (rel, bad.status_code)
        assert "hello" not in bad.text
    assert (
        await web.get(f"/api/gateway/symphony/attachments/{TICKET}/none.png?repo={repo_q}")
    ).status_code == 404
    long_name = "a" * 300  # over NAME_MAX: a 404 like any missing file, never a 500
    assert (
        await web.get(f"/api/gateway/symphony/attachments/{TICKET}/{long_name}?repo={repo_q}")
    ).status_code == 404
    # git never sees the work folder (info/exclude), so uploads do not dirty the worktree.
    status = await web.post("/api/gateway/git", json={"action": "status", "repoPath": str(world.worktree)})
    assert status.json()["hasChanges"] is False


async def test_upload_limits(web: httpx.AsyncClient, world: World) -> None:
    """symphony-upload.ts: 10 MB per file (400), router.ts: 50 MiB per request (413)."""
    url = f"/api/gateway/symphony/upload/{TICKET}?repo={quote(str(world.repo), safe='')}"
    big = await web.post(url, files={"file": ("big.png", PNG + b"x" * (10 * 1024 * 1024), "image/png")})
    assert big.status_code == 400 and big.json()["error"].startswith("File too large: big.png")
    huge = await web.post(url, files={"file": ("huge.png", PNG + b"x" * (51 * 1024 * 1024), "image/png")})
    assert huge.status_code == 413 and huge.json()["maxBytes"] == 50 * 1024 * 1024
    not_form = await web.post(url, json={"file": "x"})
    assert not_form.status_code == 400 and not_form.json()["error"] == "Invalid form data"
    no_repo = await web.post(
        f"/api/gateway/symphony/upload/{TICKET}", files={"file": ("a.png", PNG, "image/png")}
    )
    assert no_repo.status_code == 400 and no_repo.json()["error"] == "repo parameter is required"
