"""The ticket chat of ClosedLoop's web app: turns on a repo/ticket named by path, history in files.

ClosedLoop's ``POST symphony/chat/:ticketId?repo=`` runs an agent turn in the ticket's worktree
(or the repo when there is none yet), resuming the session stored in the chat history file
``<worktree>/.closedloop-ai/work/chat-history[-<provider>].json``, and its web app reads that
history back with ``GET symphony/chat-history/:ticketId?repo=`` (closedloop-ai/closedloop-ai
``apps/desktop/src/server/operations/symphony-interactive.ts``, ``symphony-chat-history.ts``).
This module is that, over our supervisor:

- the turn is a supervised child of kind ``chat``; in a worktree it holds the worktree lock
  (409 while a run works there), in the bare repo it is read-only (ours: nothing of the user's
  checkout is edited by a chat that has no worktree of its own);
- the user's message is stored before the child starts, the reply (ClosedLoop's joined text
  and content blocks, the context percent, the session id) when it ends, by a watcher that runs
  whatever happens to the stream that showed the turn (a killed turn keeps what it said).

Cancellation: ``close`` of the Symphony service cancels the watchers; a turn's child is the
supervisor's and ends with it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from ..agents.frames import FrameMapper
from ..agents.providers import Provider
from ..errors import BadRequest, NotFound
from ..spec import ProcessRecord, State
from .addressing import RepoRef, exclude_work_files, resolve_repo, worktree_dir
from .model import check_prompt_size
from .runner import Runner
from .workfiles import PROVIDERS, JsonFiles, chat_history_name, sanitize, work_dir


def now_iso() -> str:
    """An ISO timestamp as JavaScript's ``toISOString`` writes it."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_id(role: str) -> str:
    return f"{role}-{int(time.time() * 1000)}"


def check_provider(provider: str | None) -> str | None:
    if provider is not None and provider not in PROVIDERS:
        raise BadRequest("unsupported provider", code="unsupported_provider")
    return provider


def context_prompt(message: str, context_repos: list[Path]) -> str:
    """ClosedLoop's ``buildSymphonyPrompt``: other repos the agent may read, then the message."""
    if not context_repos:
        return message
    listed = "\n".join(f"- {p}" for p in context_repos)
    return f"Additional context repositories are available:\n{listed}\n\n{message}"


def fold_turn(provider: Provider, lines: list[bytes]) -> FrameMapper:
    """What a finished turn said, folded from its stdout lines by ClosedLoop's rules."""
    mapper = FrameMapper()
    for raw in lines:
        for event in provider.parse_line(raw):
            mapper.frames(event)
    return mapper


class WorkChats:
    """``symphony/chat`` and ``symphony/chat-history`` as ClosedLoop's clients call them."""

    def __init__(self, runner: Runner, files: JsonFiles | None = None) -> None:
        self.runner = runner
        self.files = files or JsonFiles()

    async def repo(self, raw: str | None) -> RepoRef:
        return await resolve_repo(self.runner.db, raw)

    async def chat_dir(self, repo: RepoRef, ticket_id: str) -> tuple[Path, bool]:
        """Where the ticket's chat works: its worktree if it exists, else the repo itself."""
        wt = worktree_dir(repo.path, ticket_id, self.runner.worktrees.layout)
        in_worktree = await trio.to_thread.run_sync(wt.is_dir)
        return (wt if in_worktree else repo.path), in_worktree

    async def history_path(self, repo: RepoRef, ticket_id: str, provider: str | None) -> Path:
        where, _ = await self.chat_dir(repo, ticket_id)
        return work_dir(where) / chat_history_name(check_provider(provider))

    # ---- history --------------------------------------------------------------------------

    def _empty(self, repo: RepoRef, ticket_id: str) -> dict[str, Any]:
        return {"messages": [], "ticketId": ticket_id, "repoPath": repo.given}

    async def history(self, raw_repo: str | None, ticket_id: str, provider: str | None) -> dict[str, Any]:
        repo = await self.repo(raw_repo)
        path = await self.history_path(repo, ticket_id, provider)
        history = await self.files.read(path, lambda: self._empty(repo, ticket_id))
        codex = await trio.to_thread.run_sync((path.parent / "codex-chat-review.json").exists)
        if not isinstance(history.get("messages"), list):
            history["messages"] = []
        return {**history, "codexSessionExists": codex}

    async def add_history(
        self, raw_repo: str | None, ticket_id: str, provider: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Append ``body.message`` (``{id, role, content, timestamp, sender?}``), or store a
        ``sessionId`` alone; ClosedLoop's answers."""
        repo = await self.repo(raw_repo)
        path = await self.history_path(repo, ticket_id, provider)
        message = _parse_message(body.get("message"))
        session_id = body.get("sessionId") if isinstance(body.get("sessionId"), str) else None
        if session_id and message is None:
            async with self.files.edit(path, lambda: self._empty(repo, ticket_id)) as history:
                history["sessionId"] = session_id
            return {"success": True, "sessionId": session_id}
        if message is None:
            raise BadRequest("message with content and role is required", code="invalid_request")
        async with self.files.edit(path, lambda: self._empty(repo, ticket_id)) as history:
            history.setdefault("messages", []).append(message)
            snapshot = dict(history)
        return {"success": True, "history": snapshot}

    async def delete_history(
        self, raw_repo: str | None, ticket_id: str, provider: str | None, index: str | None
    ) -> dict[str, Any]:
        repo = await self.repo(raw_repo)
        path = await self.history_path(repo, ticket_id, provider)
        workdir = path.parent
        if index is None:
            existed = await self.files.remove(path)
            names = {"codex": ["codex-chat-review.json"], None: ["codex-chat.json", "codex-chat-review.json"]}
            for name in names.get(provider, []):
                await self.files.remove(workdir / name)
            return {"success": True, "message": "Chat history cleared" if existed else "No history to delete"}
        if not index.isdigit():
            raise BadRequest("Invalid index", code="invalid_index")
        at = int(index)
        async with self.files.edit(path, lambda: self._empty(repo, ticket_id)) as history:
            messages = history.setdefault("messages", [])
            if at >= len(messages):
                raise NotFound("Index out of bounds", code="index_out_of_bounds")
            messages.pop(at)
            snapshot = dict(history)
        return {"success": True, "history": snapshot}

    # ---- turns ----------------------------------------------------------------------------

    async def turn(
        self,
        raw_repo: str | None,
        ticket_id: str,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        context_repos: list[str] | None = None,
    ) -> ProcessRecord:
        """Store the user's message and start the agent turn (kind ``chat``); its record."""
        repo = await self.repo(raw_repo)
        others = [(await self.repo(p)).path for p in context_repos or []]
        check_provider(provider)
        check_prompt_size(message, "message")
        prov = self.runner.provider(provider or "claude")
        exe = self.runner.executable(prov)
        cwd, in_worktree = await self.chat_dir(repo, ticket_id)
        path = work_dir(cwd) / chat_history_name(provider)
        if not in_worktree and not await trio.to_thread.run_sync(cwd.is_dir):
            raise NotFound(f"repository folder {cwd} is gone", code="repo_not_found")
        await exclude_work_files(self.runner.git, cwd)
        with self.runner.reserve(ticket_id, str(cwd), "a chat turn") if in_worktree else nullcontext():
            async with self.files.edit(path, lambda: self._empty(repo, ticket_id)) as history:
                history.setdefault("messages", []).append(
                    {"id": message_id("user"), "role": "user", "content": message, "timestamp": now_iso()}
                )
                session_id = history.get("sessionId") if isinstance(history.get("sessionId"), str) else None
            opts = self.runner.run_options(prov, model, read_only=not in_worktree)
            prompt = context_prompt(message, others)
            if session_id:
                argv = prov.resume_argv(exe, session_id, prompt, opts)
            else:
                argv = prov.run_argv(exe, prompt, opts)
            spec = self.runner.agent_spec(
                prov, argv, None, self.runner.settings.defaults, kind="chat", role="chat", cwd=cwd,
                labels={"mode": "chat", "worktree": str(cwd), "repoPath": str(repo.path)},
            )  # fmt: skip
            spec = dataclasses.replace(spec, ticket_id=ticket_id)
            record = await self.runner.sup.start(spec)
            self.runner.post_done[record.id] = trio.Event()
        self.runner.spawn(self._store_reply, record, prov, path, repo, ticket_id)
        return record

    async def _store_reply(
        self, record: ProcessRecord, prov: Provider, path: Path, repo: RepoRef, ticket_id: str
    ) -> None:
        done = self.runner.post_done.setdefault(record.id, trio.Event())
        try:
            final = await self.runner.sup.wait(record.id)
            self.runner.conclude(final, prov)
            lines = [line.raw for line in self.runner.sup.log(record.id).read() if line.stream == "stdout"]
            said = fold_turn(prov, lines)
            async with self.files.edit(path, lambda: self._empty(repo, ticket_id)) as history:
                if said.reply:
                    history.setdefault("messages", []).append(
                        {
                            "id": message_id("assistant"),
                            "role": "assistant",
                            "content": said.reply,
                            "timestamp": now_iso(),
                            "blocks": said.blocks,
                        }
                    )
                history["contextPercent"] = said.context_percent
                if final.state is not State.EXITED and said.auth_challenge:
                    history.pop("sessionId", None)
                elif said.session_id:
                    history["sessionId"] = said.session_id
        finally:
            done.set()

    # ---- threads: review comments and findings (files under comment-chats/, finding-chats/) ---

    async def thread_path(
        self, raw_repo: str | None, ticket_id: str, folder: str, key: str
    ) -> tuple[RepoRef, Path, bool]:
        """The thread's history file (in the worktree, else the repo), and whether that is the worktree."""
        repo = await self.repo(raw_repo)
        where, in_worktree = await self.chat_dir(repo, ticket_id)
        return repo, work_dir(where) / folder / f"{sanitize(key)}.json", in_worktree

    async def thread(
        self, raw_repo: str | None, ticket_id: str, folder: str, key: str, key_name: str
    ) -> dict[str, Any]:
        repo, path, _ = await self.thread_path(raw_repo, ticket_id, folder, key)
        return await self.files.read(path, lambda: self._thread_empty(repo, ticket_id, key_name, key))

    def _thread_empty(self, repo: RepoRef, ticket_id: str, key_name: str, key: str) -> dict[str, Any]:
        return {**self._empty(repo, ticket_id), key_name: key}

    async def thread_mark(
        self, raw_repo: str | None, ticket_id: str, folder: str, key: str, key_name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """ClosedLoop's PATCH: set ``responded`` on a message (default: the last reply)."""
        repo, path, _ = await self.thread_path(raw_repo, ticket_id, folder, key)
        message_id = body.get("messageId") if isinstance(body.get("messageId"), str) else None
        responded = body.get("responded") if isinstance(body.get("responded"), bool) else True
        async with self.files.edit(
            path, lambda: self._thread_empty(repo, ticket_id, key_name, key)
        ) as history:
            messages = [m for m in history.get("messages", []) if isinstance(m, dict)]
            targets = [m for m in messages if m.get("id") == message_id] if message_id else [
                m for m in messages if m.get("role") == "assistant"][-1:]  # fmt: skip
            for m in targets:
                m["responded"] = responded
        return {"success": True}

    async def thread_delete(
        self, raw_repo: str | None, ticket_id: str, folder: str, key: str
    ) -> dict[str, Any]:
        _repo, path, _ = await self.thread_path(raw_repo, ticket_id, folder, key)
        await self.files.remove(path)
        return {"success": True}

    async def thread_turn(
        self,
        raw_repo: str | None,
        ticket_id: str,
        *,
        folder: str,
        key: str,
        key_name: str,
        message: str,
        shown: str,
        context_name: str,
        context: dict[str, Any] | None,
        prompt: Callable[[dict[str, Any]], str],
        require_worktree: bool,
    ) -> ProcessRecord:
        """One claude turn on a thread: the user's message stored first (``shown``), the context
        kept on the thread, the session resumed; the reply stored when the turn ends."""
        check_prompt_size(message, "message")
        repo, path, in_worktree = await self.thread_path(raw_repo, ticket_id, folder, key)
        if require_worktree and not in_worktree:
            raise NotFound("Work directory not found", code="worktree_not_found")
        cwd = path.parent.parent.parent.parent
        await exclude_work_files(self.runner.git, cwd)
        prov = self.runner.provider("claude")
        exe = self.runner.executable(prov)
        with self.runner.reserve(ticket_id, str(cwd), "a chat turn") if in_worktree else nullcontext():
            async with self.files.edit(
                path, lambda: self._thread_empty(repo, ticket_id, key_name, key)
            ) as history:
                if context is not None:
                    history[context_name] = context
                text = prompt(history)
                history.setdefault("messages", []).append(
                    {"id": message_id("user"), "role": "user", "content": shown, "timestamp": now_iso()}
                )
                session_id = history.get("sessionId") if isinstance(history.get("sessionId"), str) else None
            opts = self.runner.run_options(prov, None, read_only=not in_worktree)
            argv = (
                prov.resume_argv(exe, session_id, text, opts)
                if session_id
                else prov.run_argv(exe, text, opts)
            )
            spec = self.runner.agent_spec(
                prov, argv, None, self.runner.settings.defaults, kind="chat", role=folder, cwd=cwd,
                labels={"mode": folder, "worktree": str(cwd), "repoPath": str(repo.path)},
            )  # fmt: skip
            spec = dataclasses.replace(spec, ticket_id=ticket_id)
            record = await self.runner.sup.start(spec)
            self.runner.post_done[record.id] = trio.Event()
        empty = lambda: self._thread_empty(repo, ticket_id, key_name, key)  # noqa: E731
        self.runner.spawn(self._store_thread_reply, record, prov, path, empty)
        return record

    async def _store_thread_reply(
        self, record: ProcessRecord, prov: Provider, path: Path, empty: Callable[[], dict[str, Any]]
    ) -> None:
        done = self.runner.post_done.setdefault(record.id, trio.Event())
        try:
            final = await self.runner.sup.wait(record.id)
            self.runner.conclude(final, prov)
            lines = [line.raw for line in self.runner.sup.log(record.id).read() if line.stream == "stdout"]
            said = fold_turn(prov, lines)
            async with self.files.edit(path, empty) as history:
                if said.reply:
                    history.setdefault("messages", []).append(
                        {"id": message_id("assistant"), "role": "assistant", "content": said.reply,
                         "timestamp": now_iso(), "blocks": said.blocks}
                    )  # fmt: skip
                history["contextPercent"] = said.context_percent
                if final.state is not State.EXITED and said.auth_challenge:
                    history.pop("sessionId", None)
                elif said.session_id:
                    history["sessionId"] = said.session_id
        finally:
            done.set()


def comment_prompt(message: str, context: Any) -> str:
    """ClosedLoop's ``buildCommentPrompt``: the file and line, the PR comment, the message."""
    if not isinstance(context, dict):
        return message
    parts = [f"PR comment from @{context.get('author', '')}:", str(context.get("body", "")), "", message]
    if context.get("path"):
        line = f":{context['line']}" if context.get("line") else ""
        parts.insert(0, f"File: {context['path']}{line}")
    return "\n".join(parts)


def finding_prompt(context: Any, message: str, messages: list[Any]) -> str:
    """ClosedLoop's ``buildFindingPrompt``: the finding, the last 8 messages, the new one."""
    parts = [
        "You are helping a developer reason about a code review finding.",
        "Assess whether the finding is valid and propose next steps.",
    ]
    if isinstance(context, dict):
        line = f":{context['line']}" if context.get("line") else ""
        parts += ["Finding context:", f"Severity: {context.get('severity', '')}"]
        if context.get("file"):
            parts.append(f"File: {context['file']}{line}")
        parts.append(f"Message: {context.get('message', '')}")
        if context.get("suggestion"):
            parts.append(f"Suggestion: {context['suggestion']}")
    recent = [m for m in messages if isinstance(m, dict)][-8:]
    if recent:
        parts.append("Recent conversation:")
        parts += [
            f"{'User' if m.get('role') == 'user' else 'Assistant'}: {m.get('content', '')}" for m in recent
        ]
    parts += ["Latest message:", message]
    return "\n\n".join(parts)


def _parse_message(value: Any) -> dict[str, Any] | None:
    """ClosedLoop's ``parseMessage``: ``{id, role: user|assistant, content, timestamp, sender?}``."""
    if not isinstance(value, dict):
        return None
    if not (
        isinstance(value.get("id"), str)
        and value.get("role") in ("user", "assistant")
        and isinstance(value.get("content"), str)
        and isinstance(value.get("timestamp"), str)
    ):
        return None
    out = {k: value[k] for k in ("id", "role", "content", "timestamp")}
    if value.get("sender") in ("claude", "codex"):
        out["sender"] = value["sender"]
    return out


__all__ = [
    "WorkChats",
    "check_provider",
    "comment_prompt",
    "context_prompt",
    "finding_prompt",
    "fold_turn",
    "now_iso",
]
