"""Deploys over real HTTP: a real node dev server from package.json, a Procfile server that
crashes once and is restarted, ports, probes, log extraction, kill and teardown."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import httpx
import pytest
import trio

from gateway.http.serve import GatewayHandle

from support import init_repo

D = "/api/gateway/deploy"
SERVER_JS = """
const http = require("http");
const port = Number(process.env.PORT);
http.createServer((req, res) => res.end("hello from " + req.url))
  .listen(port, "127.0.0.1", () => console.log(`ready on http://localhost:${port}/`));
"""




@pytest.fixture
def app_repo(tmp_path: Path) -> Path:
    path = tmp_path / "webapp"
    path.mkdir()
    (path / "server.js").write_text(SERVER_JS)
    scripts = {"build": "true", "start": "node server.js", "dev": "node server.js"}
    (path / "package.json").write_text(json.dumps({"name": "webapp", "scripts": scripts}))
    init_repo(path)
    return path


async def ticket_worktree(api: httpx.AsyncClient, repo: Path, ticket: str) -> Path:
    r = await api.post("/api/gateway/repos", json={"path": str(repo)})
    repo_id = r.json()["repo"]["id"] if r.status_code == 200 else r.json()["details"]["id"]
    made = await api.post("/api/gateway/git/worktree", json={"repoId": repo_id, "ticketId": ticket})
    assert made.status_code == 201, made.text
    return Path(made.json()["ticket"]["worktree"])


async def healthy(api: httpx.AsyncClient, ticket: str) -> dict:
    """Poll the health route until the server answers (bounded)."""
    with trio.fail_after(30):
        while True:
            probe = (await api.post(f"{D}/health", json={"ticketId": ticket})).json()
            if probe["healthy"]:
                return probe
            await trio.sleep(0.1)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="needs node and npm")
async def test_package_json_dev_server_lifecycle(
    api: httpx.AsyncClient, gateway: GatewayHandle, app_repo: Path
) -> None:
    wt = await ticket_worktree(api, app_repo, "W-1")
    found = (await api.post(f"{D}/detect", json={"ticketId": "W-1"})).json()
    assert found["root"] == str(wt)
    assert [c["name"] for c in found["candidates"]] == ["dev", "start"]  # "build" is not a server
    assert found["chosen"]["argv"] == ["npm", "run", "dev"] and found["port"] > 0

    started = await api.post(D, json={"ticketId": "W-1"})
    assert started.status_code == 201, started.text
    body = started.json()
    port, pid = body["port"], body["process"]["id"]
    assert body["url"] == f"http://127.0.0.1:{port}" and body["source"]["name"] == "dev"
    probe = await healthy(api, "W-1")
    assert probe["status"] == 200 and probe["url"] == body["url"]

    info = (await api.post(f"{D}/extract-info", json={"ticketId": "W-1"})).json()
    assert info["url"] == f"http://localhost:{port}/" and info["port"] == port and info["errors"] == []
    existing = (await api.post(f"{D}/check-existing", json={"ticketId": "W-1"})).json()
    assert existing["exists"] and existing["process"]["id"] == pid
    twice = await api.post(D, json={"ticketId": "W-1"})
    assert twice.status_code == 409

    # kill: the whole tree (npm -> sh -> node) goes, the deploy stays, stopped.
    receipt = (await api.post(f"{D}/kill", json={"ticketId": "W-1"})).json()
    assert receipt["process"]["state"] == "killed" and receipt["survivors"] == []
    assert port_free(port)
    status = (await api.get(f"{D}/status/W-1")).json()
    assert status["process"]["id"] == pid and status["running"] is False
    assert (await api.post(f"{D}/health", json={"ticketId": "W-1"})).json()["healthy"] is False

    # Again, on a port of our choosing, with the other script; then teardown forgets it.
    again = await api.post(D, json={"ticketId": "W-1", "script": "start", "port": port})
    assert again.status_code == 201, again.text
    await healthy(api, "W-1")
    torn = (await api.post(f"{D}/teardown", json={"ticketId": "W-1"})).json()
    assert torn["process"]["tornDown"] is True and port_free(port)
    assert (await api.get(f"{D}/status/W-1")).json()["process"] is None
    logs = await api.get(f"/api/gateway/processes/{again.json()['process']['id']}/logs")
    assert "ready on" in logs.text  # torn down, logs kept
    assert (await api.post(f"{D}/kill", json={"ticketId": "W-1"})).status_code == 404


async def test_procfile_server_is_restarted_after_a_crash(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    repo = tmp_path / "proc"
    repo.mkdir()
    # First start: crash (exit 1). The restart finds the marker and serves.
    (repo / "Procfile").write_text(
        "web: if [ -f .started ]; then exec python3 -m http.server $PORT --bind 127.0.0.1; "
        "else touch .started; echo 'Error: boom' >&2; exit 1; fi\n"
    )
    (repo / ".gitignore").write_text(".started\n")
    init_repo(repo)
    r = await api.post("/api/gateway/repos", json={"path": str(repo)})
    repo_id = r.json()["repo"]["id"]
    # A ticket Symphony does not know: deploy the managed repo itself.
    started = await api.post(D, json={"ticketId": "P-1", "repoId": repo_id})
    assert started.status_code == 201, started.text
    assert started.json()["source"]["source"] == "Procfile"
    await healthy(api, "P-1")
    status = (await api.get(f"{D}/status/P-1")).json()
    assert status["process"]["restarts"] == 1 and status["running"]
    info = (await api.post(f"{D}/extract-info", json={"ticketId": "P-1"})).json()
    assert any("Error: boom" in e for e in info["errors"])
    await api.post(f"{D}/teardown", json={"ticketId": "P-1"})


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"ticketId": "X-1"}, 404),  # unknown ticket, no repo
        ({"ticketId": "X-1", "repoId": "nope"}, 404),
        ({"ticketId": "../x"}, 400),
        ({"ticketId": "X-1", "command": "npm run dev"}, 400),  # a shell string, not argv
        ({"ticketId": "X-1", "port": 80}, 400),
        ({"ticketId": "X-1", "bogus": 1}, 400),
    ],
)
async def test_bad_deploy_requests(api: httpx.AsyncClient, body: dict, status: int) -> None:
    r = await api.post(D, json=body)
    assert r.status_code == status, r.text
    assert r.json()["operation"] == "deploy"


async def test_nothing_to_run_and_a_busy_port(api: httpx.AsyncClient, tmp_path: Path) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    (repo / "README").write_text("no server here\n")
    init_repo(repo)
    repo_id = (await api.post("/api/gateway/repos", json={"path": str(repo)})).json()["repo"]["id"]
    nothing = await api.post(D, json={"ticketId": "E-1", "repoId": repo_id})
    assert nothing.status_code == 400 and nothing.json()["code"] == "nothing_to_run"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = await api.post(
            D, json={"ticketId": "E-1", "repoId": repo_id, "command": ["sleep", "60"], "port": port}
        )
        assert busy.status_code == 409 and str(port) in busy.json()["error"]
