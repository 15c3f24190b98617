"""Reading what a code review said, the way ClosedLoop's gateway reads it.

Findings come out of the review's text (a fenced ``json`` block, else the first ``[...]``),
duplicates between two reviewers are paired by word overlap, and a verdict is the first
``<pr_verdict>{json}</pr_verdict>`` tag (closedloop-ai/closedloop-ai
``apps/desktop/src/server/operations/codex.ts``: ``parseFindingsFromText``,
``findDuplicatePairs``, ``extractVerdictTag``). Pure functions.
"""

from __future__ import annotations

import json
import re
from typing import Any

_CODE_BLOCK = re.compile(r"```json\s*\n([\s\S]*?)\n\s*```")
_ARRAY = re.compile(r"\[[\s\S]*\]")
_VERDICT = re.compile(r"<pr_verdict>([\s\S]*?)</pr_verdict>")
_SEVERITIES = ("critical", "high", "medium", "low")
_PRIORITY = {"critical": "P0", "high": "P1", "medium": "P2", "low": "P3"}
VERDICTS = ("decline", "needs_attention", "approve")

#: codex's own diagnostics about its rollout files: not review output.
_ROLLOUT_DIAGNOSTIC = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\S+\s+ERROR\s+codex_core::session:\s+failed to record rollout items:\s+"
    r"thread\s+[0-9a-f-]{36}\s+not found$",
    re.IGNORECASE,
)
SESSION_ID = re.compile(r"session id:\s*([0-9a-f-]{36})", re.IGNORECASE)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _num(value: Any) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def strip_diagnostics(text: str) -> str:
    """Drop codex's rollout-recording diagnostics (lines), keep everything else."""
    return "\n".join(line for line in text.split("\n") if not _ROLLOUT_DIAGNOSTIC.match(line.strip()))


def _json_array(text: str) -> str | None:
    block = _CODE_BLOCK.search(text)
    if block and block.group(1):
        return block.group(1)
    array = _ARRAY.search(text)
    return array.group(0) if array else None


def parse_findings(text: str) -> list[dict[str, Any]]:
    """Findings ``{severity, priority, file?, line?, message, suggestion?, commented}``."""
    raw = _json_array(text)
    if raw is None:
        return []
    try:
        entries = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(entries, list):
        return []
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        severity = (_str(entry.get("severity")) or "low").lower()
        severity = severity if severity in _SEVERITIES else "low"
        title, description = _str(entry.get("title")), _str(entry.get("description"))
        finding: dict[str, Any] = {
            "severity": severity,
            "priority": _PRIORITY[severity],
            "message": f"{title}\n{description}" if title and description else (title or description or ""),
            "commented": False,
        }
        if _str(entry.get("file")):
            finding["file"] = entry["file"]
        if _num(entry.get("line")) is not None:
            finding["line"] = entry["line"]
        if _str(entry.get("suggestion")):
            finding["suggestion"] = entry["suggestion"]
        out.append(finding)
    return out


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9\s]", " ", text.lower())).strip()


def similarity(message_a: str, message_b: str, file_a: str, file_b: str) -> float:
    """Jaccard overlap of words, +0.25 for the same file, +0.25 for the same first 80 chars."""
    if not (message_a and message_b):
        return 0.0
    words_a, words_b = set(message_a.split(" ")) - {""}, set(message_b.split(" ")) - {""}
    union = len(words_a | words_b)
    score = len(words_a & words_b) / union if union else 0.0
    if file_a and file_b and file_a == file_b:
        score += 0.25
    if message_a[:80] == message_b[:80]:
        score += 0.25
    return min(score, 1.0)


def duplicate_pairs(findings_a: list[Any], findings_b: list[Any], threshold: float = 0.6) -> list[list[int]]:
    """Greedy best match of each A finding to an unused B finding scoring at least ``threshold``."""
    used: set[int] = set()
    pairs: list[list[int]] = []
    for index_a, a in enumerate(findings_a):
        a = a if isinstance(a, dict) else {}
        message_a, file_a = _normalize(_str(a.get("message")) or ""), _str(a.get("file")) or ""
        best, best_score = None, 0.0
        for index_b, b in enumerate(findings_b):
            if index_b in used:
                continue
            b = b if isinstance(b, dict) else {}
            score = similarity(
                message_a, _normalize(_str(b.get("message")) or ""), file_a, _str(b.get("file")) or ""
            )
            if score > best_score:
                best, best_score = index_b, score
        if best is not None and best_score >= threshold:
            pairs.append([index_a, best])
            used.add(best)
    return pairs


def verdict_tag(text: str) -> dict[str, str] | None:
    """The first ``<pr_verdict>`` tag as ``{verdict, reason}``, or None if absent or malformed."""
    match = _VERDICT.search(text)
    if not match:
        return None
    try:
        parsed = json.loads(match.group(1))
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    verdict, reason = parsed.get("verdict"), parsed.get("reason")
    if verdict not in VERDICTS or not isinstance(reason, str) or not reason:
        return None
    return {"verdict": verdict, "reason": reason}
