"""JSON errors for bad input (never HTML, never 500) and the metadata family."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import httpx

from gateway.http.serve import GatewayHandle


async def test_bad_bodies_are_json_400_or_413(api: httpx.AsyncClient) -> None:
    url = "/api/gateway/processes"
    bad_json = await api.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["code"] == "invalid_json"
    wrong_type = await api.post(url, json={"argv": [1, 2]})
    assert wrong_type.status_code == 400 and "argv" in wrong_type.json()["error"]
    unknown = await api.post(url, json={"argv": ["true"], "shell": True})
    assert unknown.status_code == 400 and "shell" in unknown.json()["error"]
    not_object = await api.post(url, json=[1, 2, 3])
    assert not_object.status_code == 400
    huge = await api.post(url, content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and huge.json()["code"] == "request_body_too_large"
    no_type = await api.post(url, content=b'{"argv": ["true"]}')
    assert no_type.status_code in (400, 415) and "error" in no_type.json()


async def test_health_and_version(anon: httpx.AsyncClient, api: httpx.AsyncClient, gateway) -> None:
    health = (await anon.get("/health")).json()
    assert health["status"] == "ok" and health["port"] == gateway.port and health["pid"] == os.getpid()
    caps = health["capabilities"]
    assert len(caps["operations"]) >= 28 and "deploy" in caps["operations"]
    assert {r["path"] for r in caps["routes"]} >= {"/health", "/api/gateway/repos"}
    version = (await api.get("/api/gateway/version")).json()
    assert version["version"] == health["version"]
    assert list(version) == ["version", "commits", "python", "platform"]  # the view's order, not sorted
    assert list(health)[:2] == ["status", "machineName"]  # ClosedLoop's HealthResponse order
    check = await api.get("/api/gateway/health-check")
    assert check.status_code == 200
    assert {"database", "disk", "supervisor"} <= {c["id"] for c in check.json()["checks"]}
    mcp = (await api.get("/api/gateway/mcp-auth")).json()
    assert {s["header"] for s in mcp["schemes"]} == {"X-Desktop-Gateway-Token", "X-Desktop-Session-Token"}


def _git_repo(path) -> None:  # type: ignore[no-untyped-def]
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(path)], check=True)


async def test_repos_crud(api: httpx.AsyncClient, tmp_path) -> None:
    repo = tmp_path / "repo"
    _git_repo(repo)
    (repo / "sub").mkdir()
    created = await api.post("/api/gateway/repos", json={"path": str(repo / "sub")})
    assert created.status_code == 200 and created.json()["success"] is True, created.text
    body = created.json()["repo"]
    assert body["path"] == str(repo) and body["name"] == "repo" and body["defaultBranch"] == "trunk"
    dup = await api.post("/api/gateway/repos", json={"path": str(repo)})
    assert dup.status_code == 400 and dup.json()["code"] == "repo_exists"
    plain = tmp_path / "plain"
    plain.mkdir()
    not_git = await api.post("/api/gateway/repos", json={"path": str(plain)})
    assert not_git.status_code == 400 and "git" in not_git.json()["error"]
    missing = await api.post("/api/gateway/repos", json={"path": str(tmp_path / "nope")})
    assert missing.status_code == 400 and missing.json()["error"] == "Path does not exist"
    renamed = await api.patch("/api/gateway/repos", json={"id": body["id"], "name": "Main"})
    assert renamed.json()["name"] == "Main"
    listed = (await api.get("/api/gateway/repos")).json()["repos"]
    assert [r["id"] for r in listed] == [body["id"]]
    assert (await api.delete("/api/gateway/repos", params={"id": body["id"]})).status_code == 200
    assert (await api.delete("/api/gateway/repos", params={"id": body["id"]})).status_code == 404
    assert (await api.delete("/api/gateway/repos", params={"path": str(repo)})).status_code == 400
    assert (await api.get("/api/gateway/repos")).json()["repos"] == []


async def test_binary_paths(api: httpx.AsyncClient, gateway: GatewayHandle, tmp_path) -> None:
    got = (await api.get("/api/gateway/settings/binary-paths")).json()["binaries"]
    assert set(got) == {"claude", "gh", "codex", "python3", "git"}
    relative = await api.patch("/api/gateway/settings/binary-paths", json={"git": "git"})
    assert relative.status_code == 400 and "git" in relative.json()["error"]
    not_exec = tmp_path / "plain.txt"
    not_exec.write_text("x")
    refused = await api.patch("/api/gateway/settings/binary-paths", json={"gh": str(not_exec)})
    assert refused.status_code == 400 and "executable" in refused.json()["error"]
    ok = await api.patch("/api/gateway/settings/binary-paths", json={"python3": sys.executable})
    assert ok.status_code == 200
    py = ok.json()["binaries"]["python3"]
    assert py["path"] == sys.executable and py["source"] == "override"
    assert py["version"].startswith("Python 3")
    health = (await api.get("/health")).json()
    assert health["capabilities"]["binaries"]["python3"]["path"] == sys.executable
    cleared = await api.patch("/api/gateway/settings/binary-paths", json={"python3": None})
    assert cleared.json()["binaries"]["python3"]["override"] is None
    # Persisted: the override survives in the settings table.
    await api.patch("/api/gateway/settings/binary-paths", json={"python3": sys.executable})
    row = await gateway.context.sup.store.fetchone("SELECT value FROM settings WHERE key = 'binary_paths'")
    assert sys.executable in row[0]


async def test_access_log_line_carries_the_operation(api: httpx.AsyncClient, caplog) -> None:  # type: ignore[no-untyped-def]
    from gateway.http.telemetry import OperationFilter

    caplog.set_level(logging.INFO, logger="gateway.access")
    caplog.handler.addFilter(OperationFilter())  # reads the context variable at emit time
    await api.get("/api/gateway/version")
    [record] = [r for r in caplog.records if r.name == "gateway.access"]
    assert record.operation == "health_check" and record.principal == "gateway"
    assert record.fields["status"] == 200 and record.fields["path"] == "/api/gateway/version"
