"""ClosedLoop's side chats: the terminal chat, the ticket chat and the run-viewer chat.

Each keeps one history file under the gateway's state folder, as ClosedLoop keeps them under
its own (closedloop-ai/closedloop-ai ``apps/desktop/src/server/operations/terminal-chat.ts``,
``ticket-chat.ts``, ``run-viewer-chat.ts``): ``chats/_terminal/chat-history.json`` (``{messages:
[{id, role, content, timestamp, mode}], claudeSessionId?, codexSessionId?}``),
``chats/<ticket>/chat-history.json`` (``{messages, ticketId, sessionId?}``) and
``chats/_run-viewer/chat-history.json`` (``{messages, claudeSessionId?}``).

A turn is a supervised child of kind ``chat``; the reply is stored by a watcher when it ends,
whatever happened to the stream that showed it. Permissions are ours: the terminal chat has the
settings' permissions in the first registered repo (ClosedLoop: Bash in its first allowed
folder); the ticket chat reads the repo it names (read-only tools) or only the web; the
run-viewer chat reads the run's folder, which must be inside a registered repo, one of its
worktrees' parent folder or our state folder.

Cancellation: the watchers run in the Symphony service's nursery and end with it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import trio

from ..agents.providers import Provider, RunOptions
from ..errors import BadRequest, Forbidden, GatewayError
from ..services.paths import sanitize_ticket
from ..spec import ACTIVE_STATES, ProcessRecord, State, StopReason
from .addressing import resolve_repo, worktree_parent
from .runner import Runner
from .workchat import fold_turn, message_id, now_iso
from .workfiles import JsonFiles

Scope = Literal["terminal", "ticket", "run-viewer"]
WEB_ONLY = ("WebSearch", "WebFetch")
READ_ONLY = ("Read", "Grep", "Glob", "WebSearch", "WebFetch")


class NoWorkFolder(GatewayError):
    """No registered repository to run the terminal chat in."""

    code = "no_allowed_directory"


def parse_mode(message: str) -> tuple[str, str]:
    """ClosedLoop's prefixes: ``@codex `` selects codex, ``@cl `` (or nothing) claude."""
    text = message.strip()
    if text.startswith("@codex "):
        return "codex", text[7:].strip()
    if text.startswith("@cl "):
        return "claude", text[4:].strip()
    return "claude", text


def ticket_context_prompt(context: dict[str, Any], repo: Path | None) -> str:
    parts = [
        "You are helping a developer understand a Linear ticket before implementation.",
        f"## Ticket: {context.get('identifier', '')}",
        f"**Title:** {context.get('title', '')}",
        f"**URL:** {context.get('url', '')}",
    ]
    if isinstance(context.get("description"), str) and context["description"].strip():
        parts += ["", "**Description:**", context["description"]]
    if repo is not None:
        parts += ["", f"The codebase is at {repo}; you may read it."]
    return "\n".join(parts)


def run_viewer_prompt(run_dir: Path | None) -> str:
    parts = ["You are helping a developer understand the output of a finished coding-agent run."]
    if run_dir is not None:
        parts.append(f"Run directory: {run_dir}")
    return "\n".join(parts)


class SideChats:
    def __init__(self, runner: Runner, files: JsonFiles) -> None:
        self.runner = runner
        self.files = files

    def path(self, scope: Scope, ticket_id: str | None = None) -> Path:
        folder = {"terminal": "_terminal", "run-viewer": "_run-viewer"}.get(scope)
        name = folder or sanitize_ticket(ticket_id or "")
        return self.runner.sup.state_dir / "chats" / name / "chat-history.json"

    @staticmethod
    def _empty(scope: Scope, ticket_id: str | None) -> dict[str, Any]:
        return {"messages": [], "ticketId": ticket_id} if scope == "ticket" else {"messages": []}

    async def history(self, scope: Scope, ticket_id: str | None = None) -> dict[str, Any]:
        return await self.files.read(self.path(scope, ticket_id), lambda: self._empty(scope, ticket_id))

    async def reset(self, scope: Scope, ticket_id: str | None = None) -> dict[str, Any]:
        """Forget the history (and kill a turn still running in it)."""
        path = str(self.path(scope, ticket_id))
        for r in self.runner.records(None, ("chat",)):
            if r.labels.get("history") == path and r.state in ACTIVE_STATES:
                await self.runner.sup.kill(r.id, StopReason.KILL)
                await self.runner.settled(r.id)
        await self.files.write(self.path(scope, ticket_id), self._empty(scope, ticket_id))
        return {"success": True}

    # ---- turns ----------------------------------------------------------------------------

    async def terminal(self, message: str) -> tuple[ProcessRecord, str]:
        mode, text = parse_mode(message)
        if not text:
            raise BadRequest("message is required", code="invalid_request")
        cwd = await self._first_repo()
        path = self.path("terminal")
        key = "claudeSessionId" if mode == "claude" else "codexSessionId"
        record = await self._turn(
            path, "terminal", None, mode, text, text, cwd, None, key, {"mode": mode}
        )  # fmt: skip
        return record, mode

    async def ticket(
        self, ticket_id: str, message: str, context: dict[str, Any], raw_repo: str | None
    ) -> tuple[ProcessRecord, bool]:
        repo = (await resolve_repo(self.runner.db, raw_repo)).path if raw_repo else None
        path = self.path("ticket", ticket_id)
        history = await self.history("ticket", ticket_id)
        resuming = isinstance(history.get("sessionId"), str)
        prompt = message if resuming else f"{ticket_context_prompt(context, repo)}\n\n---\n\nUser: {message}"
        cwd = repo or path.parent
        tools = READ_ONLY if repo else WEB_ONLY
        record = await self._turn(
            path, "ticket", ticket_id, "claude", message, prompt, cwd, tools, "sessionId", {}
        )
        return record, resuming

    async def run_viewer(self, message: str, raw_dir: str | None) -> ProcessRecord:
        run_dir = await self._allowed_dir(raw_dir) if raw_dir else None
        path = self.path("run-viewer")
        history = await self.history("run-viewer")
        resuming = isinstance(history.get("claudeSessionId"), str)
        prompt = message if resuming else f"{run_viewer_prompt(run_dir)}\n\n---\n\nUser: {message}"
        cwd = run_dir or path.parent
        tools = READ_ONLY if run_dir else WEB_ONLY
        return await self._turn(
            path, "run-viewer", None, "claude", message, prompt, cwd, tools, "claudeSessionId", {}
        )

    async def _turn(
        self,
        path: Path,
        scope: Scope,
        ticket_id: str | None,
        provider: str,
        message: str,
        prompt: str,
        cwd: Path,
        tools: tuple[str, ...] | None,
        session_key: str,
        extra: dict[str, Any],
    ) -> ProcessRecord:
        prov = self.runner.provider(provider)
        exe = self.runner.executable(prov)
        await trio.to_thread.run_sync(lambda: cwd.mkdir(parents=True, exist_ok=True))
        async with self.files.edit(path, lambda: self._empty(scope, ticket_id)) as history:
            history.setdefault("messages", []).append(
                {
                    "id": message_id("user"),
                    "role": "user",
                    "content": message,
                    "timestamp": now_iso(),
                    **extra,
                }
            )
            session = history.get(session_key) if isinstance(history.get(session_key), str) else None
        opts = self.runner.run_options(prov, None, read_only=tools is not None)
        if tools is not None and prov.name == "claude":
            opts = RunOptions(allowed_tools=tools, permission_mode=opts.permission_mode)
        argv = prov.resume_argv(exe, session, prompt, opts) if session else prov.run_argv(exe, prompt, opts)
        spec = self.runner.agent_spec(
            prov, argv, None, self.runner.settings.defaults, kind="chat", role=f"{scope}-chat", cwd=cwd,
            labels={"mode": f"{scope}-chat", "history": str(path)},
        )  # fmt: skip
        record = await self.runner.sup.start(spec)
        self.runner.post_done[record.id] = trio.Event()
        self.runner.spawn(self._store, record, prov, path, scope, ticket_id, session_key, extra)
        return record

    async def _store(
        self,
        record: ProcessRecord,
        prov: Provider,
        path: Path,
        scope: Scope,
        ticket_id: str | None,
        session_key: str,
        extra: dict[str, Any],
    ) -> None:
        done = self.runner.post_done.setdefault(record.id, trio.Event())
        try:
            final = await self.runner.sup.wait(record.id)
            self.runner.conclude(final, prov)
            said = fold_turn(
                prov, [ln.raw for ln in self.runner.sup.log(record.id).read() if ln.stream == "stdout"]
            )
            async with self.files.edit(path, lambda: self._empty(scope, ticket_id)) as history:
                if said.reply:
                    history.setdefault("messages", []).append(
                        {"id": message_id("assistant"), "role": "assistant", "content": said.reply,
                         "timestamp": now_iso(), **extra}
                    )  # fmt: skip
                if final.state is not State.EXITED and said.auth_challenge:
                    history.pop(session_key, None)
                elif said.session_id and not history.get(session_key):
                    history[session_key] = said.session_id
        finally:
            done.set()

    # ---- places -----------------------------------------------------------------------------

    async def _first_repo(self) -> Path:
        for _rid, path in await self.runner.db.repos():
            if await trio.to_thread.run_sync(path.is_dir):
                return path
        raise NoWorkFolder(
            "No allowed directory is available for terminal chat execution. Update sandbox settings."
        )

    async def _allowed_dir(self, raw: str) -> Path:
        real = Path(await trio.to_thread.run_sync(lambda: os.path.realpath(os.path.expanduser(raw))))
        roots = [Path(await trio.to_thread.run_sync(os.path.realpath, self.runner.sup.state_dir))]
        for _rid, repo in await self.runner.db.repos():
            roots.append(repo)
            parent = worktree_parent(repo, self.runner.worktrees.layout)
            # a worktree of the repo in ClosedLoop's layout: <parent>/<repo name>-<ticket>
            roots += [p for p in [parent / part for part in real.relative_to(parent).parts[:1]]
                      if p.name.startswith(f"{repo.name}-")] if parent in real.parents else []  # fmt: skip
        for root in roots:
            if (real == root or root in real.parents) and await trio.to_thread.run_sync(real.is_dir):
                return real
        raise Forbidden("directory not allowed", code="directory_not_allowed")
