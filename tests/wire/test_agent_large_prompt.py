"""Chat messages longer than one argv element may be reach the agent whole, on its stdin.

Linux caps one argv element at 128 KiB (``MAX_ARG_STRLEN``), so a long message used to fail at
exec (and the gateway refused messages over 100,000 characters). Now a prompt over
``ARGV_PROMPT_MAX_BYTES`` goes on stdin: ``claude -p`` with no prompt argument, ``codex exec
-- -``. ClosedLoop's desktop feeds its loop prompts the same way (``claude -p -`` with the prompt
file on stdin, closedloop-ai/closedloop-electron ``apps/desktop/src/server/operations/
symphony-loop.ts``); the chat request is its chat panel's (``symphony-interactive.ts``, the body
of ``ClosedLoopChat.tsx``). A message is capped at 1 MiB (413 beyond); the chat routes take a
4 MiB body where ClosedLoop's ``router.ts`` takes 256 KiB (``GENERIC_JSON_LIMIT_BYTES``), since
the panel sends the message twice (``displayContent``).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from agent_support import (  # fixtures are imported by name
    API,
    TICKET,
    aapi,
    agw,
    cl_repo,
    error_text,
    frames,
    md,
    ticket_worktree,
)

from gateway.http.serve import GatewayHandle
from gateway.supervisor.errors import TooLarge
from gateway.supervisor.symphony.model import MAX_PROMPT_BYTES, check_prompt_size
from gateway.supervisor.symphony.runner import ARGV_PROMPT_MAX_BYTES

from agents.model_double import ModelDouble


def long_message(size: int = 210 * 1024) -> str:
    """A message of ``size`` bytes with unique first and last lines (and non-ASCII inside)."""
    tag = uuid.uuid4().hex
    body = "".join(f"line {i}: the quick brown fox — jumps over the lazy dog\n" for i in range(size // 50))
    return f"START-{tag}\n{body}END-{tag}"


@pytest.mark.parametrize("provider", ["claude", "codex"])
async def test_a_message_over_128_kib_reaches_the_model_whole(
    aapi: httpx.AsyncClient,
    md: ModelDouble,
    cl_repo: Path,
    ticket_worktree: Path,
    agw: GatewayHandle,
    provider: str,
) -> None:
    message = long_message()
    assert len(message.encode()) > 200 * 1024 > ARGV_PROMPT_MAX_BYTES
    getattr(md, provider).reply("read it all")
    body = {
        "message": message,
        "displayContent": message,
        "activeTab": "plan",
        "contextRepoPaths": [],
        "codexAvailable": True,
        "provider": provider,
    }
    async with aapi.stream("POST", f"{API}/symphony/chat/{TICKET}?repo={cl_repo}", json=body) as response:
        assert response.status_code == 200
        got = frames((await response.aread()).decode())
    assert got[-1]["type"] == "done"
    assert [f["content"] for f in got if f["type"] == "text"] == ["read it all"]
    assert not [f for f in got if f["type"] == "error" and f.get("terminal")]  # codex warns on stderr
    # The model double received the whole message, first line to last.
    asked = md.requests_for(provider)[-1].text
    assert message in asked
    # It went on stdin: not in the child's argv, and the record says how many bytes.
    record = next(r for r in agw.context.sup.table.query(kind="chat") if r.labels.get("provider") == provider)
    assert all(message not in a for a in record.argv)
    assert int(record.labels["promptOnStdin"]) >= len(message.encode())


async def test_a_message_over_one_mib_is_413(
    aapi: httpx.AsyncClient, cl_repo: Path, ticket_worktree: Path
) -> None:
    body = {"message": "x" * (MAX_PROMPT_BYTES + 1), "contextRepoPaths": []}
    r = await aapi.post(f"{API}/symphony/chat/{TICKET}?repo={cl_repo}", json=body)
    assert r.status_code == 413 and r.json()["code"] == "prompt_too_large"
    assert error_text(r.json()) == f"message: at most {MAX_PROMPT_BYTES} bytes (1 MiB)"
    # A body over the chat routes' 4 MiB is refused before it is read.
    huge = {"message": "x", "displayContent": "y" * (5 << 20)}
    r = await aapi.post(f"{API}/symphony/chat/{TICKET}?repo={cl_repo}", json=huge)
    assert r.status_code == 413 and r.json()["code"] == "request_body_too_large"


def test_prompts_are_capped_at_one_mib_of_utf8() -> None:
    check_prompt_size("é" * (MAX_PROMPT_BYTES // 2), "message")  # exactly 1 MiB of UTF-8
    with pytest.raises(TooLarge, match="message: at most 1048576 bytes"):
        check_prompt_size("é" * (MAX_PROMPT_BYTES // 2) + "x", "message")
