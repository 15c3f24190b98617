"""The filesystem family's engine side: folder listings for pickers, fuzzy file ranking,
chat-image attachments kept in a ticket's work folder, and run-viewer extracts.

Every path that comes from a request is resolved (symlinks included) and checked against the
root it must stay in before anything is read or written, and saved attachments get names
made here, so no request can read or write outside its folder.
Functions here are blocking (file system calls): callers run them in a worker thread.
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any

from ..agents.providers import parser_for
from ..engine import Supervisor
from ..errors import BadRequest, Forbidden, NotFound
from ..spec import iso

MAX_ENTRIES = 1000


def _reason(exc: OSError) -> str:
    """What was wrong with a requested path, without echoing a possibly huge path back."""
    if exc.errno == errno.ENAMETOOLONG:
        return "name too long"
    return exc.strerror or type(exc).__name__


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


# ---- ClosedLoop's filesystem wire ---------------------------------------------------------


def picker_directories(raw: str | None) -> dict[str, Any]:
    """ClosedLoop's ``GET directories`` (``filesystem-directories.ts``): the sub-folders of
    ``raw`` (default ``~``), git repositories first, dot-folders skipped, a ``~`` path answered in
    ``~`` form; a missing folder is ``{directories: []}``. Ours: only inside the home folder
    (``Forbidden`` otherwise), at most ``MAX_ENTRIES``."""
    text = raw or "~"
    if "\x00" in text or len(text) > 4096 or not os.path.isabs(os.path.expanduser(text)):
        raise BadRequest("path: must be an absolute path", code="invalid_query")
    path = Path(os.path.realpath(os.path.expanduser(text)))
    home = Path(os.path.realpath(Path.home()))
    if path != home and home not in path.parents:
        raise Forbidden("directory not allowed", code="outside_home")
    try:
        if not path.is_dir():
            return {"directories": [], "path": str(path)}
        entries = list(os.scandir(path))
    except PermissionError:
        raise Forbidden(f"path: no permission to read {path}") from None
    except OSError as exc:  # a name over NAME_MAX, a loop: the request's fault, never a 500
        raise BadRequest(f"path: {_reason(exc)}", code="invalid_query") from None
    dirs: list[dict[str, Any]] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if not entry.is_dir():
                continue
        except OSError:
            continue
        full = Path(entry.path)
        shown = f"{text.rstrip('/')}/{entry.name}" if text.startswith("~") else str(full)
        dirs.append(
            {"name": entry.name, "path": shown, "isDirectory": True, "isGitRepo": (full / ".git").exists()}
        )
    dirs.sort(key=lambda d: (not d["isGitRepo"], str(d["name"]).lower(), str(d["name"])))
    return {"directories": dirs[:MAX_ENTRIES], "path": str(path), "truncated": len(dirs) > MAX_ENTRIES}


def rank_files(query: str, paths: list[str], limit: int = 10) -> tuple[list[str], bool]:
    """ClosedLoop's file search (``filesystem-search.ts``): files whose name contains ``query``
    (case-insensitive), exact names (also ``.ts``/``.tsx``) first, then names starting with it,
    then shorter paths; at most ``limit`` and whether there were more."""
    q = query.lower()
    hits = [p for p in paths if q in p.rsplit("/", 1)[-1].lower()]

    def key(p: str) -> tuple[bool, bool, int, str]:
        name = p.rsplit("/", 1)[-1].lower()
        return (name not in (q, f"{q}.ts", f"{q}.tsx"), not name.startswith(q), len(p), p)

    hits.sort(key=key)
    return hits[:limit], len(hits) > limit


#: ClosedLoop's upload types; each file's first bytes must agree with its declared type.
IMAGE_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}
IMAGE_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}
UPLOAD_MAX_FILE = 10 * 1024 * 1024


def check_image(mime: str, head: bytes, name: str, size: int) -> str:
    """The saved extension of an upload, or ``BadRequest`` with ClosedLoop's message."""
    if mime not in IMAGE_MAGIC:
        raise BadRequest(
            f"File type not allowed: {mime[:100]}. Allowed: png, jpeg, gif, webp", code="file_type"
        )
    if size > UPLOAD_MAX_FILE:
        raise BadRequest(
            f"File too large: {name[:200]} ({size / 1024 / 1024:.1f}MB). Max 10MB.", code="file_too_large"
        )
    if not any(head.startswith(m) for m in IMAGE_MAGIC[mime]) or (
        mime == "image/webp" and head[8:12] != b"WEBP"
    ):
        raise BadRequest(f"File content is not {mime}: {name[:200]}", code="file_type")
    return IMAGE_EXT[mime]


def save_attachment(folder: Path, ext: str, data: bytes) -> Path:
    """Write ``data`` as ``chat-img-<ms>-<4 hex><ext>`` in ``folder`` (never over a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        target = folder / f"chat-img-{int(time.time() * 1000)}-{os.urandom(2).hex()}{ext}"
        try:
            with open(target, "xb") as out:
                out.write(data)
            return target
        except FileExistsError:
            continue


def attachment_in(folder: Path, rel: str) -> Path:
    """A file under ``folder`` named by a request, symlinks resolved; ``Forbidden`` outside."""
    if "\x00" in rel or not rel:
        raise BadRequest("attachment path is required", code="invalid_request")
    base = Path(os.path.realpath(folder))
    path = Path(os.path.realpath(base / rel))
    if base not in path.parents:
        raise Forbidden("Invalid path", code="invalid_path")
    try:
        found = path.is_file()
    except OSError:  # a name over NAME_MAX: no such file can exist
        found = False
    if not found:
        raise NotFound("File not found", code="file_not_found")
    return path
