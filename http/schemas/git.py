"""Request and response bodies of the git routes, as ClosedLoop's web app sends and reads them
(for the OpenAPI document; the routes read bodies loosely and check each field they use, as
ClosedLoop's handlers do, so the extra fields its clients send are never a 400)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["status", "branch", "commit", "push", "pull", "branch-diff", "sync-status"]
AbsPath = str


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class GitActionIn(Loose):
    """``POST /git``; each action reads the fields named with it."""

    action: Action
    repoPath: AbsPath = Field(description="a registered repository or one of its worktrees (~ allowed)")
    branchName: str | None = Field(None, description="branch: the branch to switch to (or create)")
    message: str | None = Field(None, description="commit: the commit message")
    baseBranch: str = Field("main", description="branch-diff: compared as origin/<baseBranch>...HEAD")


class GitFilesOut(BaseModel):
    modified: list[str]
    created: list[str]
    deleted: list[str]
    staged: list[str] | None = None


class GitActionOut(Loose):
    """``status``: ``{currentBranch, hasChanges, files}``; ``branch``: ``{success, branchName,
    message}``; ``commit``: ``{success, commit, message}``; ``push``: ``{success, pushed,
    message}``; ``pull``: ``{success, message}``; ``branch-diff``: ``{baseBranch, currentBranch,
    files, totalChanges}``; ``sync-status``: ``{isUpToDate, behindBy, aheadBy, currentBranch,
    trackingBranch}``."""

    currentBranch: str | None = None
    files: GitFilesOut | None = None
    success: bool | None = None


class DiffIn(Loose):
    filePath: str = Field(description="relative to repoPath; must stay inside it")
    repoPath: AbsPath
    baseBranch: str | None = Field(None, description="branch mode: origin/<baseBranch> against HEAD")


class DiffOut(Loose):
    filePath: str
    oldContent: str
    newContent: str
    isNew: bool
    isDeleted: bool
    isImage: bool | None = None
    mimeType: str | None = None


class WorktreeInfoOut(BaseModel):
    path: str
    branch: str
    ticketId: str | None


class BranchInfoOut(BaseModel):
    name: str
    isRemote: bool
    lastCommitDate: str | None = None


class BranchesOut(BaseModel):
    defaultBranch: str
    worktrees: list[WorktreeInfoOut]
    branches: list[BranchInfoOut]
    isEmpty: bool | None = None


class WorktreeIn(Loose):
    """Empty: ClosedLoop's cleanup of merged ``*-pr-N`` worktrees. With ``repoPath`` and
    ``ticketId`` (ours): create or reuse the ticket's worktree."""

    repoPath: AbsPath | None = None
    ticketId: str | None = None
    baseRef: str | None = None


class WorktreeOut(Loose):
    success: bool
    path: str
    branch: str
    created: bool
    ticket: dict[str, Any]


class WorktreeCleanupOut(BaseModel):
    removed: list[str]
    kept: list[str]
    errors: list[str]


class WorktreeDeleteIn(Loose):
    worktreePath: AbsPath | None = None
    force: bool = False
    ticketId: str | None = None


class RepoPathOut(BaseModel):
    path: str | None


class BranchWorktreeOut(BaseModel):
    path: str | None
    repoPath: str | None


class GitUserOut(BaseModel):
    login: str
    name: str | None = None
    email: str | None = None
