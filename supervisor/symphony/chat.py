"""Talking to the agent about a ticket: sessions, chat turns, review comment threads, commit messages.

Each ticket has one agent session per provider, captured from every run (claude's
``session_id``, codex's ``thread_id``), so a chat turn resumes the latest conversation. A chat
turn is a child of kind ``chat`` under the worktree lock; its reply is stored when it ends and
counts as unread until the history is read. Comment threads and commit-message drafts are
read-only agent turns.
"""

from __future__ import annotations

from typing import Any

import trio

from ..agents.providers import Provider, RunOptions
from ..errors import AgentFailed, BadRequest, NotFound
from ..spec import ACTIVE_STATES, ProcessRecord, State
from .model import Ticket, outcome, require_text
from .runner import Runner


class Chat:
    """``sessions``, ``chat``, ``chat-history``, ``comment-chat`` and ``commit-message``."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    # ---- sessions -----------------------------------------------------------------------

    async def sessions(self, ticket_id: str | None = None) -> list[dict[str, Any]]:
        return await self.runner.db.sessions(ticket_id)

    async def create_session(
        self, ticket_id: str, provider: str | None = None, title: str | None = None
    ) -> dict[str, Any]:
        """Open the ticket's session for ``provider`` (or return the existing one)."""
        ticket = await self.runner.ticket(ticket_id)
        prov = self.runner.provider(provider or ticket.provider)
        session = await self.runner.db.session_for(ticket_id, prov.name)
        if session is None:
            session = await self.runner.note_session(ticket, prov, None, unread=0)
        if title is not None:
            await self.runner.db.set_session_title(session["id"], title)
            session["title"] = title
        return session

    async def delete_sessions(
        self, *, session_id: str | None = None, ticket_id: str | None = None
    ) -> dict[str, Any]:
        """Forget a session (or all of a ticket's), killing any chat turn still running."""
        if session_id is None and ticket_id is None:
            raise BadRequest("sessionId or ticketId: one is required")
        rows = await self.runner.db.matching_sessions(session_id, ticket_id)
        if not rows:
            raise NotFound("no such session")
        killed = []
        for _sid, tid in rows:
            for r in self.runner.records(tid, ("chat",)):
                if r.state in ACTIVE_STATES:
                    await self.runner.sup.kill(r.id)
                    killed.append(r.id)
        # A killed turn's watcher stores its reply and touches the session: let it finish
        # first, or it would bring the session back right after this deletes it.
        for record_id in killed:
            await self.runner.settled(record_id)
        await self.runner.db.delete_sessions(session_id, ticket_id)
        return {"deleted": [sid for sid, _tid in rows], "killed": killed}

    async def mark_read(self, ticket_id: str) -> None:
        await self.runner.db.mark_read(ticket_id)

    async def unread_count(self) -> dict[str, Any]:
        by_ticket = await self.runner.db.unread_by_ticket()
        return {"unreadCount": sum(by_ticket.values()), "byTicket": by_ticket}

    # ---- chat turns and history ---------------------------------------------------------

    async def turn(
        self, ticket_id: str, message: str, provider: str | None = None, model: str | None = None
    ) -> ProcessRecord:
        """Send ``message`` into the ticket's session (resumed) as a ``chat`` child.

        The user's message is stored at once, the reply when the child ends (``settled``).
        """
        require_text(message, "message")
        ticket = await self.runner.ticket(ticket_id)
        prov = self.runner.provider(provider or ticket.provider)
        exe = self.runner.executable(prov)
        if not ticket.worktree.is_dir():
            raise NotFound(f"ticketId: the worktree of {ticket_id} is gone")
        with self.runner.reserve(ticket_id, str(ticket.worktree), "a chat turn"):
            session = await self.runner.db.session_for(ticket_id, prov.name)
            psid = session.get("providerSessionId") if session else None
            opts = self.runner.run_options(prov, model)
            argv = prov.resume_argv(exe, psid, message, opts) if psid else prov.run_argv(exe, message, opts)
            spec = self.runner.agent_spec(
                prov,
                argv,
                ticket,
                self.runner.settings.defaults,
                kind="chat",
                role="chat",
                labels={"mode": "chat"},
            )
            record = await self.runner.sup.start(spec)
            self.runner.post_done[record.id] = trio.Event()
            await self.runner.db.add_chat(
                ticket_id, "user", message, prov.name, record.id, session["id"] if session else None
            )
        self.runner.spawn(self._watch_chat, record, prov, ticket)
        return record

    async def _watch_chat(self, record: ProcessRecord, prov: Provider, ticket: Ticket) -> None:
        done = self.runner.post_done.setdefault(record.id, trio.Event())
        try:
            final = await self.runner.sup.wait(record.id)
            summary = self.runner.conclude(final, prov)
            session = await self.runner.note_session(ticket, prov, summary.session_id)
            content = self.runner.reply_text(final, summary)
            await self.runner.db.add_chat(
                ticket.ticket_id, "assistant", content, prov.name, record.id, session["id"]
            )
        finally:
            done.set()

    async def history(self, ticket_id: str, mark_read: bool = True) -> dict[str, Any]:
        """The ticket's stored messages; reading them clears its unread count."""
        await self.runner.known_ticket(ticket_id)
        messages = await self.runner.db.chat(ticket_id)
        if mark_read:
            await self.mark_read(ticket_id)
        return {"ticketId": ticket_id, "messages": messages}

    async def add_history(self, ticket_id: str, role: str, content: str) -> dict[str, Any]:
        await self.runner.ticket(ticket_id)
        if role not in ("user", "assistant", "system"):
            raise BadRequest("role: must be user, assistant or system")
        require_text(content, "content")
        return await self.runner.db.add_chat(ticket_id, role, content, None, None, None)

    async def clear_history(self, ticket_id: str) -> dict[str, Any]:
        await self.runner.known_ticket(ticket_id)
        return {"ticketId": ticket_id, "deleted": await self.runner.db.clear_chat(ticket_id)}

    # ---- review comment threads ---------------------------------------------------------

    async def comment_thread(self, comment_id: str) -> dict[str, Any]:
        return await self.runner.db.comment_thread(comment_id)

    async def comment_chat(
        self,
        comment_id: str,
        ticket_id: str,
        message: str,
        provider: str | None = None,
        context: str | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """One turn on a review comment's thread: read-only agent, resumed per thread.

        Not under the worktree lock: the agent cannot edit, so it may read while a run works.
        """
        require_text(message, "message")
        if not comment_id or len(comment_id) > 200:
            raise BadRequest("commentId: required, at most 200 characters")
        ticket = await self.runner.ticket(ticket_id)
        prov = self.runner.provider(provider or ticket.provider)
        exe = self.runner.executable(prov)
        thread = await self.runner.db.comment_thread(comment_id)
        psid = thread["providerSessionId"]
        text = message if psid or not context else f"About this review comment:\n{context}\n\n{message}"
        opts = self.runner.run_options(prov, model, read_only=True)
        argv = prov.resume_argv(exe, psid, text, opts) if psid else prov.run_argv(exe, text, opts)
        spec = self.runner.agent_spec(
            prov, argv, ticket, self.runner.settings.defaults, kind="chat", role="comment-chat",
            labels={"mode": "comment-chat", "commentId": comment_id},
        )  # fmt: skip
        await self.runner.db.add_comment(comment_id, ticket_id, "user", message, prov.name, None, None)
        record = await self.runner.sup.start(spec)
        final = await self.runner.sup.wait(record.id)
        summary = self.runner.conclude(final, prov)
        content = (
            summary.final_text if final.state is State.EXITED else f"[error] {final.error or outcome(final)}"
        )
        await self.runner.db.add_comment(
            comment_id, ticket_id, "assistant", content, prov.name, summary.session_id, record.id
        )
        out = await self.runner.db.comment_thread(comment_id)
        out["process"] = final.to_json()
        return out

    async def update_comment_thread(
        self,
        comment_id: str,
        resolved: bool | None = None,
        message_id: int | None = None,
        content: str | None = None,
    ) -> dict[str, Any]:
        """Resolve/reopen the thread and/or edit one of its messages."""
        thread = await self.runner.db.comment_thread(comment_id)
        if not thread["messages"]:
            raise NotFound(f"commentId: no thread for {comment_id!r}")
        if message_id is not None:
            require_text(content, "content")
        if resolved is not None:
            await self.runner.db.resolve_comment_thread(comment_id, resolved)
        if message_id is not None:
            assert content is not None
            if not await self.runner.db.edit_comment(comment_id, message_id, content):
                raise NotFound(f"messageId: no message {message_id} in this thread")
        return await self.runner.db.comment_thread(comment_id)

    async def delete_comment_thread(self, comment_id: str) -> dict[str, Any]:
        n = await self.runner.db.delete_comment_thread(comment_id)
        if not n:
            raise NotFound(f"commentId: no thread for {comment_id!r}")
        return {"commentId": comment_id, "deleted": n}

    # ---- commit message -----------------------------------------------------------------

    async def commit_message(
        self, ticket_id: str, provider: str | None = None, model: str | None = None
    ) -> dict[str, Any]:
        """Draft a commit message for the worktree's changes (the agent reads the diff)."""
        ticket = await self.runner.ticket(ticket_id)
        prov = self.runner.provider(provider or ticket.provider)
        exe = self.runner.executable(prov)
        if not ticket.worktree.is_dir():
            raise NotFound(f"ticketId: the worktree of {ticket_id} is gone")
        with self.runner.reserve(ticket_id, str(ticket.worktree), "a commit-message draft"):
            cwd = ticket.worktree
            status = await self.runner.git.run(
                ["status", "--porcelain=v1", "--untracked-files=all"], cwd, ticket_id=ticket_id
            )
            diff = await self.runner.git.run(
                ["diff", "HEAD", "--stat", "--patch", "--no-color"], cwd, ticket_id=ticket_id
            )
            if not status.stdout.strip():
                return {"ticketId": ticket_id, "message": "", "empty": True, "files": []}
            files = [line[3:] for line in status.stdout.splitlines() if len(line) > 3]
            untracked = [line[3:] for line in status.stdout.splitlines() if line.startswith("??")]
            body = diff.stdout[: self.runner.settings.diff_chars]
            prompt = (
                "Write a git commit message for the following changes: a subject line of at most 72 "
                "characters in the imperative mood, a blank line, then a short body. Reply with the "
                "commit message only.\n\n"
                f"Changed files:\n{status.stdout}\n"
                + (f"New files: {', '.join(untracked)}\n" if untracked else "")
                + f"\nDiff:\n{body}"
            )
            argv = prov.judge_argv(exe, prompt, RunOptions(model=model))
            spec = self.runner.agent_spec(
                prov,
                argv,
                ticket,
                self.runner.settings.defaults,
                role="commit-message",
                labels={"mode": "commit-message"},
            )
            record = await self.runner.sup.start(spec)
            final = await self.runner.sup.wait(record.id)
        summary = self.runner.conclude(final, prov)
        if final.state is not State.EXITED:
            raise AgentFailed(f"drafting failed: {final.error or outcome(final)}")
        return {
            "ticketId": ticket_id,
            "message": strip_fences(summary.final_text),
            "empty": False,
            "files": files,
            "processId": record.id,
        }


def strip_fences(text: str) -> str:
    """Models like to wrap a commit message in a code fence; a commit message has none."""
    text = text.strip()
    if text.startswith("```") and text.endswith("```"):
        text = text[3:-3].strip()
        first, _, rest = text.partition("\n")
        if first and " " not in first and rest:
            text = rest.strip()
    return text
