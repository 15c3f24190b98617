"""Helpers for tests that look at real processes and wait without sleeping blindly."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psutil
import trio

from gateway.supervisor import SupervisorConfig
from gateway.supervisor.proctree import MARKER_VAR

if TYPE_CHECKING:
    from gateway.http.serve import GatewayHandle


def marked_pids(record_id: str) -> set[int]:
    """Live (non-zombie) processes anywhere on the machine carrying the record's marker."""
    found = set()
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get(MARKER_VAR, "").split("@")[0] == record_id:
                found.add(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def runs_program(record_id: str, name: str) -> bool:
    """Whether a live process carrying the record's marker runs ``name`` (say, a tool's ``sleep``)."""
    for pid in marked_pids(record_id):
        try:
            if psutil.Process(pid).name() == name:
                return True
        except psutil.NoSuchProcess:
            continue
    return False


def descendant_runs(pid: int, name: str) -> bool:
    """Whether a live descendant of ``pid`` runs ``name``. Children come and go while the tree
    is read (an agent CLI forks short helpers), so one that vanished counts as not it."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in children:
        try:
            if child.name() == name:
                return True
        except psutil.NoSuchProcess:
            continue
    return False


def zombie_children() -> list[int]:
    return [p.pid for p in psutil.Process().children() if _status(p) == psutil.STATUS_ZOMBIE]


def _status(p: psutil.Process) -> str:
    try:
        return p.status()
    except psutil.NoSuchProcess:
        return "gone"


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds of real time."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def config(state_dir: Path, **kw: object) -> SupervisorConfig:
    return SupervisorConfig(state_dir, **kw)  # type: ignore[arg-type]


def gateway_client(handle: GatewayHandle, *, timeout: float, authenticated: bool = True) -> httpx.AsyncClient:
    """A real-HTTP client of a test gateway (with its gateway token unless not ``authenticated``).

    ``trust_env=False`` so a proxy set in the environment never sits between test and gateway.
    """
    headers = {"X-Desktop-Gateway-Token": handle.context.auth.gateway_token} if authenticated else None
    return httpx.AsyncClient(base_url=handle.url, headers=headers, timeout=timeout, trust_env=False)


#: A fixed identity and PATH for the git commands tests run themselves.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "PATH": "/usr/bin:/bin:/usr/local/bin",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (fail loudly); its stdout, stripped."""
    done = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def init_repo(path: Path) -> Path:
    """Make ``path`` (with whatever files it holds) a repository on ``main`` with one commit."""
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "init")
    return path

