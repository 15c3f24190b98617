"""The org learnings file (``org-patterns.toon``) as ClosedLoop's gateway reads and grows it.

``GET learnings`` answers ``{"patterns": [{"id": "pattern-N", "summary", "raw"}]}`` parsed
from ``~/.closedloop-ai/learnings/org-patterns.toon`` (closedloop-ai/closedloop-ai
``apps/desktop/src/server/operations/learnings.ts`` ``parseToon``): chunks separated by blank
lines; in a chunk that opens with a ``patterns[..]`` header the summary is the third CSV field
of the next line, otherwise the first line without its bullet. Pure functions.
"""

from __future__ import annotations

import re

_BLANK = re.compile(r"\n\s*\n")
_CSV_SUMMARY = re.compile(r'^[^,]+,[^,]+,"([^"]+)"')
_BULLET = re.compile(r"^[-*#\s]+")
SUMMARY_CHARS = 240


def parse_toon(content: str) -> list[dict[str, str]]:
    chunks = [chunk.strip() for chunk in _BLANK.split(content)]
    patterns = []
    for index, chunk in enumerate(c for c in chunks if c):
        lines = [line.strip() for line in chunk.split("\n") if line.strip()]
        first = lines[0] if lines else ""
        candidate = lines[1] if first.startswith("patterns[") and len(lines) > 1 else first
        match = _CSV_SUMMARY.match(candidate)
        summary = (match.group(1) if match else _BULLET.sub("", candidate))[:SUMMARY_CHARS]
        patterns.append(
            {"id": f"pattern-{index + 1}", "summary": summary or f"Pattern {index + 1}", "raw": chunk}
        )
    return patterns


def toon_chunk(title: str, body: str) -> str:
    """One learning as a chunk ``parse_toon`` reads back with ``title`` as its summary."""
    title = " ".join(title.split()) or "Learning"
    text = "\n".join(line.rstrip() for line in body.strip().splitlines() if line.strip())
    return f"- {title}\n{text}".rstrip() + "\n"
