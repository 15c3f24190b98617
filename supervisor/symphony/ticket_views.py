"""A ticket's status, log, plan and judges as ClosedLoop's web app reads them (repo by path).

ClosedLoop's gateway reads these from files its plugin scripts write in the ticket's work dir
(``state.json``, ``claude-output.jsonl``, ``plan.json``, ``judges.json``) and always answers
JSON (closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/symphony-status.ts``,
``metadata-routes.ts``, ``symphony-logs.ts``, ``symphony-plan.ts``, ``symphony-judges.ts``); its
web app calls ``response.json()`` without checking the status. Here the truth is our process
table, our log and our stores; ClosedLoop's files are read only when we have nothing (a run
ClosedLoop's own desktop made in the same worktree).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import trio

from ..errors import BadRequest, Forbidden, NotFound
from ..spec import ProcessRecord, State, StopReason, iso
from .addressing import RepoRef, resolve_repo, worktree_dir, worktree_parent
from .model import TOP_KINDS
from .workfiles import read_json, work_dir

#: Our record states as ClosedLoop's ``state.json`` (status, phase).
STATUS_OF: dict[State, tuple[str, str]] = {
    State.STARTING: ("STARTING", "Initializing"),
    State.RUNNING: ("IN_PROGRESS", "Running"),
    State.STOPPING: ("IN_PROGRESS", "Stopping"),
    State.EXITED: ("COMPLETED", "Completed"),
    State.FAILED: ("FAILED", "Failed"),
    State.KILLED: ("STOPPED", "Process stopped by user"),
    State.LOST: ("STOPPED", "Process stopped unexpectedly"),
}
_DONE = {"COMPLETED", "ERROR", "FAILED", "CANCELLED", "STOPPED"}
_TRAILING_COMMA = re.compile(r",\s*([\]}])")


def _load_lenient(path: Path) -> Any:
    """A JSON file as ClosedLoop reads plan/judges files: trailing commas forgiven."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        return json.loads(text)
    except ValueError:
        try:
            return json.loads(_TRAILING_COMMA.sub(r"\1", text))
        except ValueError:
            return None


class TicketViews:
    """Read-only views over a ticket named by (repo path, ticket id)."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc  # the Symphony service: its runner, plans and loops

    @property
    def runner(self) -> Any:
        return self.svc.runner

    async def _place(self, raw_repo: str | None, ticket_id: str) -> tuple[RepoRef, Path, bool]:
        repo = await resolve_repo(self.runner.db, raw_repo)
        wt = worktree_dir(repo.path, ticket_id, self.runner.worktrees.layout)
        return repo, wt, await trio.to_thread.run_sync(wt.is_dir)

    def latest(self, ticket_id: str, where: Path | None = None) -> ProcessRecord | None:
        """The ticket's latest top-level run, loop or plan loop (or one working in ``where``)."""
        recs = [r for r in self.runner.records(ticket_id, TOP_KINDS) if r.job_id is None]
        if not recs and where is not None:
            recs = [
                r
                for r in self.runner.records(None, TOP_KINDS)
                if r.job_id is None and (r.labels.get("worktree") == str(where) or r.cwd == str(where))
            ]
        return recs[-1] if recs else None

    # ---- status ---------------------------------------------------------------------------

    async def status(self, raw_repo: str | None, ticket_id: str) -> dict[str, Any]:
        """``status/:ticketId?repo=``: 200 always; ``exists:false`` without a worktree or run."""
        _repo, wt, exists = await self._place(raw_repo, ticket_id)
        record = self.latest(ticket_id, wt)
        if not exists and record is None:
            return {"exists": False, "phase": None, "status": None, "message": "Worktree not found"}
        where = work_dir(wt)
        plan_json = await trio.to_thread.run_sync(_load_lenient, where / "plan.json")
        plans = await self.runner.db.plans(ticket_id)
        out: dict[str, Any] = {
            "exists": True,
            "worktreeDir": str(wt),
            "fallbackDetected": False,
            "planExists": bool(plans) or isinstance(plan_json, dict),
            "activeAgents": [],
            "currentTaskId": None,
        }
        if isinstance(plan_json, dict) and isinstance(plan_json.get("tasks"), list):
            tasks = [t for t in plan_json["tasks"] if isinstance(t, dict)]
            done = sum(1 for t in tasks if t.get("status") in ("completed", "done"))
            out["taskProgress"] = {"pending": len(tasks) - done, "completed": done, "total": len(tasks)}
        if record is None:
            state = await trio.to_thread.run_sync(read_json, where / "state.json", None)
            if not isinstance(state, dict):
                return {
                    **out,
                    "stateExists": False,
                    "phase": "Initializing",
                    "status": "STARTING",
                    "message": "Symphony is starting up...",
                }
            return {
                **out,
                "stateExists": True,
                "phase": state.get("phase", "Unknown"),
                "status": state.get("status", "UNKNOWN"),
                "timestamp": state.get("timestamp"),
                "raw": state,
                "pid": None,
                "processRunning": False,
            }
        status, phase = STATUS_OF[record.state]
        if record.state is State.FAILED and record.error:
            phase = f"Failed: {record.error[:200]}"
        return {
            **out,
            "stateExists": True,
            "phase": phase,
            "status": status,
            "timestamp": iso(record.ended_at or record.started_at or 0.0),
            "raw": record.to_json(),
            "pid": record.pid,
            "processRunning": record.state in (State.STARTING, State.RUNNING, State.STOPPING),
            "processId": record.id,
        }

    async def workdir_status(self, raw_dir: str) -> dict[str, Any]:
        """``status?workDir=``: ``{isRunning, phase, status, iteration, lastUpdate}``."""
        path = Path(raw_dir.replace("~", str(Path.home()), 1) if raw_dir.startswith("~") else raw_dir)
        allowed = any(
            path == repo
            or (
                path.parent == worktree_parent(repo, self.runner.worktrees.layout)
                and path.name.startswith(f"{repo.name}-")
            )
            for _rid, repo in await self.runner.db.repos()
        )
        if not allowed:
            raise Forbidden("directory not allowed", code="directory_not_allowed")
        recs = [
            r
            for r in self.runner.records(None, TOP_KINDS)
            if r.job_id is None and (r.labels.get("worktree") == str(path) or r.cwd == str(path))
        ]
        if recs:
            record = recs[-1]
            status, phase = STATUS_OF[record.state]
            iteration = record.labels.get("iteration")
            return {
                "isRunning": status not in _DONE,
                "phase": phase,
                "status": status,
                "iteration": int(iteration) if iteration and iteration.isdigit() else None,
                "lastUpdate": iso(record.ended_at or record.started_at or 0.0),
                "processId": record.id,
            }
        state = await trio.to_thread.run_sync(read_json, work_dir(path) / "state.json", None)
        if not isinstance(state, dict):
            return {"isRunning": False, "reason": "state.json not found"}
        return {
            "isRunning": str(state.get("status", "")).upper() not in _DONE - {"STOPPED"},
            "phase": state.get("phase"),
            "status": state.get("status"),
            "iteration": state.get("iteration"),
            "lastUpdate": state.get("timestamp"),
        }

    # ---- logs -----------------------------------------------------------------------------

    async def logs(self, raw_repo: str | None, ticket_id: str, lines: int) -> dict[str, Any]:
        """``logs/:ticketId?repo&lines``: the latest run's stream-json lines (``jsonl``) or text."""
        _repo, wt, _exists = await self._place(raw_repo, ticket_id)
        return await self._log_view(self.latest(ticket_id, wt), lines)

    async def ticket_logs(self, ticket_id: str, lines: int) -> dict[str, Any]:
        """The same view for a Symphony ticket named by id only (no ``repo``)."""
        recs = [r for r in self.runner.records(ticket_id, TOP_KINDS) if r.job_id is None]
        recs = recs or list(self.runner.records(ticket_id, ("chat",)))
        return await self._log_view(recs[-1] if recs else None, lines)

    async def _log_view(self, record: ProcessRecord | None, lines: int) -> dict[str, Any]:
        if record is None:
            return {"exists": False, "format": "text", "content": "", "lines": 0}
        log = self.runner.sup.log(record.id)
        every = await trio.to_thread.run_sync(log.read)
        if record.event_parser:
            jsonl = [ln.text for ln in every if ln.stream == "stdout" and ln.text.lstrip().startswith("{")]
            last = jsonl[-lines:]
            return {
                "exists": True,
                "format": "jsonl",
                "lines": last,
                "totalLines": len(jsonl),
                "returnedLines": len(last),
                "processId": record.id,
            }
        text = [ln.text for ln in every if ln.text.strip()]
        last = text[-lines:]
        return {
            "exists": True,
            "format": "text",
            "content": "\n".join(last),
            "totalLines": len(text),
            "returnedLines": len(last),
            "processId": record.id,
        }

    # ---- kill (ClosedLoop's forms) ----------------------------------------------------------

    async def kill(self, body: dict[str, Any]) -> dict[str, Any]:
        """``{pid}`` of one of our Symphony processes, or ``{ticketId, repoPath}``."""
        pid = body.get("pid")
        if isinstance(pid, int) and not isinstance(pid, bool):
            owned = [r for r in self.runner.records(None) if r.pid == pid]
            if not owned:
                raise NotFound(f"no process of this gateway has pid {pid}", code="process_not_found")
            return await _kill_record(self.svc, owned[-1])
        ticket_id = body.get("ticketId")
        if not (isinstance(ticket_id, str) and ticket_id and isinstance(body.get("repoPath"), str)):
            raise BadRequest("Either pid or (ticketId + repoPath) is required", code="invalid_request")
        _repo, wt, _exists = await self._place(body["repoPath"], ticket_id)
        active = [
            r
            for r in self.runner.records(ticket_id) + self.runner.records(None, TOP_KINDS)
            if r.job_id is None
            and r.state in (State.STARTING, State.RUNNING, State.STOPPING)
            and (r.ticket_id == ticket_id or r.labels.get("worktree") == str(wt))
        ]
        if not active:
            return {"success": True, "message": "No process to kill (no PID file), state marked as stopped"}
        return await _kill_record(self.svc, active[-1])

    # ---- plan and judges ------------------------------------------------------------------

    async def plan(self, raw_repo: str | None, ticket_id: str) -> dict[str, Any]:
        _repo, wt, exists = await self._place(raw_repo, ticket_id)
        plans = await self.runner.db.plans(ticket_id)
        if plans:
            latest = plans[-1]
            return {
                "exists": True,
                "planExists": True,
                "content": latest.get("plan") or latest.get("content") or "",
                "raw": latest,
                "worktreeDir": str(wt),
            }
        if not exists:
            raise NotFound("Worktree not found", code="worktree_not_found", details={"exists": False})
        plan = await trio.to_thread.run_sync(_load_lenient, work_dir(wt) / "plan.json")
        if not isinstance(plan, dict):
            raise NotFound(
                "Plan not found yet", code="plan_not_found", details={"exists": False, "planExists": False}
            )
        raw_content = plan.get("content")
        content = raw_content if isinstance(raw_content, str) else ""
        content = content.replace("\\n", "\n").replace("\\t", "\t")
        return {"exists": True, "planExists": True, "content": content, "raw": plan, "worktreeDir": str(wt)}

    async def judges(self, raw_repo: str | None, ticket_id: str) -> dict[str, Any]:
        _repo, wt, exists = await self._place(raw_repo, ticket_id)
        loops = [r for r in self.runner.records(ticket_id, ("symphony_loop",)) if r.job_id is None]
        verdicts = (
            [v.to_json() for v in await self.runner.db.verdicts(ticket_id, loops[-1].id)] if loops else []
        )
        if verdicts:
            last = max(v["iteration"] for v in verdicts)
            current = [v for v in verdicts if v["iteration"] == last]
            report = {
                "report_id": loops[-1].id,
                "timestamp": current[-1]["createdAt"],
                "stats": [evaluation_case(v) for v in current],
            }
            return {
                "exists": True,
                "isMock": False,
                "data": report,
                "worktreeDir": str(wt),
                "verdicts": verdicts,
                "jobId": loops[-1].id,
            }
        if not exists:
            raise NotFound(
                "Worktree not found", code="worktree_not_found", details={"exists": False, "isMock": False}
            )
        data = await trio.to_thread.run_sync(_load_lenient, work_dir(wt) / "judges.json")
        if data is not None:
            return {"exists": True, "isMock": False, "data": data, "worktreeDir": str(wt)}
        return {
            "exists": False,
            "isMock": False,
            "message": "Awaiting LLM judges feedback",
            "worktreeDir": str(wt),
        }


def evaluation_case(verdict: dict[str, Any]) -> dict[str, Any]:
    """One judge's verdict as a ClosedLoop ``case_score`` (final_status 3 passed, 2 needs
    improvement, 1 failed)."""
    passed, score, threshold = verdict["passed"], float(verdict["score"]), float(verdict["threshold"])
    status = 3 if passed else 2 if score >= threshold / 2 else 1
    return {
        "type": "case_score",
        "case_id": verdict["name"],
        "final_status": status,
        "metrics": [
            {
                "metric_name": verdict["name"],
                "threshold": threshold,
                "score": score,
                "justification": verdict["justification"],
            }
        ],
    }


async def _kill_record(svc: Any, record: ProcessRecord) -> dict[str, Any]:
    if record.state not in (State.STARTING, State.RUNNING, State.STOPPING):
        return {"success": True, "message": "Process already terminated", "pid": record.pid}
    receipt = await svc.runner.sup.kill(record.id, StopReason.KILL)
    return {"success": True, "message": "Process terminated", "pid": record.pid, **receipt.to_json()}
