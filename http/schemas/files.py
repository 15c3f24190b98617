"""Response bodies of the filesystem routes (for the OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel


class DirectoryOut(BaseModel):
    name: str
    path: str
    isGitRepo: bool


class DirectoriesOut(BaseModel):
    path: str
    parent: str | None
    directories: list[DirectoryOut]
    truncated: bool


class FoundOut(BaseModel):
    path: str
    score: float


class SearchOut(BaseModel):
    query: str
    total: int
    files: list[FoundOut]


class WorkDirectoryOut(BaseModel):
    ticketId: str
    path: str
    exists: bool


class AttachmentOut(BaseModel):
    name: str
    path: str
    size: int
    url: str


class UploadOut(BaseModel):
    ticketId: str
    attachments: list[AttachmentOut]
