"""Relayed commands: lock keys, held approvals, cancel and timeout (killing the child a command
started, with its receipt), a dropped link resumed without duplicates, duplicate ids."""

from __future__ import annotations

import os
import subprocess
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import FAST, KEY
from relay_double import RelayDouble

from gateway.http.guard import COMMAND_LABEL
from gateway.http.relay import RelayClient, RelayConfig, run_relay
from gateway.http.serve import GatewayHandle

from support import GIT_ENV, marked_pids, wait_until

HELD = {"operationId": "health_check", "path": "/api/gateway/version", "requiresApproval": True}


async def dispatch(double: RelayDouble, **command: Any) -> str:
    return str(await trio.to_thread.run_sync(partial(double.dispatch, **command)))


def pending(gateway: GatewayHandle) -> dict[str, str]:
    """Held approvals by the relayed command they serve."""
    return {a.command_id: a.id for a in gateway.context.approvals.pending.values() if a.command_id}


async def decide(api: httpx.AsyncClient, approval_id: str, decision: str = "approved") -> None:
    response = await api.post(f"/api/gateway/approvals/{approval_id}", json={"decision": decision})
    assert response.status_code == 200, response.text


def kinds(double: RelayDouble, cid: str) -> list[str]:
    return [e["eventType"] for e in double.events(cid)]


async def test_one_lock_key_at_a_time_different_keys_in_parallel(
    relay: RelayClient, double: RelayDouble, gateway: GatewayHandle, api: httpx.AsyncClient
) -> None:
    a = await dispatch(double, **HELD, lockKey="repo-1")
    b = await dispatch(double, **HELD, lockKey="repo-1")
    c = await dispatch(double, **HELD, lockKey=" repo-2 ")
    # a and c run at once (both wait for a person); b waits for a's key, not for a slot
    await wait_until(lambda: set(pending(gateway)) == {a, c}, 10, "a and c held")
    assert relay.executor.stats()["activeCommands"] == 2
    assert relay.executor.queue == [b]
    assert kinds(double, b) == []

    await decide(api, pending(gateway)[a])
    await wait_until(lambda: double.terminal(a), 10, "a to end")
    await wait_until(lambda: b in pending(gateway), 10, "b to start once a released the key")
    await decide(api, pending(gateway)[b])
    await decide(api, pending(gateway)[c])
    for cid in (a, b, c):
        await wait_until(lambda cid=cid: double.terminal(cid), 10, "all to end")
        assert kinds(double, cid) == ["status", "result", "done"]
    order = [(d["commandId"], d["eventType"]) for n, d in double.received if n == "desktop.command.event"]
    assert order.index((a, "done")) < order.index((b, "status"))


async def test_a_held_approval_outlives_the_command_timeout(
    relay: RelayClient, double: RelayDouble, gateway: GatewayHandle, api: httpx.AsyncClient
) -> None:
    # the timeout counts from the command's start: it must cover the request reaching the hold
    cid = await dispatch(double, **HELD, approvalReason="relayed from the web app", timeoutMs=1500)
    await wait_until(lambda: cid in pending(gateway), 10, "the approval")
    approval = gateway.context.approvals.pending[pending(gateway)[cid]]
    assert approval.reason == "relayed from the web app" and approval.principal == "relay"
    await trio.sleep(3.5)  # more than twice the command's timeout passes while a person decides
    assert kinds(double, cid) == ["status"]
    await decide(api, approval.id)
    await wait_until(lambda: double.terminal(cid), 10, "the command to end")
    assert kinds(double, cid) == ["status", "result", "done"]
    await wait_until(lambda: double.received_named("desktop.analytics"), 5, "analytics")
    events = [a["event"] for a in double.received_named("desktop.analytics")]
    assert "approval_requested" in events


async def test_a_denied_approval_is_a_terminal_403(
    relay: RelayClient, double: RelayDouble, gateway: GatewayHandle, api: httpx.AsyncClient
) -> None:
    cid = await dispatch(double, **HELD)
    await wait_until(lambda: cid in pending(gateway), 10, "the approval")
    await decide(api, pending(gateway)[cid], "denied")
    await wait_until(lambda: double.terminal(cid), 10, "the command to end")
    assert kinds(double, cid) == ["status", "error"]
    error = double.events(cid)[-1]["data"]
    assert error["statusCode"] == 403 and "approval_denied" in error["error"]


async def test_relayed_commands_are_their_own_principal_in_policy(
    relay: RelayClient, double: RelayDouble, gateway: GatewayHandle, api: httpx.AsyncClient
) -> None:
    response = await api.put("/api/gateway/policy", json={"thresholds": {"relay": "none"}})
    assert response.status_code == 200 and response.json()["thresholds"]["relay"] == "none"
    asked = await dispatch(double, operationId="health_check", path="/api/gateway/version")
    await wait_until(lambda: asked in pending(gateway), 10, "a relayed read held by the threshold")
    assert (await api.get("/api/gateway/version")).status_code == 200  # a local caller is not asked
    await decide(api, pending(gateway)[asked])
    await wait_until(lambda: double.terminal(asked), 10, "the approved command")

    rule = {"effect": "deny", "principal": "relay", "operation": "process_control"}
    assert (await api.post("/api/gateway/policy/rules", json=rule)).status_code == 201
    denied = await dispatch(double, operationId="process_control", method="POST",
                            path="/api/gateway/processes", body={"argv": ["true"]})  # fmt: skip
    await wait_until(lambda: double.terminal(denied), 10, "the denied command")
    error = double.events(denied)[-1]["data"]
    assert error["statusCode"] == 403 and "operation_denied" in error["error"]
    assert not _children_of(gateway, denied)
    # and the cloud can never mint a local sign-in challenge
    mint = {"operationId": "gateway_admin", "method": "POST", "path": "/api/gateway/auth/challenge"}
    minted = await dispatch(double, **mint)
    await wait_until(lambda: double.terminal(minted), 10, "the refused mint")
    assert double.events(minted)[-1]["data"]["statusCode"] == 403


async def test_cancel_a_queued_and_a_held_command(
    relay: RelayClient, double: RelayDouble, gateway: GatewayHandle
) -> None:
    a = await dispatch(double, **HELD, lockKey="k")
    b = await dispatch(double, **HELD, lockKey="k")
    await wait_until(lambda: a in pending(gateway), 10, "a held")
    await trio.to_thread.run_sync(double.cancel, b, "not needed")
    await wait_until(lambda: double.terminal(b), 10, "b cancelled")
    cancelled = {"type": "done", "cancelled": True, "reason": "not needed"}
    assert [e["data"] for e in double.events(b)] == [cancelled]
    await trio.to_thread.run_sync(double.cancel, a)
    await wait_until(lambda: double.terminal(a), 10, "a cancelled")
    done = double.events(a)[-1]["data"]
    assert done["cancelled"] is True and done["killed"] == []
    await wait_until(lambda: not pending(gateway), 10, "the held request withdrawn")
    assert gateway.context.approvals.recent[-1].outcome == "withdrawn"


@pytest.fixture
def hanging_remote_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A repo whose remote's pre-receive hook hangs (``git push`` never ends); the file the
    hook touches when it starts."""
    env = {**GIT_ENV, "HOME": str(tmp_path)}
    remote, repo = tmp_path / "remote.git", tmp_path / "repo"
    started = tmp_path / "hook-started"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True, env=env)
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\ntouch {started}\nexec sleep 120\n")
    hook.chmod(0o755)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    (repo / "README").write_text("x\n")
    for args in (["add", "README"], ["commit", "-qm", "init"], ["remote", "add", "origin", str(remote)]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    return repo, started


@pytest.fixture
async def slow_push_repo(hanging_remote_repo: tuple[Path, Path], api: httpx.AsyncClient) -> tuple[str, Path]:
    """That repo, registered: its path (as ClosedLoop names repos) and the hook's file."""
    repo, started = hanging_remote_repo
    response = await api.post("/api/gateway/repos", json={"path": str(repo)})
    assert response.status_code in (200, 201), response.text
    return str(repo), started


def _children_of(gateway: GatewayHandle, cid: str) -> list[Any]:
    return [r for r in gateway.context.sup.table.query() if r.labels.get(COMMAND_LABEL) == cid]


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_cancel_and_timeout_kill_the_child_a_relayed_command_started(
    how: str,
    relay: RelayClient,
    double: RelayDouble,
    gateway: GatewayHandle,
    slow_push_repo: tuple[str, Path],
) -> None:
    repo_path, hook_started = slow_push_repo
    extra = {"timeoutMs": 4000} if how == "timeout" else {}
    cid = await dispatch(
        double, operationId="git_action", method="POST", path="/api/gateway/git",
        body={"repoPath": repo_path, "action": "push"}, **extra,
    )  # fmt: skip
    await wait_until(hook_started.exists, 10, "the push to reach the remote's hook")
    pushes = [r for r in _children_of(gateway, cid) if "push" in r.argv]
    assert len(pushes) == 1 and pushes[0].state.value == "running"
    push = pushes[0]
    assert marked_pids(push.id)  # git, receive-pack, the hook's sleep
    if how == "cancel":
        await trio.to_thread.run_sync(double.cancel, cid, "stop it")
    await wait_until(lambda: double.terminal(cid), 15, f"the command to end by {how}")
    last = double.events(cid)[-1]
    if how == "cancel":
        assert last["eventType"] == "done" and last["data"]["cancelled"] is True
        assert last["data"]["reason"] == "stop it"
    else:
        assert last["eventType"] == "error" and last["data"]["code"] == "timeout"
        assert last["data"]["terminal"] is True and "done" not in kinds(double, cid)
    receipts = last["data"]["killed"]
    assert [r["process"]["id"] for r in receipts] == [push.id]
    assert receipts[0]["signals"] and receipts[0]["survivors"] == []
    assert receipts[0]["process"]["state"] == "killed"
    assert marked_pids(push.id) == set()


async def test_a_dropped_link_mid_command_resumes_without_duplicates(
    relay: RelayClient, double: RelayDouble, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    argv = ["sh", "-c", 'echo one; cat "$1"; echo two', "sh", str(fifo)]
    process = (await api.post("/api/gateway/processes", json={"argv": argv})).json()
    cid = await dispatch(
        double, operationId="process_table", path=f"/api/gateway/processes/{process['id']}/logs",
        query={"follow": "1"},
    )  # fmt: skip

    def texts() -> list[str]:
        return [e["data"].get("text", "") for e in double.events(cid) if e["eventType"] == "chunk"]

    await wait_until(lambda: "one" in texts(), 10, "the first line relayed")
    double.keys.clear()  # the relay refuses us for a while: the link stays down
    await trio.to_thread.run_sync(double.drop)
    await wait_until(lambda: not relay.online, 10, "the client to notice")
    # while offline, the command keeps running and its events are buffered
    await trio.to_thread.run_sync(fifo.write_text, "middle\n")
    tracked = relay.executor.tracked[cid]
    await wait_until(lambda: tracked.state == "terminal", 10, "the command to end offline")
    assert not double.terminal(cid)
    executions = relay.executor.executions

    double.keys.add("cl-test-key")
    await wait_until(lambda: double.terminal(cid), 15, "the buffered events to arrive")
    await wait_until(lambda: len(double.stored(cid).acks) >= 2, 10, "the re-dispatch acked")
    events = double.events(cid)
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert texts()[:3] == ["one", "middle", "two"]
    assert [e["eventType"] for e in events].count("done") == 1
    assert relay.executor.executions == executions  # the re-dispatched command was not run again
    assert all(ack["accepted"] for ack in double.stored(cid).acks)
    assert double.envelope_errors == []


async def test_a_buffer_the_relay_never_acks_fails_the_command_instead_of_growing(
    gateway: GatewayHandle, double: RelayDouble, api: httpx.AsyncClient, nursery: trio.Nursery, tmp_path: Path
) -> None:
    client: RelayClient = await nursery.start(
        partial(run_relay, gateway.context, RelayConfig(double.url, KEY), max_buffered=8, **FAST)
    )
    await wait_until(lambda: client.state == "connected", 10, "connected")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    argv = ["sh", "-c", 'cat "$1" >/dev/null; seq 1 500; sleep 60', "sh", str(fifo)]
    process = (await api.post("/api/gateway/processes", json={"argv": argv})).json()
    cid = await dispatch(
        double, operationId="process_table", path=f"/api/gateway/processes/{process['id']}/logs",
        query={"follow": "1"},
    )  # fmt: skip
    await wait_until(lambda: kinds(double, cid) == ["status"], 10, "the stream to start")
    double.keys.clear()
    await trio.to_thread.run_sync(double.drop)
    await wait_until(lambda: not client.online, 10, "offline")
    await trio.to_thread.run_sync(fifo.write_text, "go\n")  # 500 lines while nobody acks
    tracked = client.executor.tracked[cid]
    await wait_until(lambda: bool(tracked.events) and tracked.events[-1].event_type == "error", 10, "the cut")
    assert tracked.outcome == "failed" and 2 <= len(tracked.events) <= 9
    double.keys.add(KEY)
    await wait_until(lambda: double.terminal(cid), 15, "the buffered events to arrive")
    last = double.events(cid)[-1]
    assert last["eventType"] == "error" and last["data"]["code"] == "buffer_overflow"
    assert len(double.events(cid)) <= 10  # status, at most 8 lines, the error
    killed = await api.post(f"/api/gateway/processes/{process['id']}/kill")  # nothing left running
    assert killed.status_code == 200, killed.text


async def test_a_queued_command_the_cloud_ended_meanwhile_is_not_run(
    relay: RelayClient, double: RelayDouble, gateway: GatewayHandle, api: httpx.AsyncClient
) -> None:
    running = await dispatch(double, **HELD, lockKey="k")
    queued = await dispatch(double, operationId="health_check", path="/api/gateway/version", lockKey="k")
    await wait_until(lambda: running in pending(gateway) and double.stored(queued).acks, 10, "both accepted")
    double.keys.clear()
    await trio.to_thread.run_sync(double.drop)
    await wait_until(lambda: not relay.online, 10, "offline")
    double.end_in_cloud(queued)  # cancelled in the web app while this gateway was away
    await decide(api, pending(gateway)[running])  # the running one finishes offline
    await wait_until(lambda: relay.executor.tracked[running].state == "terminal", 10, "finished offline")
    double.keys.add(KEY)
    await wait_until(lambda: double.terminal(running), 15, "the running one reported")
    tracked = relay.executor.tracked[queued]
    await wait_until(lambda: tracked.state == "terminal", 10, "the queued one closed")
    assert tracked.outcome == "cancelled" and tracked.started_at is None
    assert relay.executor.executions == 1


async def test_a_duplicate_command_id_is_never_run_twice(
    relay: RelayClient, double: RelayDouble, gateway: GatewayHandle
) -> None:
    cid = await dispatch(
        double, operationId="process_control", method="POST", path="/api/gateway/processes",
        body={"argv": ["true"], "labels": {"test": "dup"}},
    )  # fmt: skip
    await wait_until(lambda: double.terminal(cid), 10, "the command to end")
    first = double.events(cid)
    started = _children_of(gateway, cid)
    assert len(started) == 1 and started[0].labels["test"] == "dup"
    await trio.to_thread.run_sync(double.redispatch, cid)
    # acked events of a running command are dropped; a terminal one keeps the rest for replay
    await wait_until(lambda: double.stored(cid).duplicates >= 1, 10, "the replay")
    assert len(double.stored(cid).acks) == 2 and double.stored(cid).acks[1]["accepted"] is True
    assert double.events(cid) == first
    assert len(_children_of(gateway, cid)) == 1
    assert relay.executor.executions == 1

    held = await dispatch(double, **HELD)
    await wait_until(lambda: held in pending(gateway), 10, "held")
    await trio.to_thread.run_sync(double.redispatch, held)  # while it runs: re-acked only
    await wait_until(lambda: len(double.stored(held).acks) == 2, 10, "the re-ack")
    assert len(pending(gateway)) == 1 and relay.executor.executions == 2


async def test_only_the_gateway_token_with_the_cloud_source_is_the_relay(
    gateway: GatewayHandle, api: httpx.AsyncClient
) -> None:
    cid = str(uuid.uuid4())
    relayed = {"x-desktop-source": "cloud-socket", "x-desktop-command-id": cid}
    cases = [
        (relayed, cid),  # the executor's own headers: labelled
        ({"x-desktop-command-id": cid}, None),  # no cloud source: a local caller
        ({**relayed, "x-desktop-command-id": "not-a-uuid"}, None),
    ]
    for headers, label in cases:
        response = await api.post("/api/gateway/processes", json={"argv": ["true"]}, headers=headers)
        assert response.status_code == 201, response.text
        assert response.json()["labels"].get(COMMAND_LABEL) == label
