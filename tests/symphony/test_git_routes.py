"""The git family over real HTTP, on real repositories: a managed repo with a bare ``origin``,
a second clone that pushes behind its back, and ticket worktrees. Every git call the gateway
makes is a supervised child of kind ``git``."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from symphony_support import API, register_repo

from gateway.http.serve import GatewayHandle, ServeOptions, run_gateway

from agents.model_double import Hang, ModelDouble
from support import gateway_client, git

GIT = "/api/gateway/git"




@pytest.fixture
def origin(tmp_path: Path, repo: Path) -> Path:
    """A bare ``origin`` the repo's ``main`` tracks; commits in the repo get an identity."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(repo, "config", "user.name", "Test Person")
    git(repo, "config", "user.email", "person@example.invalid")
    git(repo, "remote", "add", "origin", str(bare))
    git(repo, "push", "-q", "-u", "origin", "main")
    return bare


@pytest.fixture
async def gateway(
    tmp_path: Path, repo: Path, origin: Path, nursery: trio.Nursery
) -> AsyncIterator[GatewayHandle]:
    opts = ServeOptions(state_dir=tmp_path / "state", port=0, probe_binaries=False)
    handle: GatewayHandle = await nursery.start(run_gateway, opts)
    await register_repo(handle.context.sup, repo)
    yield handle
    handle.request_shutdown()


@pytest.fixture
async def client(gateway: GatewayHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gateway, timeout=60) as c:
        yield c


async def act(client: httpx.AsyncClient, action: str, status: int = 200, **body: object) -> dict:
    r = await client.post(GIT, json={"action": action, "repoId": "r1", **body})
    assert r.status_code == status, r.text
    return r.json()


async def test_status_commit_push_and_pull_on_a_managed_repo(
    client: httpx.AsyncClient, gateway: GatewayHandle, repo: Path, origin: Path, tmp_path: Path
) -> None:
    (repo / "new file.txt").write_text("hello\n")
    (repo / "README").write_text("changed\n")
    st = await act(client, "status")
    assert st["branch"] == "main" and st["upstream"] == "origin/main" and not st["clean"]
    assert {(f["path"], f["index"], f["worktree"]) for f in st["files"]} == {
        ("new file.txt", "?", "?"),
        ("README", ".", "M"),
    }

    # The message is a value, never an option: "--amend" is just a subject.
    done = await act(client, "commit", message="--amend")
    assert done["commit"] == git(repo, "rev-parse", "HEAD") and done["clean"]
    assert git(repo, "log", "-1", "--format=%s%n%an") == "--amend\nTest Person"
    nothing = await act(client, "commit", 409, message="again")
    assert "nothing to commit" in nothing["error"]

    assert (await act(client, "sync-status"))["ahead"] == 1
    pushed = await act(client, "push")
    assert pushed["pushed"] and git(origin, "rev-parse", "main") == done["commit"]

    # Someone else pushes; sync-status with fetch sees it, pull fast-forwards to it.
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(origin), str(other))
    (other / "theirs.txt").write_text("theirs\n")
    git(other, "add", "theirs.txt")
    git(other, "commit", "-qm", "theirs")
    git(other, "push", "-q")
    assert (await act(client, "sync-status"))["behind"] == 0  # not fetched yet
    assert (await act(client, "sync-status", fetch=True))["behind"] == 1
    pulled = await act(client, "pull")
    assert pulled["updated"] and pulled["head"] == git(other, "rev-parse", "HEAD")
    assert (repo / "theirs.txt").read_text() == "theirs\n"

    # A diverged branch is git's refusal (409 with its words), not a surprise merge.
    (other / "theirs.txt").write_text("theirs 2\n")
    git(other, "commit", "-qam", "theirs 2")
    git(other, "push", "-q")
    (repo / "mine.txt").write_text("mine\n")
    await act(client, "commit", message="mine")
    refused = await act(client, "pull", 409)
    assert refused["code"] == "git_failed"

    branch = await act(client, "branch")
    assert branch == {"branch": "main", "detached": False, "head": git(repo, "rev-parse", "HEAD")}
    user = (await client.get(f"{GIT}/user", params={"repoId": "r1"})).json()
    assert user == {"name": "Test Person", "email": "person@example.invalid"}
    # Every git call was a supervised child of kind git, in the process table like any other.
    kinds = {r.kind for r in gateway.context.sup.table.records.values()}
    assert kinds == {"git"}


async def test_ticket_worktrees_diff_and_branches(client: httpx.AsyncClient, repo: Path) -> None:
    made = await client.post(f"{GIT}/worktree", json={"repoId": "r1", "ticketId": "T-7"})
    assert made.status_code == 201, made.text
    wt = Path(made.json()["ticket"]["worktree"])
    assert made.json()["ticket"]["branch"] == "symphony/T-7" and (wt / "README").exists()
    again = await client.post(f"{GIT}/worktree", json={"repoId": "r1", "ticketId": "T-7"})
    assert again.status_code == 200 and again.json()["created"] is False

    path = (await client.get(f"{GIT}/repo-path", params={"ticketId": "T-7"})).json()
    assert path == {"path": str(wt), "repoId": None, "ticketId": "T-7"}
    query = {"repoId": "r1", "branch": "symphony/T-7"}
    where = (await client.get(f"{GIT}/branch-worktree", params=query)).json()
    assert where == {"branch": "symphony/T-7", "path": str(wt)}
    nowhere = await client.get(f"{GIT}/branch-worktree", params={"repoId": "r1", "branch": "no-such"})
    assert nowhere.json()["path"] is None

    (wt / "a.txt").write_text("a\n")
    (wt / "b.txt").write_text("b\n")
    # Only the named path is staged and committed; magic pathspecs are taken literally.
    body = {"action": "commit", "ticketId": "T-7", "message": "add a", "paths": ["a.txt"]}
    assert (await client.post(GIT, json=body)).status_code == 200
    magic = await client.post(GIT, json={**body, "paths": [":(glob)*"]})
    assert magic.status_code == 409 and "did not match" in magic.json()["error"]
    st = (await client.post(GIT, json={"action": "status", "ticketId": "T-7"})).json()
    assert [f["path"] for f in st["files"]] == ["b.txt"] and st["branch"] == "symphony/T-7"

    # branch-diff: against the ticket's base (main), from their merge base.
    bd = (await client.post(GIT, json={"action": "branch-diff", "ticketId": "T-7"})).json()
    assert bd["base"] == "main" and bd["mergeBase"] == git(repo, "rev-parse", "main")
    assert bd["files"] == [{"path": "a.txt", "additions": 1, "deletions": 0}]
    assert "+a" in bd["patch"] and not bd["truncated"]
    # diff of the working tree: b.txt is untracked, so only a tracked change shows.
    (wt / "a.txt").write_text("a\nmore\n")
    d = (await client.post(f"{GIT}/diff", json={"ticketId": "T-7"})).json()
    assert d["files"] == [{"path": "a.txt", "additions": 1, "deletions": 0}] and "+more" in d["patch"]
    staged = (await client.post(f"{GIT}/diff", json={"ticketId": "T-7", "staged": True})).json()
    assert staged["files"] == [] and staged["patch"] == ""

    br = (await client.get(f"{GIT}/branches", params={"repoId": "r1"})).json()
    assert br["current"] == "main"
    assert {b["name"] for b in br["branches"]} == {"main", "symphony/T-7"}
    assert {b["name"] for b in br["remotes"]} == {"origin/main"}

    gone = await client.request("DELETE", f"{GIT}/worktree", json={"ticketId": "T-7"})
    assert gone.json() == {"ticketId": "T-7", "removed": True}
    assert not await trio.Path(wt).exists()
    assert "symphony/T-7" in git(repo, "branch", "--list", "symphony/T-7")  # the branch stays
    lost = await client.post(GIT, json={"action": "status", "ticketId": "T-7"})
    assert lost.status_code == 404 and lost.json()["code"] == "worktree_not_found"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"action": "commit", "repoId": "r1", "message": "x", "paths": ["../outside"]}, 400, "paths.0"),
        ({"action": "commit", "repoId": "r1", "message": "x", "paths": ["/etc/passwd"]}, 400, "paths.0"),
        ({"action": "commit", "repoId": "r1"}, 400, "message"),
        ({"action": "branch-diff", "repoId": "r1", "base": "--output=/tmp/x"}, 400, "base"),
        ({"action": "branch-diff", "repoId": "r1"}, 400, "base"),
        ({"action": "push", "repoId": "r1", "remote": "-oProxyCommand=x"}, 400, "remote"),
        ({"action": "status", "repoId": "r1", "ticketId": "T-1"}, 400, "exactly one"),
        ({"action": "status"}, 400, "exactly one"),
        ({"action": "rebase", "repoId": "r1"}, 400, "action"),
        ({"action": "status", "repoId": "nope"}, 404, "repoId"),
        ({"action": "status", "ticketId": "T-404"}, 404, "ticketId"),
    ],
)
async def test_bad_git_requests_are_named_json_errors(
    client: httpx.AsyncClient, repo: Path, body: dict, status: int, field: str
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    (repo / "pending.txt").write_text("x\n")
    r = await client.post(GIT, json=body)
    assert r.status_code == status, r.text
    assert field in r.json()["error"]
    assert git(repo, "rev-parse", "HEAD") == head  # nothing was committed


async def test_the_worktree_lock_refuses_a_commit_while_an_agent_works(
    api: httpx.AsyncClient, md: ModelDouble, gw: GatewayHandle, repo: Path
) -> None:
    """While an agent runs in the ticket's worktree, commits and pulls there are 409."""
    git(repo, "config", "user.name", "Test Person")
    git(repo, "config", "user.email", "person@example.invalid")
    md.claude.add_turn(Hang(120))
    r = await api.post(f"{API}/launch", json={"ticketId": "T-9", "repoId": "r1", "prompt": "work"})
    assert r.status_code == 201, r.text
    wt = Path(r.json()["ticket"]["worktree"])
    (wt / "x.txt").write_text("x\n")
    body = {"action": "commit", "ticketId": "T-9", "message": "mid-run"}
    busy = await api.post(GIT, json=body)
    assert busy.status_code == 409 and "busy" in busy.json()["error"]
    reading = await api.post(GIT, json={"action": "status", "ticketId": "T-9"})
    assert reading.status_code == 200  # reads are fine
    killed = await api.post(f"{API}/kill", json={"ticketId": "T-9"})
    assert killed.status_code == 200, killed.text
    done = await api.post(GIT, json=body)
    assert done.status_code == 200, done.text
    svc = gw.context.services.symphony
    assert done.json()["commit"] == (await svc.git.run(["rev-parse", "HEAD"], wt)).stdout.strip()



async def test_git_routes_use_the_configured_git_binary(
    client: httpx.AsyncClient, gateway: GatewayHandle, tmp_path: Path
) -> None:
    """``PATCH /settings/binary-paths {"git": ...}`` applies to the very next git call."""
    real = shutil.which("git")
    assert real is not None
    wrapper = tmp_path / "bin" / "git-wrapper"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.txt"}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    r = await client.patch("/api/gateway/settings/binary-paths", json={"git": str(wrapper)})
    assert r.status_code == 200, r.text
    assert (await act(client, "status"))["branch"] == "main"
    assert "status --porcelain=v2" in (tmp_path / "calls.txt").read_text()
    argv0 = {r.argv[0] for r in gateway.context.sup.table.records.values() if r.kind == "git"}
    assert str(wrapper) in argv0
