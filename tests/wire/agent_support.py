"""Fixtures and helpers of the agent-route wire tests (``test_agent_*.py``).

The requests these tests send are shaped as ClosedLoop's web app and cloud executor shape them
(closedloop-ai/closedloop-ai ``apps/app/lib/engineer/queries/symphony.ts``, the chat panels,
``apps/desktop/src/main/cloud-command-executor.ts``); the gateway runs the real ``claude`` and
``codex`` CLIs against the model double (``tests/agents``). The repository is registered by
path and the ticket's worktree sits where ClosedLoop puts it,
``<repo parent>/<repo name>-<ticket>``.

Test modules import the fixtures they use from here (``wire/conftest.py`` belongs to the other
wire suite).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway.http.serve import GatewayHandle
from gateway.supervisor.services.repos import REPOS_SCHEMA
from gateway.supervisor.symphony import Limits, SymphonySettings

from agents import clis
from agents.model_double import ModelDouble
from support import GIT_ENV, gateway_client

API = "/api/gateway"
TICKET = "ENG-1"


def git(cwd: Path, *args: str) -> str:
    env = {**GIT_ENV, "HOME": str(cwd)}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def frames(text: str) -> list[dict[str, Any]]:
    """The NDJSON frames of a streamed answer."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def error_text(body: Any) -> str:
    """The ``error`` message whether the envelope is ClosedLoop's string or our older object."""
    err = body.get("error") if isinstance(body, dict) else None
    return err.get("message", "") if isinstance(err, dict) else str(err)


# ---- a loopback double of the ClosedLoop API ------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def event_type(self) -> str | None:
        return self.body.get("type") if isinstance(self.body, dict) else None


@dataclass
class ClosedLoopApiDouble:
    requests: list[Recorded] = field(default_factory=list)
    _failures: dict[str, deque[int]] = field(default_factory=lambda: defaultdict(deque))
    _standing: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changed: threading.Condition = field(init=False)
    _server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    @property
    def origin(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail(self, path_suffix: str, *statuses: int) -> None:
        with self._lock:
            self._failures[path_suffix].extend(statuses)

    def answer(self, method: str, path_suffix: str, status: int, body: Any) -> None:
        """From now on answer ``method`` requests whose path ends with ``path_suffix`` so."""
        with self._lock:
            self._standing[(method, path_suffix)] = (status, body)

    def calls(self, method: str, path_suffix: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    def events(self, loop_id: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r for r in self.requests
                if r.path.endswith("/events") and (loop_id is None or f"/loops/{loop_id}/" in r.path)
            ]  # fmt: skip

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> list[Recorded]:
        """Block until ``predicate(requests)`` is true (a condition variable, not a sleep loop)."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(list(self.requests)), timeout):
                raise AssertionError(f"API double: condition not met in {timeout}s; got {self.requests}")
            return list(self.requests)

    def _answer(self, handler: BaseHTTPRequestHandler) -> tuple[int, Any]:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        path = handler.path
        with self._changed:
            self.requests.append(Recorded(handler.command, path, dict(handler.headers.items()), body))
            self._changed.notify_all()
            for suffix, statuses in self._failures.items():
                if statuses and path.endswith(suffix):
                    return statuses.popleft(), {"error": "scripted failure"}
            for (method, suffix), standing in self._standing.items():
                if handler.command == method and path.endswith(suffix):
                    return standing
        loop_path = path.startswith("/loops/") and path.count("/") == 2
        if handler.command == "POST" and path.startswith("/loops/") and path.endswith("/heartbeat"):
            return 200, {"ok": True}
        if handler.command == "GET" and loop_path:
            return 200, {"status": "RUNNING"}
        if handler.command == "DELETE" and loop_path:
            return 200, {"ok": True}
        if (
            handler.command == "POST"
            and path.startswith("/loops/")
            and (path.endswith("/events") or path.endswith("/upload-artifacts"))
        ):
            return 200, {"ok": True}
        if handler.command == "POST" and path == "/compute-targets/local-auth/verify":
            return 200, {"ok": True, "sessionTtlSeconds": 600}
        return 404, {"error": "not found"}

    def __enter__(self) -> ClosedLoopApiDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status, payload = double._answer(self)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST
            do_DELETE = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def md() -> Iterator[ModelDouble]:
    with ModelDouble() as double:
        yield double


@pytest.fixture
def cl_api() -> Iterator[ClosedLoopApiDouble]:
    with ClosedLoopApiDouble() as double:
        yield double


@pytest.fixture
def cl_repo(tmp_path: Path) -> Path:
    """A git repo ``<tmp>/code/app`` on ``main`` with an ``origin`` (a bare repo)."""
    remote = tmp_path / "remote.git"
    repo = tmp_path / "code" / "app"
    repo.mkdir(parents=True)
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("app\n")
    git(repo, "add", "README.md")
    git(repo, "commit", "-qm", "init")
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    return repo


@pytest.fixture
def ticket_worktree(cl_repo: Path) -> Path:
    """The ticket's worktree in ClosedLoop's layout: ``<tmp>/code/app-ENG-1``."""
    path = cl_repo.parent / f"{cl_repo.name}-{TICKET}"
    git(cl_repo, "worktree", "add", "-q", "-b", f"symphony/{TICKET}", str(path), "main")
    return path


def agent_settings(md: ModelDouble, tmp_path: Path) -> SymphonySettings:
    return SymphonySettings(
        defaults=Limits(result_idle_timeout=30.0, stall_timeout=60.0, max_runtime=120.0),
        stop_grace=2.0,
        inherit_env=False,
        provider_env={
            "claude": clis.claude_env(md, tmp_path / "claude-home"),
            "codex": clis.codex_env(md, tmp_path / "codex-home"),
        },
        judge_env={k: v for k, v in GIT_ENV.items() if k != "PATH"},
        codex_sandbox="danger-full-access",  # this container cannot run codex's sandbox
    )


@pytest.fixture
async def agw(gateway: GatewayHandle, tmp_path: Path, md: ModelDouble, cl_repo: Path) -> GatewayHandle:
    """The shared test gateway, its agents the real CLIs against ``md``, ``cl_repo`` registered."""
    if clis.find_cli("claude") is None:
        pytest.skip("claude CLI not installed: run scripts/install-agent-clis.sh")
    ctx = gateway.context
    ctx.services.symphony.settings = agent_settings(md, tmp_path)
    found = {"claude": clis.find_cli("claude"), "codex": clis.find_cli("codex")}
    ctx.binaries.overrides.update({k: v for k, v in found.items() if v})
    await ctx.sup.store.migrate("repos", REPOS_SCHEMA)
    await ctx.sup.store.execute(
        "INSERT INTO repos (id, path, name, default_branch, created_at) VALUES (?, ?, ?, ?, ?)",
        ("r1", str(cl_repo), cl_repo.name, "main", time.time()),
    )
    return gateway


@pytest.fixture
async def aapi(agw: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway as the cloud executor calls it: gateway token plus ``x-desktop-source``."""
    async with gateway_client(agw, timeout=120) as client:
        client.headers["x-desktop-source"] = "cloud-socket"
        yield client


async def until(predicate: Any, timeout: float = 30.0, what: str = "") -> None:
    """Poll ``predicate`` (sync) with a deadline: the files and records are written by the
    gateway's own tasks, so there is no event to wait on from here."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
