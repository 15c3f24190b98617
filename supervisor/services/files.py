"""The filesystem family's engine side: folder listings for pickers, fuzzy file search, and
ticket attachments kept under ``<state>/attachments/<ticketId>/``.

Every path that comes from a request is resolved (symlinks included) and checked against the
root it must stay in before anything is read or written, and names of uploaded files are
reduced to a safe basename, so no request can read or write outside its folder.
Functions here are blocking (file system calls): callers run them in a worker thread.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..agents.providers import parser_for
from ..engine import Supervisor
from ..errors import BadRequest, Forbidden, NotFound
from ..spec import iso

MAX_ENTRIES = 1000
MAX_NAME = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def list_directories(raw: str | None, *, hidden: bool = False) -> dict[str, Any]:
    """The sub-folders of ``raw`` (default: home), sorted, at most ``MAX_ENTRIES``."""
    if raw is not None and (not raw or "\x00" in raw or not os.path.isabs(os.path.expanduser(raw))):
        raise BadRequest("path: must be an absolute path")
    try:
        path = Path(os.path.expanduser(raw)).resolve() if raw else Path.home().resolve()
        is_dir = path.is_dir()
    except OSError as exc:  # a name past NAME_MAX/PATH_MAX, a loop: the folder cannot exist
        raise BadRequest(f"path: {_reason(exc)}") from None
    if not is_dir:
        raise NotFound(f"path: {path} is not a folder")
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name.lower())
    except PermissionError:
        raise Forbidden(f"path: no permission to read {path}") from None
    dirs = []
    for entry in entries:
        if not hidden and entry.name.startswith("."):
            continue
        try:
            if not entry.is_dir():
                continue
        except OSError:
            continue
        full = Path(entry.path)
        dirs.append({"name": entry.name, "path": str(full), "isGitRepo": (full / ".git").exists()})
    parent = str(path.parent) if path.parent != path else None
    return {
        "path": str(path),
        "parent": parent,
        "directories": dirs[:MAX_ENTRIES],
        "truncated": len(dirs) > MAX_ENTRIES,
    }


def _reason(exc: OSError) -> str:
    """What was wrong with a requested path, without echoing a possibly huge path back."""
    if exc.errno == errno.ENAMETOOLONG:
        return "name too long"
    return exc.strerror or type(exc).__name__


def fuzzy_score(query: str, path: str) -> float | None:
    """How well ``query``'s characters match ``path`` in order (None: they do not).

    Matches in the file's own name, at word starts and in runs count more, and shorter paths
    win ties, the way editor "go to file" pickers rank.
    """
    q, p = query.lower(), path.lower()
    base = p.rfind("/") + 1
    score, pos, run = 0.0, 0, 0
    for ch in q:
        found = p.find(ch, pos)
        if found < 0:
            return None
        run = run + 1 if found == pos and pos > 0 else 1
        score += 1.0 + run
        if found >= base:
            score += 2.0
        if found == 0 or p[found - 1] in "/._- ":
            score += 3.0
        pos = found + 1
    if q in p[base:]:
        score += 10.0
    return score - len(p) * 0.01


def search(query: str, paths: list[str], limit: int) -> list[dict[str, Any]]:
    scored = [(s, path) for path in paths if (s := fuzzy_score(query, path)) is not None]
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [{"path": path, "score": round(score, 2)} for score, path in scored[:limit]]


def safe_name(raw: str | None) -> str:
    """An uploaded file's name reduced to a plain basename nobody can use to escape."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    if not name:
        name = "upload"
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_NAME - len(ext) - 1] + dot + ext) if dot and len(ext) < 12 else name[:MAX_NAME]
    return name


@dataclass(slots=True)
class Attachment:
    ticket_id: str
    name: str
    size: int

    def to_json(self) -> dict[str, Any]:
        rel = f"{self.ticket_id}/{self.name}"
        return {
            "name": self.name,
            "path": rel,
            "size": self.size,
            "url": f"/api/gateway/symphony/attachments/{rel}",
        }


class Attachments:
    """``<root>/<ticketId>/<name>``: written once (a clash gets ``-1``, ``-2``), read back."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, ticket_id: str, filename: str | None, stream: IO[bytes], max_bytes: int) -> Attachment:
        folder = self.root / ticket_id
        folder.mkdir(parents=True, exist_ok=True)
        name = safe_name(filename)
        stem, dot, ext = name.rpartition(".") if "." in name[1:] else (name, "", "")
        for n in range(1000):
            candidate = name if n == 0 else f"{stem}-{n}{dot}{ext}"
            target = folder / candidate
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                continue
            break
        else:
            raise BadRequest(f"file: too many attachments named {name!r}")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(1 << 16):
                    size += len(chunk)
                    if size > max_bytes:
                        raise BadRequest(f"file: {name} is larger than {max_bytes // (1 << 20)} MiB")
                    out.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return Attachment(ticket_id, candidate, size)

    def resolve(self, rel: str) -> Path:
        """The file ``rel`` names, only if it is a regular file inside the root."""
        if not rel or "\x00" in rel:
            raise NotFound("attachment: not found")
        root = self.root.resolve()
        try:
            target = (root / rel).resolve()
            if not target.is_relative_to(root) or target == root:
                raise Forbidden("attachment: outside the attachments folder")
            is_file = target.is_file()
        except OSError:  # a name too long to exist (ENAMETOOLONG), a symlink loop
            is_file = False
        if not is_file:
            raise NotFound(f"attachment: no file {rel[:200]}")
        return target


class RunViewer:
    """Run-viewer extractions: a run's parsed agent events, saved as one JSON file per run
    under ``<state>/run-viewer/`` so a viewer loads a finished run without re-parsing its log.

    Only agent runs (records with an ``event_parser``) can be extracted; the ``processId``
    becomes a file name only after the table vouched for it.
    """

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.root = sup.state_dir / "run-viewer"

    def _path(self, process_id: str) -> Path:
        if self.sup.table.get(process_id) is None:
            raise NotFound(f"processId: no process {process_id[:100]!r}")
        return self.root / f"{process_id}.json"

    def extract(self, process_id: str) -> dict[str, Any]:
        record = self.sup.table.get(process_id)
        path = self._path(process_id)
        assert record is not None
        provider = parser_for(record.event_parser)
        if provider is None:
            raise BadRequest(f"processId: {process_id} is not an agent run (no transcript to extract)")
        lines = (line.raw for line in self.sup.log(process_id).read() if line.stream == "stdout")
        events = provider.parse_lines(lines)
        texts = [e["text"] for e in events if e["type"] == "text"]
        tools = [e for e in events if e["type"] == "tool_use"]
        doc = {
            "processId": process_id,
            "ticketId": record.ticket_id,
            "kind": record.kind,
            "provider": provider.name,
            "state": record.state.value,
            "extractedAt": iso(time.time()),
            "summary": texts[-1] if texts else None,
            "counts": {"events": len(events), "texts": len(texts), "toolCalls": len(tools)},
            "tools": sorted({str(t.get("name")) for t in tools}),
            "events": events,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        tmp.replace(path)
        return {k: v for k, v in doc.items() if k != "events"}

    def read(self, process_id: str) -> dict[str, Any]:
        path = self._path(process_id)
        if not path.is_file():
            raise NotFound(f"processId: nothing extracted for {process_id}")
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def listing(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.root.glob("*.json")) if self.root.is_dir() else []:
            doc = json.loads(path.read_text(encoding="utf-8"))
            out.append({k: doc.get(k) for k in ("processId", "ticketId", "extractedAt", "counts")})
        return out

    def delete(self, process_id: str) -> bool:
        path = self._path(process_id)
        existed = path.is_file()
        path.unlink(missing_ok=True)
        return existed
