"""Request bodies of the deploy routes (shape only)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from gateway.http.schemas.core import Strict
from gateway.http.schemas.symphony import Id, NoNul, Short
from gateway.supervisor.services.worktrees import check_id

Arg = Annotated[str, StringConstraints(min_length=1, max_length=8192), NoNul]
#: Ticket ids name worktree folders and branches elsewhere: the same boring charset here.
TicketId = Annotated[str, AfterValidator(lambda v: check_id(v, "ticketId"))]


class TicketOnlyIn(Strict):
    ticket_id: TicketId = Field(alias="ticketId")


class DeployTargetIn(TicketOnlyIn):
    """The ticket's worktree, or (for a ticket Symphony does not know) the repo ``repoId``."""

    repo_id: Id | None = Field(None, alias="repoId")


class DeployIn(DeployTargetIn):
    command: list[Arg] | None = Field(
        None, min_length=1, max_length=256, description="argv, never a shell string"
    )
    script: Short | None = Field(None, description="a package.json script to run")
    port: int | None = Field(None, ge=1024, le=65535, description="default: a free one")
