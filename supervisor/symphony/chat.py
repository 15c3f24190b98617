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
from ..spec import ACTIVE_STATES, ProcessRecord, State
from .model import BadRequest, NotFound, SymphonyError, Ticket, outcome, require_text
from .runs import SymphonyRuns


class SymphonyChat(SymphonyRuns):
    """``sessions``, ``chat``, ``chat-history``, ``comment-chat`` and ``commit-message``."""

    # ---- sessions -----------------------------------------------------------------------

    async def sessions(self, ticket_id: str | None = None) -> list[dict[str, Any]]:
        return await self.db.sessions(ticket_id)

    async def create_session(
        self, ticket_id: str, provider: str | None = None, title: str | None = None
    ) -> dict[str, Any]:
        """Open the ticket's session for ``provider`` (or return the existing one)."""
        ticket = await self.ticket(ticket_id)
        prov = self.provider(provider or ticket.provider)
        session = await self.db.session_for(ticket_id, prov.name)
        if session is None:
            session = await self._note_session(ticket, prov, None, unread=0)
        if title is not None:
            await self.db.set_session_title(session["id"], title)
            session["title"] = title
        return session

    async def delete_sessions(
        self, *, session_id: str | None = None, ticket_id: str | None = None
    ) -> dict[str, Any]:
        """Forget a session (or all of a ticket's), killing any chat turn still running."""
        if session_id is None and ticket_id is None:
            raise BadRequest("sessionId or ticketId: one is required")
        rows = await self.db.matching_sessions(session_id, ticket_id)
        if not rows:
            raise NotFound("no such session")
        killed = []
        for _sid, tid in rows:
            for r in self._records(tid, ("chat",)):
                if r.state in ACTIVE_STATES:
                    await self.sup.kill(r.id)
                    killed.append(r.id)
        # A killed turn's watcher stores its reply and touches the session: let it finish
        # first, or it would bring the session back right after this deletes it.
        for record_id in killed:
            await self.settled(record_id)
        await self.db.delete_sessions(session_id, ticket_id)
        return {"deleted": [sid for sid, _tid in rows], "killed": killed}

    async def mark_read(self, ticket_id: str) -> None:
        await self.db.mark_read(ticket_id)

    async def unread_count(self) -> dict[str, Any]:
        by_ticket = await self.db.unread_by_ticket()
        return {"unreadCount": sum(by_ticket.values()), "byTicket": by_ticket}

    # ---- chat turns and history ---------------------------------------------------------

    async def chat(
        self, ticket_id: str, message: str, provider: str | None = None, model: str | None = None
    ) -> ProcessRecord:
        """Send ``message`` into the ticket's session (resumed) as a ``chat`` child.

        The user's message is stored at once, the reply when the child ends (``settled``).
        """
        require_text(message, "message")
        ticket = await self.ticket(ticket_id)
        prov = self.provider(provider or ticket.provider)
        exe = self.executable(prov)
        if not ticket.worktree.is_dir():
            raise NotFound(f"ticketId: the worktree of {ticket_id} is gone")
        with self._reserve(ticket_id, str(ticket.worktree), "a chat turn"):
            session = await self.db.session_for(ticket_id, prov.name)
            psid = session.get("providerSessionId") if session else None
            opts = self._opts(prov, model)
            argv = prov.resume_argv(exe, psid, message, opts) if psid else prov.run_argv(exe, message, opts)
            spec = self._agent_spec(
                prov, argv, ticket, self.settings.defaults, kind="chat", role="chat", labels={"mode": "chat"}
            )
            record = await self.sup.start(spec)
            self._post_done[record.id] = trio.Event()
            await self.db.add_chat(
                ticket_id, "user", message, prov.name, record.id, session["id"] if session else None
            )
        self._spawn(self._watch_chat, record, prov, ticket)
        return record

    async def _watch_chat(self, record: ProcessRecord, prov: Provider, ticket: Ticket) -> None:
        done = self._post_done.setdefault(record.id, trio.Event())
        try:
            final = await self.sup.wait(record.id)
            summary = self._conclude(final, prov)
            session = await self._note_session(ticket, prov, summary.session_id)
            content = self._reply_text(final, summary)
            await self.db.add_chat(
                ticket.ticket_id, "assistant", content, prov.name, record.id, session["id"]
            )
        finally:
            done.set()

    async def chat_history(self, ticket_id: str, mark_read: bool = True) -> dict[str, Any]:
        """The ticket's stored messages; reading them clears its unread count."""
        await self._known_ticket(ticket_id)
        messages = await self.db.chat(ticket_id)
        if mark_read:
            await self.mark_read(ticket_id)
        return {"ticketId": ticket_id, "messages": messages}

    async def add_chat_history(self, ticket_id: str, role: str, content: str) -> dict[str, Any]:
        await self.ticket(ticket_id)
        if role not in ("user", "assistant", "system"):
            raise BadRequest("role: must be user, assistant or system")
        require_text(content, "content")
        return await self.db.add_chat(ticket_id, role, content, None, None, None)

    async def clear_chat_history(self, ticket_id: str) -> dict[str, Any]:
        await self._known_ticket(ticket_id)
        return {"ticketId": ticket_id, "deleted": await self.db.clear_chat(ticket_id)}

    # ---- review comment threads ---------------------------------------------------------

    async def comment_thread(self, comment_id: str) -> dict[str, Any]:
        return await self.db.comment_thread(comment_id)

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
        ticket = await self.ticket(ticket_id)
        prov = self.provider(provider or ticket.provider)
        exe = self.executable(prov)
        thread = await self.db.comment_thread(comment_id)
        psid = thread["providerSessionId"]
        text = message if psid or not context else f"About this review comment:\n{context}\n\n{message}"
        opts = self._opts(prov, model, read_only=True)
        argv = prov.resume_argv(exe, psid, text, opts) if psid else prov.run_argv(exe, text, opts)
        spec = self._agent_spec(
            prov, argv, ticket, self.settings.defaults, kind="chat", role="comment-chat",
            labels={"mode": "comment-chat", "commentId": comment_id},
        )  # fmt: skip
        await self.db.add_comment(comment_id, ticket_id, "user", message, prov.name, None, None)
        record = await self.sup.start(spec)
        final = await self.sup.wait(record.id)
        summary = self._conclude(final, prov)
        content = (
            summary.final_text if final.state is State.EXITED else f"[error] {final.error or outcome(final)}"
        )
        await self.db.add_comment(
            comment_id, ticket_id, "assistant", content, prov.name, summary.session_id, record.id
        )
        out = await self.db.comment_thread(comment_id)
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
        thread = await self.db.comment_thread(comment_id)
        if not thread["messages"]:
            raise NotFound(f"commentId: no thread for {comment_id!r}")
        if message_id is not None:
            require_text(content, "content")
        if resolved is not None:
            await self.db.resolve_comment_thread(comment_id, resolved)
        if message_id is not None:
            assert content is not None
            if not await self.db.edit_comment(comment_id, message_id, content):
                raise NotFound(f"messageId: no message {message_id} in this thread")
        return await self.db.comment_thread(comment_id)

    async def delete_comment_thread(self, comment_id: str) -> dict[str, Any]:
        n = await self.db.delete_comment_thread(comment_id)
        if not n:
            raise NotFound(f"commentId: no thread for {comment_id!r}")
        return {"commentId": comment_id, "deleted": n}

    # ---- commit message -----------------------------------------------------------------

    async def commit_message(
        self, ticket_id: str, provider: str | None = None, model: str | None = None
    ) -> dict[str, Any]:
        """Draft a commit message for the worktree's changes (the agent reads the diff)."""
        ticket = await self.ticket(ticket_id)
        prov = self.provider(provider or ticket.provider)
        exe = self.executable(prov)
        if not ticket.worktree.is_dir():
            raise NotFound(f"ticketId: the worktree of {ticket_id} is gone")
        with self._reserve(ticket_id, str(ticket.worktree), "a commit-message draft"):
            cwd = ticket.worktree
            status = await self.git.run(
                ["status", "--porcelain=v1", "--untracked-files=all"], cwd, ticket_id=ticket_id
            )
            diff = await self.git.run(
                ["diff", "HEAD", "--stat", "--patch", "--no-color"], cwd, ticket_id=ticket_id
            )
            if not status.stdout.strip():
                return {"ticketId": ticket_id, "message": "", "empty": True, "files": []}
            files = [line[3:] for line in status.stdout.splitlines() if len(line) > 3]
            untracked = [line[3:] for line in status.stdout.splitlines() if line.startswith("??")]
            body = diff.stdout[: self.settings.diff_chars]
            prompt = (
                "Write a git commit message for the following changes: a subject line of at most 72 "
                "characters in the imperative mood, a blank line, then a short body. Reply with the "
                "commit message only.\n\n"
                f"Changed files:\n{status.stdout}\n"
                + (f"New files: {', '.join(untracked)}\n" if untracked else "")
                + f"\nDiff:\n{body}"
            )
            argv = prov.judge_argv(exe, prompt, RunOptions(model=model))
            spec = self._agent_spec(
                prov,
                argv,
                ticket,
                self.settings.defaults,
                role="commit-message",
                labels={"mode": "commit-message"},
            )
            record = await self.sup.start(spec)
            final = await self.sup.wait(record.id)
        summary = self._conclude(final, prov)
        if final.state is not State.EXITED:
            raise SymphonyError(f"drafting failed: {final.error or outcome(final)}")
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
