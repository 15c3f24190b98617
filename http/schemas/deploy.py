"""Request and response bodies of the deploy routes, as ClosedLoop's web app sends and reads
them (for the OpenAPI document; the routes read bodies loosely and check what they use)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class RepoPathIn(Loose):
    repoPath: str


class PathsIn(Loose):
    repoPath: str
    worktreePath: str
    pid: int | None = None
    port: int | None = None


class DeployIn(Loose):
    ticketId: str
    repoPath: str
    worktreePath: str
    #: Ours, not ClosedLoop's (its web app never sends it): where the dev server runs.
    node: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$",
        description='a node\'s name, "local" or "auto"; omitted: the default node (local unless '
        "the gateway runs with --default-node)",
    )


class DeployOut(Loose):
    success: bool
    #: On its node (``node``) when the deploy runs on one.
    pid: int | None
    logFile: str
    deployCommand: str
    deployType: str | None = None
    repoName: str


class DeployStatusOut(Loose):
    status: Literal["running", "completed", "failed", "not-started"]
    logs: str | None
    pid: int | None
    deployedUrl: str | None = None
    error: str | None = None


class HealthIn(Loose):
    url: str


class HealthOut(Loose):
    alive: bool
    statusCode: int | None
    error: str | None = None
    code: str | None = None


class CheckExistingOut(Loose):
    active: bool
    url: str | None = None


class DetectOut(Loose):
    detected: bool | None = None
    redetected: bool | None = None
    config: dict[str, Any] | None = None


class UrlOut(Loose):
    url: str | None


class KillIn(Loose):
    pid: int
