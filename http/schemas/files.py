"""Response bodies of the filesystem routes, as ClosedLoop's web app reads them (for the
OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DirectoryOut(BaseModel):
    name: str
    path: str
    isDirectory: bool
    isGitRepo: bool


class DirectoriesOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    directories: list[DirectoryOut]


class SearchOut(BaseModel):
    files: list[str]
    truncated: bool
    error: str | None = None


class BranchStatusOut(BaseModel):
    merged: bool
    remoteMissing: bool


class WorkDirectoryOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    exists: bool
    path: str | None
    source: str | None = None
    pendingClaudeMd: str | None
    branchStatus: BranchStatusOut | None


class SavedFileOut(BaseModel):
    originalName: str
    savedName: str
    path: str
    apiUrl: str
    size: int


class UploadOut(BaseModel):
    files: list[SavedFileOut]


class RunDirOut(BaseModel):
    runDir: str
