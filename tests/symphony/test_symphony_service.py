"""The Symphony service with the real claude/codex CLIs against the model double."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil
import pytest
import trio
from symphony_support import Harness, register_repo, wait_until

from gateway.supervisor import State, StopReason, open_supervisor
from gateway.supervisor.agents.providers import ProviderRegistry
from gateway.supervisor.errors import BadRequest, Conflict, NotFound, Unavailable
from gateway.supervisor.services.worktrees import Git
from gateway.supervisor.symphony import open_symphony

from agents.model_double import Bash, Text
from support import marked_pids

pytestmark = pytest.mark.agents


def events_of(h: Harness, record_id: str) -> list[dict]:
    from gateway.supervisor.symphony import log_line_json

    record = h.sup.table.get(record_id)
    assert record is not None
    out = []
    for line in h.sup.log(record_id).read():
        obj = log_line_json(record, line)
        if "event" in obj:
            out.append(obj["event"])
    return out


async def test_launch_runs_claude_in_the_ticket_worktree(harness: Harness) -> None:
    h = harness
    h.md.claude.bash("echo made-by-claude > made.txt && echo wrote", text="Writing the file.")
    h.md.claude.reply("File written.")
    record = await h.sym.runs.launch("T-1", "r1", "make a file")
    assert record.kind == "symphony" and record.ticket_id == "T-1"
    wt = Path(record.cwd or "")
    assert wt == h.repo.parent / f"{h.repo.name}-T-1"  # ClosedLoop's layout: <parent>/<repo>-<ticket>
    await h.sym.settled(record.id)
    final = h.sup.table.get(record.id)
    assert final is not None and final.state is State.EXITED, final.error
    assert (wt / "made.txt").read_text() == "made-by-claude\n"
    assert await h.sym.runner.worktrees.current_branch(wt) == "symphony/T-1"
    events = events_of(h, record.id)
    assert {"type": "text", "text": "Writing the file."} in events
    result = [e for e in events if e["type"] == "result"][-1]
    assert result["ok"] is True and result["turns"] == 2 and result["costUsd"] > 0
    # Every git call was a supervised child of kind git.
    assert h.sup.table.query(kind="git", ticket_id="T-1")
    # The run left the ticket's session behind (for chat) with one unread reply.
    (session,) = await h.sym.chat.sessions("T-1")
    assert session["providerSessionId"] and session["unreadCount"] == 1
    assert (await h.sym.chat.unread_count())["unreadCount"] == 1

    # A second run reuses the worktree and the branch; the file is still there.
    h.md.claude.reply("Again.")
    again = await h.sym.runs.launch("T-1", "r1", "again")
    await h.sym.settled(again.id)
    assert again.cwd == record.cwd and (wt / "made.txt").exists()

    # Chat resumes the latest run's session: the double sees its turns.
    h.md.claude.when(lambda r: "what did you write" in r.last_user_text, "I wrote made.txt.")
    chat = await h.sym.chat.turn("T-1", "what did you write?")
    await h.sym.settled(chat.id)
    last = h.md.requests_for("claude")[-1]
    assert '"again"' in json.dumps(last.messages) and "Again." in json.dumps(last.messages)
    history = await h.sym.chat.history("T-1", mark_read=False)
    assert [(m["role"], m["content"]) for m in history["messages"]] == [
        ("user", "what did you write?"),
        ("assistant", "I wrote made.txt."),
    ]
    assert (await h.sym.chat.unread_count())["unreadCount"] == 3
    await h.sym.chat.history("T-1")
    assert (await h.sym.chat.unread_count())["unreadCount"] == 0


async def test_second_launch_conflicts_and_errors(harness: Harness) -> None:
    h = harness
    h.md.claude.add_turn(Bash("echo started && sleep 600", timeout_ms=600_000))
    record = await h.sym.runs.launch("T-2", "r1", "wait")
    with pytest.raises(Conflict):
        await h.sym.runs.launch("T-2", "r1", "again")
    with pytest.raises(Conflict):
        await h.sym.chat.turn("T-2", "hello?")
    with pytest.raises(NotFound):
        await h.sym.runs.launch("T-3", "nope", "x")
    with pytest.raises(BadRequest, match="ticketId"):
        await h.sym.runs.launch("../x", "r1", "x")
    with pytest.raises(BadRequest, match="provider"):
        await h.sym.runs.launch("T-3", "r1", "x", provider="gemini")
    with pytest.raises(BadRequest, match=r"limits\.maxRuntime"):
        await h.sym.runs.launch("T-3", "r1", "x", limits={"maxRuntime": 10**9})
    with pytest.raises(NotFound, match="baseRef"):
        await h.sym.runs.launch("T-3", "r1", "x", base_ref="no-such-branch")
    with pytest.raises(BadRequest, match=r"judges\.0\.command"):
        await h.sym.loops.start("T-3", "r1", "x", [{"name": "j", "command": "rm -rf /"}])
    receipt = await h.sym.kill("T-2")
    assert receipt.process.id == record.id and receipt.process.state is State.KILLED
    assert not marked_pids(record.id)


async def test_missing_binary_is_unavailable(tmp_path: Path, repo: Path) -> None:
    registry = ProviderRegistry(binary_path=lambda name: str(tmp_path / "nowhere" / name))
    async with open_supervisor(tmp_path / "state") as sup:
        await register_repo(sup, repo)
        async with open_symphony(sup, registry=registry) as sym:
            with pytest.raises(Unavailable) as err:
                await sym.runs.launch("T-1", "r1", "x")
            assert err.value.binary == "claude" and "nowhere" in err.value.message


async def test_loop_with_pytest_judge_fails_then_passes(harness: Harness) -> None:
    h = harness
    (h.repo / "test_calc.py").write_text(
        "from calc import value\n\ndef test_value():\n    assert value == 2\n"
    )
    h.md.claude.when(
        lambda r: "Judge `tests` failed" in r.last_user_text,
        [Bash("echo 'value = 2' > calc.py"), Text("Fixed.")],
        times=1,
    )
    h.md.claude.add_turn(Bash("echo 'value = 1' > calc.py && git add -A"))
    h.md.claude.reply("Wrote calc.py.")
    h.md.claude.reply("Fixed it.")  # answer to the fix's tool result
    await trio.run_process(["git", "add", "test_calc.py"], cwd=h.repo)
    await trio.run_process(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "tests"], cwd=h.repo
    )
    judges = [{"name": "tests", "command": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]}]
    job = await h.sym.loops.start("T-4", "r1", "make value 2", judges, max_iterations=3)
    assert job.kind == "symphony_loop"
    final = await h.sup.wait(job.id)
    assert final.state is State.EXITED, final.error
    assert final.labels["outcome"] == "passed" and final.labels["iteration"] == "2"
    verdicts = (await h.sym.loops.judges("T-4"))["verdicts"]
    assert [(v["iteration"], v["name"], v["passed"], v["score"]) for v in verdicts] == [
        (1, "tests", False, 0.0),
        (2, "tests", True, 1.0),
    ]
    assert set(verdicts[0]) >= {
        "iteration",
        "name",
        "passed",
        "score",
        "threshold",
        "justification",
        "durationMs",
    }
    assert "assert 1 == 2" in verdicts[0]["justification"]
    # The second iteration's prompt carried the failure output.
    fix = [r for r in h.md.requests_for("claude") if "Judge `tests` failed" in r.last_user_text]
    assert fix and "assert 1 == 2" in fix[0].last_user_text
    # The job's log holds the children's lines (one seq space for the whole loop).
    text = "\n".join(line.text for line in h.sup.log(job.id).read())
    assert "iteration 2/3" in text and "judge tests: passed" in text and '"type":"result"' in text


async def test_loop_kill_during_a_long_tool_kills_the_tree(harness: Harness) -> None:
    h = harness
    h.md.claude.add_turn(Bash("echo started && sleep 600", timeout_ms=600_000))
    judges = [{"name": "never", "command": ["false"]}]
    job = await h.sym.loops.start("T-5", "r1", "wait", judges, max_iterations=3)

    def sleeper() -> psutil.Process | None:
        child = h.sup.job(job.id)
        cur = child.current if child else None
        if not cur:
            return None
        for pid in marked_pids(cur):
            try:
                p = psutil.Process(pid)
                if p.name() == "sleep":
                    return p
            except psutil.NoSuchProcess:
                continue
        return None

    await wait_until(lambda: sleeper() is not None, 30, "the tool's sleep 600")
    child_id = h.sup.job(job.id).current  # type: ignore[union-attr]
    assert child_id is not None
    tree = marked_pids(child_id)
    assert len(tree) >= 3  # claude, the tool's shell, sleep
    began = time.monotonic()
    receipt = await h.sym.kill_loop("T-5")
    elapsed = time.monotonic() - began
    # Counted after the receipt: the killed claude may still have had a request of its own in
    # flight (under load it sends one beside the tool call); what must not happen is a new turn.
    turns = len(h.md.requests_for("claude"))
    assert elapsed < h.sym.settings.stop_grace + 1.0
    assert receipt.process.state is State.KILLED and receipt.survivors == []
    assert not marked_pids(child_id)
    assert all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE for p in tree)
    child = h.sup.table.get(child_id)
    assert child is not None and child.state is State.KILLED and child.stop_reason is StopReason.KILL
    await trio.lowlevel.checkpoint()  # nothing more may start
    assert [r.labels.get("role") for r in h.sup.table.query(job_id=job.id)] == ["agent"]
    assert len(h.md.requests_for("claude")) == turns
    assert (await h.sym.loops.judges("T-5"))["verdicts"] == []


async def test_result_idle_watchdog_counts_as_success(harness: Harness) -> None:
    h = harness
    # A background task keeps claude -p alive after it printed its result.
    h.md.claude.add_turn(Bash("sleep 60", background=True))
    h.md.claude.reply("done, waiting for the background task")
    record = await h.sym.runs.launch("T-6", "r1", "bg", limits={"resultIdleTimeout": 1.0})
    await h.sym.settled(record.id)
    final = h.sup.table.get(record.id)
    assert final is not None
    assert final.state is State.EXITED and final.stop_reason is StopReason.RESULT_IDLE, final.error
    assert not marked_pids(record.id)


async def test_plan_loop_feedback_and_approve(harness: Harness) -> None:
    h = harness
    h.md.claude.reply("PLAN v1: do A")
    h.md.claude.when(lambda r: "Feedback on it" in r.last_user_text, "PLAN v2: do A then B")
    job = await h.sym.plans.start("T-7", "r1", "add a feature")
    await wait_until(lambda: job.labels.get("planStatus") == "awaiting-feedback", 30, "plan v1")
    assert (await h.sym.plans.get("T-7"))["plan"]["plan"] == "PLAN v1: do A"
    with pytest.raises(NotFound):
        await h.sym.plans.feedback("T-x", "nope")
    await h.sym.plans.feedback("T-7", "also do B")
    await wait_until(
        lambda: job.labels.get("planVersion") == "2" and job.labels.get("planStatus") == "awaiting-feedback",
        30,
        "plan v2",
    )
    out = await h.sym.plans.approve("T-7")
    assert out["plan"]["plan"] == "PLAN v2: do A then B" and out["plan"]["status"] == "approved"
    final = h.sup.table.get(job.id)
    assert final is not None and final.state is State.EXITED and final.labels["outcome"] == "approved"
    plan = await h.sym.plans.get("T-7")
    assert [p["status"] for p in plan["history"]] == ["revised", "approved"]
    assert plan["history"][0]["feedback"] == "also do B"
    # plan mode: the CLI was started in plan permission mode
    first = h.sup.table.query(job_id=job.id)[0]
    assert first.argv[first.argv.index("--permission-mode") + 1] == "plan"


async def test_commit_message_drafts_from_the_diff(harness: Harness) -> None:
    h = harness
    h.md.claude.bash("echo hello > hello.txt")
    h.md.claude.reply("done")
    record = await h.sym.runs.launch("T-8", "r1", "add hello")
    await h.sym.settled(record.id)
    h.md.claude.when(lambda r: "hello.txt" in r.last_user_text, "```\nAdd hello.txt\n\nSays hello.\n```")
    out = await h.sym.chat.commit_message("T-8")
    assert out["message"] == "Add hello.txt\n\nSays hello." and out["files"] == ["hello.txt"]


async def test_codex_launch(harness: Harness, binaries: dict) -> None:
    if binaries["codex"] is None:
        pytest.skip("codex CLI not installed: run scripts/install-agent-clis.sh")
    h = harness
    h.md.codex.bash("echo made-by-codex > made.txt && echo wrote")
    h.md.codex.reply("File written.")
    record = await h.sym.runs.launch("T-9", "r1", "make a file", provider="codex")
    await h.sym.settled(record.id)
    final = h.sup.table.get(record.id)
    assert final is not None and final.state is State.EXITED, final.error
    assert (Path(record.cwd or "") / "made.txt").read_text() == "made-by-codex\n"
    events = events_of(h, record.id)
    assert {"type": "text", "text": "File written."} in events
    assert [e for e in events if e["type"] == "result"][-1]["ok"] is True
    (session,) = await h.sym.chat.sessions("T-9")
    assert session["provider"] == "codex" and session["providerSessionId"]


async def test_git_runs_supervised(harness: Harness) -> None:
    git = Git(harness.sup)
    res = await git.run(["rev-parse", "--abbrev-ref", "HEAD"], harness.repo)
    assert res.ok and res.stdout == "main"
    rec = harness.sup.table.get(res.record_id)
    assert rec is not None and rec.kind == "git" and rec.state is State.EXITED
