"""Request and response bodies of the git routes (shape only; refs and paths are checked by
``gateway.supervisor.services.git``, which names the field)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool

from gateway.http.schemas.core import Strict
from gateway.http.schemas.symphony import Id, Long, Short

Action = Literal["status", "branch", "commit", "push", "pull", "branch-diff", "sync-status"]
Paths = list[Short] | None


class Target(Strict):
    """Where: a managed repository (``repoId``) or a Symphony ticket's worktree (``ticketId``)."""

    repo_id: Id | None = Field(None, alias="repoId")
    ticket_id: Id | None = Field(None, alias="ticketId")


class GitActionIn(Target):
    """``POST /git``: one action; the fields each action reads are listed with it."""

    action: Action
    message: Long | None = Field(None, description="commit: the commit message")
    paths: Paths = Field(None, max_length=1000, description="commit: stage only these (default: all)")
    remote: Short = Field("origin", description="push: where a branch without upstream goes")
    base: Short | None = Field(None, description="branch-diff: base ref (default: the ticket's base)")
    fetch: StrictBool = Field(False, description="sync-status: fetch from the remote first")


class DiffIn(Target):
    base: Short | None = None
    staged: StrictBool = False
    merge_base: StrictBool = Field(False, alias="mergeBase")
    paths: Paths = Field(None, max_length=1000)


class WorktreeIn(Strict):
    repo_id: Id = Field(alias="repoId")
    ticket_id: Id = Field(alias="ticketId")
    base_ref: Short | None = Field(None, alias="baseRef")


class WorktreeDeleteIn(Strict):
    ticket_id: Id = Field(alias="ticketId")


class FileChangeOut(BaseModel):
    path: str
    index: str
    worktree: str
    origPath: str | None = None


class StatusOut(BaseModel):
    branch: str | None
    head: str | None
    upstream: str | None
    ahead: int
    behind: int
    clean: bool
    files: list[FileChangeOut]


class DiffFileOut(BaseModel):
    path: str
    additions: int | None
    deletions: int | None


class DiffOut(BaseModel):
    files: list[DiffFileOut]
    patch: str
    truncated: bool
    base: str | None = None
    mergeBase: str | None = None


class BranchOut(BaseModel):
    name: str
    head: str
    upstream: str | None = None
    current: bool


class RemoteBranchOut(BaseModel):
    name: str
    head: str


class BranchesOut(BaseModel):
    current: str | None
    branches: list[BranchOut]
    remotes: list[RemoteBranchOut]


class GitActionOut(BaseModel):
    """Each action's answer: ``status`` is ``StatusOut``, ``branch-diff`` is ``DiffOut``;
    the others are small objects named in docs/api.md."""

    model_config = {"extra": "allow"}


class WorktreeOut(BaseModel):
    ticket: dict[str, Any]
    created: bool


class WorktreeRemovedOut(BaseModel):
    ticketId: str
    removed: bool


class RepoPathOut(BaseModel):
    path: str
    repoId: str | None = None
    ticketId: str | None = None


class BranchWorktreeOut(BaseModel):
    branch: str
    path: str | None


class GitUserOut(BaseModel):
    name: str | None
    email: str | None
