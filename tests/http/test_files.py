"""The filesystem family over real HTTP: folder listings, fuzzy search in a real repo, a
ticket's work directory, and attachments that can neither escape their folder nor run script."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from gateway.http.serve import GatewayHandle

from support import git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    for rel in ("src/parser.py", "src/printer.py", "docs/README.md", "build/out.py", "notes/todo.txt"):
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(rel + "\n")
    (path / ".gitignore").write_text("build/\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "src", "docs", ".gitignore")  # notes/ stays untracked on purpose
    git(path, "commit", "-qm", "init")
    return path


async def registered(api: httpx.AsyncClient, repo: Path) -> str:
    r = await api.post("/api/gateway/repos", json={"path": str(repo), "name": "repo"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_directories_for_a_folder_picker(api: httpx.AsyncClient, tmp_path: Path) -> None:
    root = tmp_path / "pick"
    for name in ("b-repo", "a", ".hidden"):
        (root / name).mkdir(parents=True)
    git(root / "b-repo", "init", "-q")
    (root / "file.txt").write_text("not a folder\n")
    got = (await api.get("/api/gateway/directories", params={"path": str(root)})).json()
    assert got["path"] == str(root.resolve()) and got["parent"] == str(root.resolve().parent)
    assert [(d["name"], d["isGitRepo"]) for d in got["directories"]] == [("a", False), ("b-repo", True)]
    hidden = (await api.get("/api/gateway/directories", params={"path": str(root), "hidden": "1"})).json()
    assert [d["name"] for d in hidden["directories"]] == [".hidden", "a", "b-repo"]
    home = (await api.get("/api/gateway/directories")).json()
    assert home["path"] == str(Path.home().resolve())
    for params, status in (
        ({"path": "relative/dir"}, 400),
        ({"path": str(root / "missing")}, 404),
        ({"path": str(root / "file.txt")}, 404),
        ({"path": "/tmp\x00/x"}, 400),
        ({"path": "/" + "a" * 300}, 400),  # past NAME_MAX: ENAMETOOLONG, never a 500
        ({"path": "/" + "/".join(["b" * 250] * 20)}, 400),  # past PATH_MAX
    ):
        r = await api.get("/api/gateway/directories", params=params)
        assert r.status_code == status, (params, r.text)
        assert r.json()["error"]["operation"] == "filesystem"


async def test_fuzzy_file_search_in_a_repo(api: httpx.AsyncClient, repo: Path) -> None:
    repo_id = await registered(api, repo)
    url = "/api/gateway/files/search"
    found = (await api.get(url, params={"repoId": repo_id, "q": "parse"})).json()
    assert found["files"][0]["path"] == "src/parser.py"
    # Untracked files are offered, ignored ones never.
    assert found["total"] == 5  # .gitignore, src x2, docs/README.md, notes/todo.txt
    todo = (await api.get(url, params={"repoId": repo_id, "q": "todo"})).json()
    assert [f["path"] for f in todo["files"]] == ["notes/todo.txt"]
    assert (await api.get(url, params={"repoId": repo_id, "q": "out.py"})).json()["files"] == []
    # Subsequence match: "srcpr" hits both printer and parser, the shorter-run one ranks.
    both = (await api.get(url, params={"repoId": repo_id, "q": "srcpr", "limit": "1"})).json()
    assert len(both["files"]) == 1 and both["files"][0]["path"].startswith("src/p")
    assert (await api.get(url, params={"repoId": repo_id})).status_code == 400
    assert (await api.get(url, params={"q": "x"})).status_code == 400


async def test_work_directory_of_a_ticket(api: httpx.AsyncClient, repo: Path) -> None:
    repo_id = await registered(api, repo)
    made = await api.post("/api/gateway/git/worktree", json={"repoId": repo_id, "ticketId": "T-3"})
    assert made.status_code == 201, made.text
    got = (await api.get("/api/gateway/work-directory/T-3")).json()
    assert got == {"ticketId": "T-3", "path": made.json()["ticket"]["worktree"], "exists": True}
    assert (await api.get("/api/gateway/work-directory/T-404")).status_code == 404
    assert (await api.get("/api/gateway/work-directory/a%20b")).status_code == 400


async def test_attachments_upload_serve_and_never_escape(
    api: httpx.AsyncClient, gateway: GatewayHandle
) -> None:
    url = "/api/gateway/symphony/upload/T-1"
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    r = await api.post(url, files=[
        ("file", ("../../evil.sh", b"#!/bin/sh\necho pwned\n", "text/x-sh")),
        ("file", ("photo.png", png, "image/png")),
        ("other", ("page.html", b"<script>alert(1)</script>", "text/html")),
    ])  # fmt: skip
    assert r.status_code == 201, r.text
    names = [a["name"] for a in r.json()["attachments"]]
    assert names == ["evil.sh", "photo.png", "page.html"]
    again = (await api.post(url, files={"file": ("photo.png", png, "image/png")})).json()
    assert again["attachments"][0]["name"] == "photo-1.png"
    stored = gateway.context.state.root / "attachments" / "T-1"
    assert sorted(p.name for p in stored.iterdir()) == ["evil.sh", "page.html", "photo-1.png", "photo.png"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in stored.iterdir())

    image = await api.get("/api/gateway/symphony/attachments/T-1/photo.png")
    assert image.status_code == 200 and image.content == png
    assert image.headers["content-type"] == "image/png"
    assert "attachment" not in image.headers.get("content-disposition", "")
    for name in ("page.html", "evil.sh"):
        got = await api.get(f"/api/gateway/symphony/attachments/T-1/{name}")
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.headers["content-disposition"].startswith("attachment")
        assert got.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in got.headers["content-security-policy"]

    # Out of the folder: by dot segments, or through a symlink planted inside it.
    os.symlink(gateway.context.state.root / "gateway-token", stored / "token-link")
    for rel in ("T-1/..%2F..%2Fgateway-token", "T-1/token-link", "..%2Fgateway-token"):
        bad = await api.get(f"/api/gateway/symphony/attachments/{rel}")
        assert bad.status_code in (403, 404), (rel, bad.status_code)
        assert gateway.context.auth.gateway_token not in bad.text
    assert (await api.get("/api/gateway/symphony/attachments/T-1/nothing.txt")).status_code == 404
    for rel in ("a" * 300, "T-1/" + "a" * 300, "/".join(["b" * 250] * 20)):  # ENAMETOOLONG
        too_long = await api.get(f"/api/gateway/symphony/attachments/{rel}")
        assert too_long.status_code == 404, too_long.text
        assert too_long.json()["error"]["code"] == "not_found"


async def test_upload_limits_and_refusals(api: httpx.AsyncClient) -> None:
    url = "/api/gateway/symphony/upload/T-2"
    big = await api.post(url, files={"file": ("big.bin", b"x" * (10 * 1024 * 1024 + 1))})
    assert big.status_code == 400 and "big.bin" in big.json()["error"]["message"]
    huge = await api.post(url, files={"file": ("huge.bin", b"x" * (26 * 1024 * 1024))})
    assert huge.status_code == 413 and "25 MiB" in huge.json()["error"]["message"]
    assert (await api.post(url, json={"file": "x"})).status_code == 415
    assert (await api.post(url, data={"field": "no file"}, files={})).status_code in (400, 415)
    assert (await api.post("/api/gateway/symphony/upload/..", files={"f": ("a", b"a")})).status_code in (
        400,
        404,
    )
    # Everything else keeps the 1 MiB limit.
    two = await api.post("/api/gateway/processes", content=b"{" * (2 * 1024 * 1024))
    assert two.status_code == 413 and "1 MiB" in two.json()["error"]["message"]
