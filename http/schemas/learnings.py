"""Request bodies of the learnings routes (shape only)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.http.schemas.core import Strict
from gateway.http.schemas.symphony import Id, Long, Short

Decision = Literal["accept", "reject"]


class ExtractIn(Strict):
    ticket_id: Id = Field(alias="ticketId")
    process_id: Id | None = Field(None, alias="processId", description="default: the latest finished run")
    provider: Short | None = None
    model: Short | None = None


class DecisionIn(Strict):
    id: Id
    decision: Decision
    title: Short | None = Field(None, description="accept: replace the title")
    body: Long | None = Field(None, description="accept: replace the text")


class DecisionsIn(Strict):
    decisions: list[DecisionIn] = Field(min_length=1, max_length=200)


class AllDecisionIn(Strict):
    decision: Decision
    ticket_id: Id | None = Field(None, alias="ticketId")
    repo_id: Id | None = Field(None, alias="repoId")


class UseIn(Strict):
    id: Id
