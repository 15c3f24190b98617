"""The ``git/pr`` routes' bodies and answers, for the OpenAPI document only.

The routes read bodies the way ClosedLoop's server does (numbers may come as strings, unknown
fields are ignored) and ``gateway.supervisor.services.github`` checks each field, naming it in the 400;
so these models document and never validate.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class RepoPrQuery(BaseModel):
    repo: str = Field(description="absolute path (or ~/...) of a registered repository or worktree")
    pr: int = Field(description="pull request number")


class ListQuery(BaseModel):
    repo: str = Field(description="absolute path (or ~/...) of a registered repository or worktree")
    state: Literal["open", "merged"] = "open"


class ReviewsQuery(BaseModel):
    owner: str
    repo: str = Field(description="the GitHub repository's name (of a registered repository's origin)")
    number: int


class CreateIn(BaseModel):
    repoPath: str
    title: str
    body: str | None = None
    ticketUrl: str | None = Field(None, description='appended to the body as "---\\nLinear: <url>"')
    baseBranch: str | None = Field(None, description="the PR's base (default: the repository's default)")


class CreateOut(BaseModel):
    success: bool
    url: str
    number: int
    message: str
    created: bool = Field(description="false: the branch already had this open PR")


class PrItem(BaseModel):
    number: int
    title: str
    url: str
    author: str
    state: str
    createdAt: str
    headRefName: str


class ListOut(BaseModel):
    prs: list[PrItem]


class CommentItem(BaseModel):
    id: str
    databaseId: int = Field(description="the inline comment's REST id (thread replies); 0 otherwise")
    author: str
    body: str
    createdAt: str
    path: str | None = None
    line: int | None = None
    isReview: bool
    url: str
    inReplyToId: int | None = None


class CommentsOut(BaseModel):
    comments: list[CommentItem]
    prNumber: int
    prUrl: str


class ReviewItem(BaseModel):
    author: str
    state: str
    submittedAt: str | None


class ReviewsOut(BaseModel):
    reviewDecision: str | None
    reviews: list[ReviewItem]
    approvalCount: int
    changesRequestedCount: int


class ReplyIn(BaseModel):
    repoPath: str
    prNumber: int
    body: str
    commentId: int | None = Field(None, description="reply in this inline comment's thread")
    requestChanges: bool | None = Field(None, description="submit a review requesting changes")


class ReplyOut(BaseModel):
    success: bool
    message: str
    output: str


class FilesOut(BaseModel):
    files: list[str]


class HeadShaOut(BaseModel):
    sha: str


class InlineCommentIn(BaseModel):
    repoPath: str
    prNumber: int
    body: str
    path: str | None = None
    line: int | None = None
    commitSha: str | None = None


class Refusal(BaseModel):
    kind: Literal["line", "file"]
    status: int
    error: str


class InlineCommentOut(BaseModel):
    success: bool
    output: str
    posted: Literal["line", "file", "general"]
    refused: list[Refusal]


class PrErrorOut(BaseModel):
    """ClosedLoop's error envelope."""

    error: str
    code: str
    details: dict[str, Any] | None = None
