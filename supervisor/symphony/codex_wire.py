"""Code review with codex as ClosedLoop's web app drives it: state files in the work dir.

ClosedLoop keeps a ticket's review in ``<worktree>/.closedloop-ai/work/``:
``codex-review-<provider>.json`` (``{status, pid, startedAt, completedAt?, exitCode?,
provider, sessionId?, config}``), ``codex-review-<provider>.log``,
``review-findings-<provider>.json``, ``codex-debate.json`` and ``codex-chat[-review].json``
(closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/codex.ts``). This module keeps
the same files, while the children are ours: a review is a supervised run of kind
``codex_review`` (a client that hangs up does not stop it), a verdict, a debate round or a chat
turn a supervised child of its own. codex 0.171 no longer accepts ``--full-auto``: where
ClosedLoop runs ``codex exec --full-auto``, we run our codex argv with an explicit sandbox
(read-only for verdicts and debates; the settings' sandbox for chat in a worktree).

Cancellation: the watchers run in the Symphony service's nursery and end with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from ..agents.providers import Provider
from ..errors import AgentFailed, BadRequest, NotFound
from ..services.worktrees import check_ref
from ..spec import ACTIVE_STATES, ProcessRecord, ProcessSpec, State, StopReason
from .addressing import RepoRef, exclude_work_files, resolve_repo, worktree_dir
from .review_text import SESSION_ID, parse_findings, strip_diagnostics, verdict_tag
from .runner import Runner
from .workchat import now_iso
from .workfiles import JsonFiles, work_dir

DEFAULT_MODEL = "gpt-5.3-codex"
KIND = "codex_review"
PROVIDERS = ("codex", "claude")
VERDICT_PROMPT = """Now perform a Premise Review of the changes you just reviewed. Question whether the changes were necessary at all:

- Non-existent bug "fix": The author claims to fix a bug, but the original code was correct
- Redundant workaround: The problem is already handled by the framework or upstream code
- Phantom dead-code removal: Code removed as "unused" but still referenced elsewhere
- Duplicate abstraction: A new helper was added but an equivalent already exists
- Unnecessary optimization: Caching/batching for a path that is not a bottleneck

Use Read, Grep, and Glob to investigate the existing codebase for evidence.

After your analysis, output exactly one line as the LAST line of your response:
<pr_verdict>{"verdict":"X","reason":"..."}</pr_verdict>

Where verdict is:
- "decline" if you found blocking premise issues (changes are unnecessary or harmful) OR your review found critical/blocking issues
- "needs_attention" if there are high-priority issues but no blocking ones
- "approve" if no blocking or high-priority issues were found

Keep reason under 120 characters. The reason should reference the most important issue."""  # noqa: E501 - ClosedLoop's prompt, verbatim


def _text(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value.strip() else default


def _provider_name(value: Any, default: str = "codex") -> str:
    return value if value in PROVIDERS else default


class CodexWire:
    """``codex/*`` in ClosedLoop's form (repo by path, files in the ticket's work dir)."""

    def __init__(self, runner: Runner, files: JsonFiles) -> None:
        self.runner = runner
        self.files = files

    async def _place(self, raw_repo: str | None, ticket_id: str) -> tuple[RepoRef, Path, bool]:
        repo = await resolve_repo(self.runner.db, raw_repo)
        wt = worktree_dir(repo.path, ticket_id, self.runner.worktrees.layout)
        return repo, wt, await trio.to_thread.run_sync(wt.is_dir)

    @staticmethod
    def paths(wt: Path, provider: str) -> dict[str, Path]:
        work = work_dir(wt)
        return {
            "state": work / f"codex-review-{provider}.json",
            "log": work / f"codex-review-{provider}.log",
            "findings": work / f"review-findings-{provider}.json",
        }

    # ---- available --------------------------------------------------------------------------

    async def available(self) -> dict[str, Any]:
        """``{available, version}`` from ``codex --version`` (a short supervised child)."""
        try:
            exe = self.runner.registry.executable("codex")
        except Exception:  # MissingBinary, or no codex provider registered
            return {"available": False, "provider": "codex", "path": None}
        spec = ProcessSpec(
            argv=[exe, "--version"], kind="git", cwd=str(self.runner.sup.state_dir), max_runtime=15.0
        )
        record = await self.runner.sup.start(spec)
        final = await self.runner.sup.wait(record.id)
        text = " ".join(line.text for line in self.runner.sup.log(record.id).read())
        if final.state is not State.EXITED:
            return {"available": False, "provider": "codex", "path": exe}
        version = text.split("codex-cli", 1)[-1].strip().split()[0] if "codex-cli" in text else "unknown"
        return {"available": True, "version": version, "provider": "codex", "path": exe}

    # ---- review -------------------------------------------------------------------------------

    async def start_review(self, ticket_id: str, body: dict[str, Any]) -> tuple[ProcessRecord, str]:
        """Start the review run (kind ``codex_review``); its record and the provider."""
        raw_repo = body.get("repoPath")
        if not isinstance(raw_repo, str) or not raw_repo.strip():
            raise BadRequest("repoPath is required", code="invalid_request")
        provider = _provider_name(body.get("provider"))
        if provider == "claude" and not ticket_id.startswith("pr-"):
            raise BadRequest("ticketId must start with 'pr-' for Claude reviews", code="invalid_request")
        model = _text(body.get("model"), DEFAULT_MODEL)
        effort = _text(body.get("reasoningEffort"), "medium")
        mode = "uncommitted" if body.get("reviewMode") == "uncommitted" else "base"
        base = _text(body.get("baseBranch"), "main")
        for value, name in ((model, "model"), (effort, "reasoningEffort")):
            if not value.replace("-", "").replace(".", "").replace("_", "").isalnum():
                raise BadRequest(f"{name}: letters, digits, '-', '.' and '_' only", code="invalid_request")
        try:
            check_ref(base, "baseBranch")
        except ValueError as exc:
            raise BadRequest(str(exc), code="invalid_request") from None
        repo, wt, exists = await self._place(raw_repo, ticket_id)
        if body.get("useBaseRepo") is True:
            cwd = repo.path
        else:
            if not exists:
                branch = body.get("branchName") if isinstance(body.get("branchName"), str) else None
                args = (
                    ["worktree", "add", str(wt), branch]
                    if branch
                    else ["worktree", "add", "--detach", str(wt)]
                )
                if branch:
                    check_ref(branch, "branchName")
                await self.runner.git.run(args, repo.path)
            cwd = wt
        prov = self.runner.provider(provider)
        exe = self.runner.executable(prov)
        await exclude_work_files(self.runner.git, wt)
        if provider == "codex":
            argv = [exe, "review", *(["--uncommitted"] if mode == "uncommitted" else ["--base", base])]
            argv += ["-c", f"model={model}", "-c", f"model_reasoning_effort={effort}"]
        else:
            opts = self.runner.run_options(prov, model if body.get("model") else None, read_only=True)
            argv = prov.run_argv(
                exe, f"Review pull request #{ticket_id[3:]}: the changes of this branch against {base}.", opts
            )
        spec = self.runner.agent_spec(
            prov, argv, None, self.runner.settings.defaults, kind=KIND, role="review", cwd=cwd,
            labels={"mode": "review", "worktree": str(wt), "repoPath": str(repo.path),
                    "ticketKey": ticket_id},
        )  # fmt: skip
        # ClosedLoop's body names no node: the configured default (``local`` unless set).
        record = await self.runner.sup.start(spec, node=self.runner.node_for(None))
        paths = self.paths(wt, provider)
        state = {
            "status": "running",
            "pid": record.pid,
            "startedAt": now_iso(),
            "provider": provider,
            "config": {"model": model, "reasoningEffort": effort, "reviewMode": mode, "baseBranch": base}
            | ({"instructions": body["instructions"]} if isinstance(body.get("instructions"), str) else {}),
            "processId": record.id,
        }
        await self.files.write(paths["state"], state)
        self.runner.post_done[record.id] = trio.Event()
        self.runner.spawn(self._review_done, record, prov, wt, provider, state)
        return record, provider

    async def _review_done(
        self, record: ProcessRecord, prov: Provider, wt: Path, provider: str, state: dict[str, Any]
    ) -> None:
        done = self.runner.post_done.setdefault(record.id, trio.Event())
        try:
            final = await self.runner.sup.wait(record.id)
            text = self.log_text(final)
            match = SESSION_ID.search(text)
            session = match.group(1) if match else None
            status = (
                "completed"
                if final.state is State.EXITED
                else "stopped"
                if final.state is State.KILLED
                else "failed"
            )
            paths = self.paths(wt, provider)
            await trio.to_thread.run_sync(paths["log"].write_text, text)
            finished = {
                **state,
                "status": status,
                "completedAt": now_iso(),
                "exitCode": final.exit_code,
                "sessionId": session,
            }
            await self.files.write(paths["state"], finished)
            if session and provider == "codex":
                await self.files.write(
                    work_dir(wt) / "codex-chat-review.json", {"sessionId": session, "messageCount": 0}
                )
        finally:
            done.set()

    def log_text(self, record: ProcessRecord) -> str:
        lines = self.runner.sup.log(record.id).read()
        return strip_diagnostics(
            "\n".join(line.text for line in lines if line.stream in ("stdout", "stderr"))
        )

    def _record(self, record_id: Any) -> ProcessRecord | None:
        return self.runner.sup.table.get(record_id) if isinstance(record_id, str) else None

    async def status(self, raw_repo: str | None, ticket_id: str, provider: str | None) -> dict[str, Any]:
        _repo, wt, exists = await self._place(raw_repo, ticket_id)
        if not exists:
            return {"hasReview": False, "worktreeDir": str(wt), "message": "Worktree not found"}
        names = [provider] if provider in PROVIDERS else ["claude", "codex"]
        for name in names:
            state = await self.files.read(self.paths(wt, name)["state"], dict)
            if not state:
                continue
            record = self._record(state.get("processId"))
            running = record is not None and record.state in ACTIVE_STATES
            log = (
                self.log_text(record)
                if record is not None
                else await trio.to_thread.run_sync(_read, self.paths(wt, name)["log"])
            )
            return {
                "hasReview": True,
                "worktreeDir": str(wt),
                **{
                    k: state.get(k)
                    for k in (
                        "status",
                        "pid",
                        "provider",
                        "sessionId",
                        "startedAt",
                        "completedAt",
                        "exitCode",
                        "config",
                    )
                },
                "processRunning": running,
                "log": log[-100_000:],
                "logSize": len(log.encode()),
                "processId": state.get("processId"),
            }
        return {"hasReview": False, "worktreeDir": str(wt), "message": "No review has been started"}

    async def stop(self, raw_repo: Any, ticket_id: str, provider: str | None) -> dict[str, Any]:
        if not isinstance(raw_repo, str) or not raw_repo:
            raise BadRequest("repo is required in body", code="invalid_request")
        _repo, wt, _exists = await self._place(raw_repo, ticket_id)
        name = _provider_name(provider)
        state = await self.files.read(self.paths(wt, name)["state"], dict)
        if not state:
            raise NotFound("No review found", code="review_not_found")
        record = self._record(state.get("processId"))
        if record is None or record.state not in ACTIVE_STATES:
            return {"stopped": False, "message": f"Review is not running (status: {state.get('status')})"}
        receipt = await self.runner.sup.kill(record.id, StopReason.KILL)
        await self.runner.settled(record.id)
        return {"stopped": True, "pid": record.pid, **receipt.to_json()}

    async def forget(self, raw_repo: str | None, ticket_id: str, provider: str | None) -> list[str]:
        """Stop and delete the review files of ``provider`` (or both); the names deleted."""
        _repo, wt, _exists = await self._place(raw_repo, ticket_id)
        deleted = []
        for name in [provider] if provider in PROVIDERS else ["claude", "codex"]:
            paths = self.paths(wt, str(name))
            state = await self.files.read(paths["state"], dict)
            record = self._record(state.get("processId"))
            if record is not None and record.state in ACTIVE_STATES:
                await self.runner.sup.kill(record.id, StopReason.KILL)
                await self.runner.settled(record.id)
            for path in (paths["state"], paths["log"], paths["findings"]):
                if await self.files.remove(path):
                    deleted.append(path.name)
        return deleted

    # ---- findings -------------------------------------------------------------------------

    async def findings(self, raw_repo: str | None, ticket_id: str, provider: str | None) -> dict[str, Any]:
        _repo, wt, _exists = await self._place(raw_repo, ticket_id)
        data = await self.files.read(self.paths(wt, _provider_name(provider))["findings"], dict)
        return data if isinstance(data.get("findings"), list) else {"findings": []}

    async def save_findings(
        self, raw_repo: str | None, ticket_id: str, provider: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        _repo, wt, _exists = await self._place(raw_repo, ticket_id)
        name = _provider_name(provider)
        path = self.paths(wt, name)["findings"]
        if isinstance(body.get("commentedIndex"), int) and not isinstance(body.get("commentedIndex"), bool):
            data = await self.files.read(path, dict)
            if not isinstance(data.get("findings"), list):
                raise NotFound("No findings file found", code="findings_not_found")
            index = body["commentedIndex"]
            if not 0 <= index < len(data["findings"]):
                raise BadRequest("Index out of range", code="invalid_index")
            async with self.files.edit(path, dict) as edited:
                edited["findings"][index]["commented"] = True
            return {"success": True}
        reason = body.get("declineReason")
        if body.get("declined") is True and isinstance(reason, str) and reason.strip():
            data = await self.files.read(path, dict)
            if not isinstance(data.get("findings"), list):
                raise NotFound("No findings file found", code="findings_not_found")
            async with self.files.edit(path, dict) as edited:
                edited["declined"], edited["declineReason"] = True, reason
            return {"success": True}
        if not isinstance(body.get("findings"), list):
            raise BadRequest("Invalid request body", code="invalid_request")
        findings = [_finding(f) for f in body["findings"] if isinstance(f, dict)]
        model = body.get("model") if isinstance(body.get("model"), str) else "unknown"
        payload = {
            "provider": _provider_name(body.get("provider"), name),
            "model": model,
            "findings": findings,
        }
        await self.files.write(path, payload)
        return {"success": True, "count": len(findings)}

    async def extract(self, ticket_id: str, body: dict[str, Any]) -> dict[str, Any]:
        raw_repo, session = body.get("repoPath"), body.get("sessionId")
        if not (isinstance(raw_repo, str) and raw_repo and isinstance(session, str) and session):
            raise BadRequest("repoPath and sessionId are required", code="invalid_request")
        _repo, wt, _exists = await self._place(raw_repo, ticket_id)
        for name in ("claude", "codex"):
            state = await self.files.read(self.paths(wt, name)["state"], dict)
            record = self._record(state.get("processId"))
            text = (
                self.log_text(record)
                if record is not None
                else await trio.to_thread.run_sync(_read, self.paths(wt, name)["log"])
            )
            if text.strip():
                return {"findings": parse_findings(text)}
        return {"findings": []}

    # ---- agent turns: verdict, debate, chat ---------------------------------------------------

    async def verdict(self, ticket_id: str, body: dict[str, Any]) -> dict[str, Any]:
        raw_repo, session, provider = body.get("repoPath"), body.get("sessionId"), body.get("provider")
        if not (
            isinstance(raw_repo, str)
            and raw_repo
            and isinstance(session, str)
            and session
            and provider in PROVIDERS
        ):
            raise BadRequest("repoPath, sessionId, and provider are required", code="invalid_request")
        _repo, wt, exists = await self._place(raw_repo, ticket_id)
        if not exists:
            raise NotFound("Work directory not found", code="worktree_not_found")
        try:
            record = await self.turn(
                wt, str(provider), VERDICT_PROMPT, session, None, read_only=True, role="verdict"
            )
            final = await self.runner.sup.wait(record.id)
            summary = self.runner.conclude(final, self.runner.provider(str(provider)))
            if final.state is not State.EXITED:
                raise AgentFailed(final.error or "the verdict turn failed")
            return {"verdict": verdict_tag("\n".join(summary.texts) or summary.final_text)}
        except Exception as exc:  # ClosedLoop answers 200 with the error for any failure here
            return {"verdict": None, "error": str(exc)[:500]}

    async def turn(
        self,
        cwd: Path,
        provider: str,
        prompt: str,
        session: str | None,
        model: str | None,
        *,
        read_only: bool,
        role: str,
    ) -> ProcessRecord:
        prov = self.runner.provider(provider)
        exe = self.runner.executable(prov)
        opts = self.runner.run_options(prov, model, read_only=read_only)
        argv = prov.resume_argv(exe, session, prompt, opts) if session else prov.run_argv(exe, prompt, opts)
        spec = self.runner.agent_spec(
            prov, argv, None, self.runner.settings.defaults, kind="chat", role=role, cwd=cwd,
            labels={"mode": role, "worktree": str(cwd)},
        )  # fmt: skip
        record = await self.runner.sup.start(spec)
        self.runner.post_done[record.id] = trio.Event()
        return record

    async def conversation(
        self,
        cwd: Path,
        state_path: Path,
        prompt: str,
        model: str | None,
        *,
        read_only: bool,
        role: str,
        debate: bool,
    ) -> ProcessRecord:
        """A codex turn resuming the session kept in ``state_path``; the session is stored when it ends."""
        state = await self.files.read(state_path, dict)
        session = state.get("sessionId") if isinstance(state.get("sessionId"), str) else None
        record = await self.turn(cwd, "codex", prompt, session, model, read_only=read_only, role=role)
        self.runner.spawn(self._conversation_done, record, state_path, debate)
        return record

    async def _conversation_done(self, record: ProcessRecord, state_path: Path, debate: bool) -> None:
        done = self.runner.post_done.setdefault(record.id, trio.Event())
        try:
            final = await self.runner.sup.wait(record.id)
            prov = self.runner.provider("codex")
            summary = self.runner.conclude(final, prov)
            if summary.session_id:
                async with self.files.edit(state_path, dict) as state:
                    state["sessionId"] = summary.session_id
                    counter = "rounds" if debate else "messageCount"
                    state[counter] = int(state.get(counter) or 0) + 1
        finally:
            done.set()

    async def argue(self, ticket_id: str, raw_repo: Any, body: dict[str, Any]) -> ProcessRecord:
        if not isinstance(raw_repo, str) or not raw_repo:
            raise BadRequest("repo parameter is required", code="invalid_request")
        claim, finding = body.get("claudeArgument"), body.get("findingSummary")
        if not (isinstance(claim, str) and claim.strip() and isinstance(finding, str) and finding.strip()):
            raise BadRequest("claudeArgument and findingSummary are required", code="invalid_request")
        _repo, wt, exists = await self._place(raw_repo, ticket_id)
        if not exists:
            raise NotFound("Work directory not found", code="worktree_not_found")
        prompt = "\n\n".join(
            [
                "You are OpenAI Codex in a structured debate with Claude about a review finding.",
                "Focus on concrete code evidence and keep your response concise.",
                "Finding:",
                finding,
                "Claude's argument:",
                claim,
            ]
        )
        model = body.get("model") if isinstance(body.get("model"), str) else None
        path = work_dir(wt) / "codex-debate.json"
        return await self.conversation(wt, path, prompt, model, read_only=True, role="argue", debate=True)

    async def chat(self, ticket_id: str, body: dict[str, Any]) -> ProcessRecord:
        prompt, raw_repo = body.get("prompt"), body.get("repoPath")
        if not (isinstance(prompt, str) and prompt.strip() and isinstance(raw_repo, str) and raw_repo):
            raise BadRequest("prompt and repoPath are required", code="invalid_request")
        repo, wt, exists = await self._place(raw_repo, ticket_id)
        cwd = wt if exists else repo.path
        name = "codex-chat-review.json" if body.get("chatContextId") == "review" else "codex-chat.json"
        model = body.get("model") if isinstance(body.get("model"), str) else None
        return await self.conversation(
            cwd, work_dir(cwd) / name, prompt, model, read_only=not exists, role="codex-chat", debate=False
        )


def _finding(raw: dict[str, Any]) -> dict[str, Any]:
    """ClosedLoop's ``handleSaveFindings`` normalisation of one finding."""
    out: dict[str, Any] = {
        "severity": raw["severity"]
        if isinstance(raw.get("severity"), str) and raw["severity"].strip()
        else "info",
        "message": raw["message"] if isinstance(raw.get("message"), str) else "",
        "commented": bool(raw.get("commented")),
    }
    for key in ("priority", "file", "suggestion"):
        if isinstance(raw.get(key), str) and raw[key].strip():
            out[key] = raw[key]
    if isinstance(raw.get("line"), int | float) and not isinstance(raw.get("line"), bool):
        out["line"] = raw["line"]
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


__all__ = ["DEFAULT_MODEL", "KIND", "VERDICT_PROMPT", "CodexWire"]
