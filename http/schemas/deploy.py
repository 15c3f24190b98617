"""Request and response bodies of the deploy routes, as ClosedLoop's web app sends and reads
them (for the OpenAPI document; the routes read bodies loosely and check what they use)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


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


class DeployOut(Loose):
    success: bool
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
