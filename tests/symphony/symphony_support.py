"""Helpers shared by the Symphony tests (a uniquely named module: ``conftest`` is ambiguous
when several test folders each have one)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from gateway.supervisor import Supervisor
from gateway.supervisor.services.repos import REPOS_SCHEMA
from gateway.supervisor.symphony import Limits, Symphony, SymphonySettings

from agents import clis
from agents.model_double import ModelDouble
from support import GIT_ENV

API = "/api/gateway/symphony"



def cli_paths() -> dict[str, str | None]:
    return {"claude": clis.find_cli("claude"), "codex": clis.find_cli("codex")}


@dataclass
class Harness:
    sup: Supervisor
    sym: Symphony
    md: ModelDouble
    repo: Path
    repo_id: str = "r1"


def make_settings(md: ModelDouble, tmp_path: Path, **kw: object) -> SymphonySettings:
    claude_env = clis.claude_env(md, tmp_path / "claude-home")
    codex_env = clis.codex_env(md, tmp_path / "codex-home")
    judge_env = {k: v for k, v in GIT_ENV.items() if k != "PATH"}
    settings = SymphonySettings(
        defaults=Limits(result_idle_timeout=30.0, stall_timeout=60.0, max_runtime=90.0),
        stop_grace=2.0,
        inherit_env=False,
        provider_env={"claude": claude_env, "codex": codex_env},
        judge_env=judge_env,
        # This container cannot run codex's sandbox; tests ask for full access explicitly.
        codex_sandbox="danger-full-access",
    )
    for k, v in kw.items():
        setattr(settings, k, v)
    return settings


async def register_repo(sup: Supervisor, repo: Path, repo_id: str = "r1") -> None:
    """A repo row as ``POST /repos`` would make it (the table is created if not yet)."""
    await sup.store.migrate("repos", REPOS_SCHEMA)
    await sup.store.execute(
        "INSERT OR IGNORE INTO repos (id, path, name, default_branch, created_at) VALUES (?, ?, ?, ?, ?)",
        (repo_id, str(repo), repo.name, "main", time.time()),
    )


async def wait_until(predicate, timeout: float = 20.0, what: str = "") -> None:  # type: ignore[no-untyped-def]
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def wait_for(
    api: httpx.AsyncClient, ticket: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> dict[str, Any]:
    """Poll ``status/:ticket`` until ``pred`` holds (with a deadline)."""
    with trio.fail_after(timeout):
        while True:
            body = (await api.get(f"{API}/status/{ticket}")).json()
            if pred(body):
                return body
            await trio.sleep(0.05)
