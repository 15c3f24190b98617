"""The gh runner on its own: a gh that overruns its time is killed, tree and all, and answered 504."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from github_double import OWNER, REPO, GitHubDouble

from gateway.supervisor import State, StopReason, open_supervisor
from gateway.supervisor.errors import Timeout
from gateway.supervisor.services.gh import Gh
from gateway.supervisor.services.github import PullRequests
from gateway.supervisor.services.repos import Repos
from gateway.supervisor.services.worktrees import Git

from support import marked_pids


async def test_a_gh_that_overruns_its_time_is_killed_and_answered_504(
    tmp_path: Path, double: GitHubDouble, repo: Path
) -> None:
    """GitHub (the double) never answers ``GET pulls/1``: the supervised gh child is killed at its
    maximum run time and the head-sha call is a 504 naming the process."""
    async with open_supervisor(tmp_path / "state") as sup:
        repos = Repos(sup.store, Git(sup))
        await repos.open()
        await sup.store.execute(
            "INSERT INTO repos (id, path, name, default_branch, created_at) VALUES (?, ?, ?, ?, ?)",
            ("r1", str(repo), "repo", "main", time.time()),
        )
        prs = PullRequests(sup, Git(sup), Gh(sup, timeout=3.0), repos)
        double.hold_path = f"/repos/{OWNER}/{REPO}/pulls/1"
        with pytest.raises(Timeout) as timed_out:
            await prs.head_sha(str(repo), "1")
        double.release.set()
        assert timed_out.value.code == "gh_timeout"
        assert double.held.is_set()  # gh really was waiting on GitHub
        record = sup.table.records[timed_out.value.details["processId"]]
        assert (record.kind, record.state, record.stop_reason) == ("gh", State.KILLED, StopReason.TIMEOUT)
        assert marked_pids(record.id) == set()
