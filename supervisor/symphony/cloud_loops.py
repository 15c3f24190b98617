"""ClosedLoop's loop protocol: ``POST symphony/loop`` from its cloud, callbacks back to it.

The ClosedLoop cloud hands the desktop gateway a loop (``loopId``, ``command``, the loop's
bearer token ``closedLoopAuthToken``, ``artifacts``, a repo) through its relay, and expects
``POST <api>/loops/<id>/events`` callbacks (``started``, ``output``..., ``completed`` or
``error``) plus ``POST <api>/loops/<id>/upload-artifacts`` (closedloop-ai/closedloop-ai
``apps/desktop/src/server/operations/symphony-loop.ts``, ``loop-http.ts``, ``output-tailer.ts``).

Here a loop is one supervised agent child of kind ``symphony_loop`` (in the process table,
killable with a receipt, its log kept) and:

- ``EVALUATE_PRD/PLAN/CODE/FEATURE`` run with the agent alone: a read-only turn is given the
  artifacts and answers ClosedLoop's judge report, which we write to ``<type>-judges.json`` in
  the loop's work dir (``<state>/loops/<loopId>/work``) and upload;
- every other command needs ClosedLoop's own plugin scripts (``run-loop.sh`` from
  closedloop-ai/claude-plugins) and fails at once with ``SCRIPT_NOT_FOUND``, naming them.

Callbacks go to the configured API origin (never the body's ``apiBaseUrl``), in order, from a
sender task (``services.closedloop_api.LoopCallbacks``): the child never waits on the network.
A watcher per loop tails its output (``output`` at most every 5 s) and, when the child ends,
posts exactly one terminal event: ``completed``, or ``error`` with ``CANCELLED`` (killed),
``CONTEXT_LIMIT_EXCEEDED``, ``AUTH_CHALLENGE`` or ``PROCESS_FAILED``.

While the child runs, a heartbeat task (``services.closedloop_heartbeat``) posts
``/loops/<id>/heartbeat`` every ``heartbeat_interval`` seconds (ClosedLoop's 30 minutes unless
``GATEWAY_CLOSEDLOOP_HEARTBEAT_INTERVAL`` says otherwise); it stops when the child ends. When the
cloud says the loop ``TIMED_OUT``, the loop is marked so (label ``cloudStatus``) and no more
callbacks are posted for it (the cloud has finalized it), but the child is left to finish: that
is what ClosedLoop does with a loop whose process is alive. ``loop/kill`` still stops it.

Cancellation: ``close`` of the service cancels the watchers and senders (a pending terminal
event is then lost, as when ClosedLoop's gateway quits).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ..agents.providers import Provider
from ..errors import BadRequest, Conflict, Forbidden, GatewayError, NotFound, Unavailable
from ..services.closedloop_api import LoopCallbacks, api_origin
from ..services.closedloop_heartbeat import LoopHeartbeat, heartbeat_interval
from ..spec import ProcessRecord, State, StopReason
from .addressing import RepoRef, resolve_repo
from .loop_output import redact, summarize
from .loop_request import (
    EVALUATE_COMMANDS,
    JUDGES_OUTPUT,
    LoopRequest,
    LoopRequestError,
    check_loop_request,
    primary_artifact,
)
from .runner import Runner
from .workfiles import write_json

POLL = 2.0  # how often the tailer looks at the output (ClosedLoop: 2 s)
THROTTLE = 5.0  # at most one output event per this many seconds (ClosedLoop: 5 s)
MAX_ARTIFACT_CHARS = 60_000
_JSON_OBJECT = re.compile(r"\{.*\}", re.S)
_CONTEXT_LIMIT = re.compile(r"(context (window|limit)|prompt is too long|out of room)", re.I)
_AUTH = re.compile(r"(invalid api key|authentication|oauth token|please run /login|401)", re.I)


class ScriptNotFound(GatewayError):
    """The command needs ClosedLoop's plugin scripts, which this gateway does not have."""

    code = "SCRIPT_NOT_FOUND"


class ApiOriginMissing(GatewayError):
    """No ClosedLoop API origin is configured, so no loop can report back."""

    code = "api_origin_missing"


@dataclass
class CloudLoop:
    request: LoopRequest
    callbacks: LoopCallbacks
    heartbeat: LoopHeartbeat
    record: ProcessRecord | None = None
    work: Path | None = None
    started_at: float = field(default_factory=time.time)
    #: The cloud said TIMED_OUT: nothing more is posted for this loop.
    timed_out: bool = False


def judges_prompt(request: LoopRequest, work: Path, repo: RepoRef | None) -> str:
    """ClosedLoop's native evaluate prompt, with the artifacts inline and our reply contract."""
    kind, file_name, _key = JUDGES_OUTPUT[request.command]
    parts = [
        f"Evaluate the {kind} artifact in {work}.",
        f"Use work directory: {work}.",
        f"REPO_PATH={repo.path if repo else ''}",
    ]
    for label, artifact_type in (("PRD", "PRD"), ("FEATURE", "FEATURE"), ("PLAN", "IMPLEMENTATION_PLAN")):
        artifact = primary_artifact(request, artifact_type)
        if artifact is not None and artifact.content:
            parts.append(f"<{label}>\n{artifact.content[:MAX_ARTIFACT_CHARS]}\n</{label}>")
    if request.prompt and not primary_artifact(request, "PRD"):
        parts.append(f"<PRD>\n{request.prompt[:MAX_ARTIFACT_CHARS]}\n</PRD>")
    if request.user_context:
        parts.append(f"<USER_CONTEXT>\n{request.user_context[:MAX_ARTIFACT_CHARS]}\n</USER_CONTEXT>")
    parts.append(
        f"Judge the {kind} against the criteria a reviewer would use (completeness, correctness, "
        "clarity, feasibility). Reply with the judge results as one JSON object only (it is saved "
        f'as {file_name}): {{"report_id": "<id>", "timestamp": "<ISO time>", "stats": '
        '[{"type": "case_score", "case_id": "<criterion>", "final_status": 3 if passed, 2 if it '
        'needs improvement, 1 if failed, "metrics": [{"metric_name": "<criterion>", "threshold": '
        '<0..1>, "score": <0..1>, "justification": "<why>"}]}]}'
    )
    return "\n\n".join(parts)


def judges_report(text: str) -> dict[str, Any] | None:
    """The judge report in the agent's final reply, or None."""
    match = _JSON_OBJECT.search(text or "")
    if not match:
        return None
    try:
        report = json.loads(match.group(0))
    except ValueError:
        return None
    return report if isinstance(report, dict) and isinstance(report.get("stats"), list) else None


def token_usage(lines: list[bytes]) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """``tokensUsed``, ``tokensByModel`` and the session id from claude's result line."""
    used: dict[str, Any] = {
        "input": 0,
        "output": 0,
        "cacheCreationInputTokens": 0,
        "cacheReadInputTokens": 0,
        "turns": 0,
        "models": [],
    }
    by_model: dict[str, Any] = {}
    session: str | None = None
    for raw in lines:
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        if isinstance(obj.get("session_id"), str):
            session = obj["session_id"]
        if obj.get("type") == "thread.started" and isinstance(obj.get("thread_id"), str):
            session = obj["thread_id"]
        usage = obj.get("usage") if obj.get("type") in ("result", "turn.completed") else None
        if isinstance(usage, dict):
            used["input"] += int(usage.get("input_tokens") or 0)
            used["output"] += int(usage.get("output_tokens") or 0)
            used["cacheCreationInputTokens"] += int(usage.get("cache_creation_input_tokens") or 0)
            used["cacheReadInputTokens"] += int(usage.get("cache_read_input_tokens") or 0)
            used["turns"] += int(obj.get("num_turns") or 1)
        models = obj.get("modelUsage")
        if isinstance(models, dict):
            for name, m in models.items():
                if isinstance(m, dict):
                    by_model[name] = {
                        "inputTokens": m.get("inputTokens", 0),
                        "outputTokens": m.get("outputTokens", 0),
                        "cacheReadInputTokens": m.get("cacheReadInputTokens", 0),
                        "cacheCreationInputTokens": m.get("cacheCreationInputTokens", 0),
                    }
    used["models"] = sorted(by_model)
    return used, by_model, session


class CloudLoops:
    """``symphony/loop`` and ``symphony/loop/kill`` in ClosedLoop's protocol."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.loops: dict[str, CloudLoop] = {}
        #: Seconds between a running loop's heartbeats (read at each loop's start).
        self.heartbeat_interval = heartbeat_interval()

    # ---- start ----------------------------------------------------------------------------

    async def start(self, body: Any, *, source: str = "local") -> dict[str, Any]:
        """Check ``body`` in ClosedLoop's order, start the loop; ClosedLoop's answer."""
        origin = api_origin(self.runner.sup.state_dir)
        if origin is None:
            raise ApiOriginMissing(
                "API origin not configured",
                details={
                    "setting": "GATEWAY_CLOSEDLOOP_API_ORIGIN (or apiOrigin in <state>/closedloop.json)"
                },
            )
        try:
            request = check_loop_request(body)
        except LoopRequestError as exc:
            raise BadRequest(str(exc), code="invalid_request") from None
        if request.loop_id in self.loops:
            raise Conflict("Loop is already running on this machine", code="loop_running")
        beat = LoopHeartbeat(origin, request.loop_id, request.token, interval=self.heartbeat_interval)
        loop = CloudLoop(request, LoopCallbacks(origin, request.loop_id, request.token), beat)
        beat.on_timed_out = lambda: self._timed_out(loop)
        self.loops[request.loop_id] = loop  # claimed before any await: a racing duplicate gets 409
        self.runner.spawn(loop.callbacks.run)
        started = False
        try:
            repo = await self._repo(loop)
            if request.command not in EVALUATE_COMMANDS:
                message = (
                    f"{request.command} needs ClosedLoop's plugin script run-loop.sh "
                    "(closedloop-ai/claude-plugins), which is not installed with this gateway"
                )
                loop.callbacks.event({"type": "error", "code": "SCRIPT_NOT_FOUND", "message": message})
                raise ScriptNotFound(message)
            record = await self._spawn(loop, repo, source)
            started = True
        finally:
            if not started:
                loop.callbacks.close()
                del self.loops[request.loop_id]
        return {
            "success": True,
            "loopId": request.loop_id,
            "pid": record.pid,
            "worktreePath": None,
            "processId": record.id,
        }

    async def _repo(self, loop: CloudLoop) -> RepoRef | None:
        """The registered repo the request names (``localRepoPath`` first, then ``repo.fullName``)."""
        request = loop.request
        need = request.repo_need
        if need == "NOT_REQUIRED":
            return None
        if request.local_repo_path:
            try:
                return await resolve_repo(self.runner.db, request.local_repo_path)
            except (Forbidden, NotFound):
                if need != "REQUIRED":
                    return None
                loop.callbacks.event(
                    {
                        "type": "error",
                        "code": "REPO_NOT_ALLOWED",
                        "message": "Repository path not allowed by sandbox policy",
                    }
                )
                raise Forbidden("directory not allowed", code="REPO_NOT_ALLOWED") from None
        if request.repo_full_name:
            found = await self._by_full_name(request.repo_full_name)
            if found is None and need == "REQUIRED":
                message = f"Repository not found locally: {request.repo_full_name}"
                loop.callbacks.event({"type": "error", "code": "REPO_NOT_FOUND", "message": message})
                raise NotFound(message, code="REPO_NOT_FOUND")
            return found
        return None

    async def _by_full_name(self, full_name: str) -> RepoRef | None:
        """A registered repo whose ``origin`` is ``owner/name`` (else whose folder is ``name``)."""
        name = full_name.rsplit("/", 1)[-1]
        by_folder = None
        for repo_id, path in await self.runner.db.repos():
            remote = await self.runner.git.run(["remote", "get-url", "origin"], path, check=False)
            url = remote.stdout.strip().removesuffix(".git").removesuffix("/")
            if url.endswith(f"/{full_name}") or url.endswith(f":{full_name}"):
                return RepoRef(repo_id, path, str(path))
            if path.name == name and by_folder is None:
                by_folder = RepoRef(repo_id, path, str(path))
        return by_folder

    async def _spawn(self, loop: CloudLoop, repo: RepoRef | None, source: str) -> ProcessRecord:
        request = loop.request
        prov = self.runner.provider(request.harness)
        try:
            exe = self.runner.executable(prov)
        except Unavailable:
            message = f"{prov.binary} CLI not found in PATH"
            loop.callbacks.event({"type": "error", "code": "BINARY_NOT_FOUND", "message": message})
            raise
        work = self.runner.sup.state_dir / "loops" / request.loop_id / "work"
        await trio.to_thread.run_sync(lambda: work.mkdir(parents=True, exist_ok=True))
        loop.work = work
        for name, kind in (("prd.md", "PRD"), ("plan.md", "IMPLEMENTATION_PLAN"), ("feature.md", "FEATURE")):
            artifact = primary_artifact(request, kind)
            if artifact is not None and artifact.content:
                await trio.to_thread.run_sync((work / name).write_text, artifact.content)
        prompt = judges_prompt(request, work, repo)
        opts = self.runner.run_options(prov, None, read_only=True)
        argv = prov.judge_argv(exe, prompt, opts)
        spec = self.runner.agent_spec(
            prov, argv, None, self.runner.settings.defaults, kind="symphony_loop", role="loop",
            cwd=repo.path if repo else work,
            labels={"loopId": request.loop_id, "command": request.command, "source": source,
                    "worktree": str(work), "mode": "closedloop-loop"},
        )  # fmt: skip
        loop.callbacks.event({"type": "started"})
        # ClosedLoop's body names no node: the configured default (``local`` unless set).
        loop.record = await self.runner.sup.start(spec, node=self.runner.node_for(None))
        self.runner.spawn(self._watch, loop, prov)
        return loop.record

    # ---- while it runs, and when it ends ----------------------------------------------------

    async def _watch(self, loop: CloudLoop, prov: Provider) -> None:
        assert loop.record is not None
        record = loop.record
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._tail, loop)
                nursery.start_soon(loop.heartbeat.run)
                final = await self.runner.sup.wait(record.id)
                nursery.cancel_scope.cancel()
            self._finish(loop, prov, final)
        finally:
            loop.callbacks.close()
            with trio.move_on_after(60):
                await loop.callbacks.drained.wait()
            self.loops.pop(loop.request.loop_id, None)

    async def _tail(self, loop: CloudLoop) -> None:
        """``output`` events: the newest summarized stream record, at most one per THROTTLE."""
        assert loop.record is not None
        log = self.runner.sup.log(loop.record.id)
        since, last_sent, latest, sent_text = 0, 0.0, None, None
        while True:
            await trio.sleep(POLL)
            for line in log.read(since):
                since = line.seq
                if line.stream != "stdout":
                    continue
                try:
                    summary = summarize(json.loads(line.raw))
                except ValueError:
                    summary = None
                latest = summary or latest
            now = time.monotonic()
            if latest and latest != sent_text and now - last_sent >= THROTTLE:
                loop.callbacks.event({"type": "output", "data": {"chunk": latest}})
                sent_text, last_sent = latest, now

    def _timed_out(self, loop: CloudLoop) -> None:
        """The cloud gave up on the loop (``TIMED_OUT``): stop reporting it, say so on the record."""
        loop.timed_out = True
        loop.callbacks.stop_outputs()
        if loop.record is not None:
            loop.record.labels["cloudStatus"] = "TIMED_OUT"
            self.runner.sup.table.touch(loop.record)
            self.runner.sup.log(loop.record.id).system(
                "[gateway] the ClosedLoop cloud reports this loop TIMED_OUT: no more callbacks"
            )

    def _finish(self, loop: CloudLoop, prov: Provider, final: ProcessRecord) -> None:
        """Exactly one terminal event (plus the artifact upload before ``completed``); none for
        a loop the cloud already timed out."""
        request = loop.request
        if loop.timed_out:
            return
        log = self.runner.sup.log(final.id)
        stdout = [line.raw for line in log.read() if line.stream == "stdout"]
        used, by_model, session = token_usage(stdout)
        elapsed = int((time.time() - loop.started_at) * 1000)
        base = {"loopId": request.loop_id, "sessionId": session, "tokenUsage": used,
                "tokensByModel": by_model, "elapsedMs": elapsed, "diagnosticsVersion": "1"}  # fmt: skip
        if final.state is State.KILLED or final.stop_reason is StopReason.KILL:
            loop.callbacks.event({"type": "error", "code": "CANCELLED", "message": "Loop cancelled", **base})
            return
        summary = self.runner.conclude(final, prov)
        tail = redact("\n".join(line.text for line in log.tail(40))[-4000:])
        if final.state is not State.EXITED:
            text = f"{final.error or ''}\n{tail}"
            code = (
                "CONTEXT_LIMIT_EXCEEDED"
                if final.exit_code == 2 or _CONTEXT_LIMIT.search(text)
                else "AUTH_CHALLENGE"
                if _AUTH.search(text)
                else "PROCESS_FAILED"
            )
            message = (
                f"Process exited with code {final.exit_code}" if code == "PROCESS_FAILED" else text[:500]
            )
            loop.callbacks.event({"type": "error", "code": code, "message": message, "logTail": tail, **base})
            return
        report = judges_report(summary.final_text)
        if report is None:
            loop.callbacks.event(
                {"type": "error", "code": "PROCESS_FAILED", "message": "the agent gave no judge results",
                 "logTail": tail, **base}
            )  # fmt: skip
            return
        _kind, file_name, key = JUDGES_OUTPUT[request.command]
        if loop.work is not None:
            write_json(loop.work / file_name, report)
        loop.callbacks.upload({key: report}, {"sessionId": session} if session else {})
        loop.callbacks.event(
            {
                "type": "completed",
                "result": {
                    "exitCode": final.exit_code or 0,
                    "subtype": request.command.lower(),
                    "sessionId": session,
                },
                "tokensUsed": used,
                "tokensByModel": by_model,
                "loopId": request.loop_id,
            }
        )

    # ---- kill -------------------------------------------------------------------------------

    async def kill(self, loop_id: Any) -> dict[str, Any]:
        if not isinstance(loop_id, str) or not loop_id:
            raise BadRequest("loopId is required", code="invalid_request")
        loop = self.loops.get(loop_id)
        if loop is None or (loop.record is not None and loop.record.state not in _ACTIVE):
            raise NotFound("No running process found for this loop", code="loop_not_found")
        if loop.record is None:
            raise Conflict("Loop is still initializing, retry shortly", code="loop_initializing")
        receipt = await self.runner.sup.kill(loop.record.id, StopReason.KILL)
        return {"success": True, "message": "Loop process terminated", **receipt.to_json()}


_ACTIVE = frozenset({State.STARTING, State.RUNNING, State.STOPPING})
