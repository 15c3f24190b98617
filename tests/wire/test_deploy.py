"""The deploy family as ClosedLoop's web app drives it, on a real node dev server.

Derived from ``closedloop-ai/closedloop-ai`` at 108ac018: ``apps/app/lib/engineer/queries/deploy.ts``
(status, health, detect), ``apps/app/components/engineer/DeployDialog.tsx`` (deploy, extract-info,
teardown, kill, redetect), ``apps/app/components/engineer/TicketList.tsx`` (check-existing, status,
teardown with pid and port); the server side in ``apps/desktop/src/server/operations/deploy.ts``.
Where ClosedLoop is unsafe (its teardown frees a port by killing whatever holds it, its kill
signals any pid) we stay safe: only our own supervised deploys are ever signalled.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import trio
from wire_support import TICKET, World

from support import git

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="needs node, npm"
)

D = "/api/gateway/deploy"
SERVER_JS = """
const http = require("http");
const port = Number(process.env.PORT);
http.createServer((req, res) => res.end("hello")).listen(port, "127.0.0.1",
  () => console.log(`ready on http://localhost:${port}/`));
"""


@pytest.fixture
def app_world(world: World) -> World:
    """The repo becomes a node app with a dev script on an explicit port (ClosedLoop reads ``--port``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for where in (world.repo, world.worktree):
        (where / "server.js").write_text(SERVER_JS)
        scripts = {"dev": f"PORT={port} node server.js"}
        (where / "package.json").write_text(json.dumps({"name": "proj", "scripts": scripts}))
    git(world.repo, "add", "-A")
    git(world.repo, "commit", "-qm", "app")
    return world


async def test_detect_then_deploy_status_health_teardown(web: httpx.AsyncClient, app_world: World) -> None:
    world = app_world
    detected = await web.post(f"{D}/detect", json={"repoPath": str(world.repo)})
    assert detected.status_code == 200, detected.text
    config = detected.json()["config"]
    assert detected.json()["detected"] is True
    assert config["command"] == "npm run dev" and isinstance(config["port"], int)
    repos = (await web.get("/api/gateway/repos")).json()["repos"]
    assert repos[0]["deployment"]["command"] == "npm run dev"  # persisted, as ClosedLoop does

    paths = {"repoPath": str(world.repo), "worktreePath": str(world.worktree)}
    json_type = {"Content-Type": "application/json"}
    started = await web.post(D, headers=json_type, json={"ticketId": TICKET, **paths})
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["success"] is True and isinstance(body["pid"], int)
    assert body["deployCommand"] == "npm run dev" and body["repoName"] == "proj"

    status = {}
    with trio.fail_after(30):
        while status.get("status") != "completed":
            params = f"repo={quote(str(world.repo), safe='')}&pid={body['pid']}"
            status = (await web.get(f"{D}/status/{TICKET}?{params}")).json()
            assert status["status"] in ("running", "completed"), status
            await trio.sleep(0.1)
    assert status["pid"] == body["pid"] and "node server.js" in status["logs"]
    url = status["deployedUrl"]
    assert url.startswith("http://")

    info = await web.post(f"{D}/extract-info", json={"repoPath": str(world.repo), "logs": status["logs"]})
    assert info.json()["url"] == url
    health = await web.post(f"{D}/health", json={"url": url})
    assert health.json() == {"alive": True, "statusCode": 200}
    existing = await web.post(
        f"{D}/check-existing", json={"repoPath": str(world.repo), "worktreePath": str(world.worktree)}
    )
    assert existing.json()["active"] is True and existing.json()["url"] == url

    down = await web.post(f"{D}/teardown", json={**paths, "pid": body["pid"]})
    assert down.status_code == 200 and down.json()["success"] is True
    assert (await web.post(f"{D}/health", json={"url": url})).json()["alive"] is False
    after = (await web.get(f"{D}/status/{TICKET}", params={"repo": str(world.repo)})).json()
    assert after["status"] == "not-started"


async def test_health_refuses_non_loopback(web: httpx.AsyncClient) -> None:
    """deploy.ts + outbound-url-policy.ts: deploy health probes loopback only."""
    answer = await web.post(f"{D}/health", json={"url": "http://169.254.169.254/latest/meta-data"})
    assert answer.json() == {
        "alive": False, "statusCode": None,
        "error": "url blocked by desktop outbound policy", "code": "OUTBOUND_URL_DENIED",
    }  # fmt: skip


async def test_kill_only_signals_our_deploys(web: httpx.AsyncClient, app_world: World) -> None:
    """DeployDialog.tsx ``handleStopDeploy``: ``{pid}``. A pid that is not one of our deploys is
    never signalled (ClosedLoop would kill its process group)."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # noqa: ASYNC220
    try:
        refused = await web.post(f"{D}/kill", json={"pid": bystander.pid})
        assert refused.status_code == 404
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
    world = app_world
    started = (await web.post(D, json={"ticketId": TICKET, "repoPath": str(world.repo),
                                       "worktreePath": str(world.worktree)})).json()  # fmt: skip
    killed = await web.post(f"{D}/kill", json={"pid": started["pid"]})
    assert killed.status_code == 200
    assert killed.json()["success"] is True and killed.json()["pid"] == started["pid"]
    assert killed.json()["survivors"] == []


async def test_teardown_never_kills_by_port(web: httpx.AsyncClient, world: World) -> None:
    """TicketList.tsx ``teardown`` sends ``port``: ClosedLoop frees it with ``lsof -ti:<port>`` and
    SIGTERM; here a port held by someone else is left alone."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        paths = {"repoPath": str(world.repo), "worktreePath": str(world.worktree)}
        answer = await web.post(f"{D}/teardown", json={**paths, "port": port})
        assert answer.status_code == 200 and answer.json()["success"] is False
        holder.getsockname()  # still ours


async def test_deploy_needs_paths(web: httpx.AsyncClient, world: World, tmp_path: Path) -> None:
    missing = await web.post(D, json={"ticketId": TICKET})
    assert (
        missing.status_code == 400
        and missing.json()["error"] == "ticketId, repoPath, and worktreePath are required"
    )
    outside = await web.post(
        D, json={"ticketId": TICKET, "repoPath": str(tmp_path), "worktreePath": str(tmp_path)}
    )
    assert outside.status_code == 403 and outside.json()["error"] == "directory not allowed"
    nothing = await web.post(
        D, json={"ticketId": TICKET, "repoPath": str(world.repo), "worktreePath": str(world.worktree)}
    )
    assert nothing.status_code == 400
    assert nothing.json()["error"] == "No deployment configuration detected for this repository"
    status = await web.get(f"{D}/status/{TICKET}")
    assert status.status_code == 400 and status.json()["error"] == "repo query param is required"


async def test_a_crashing_dev_server_is_restarted(web: httpx.AsyncClient, world: World) -> None:
    """Ours underneath: the deploy is supervised with restart on failure; status shows it run."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    crash_once = (
        "const fs = require('fs'); if (!fs.existsSync('.started')) { fs.writeFileSync('.started', '');"
        " console.error('Error: boom'); process.exit(1); } require('./server.js');"
    )
    (world.worktree / "server.js").write_text(SERVER_JS)
    (world.worktree / "boot.js").write_text(crash_once)
    scripts = {"dev": f"PORT={port} node boot.js"}
    (world.worktree / "package.json").write_text(json.dumps({"name": "proj", "scripts": scripts}))
    body = {"ticketId": TICKET, "repoPath": str(world.repo), "worktreePath": str(world.worktree)}
    started = await web.post(D, json=body)
    assert started.status_code == 200, started.text
    with trio.fail_after(30):
        while True:
            status = (await web.get(f"{D}/status/{TICKET}", params={"repo": str(world.repo)})).json()
            if status["status"] == "completed":
                break
            await trio.sleep(0.1)
    assert "Error: boom" in status["logs"] and status["deployedUrl"] == f"http://localhost:{port}"
    again = await web.post(D, json=body)
    assert again.status_code == 409  # one deploy per ticket at a time
    down = await web.post(
        f"{D}/teardown", json={"repoPath": str(world.repo), "worktreePath": str(world.worktree)}
    )
    assert down.json()["success"] is True and down.json()["survivors"] == []
