"""Request bodies of the codex review routes (shape only; values are checked by the service)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.http.schemas.core import NODE_HELP, NodeName, Strict
from gateway.http.schemas.symphony import Id, Long, Prompt, Short


class ReviewIn(Strict):
    base: Short | None = Field(None, description="default: the ticket's base ref")
    model: Short | None = None
    focus: Long | None = Field(None, description="what the reviewer should look at first")
    node: NodeName | None = Field(None, description=NODE_HELP)


class FindingEditIn(Strict):
    id: Id
    status: Literal["open", "accepted", "contested", "dismissed", "fixed", "duplicate"] | None = None
    severity: Literal["low", "medium", "high", "critical"] | None = None
    title: Short | None = None
    body: Long | None = None


class VerdictIn(Strict):
    verdict: Literal["approve", "request-changes"] | None = Field(None, description="default: derived")
    reason: Long | None = None


class ArgueIn(Strict):
    finding_id: Id = Field(alias="findingId")
    message: Long | None = Field(None, description="the author's side, for the agent to weigh")
    model: Short | None = None


class ReviewChatIn(Strict):
    message: Prompt
    model: Short | None = None
