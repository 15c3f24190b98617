"""Run-viewer uploads: a zip of an agent run, unpacked where the run viewer (and its chat) can
read it, as ClosedLoop's ``run-viewer-extract`` does (``apps/desktop/src/server/operations/
run-viewer-extract.ts``: multipart ``file`` of type ``application/zip`` -> ``{runDir}``;
``GET ?runDir`` lists the files; ``DELETE {runDir}`` removes the folder).

ClosedLoop shells out to ``unzip``. Here Python's ``zipfile`` unpacks entry by entry with the
checks ``unzip`` leaves to chance: an entry whose name is absolute or climbs out (``..``) is
refused, symlink entries are refused, and the total unpacked size and the number of entries are
bounded (a small zip cannot fill the disk). Run folders live under one root and are named by a
random id; a ``runDir`` from a request is accepted only if it is one of them.

Blocking: callers run these in a worker thread.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import uuid
import zipfile
from pathlib import Path
from typing import BinaryIO

MAX_ZIP = 200 * 1024 * 1024
MAX_UNPACKED = 1024 * 1024 * 1024
MAX_ENTRIES = 20_000
SKIP = frozenset({"__MACOSX", ".DS_Store"})
PREFIX = "run-viewer-"


class ZipRefused(ValueError):
    """The upload cannot be unpacked; the message is for the person who sent it."""


class RunDirs:
    def __init__(self, root: Path) -> None:
        self.root = root

    def extract_bytes(self, data: bytes) -> Path:
        return self.extract(io.BytesIO(data))

    def extract(self, stream: BinaryIO) -> Path:
        """Unpack ``stream`` (a zip) into a new run folder; its path."""
        try:
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, OSError):
            raise ZipRefused("Invalid zip file") from None
        with archive:
            infos = archive.infolist()
            if len(infos) > MAX_ENTRIES:
                raise ZipRefused(f"Zip has too many entries (max {MAX_ENTRIES})")
            if sum(i.file_size for i in infos) > MAX_UNPACKED:
                raise ZipRefused("Zip unpacks too large (max 1 GiB)")
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            run_dir = self.root / f"{PREFIX}{uuid.uuid4()}"
            run_dir.mkdir(mode=0o700)
            try:
                written = 0
                for info in infos:
                    written += self._entry(archive, info, run_dir)
                if written == 0:
                    raise ZipRefused("Zip contains no files")
            except BaseException:
                shutil.rmtree(run_dir, ignore_errors=True)
                raise
        return run_dir

    @staticmethod
    def _entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, run_dir: Path) -> int:
        name = info.filename.replace("\\", "/")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            raise ZipRefused(f"Zip entry escapes the folder: {info.filename[:200]}")
        if not parts or parts[0] in SKIP or parts[-1] in SKIP:
            return 0
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ZipRefused(f"Zip entry is a symlink: {info.filename[:200]}")
        target = run_dir.joinpath(*parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            return 0
        target.parent.mkdir(parents=True, exist_ok=True)
        remaining = info.file_size + 1
        with archive.open(info) as src, open(target, "xb") as dst:
            while chunk := src.read(1024 * 1024):
                remaining -= len(chunk)
                if remaining <= 0:  # the header lied about the size
                    raise ZipRefused(f"Zip entry larger than declared: {info.filename[:200]}")
                dst.write(chunk)
        return 1

    def check(self, raw: object) -> Path:
        """A ``runDir`` from a request: one of ours (by name, under the root), else ``ValueError``."""
        if not isinstance(raw, str) or not raw or len(raw) > 400 or "\x00" in raw or ".." in raw:
            raise ValueError("Invalid runDir")
        path = Path(os.path.normpath(raw))
        if path.parent != self.root or not path.name.startswith(PREFIX):
            raise ValueError("Invalid runDir")
        return path

    @staticmethod
    def files(run_dir: Path) -> list[str]:
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(run_dir):
            dirnames[:] = [d for d in dirnames if d not in SKIP]
            rel = Path(dirpath).relative_to(run_dir)
            found += [str(rel / f) if str(rel) != "." else f for f in filenames if f not in SKIP]
        return sorted(found)

    @staticmethod
    def remove(run_dir: Path) -> None:
        shutil.rmtree(run_dir, ignore_errors=True)
