"""What the CLI prints for people: tables, ages, records, health and agent conversations.

Pure functions from the API's JSON to text, so they are cheap to import and easy to test.
Colour only when the caller says so (a terminal, and ``NO_COLOR`` unset).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

ACTIVE = ("starting", "running", "stopping")


def use_colour(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


class Style:
    """ANSI styles, or nothing when colour is off."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on else text

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lines = []
    for row in [headers, *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    return "\n".join(lines)


def parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def duration(seconds: float | None) -> str:
    """5s, 3m02s, 4h10m, 2d3h: the width pm2 and docker use."""
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h}h"


def age(record: dict[str, Any], now: float | None = None) -> str:
    """Running time so far, or how long it ran once ended."""
    start = parse_iso(record.get("startedAt"))
    if start is None:
        return "-"
    end = parse_iso(record.get("endedAt"))
    return duration((end if end is not None else (now or time.time())) - start)


def exit_text(record: dict[str, Any]) -> str:
    if record.get("exitCode") is not None:
        return str(record["exitCode"])
    if record.get("signal"):
        return str(record["signal"])
    return "-"


def short_command(argv: list[str], width: int = 48) -> str:
    """The program's base name and its arguments, cut to ``width``: what fits in a ``ps`` row."""
    if not argv:
        return "-"
    words = [os.path.basename(argv[0]) or argv[0], *argv[1:]]
    text = shlex.join(words)
    return text if len(text) <= width else text[: width - 1] + "…"


def ps_rows(processes: Iterable[dict[str, Any]], now: float | None = None) -> str:
    rows = [
        [p["id"], p["kind"], p["state"], str(p.get("pid") or "-"), age(p, now), str(p.get("restarts") or 0),
         exit_text(p), p.get("ticketId") or "-", short_command(p.get("argv") or [])]
        for p in processes
    ]  # fmt: skip
    return table(rows, ["ID", "KIND", "STATE", "PID", "AGE", "RST", "EXIT", "TICKET", "COMMAND"])


def record_text(p: dict[str, Any], now: float | None = None) -> str:
    """``gateway show ID``: every field a person asks about, one per line."""
    labels = ", ".join(f"{k}={v}" for k, v in sorted((p.get("labels") or {}).items())) or "-"
    facts = [
        ("id", p["id"]),
        ("kind", p["kind"]),
        ("state", p["state"] + (" (torn down)" if p.get("tornDown") else "")),
        ("pid", p.get("pid") or "-"),
        ("command", shlex.join(p.get("argv") or [])),
        ("cwd", p.get("cwd") or "-"),
        ("ticket", p.get("ticketId") or "-"),
        ("started", p.get("startedAt") or "-"),
        ("ended", p.get("endedAt") or "-"),
        ("age", age(p, now)),
        ("restarts", p.get("restarts") or 0),
        ("exit", exit_text(p)),
        ("stop reason", p.get("stopReason") or "-"),
        ("log lines", p.get("lastSeq") or 0),
        ("labels", labels),
        ("job", p.get("jobId") or "-"),
    ]
    if p.get("error"):
        facts.append(("error", p["error"]))
    width = max(len(k) for k, _ in facts)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in facts)


def status_text(health: dict[str, Any], base: str, state_dir: str) -> str:
    """``health-check``'s array of checks (ClosedLoop's shape; our figures in ``details``)."""
    raw = health.get("checks")
    checks = {c.get("id"): c for c in raw if isinstance(c, dict)} if isinstance(raw, list) else {}
    sup = checks.get("supervisor", {}).get("details") or {}
    db = checks.get("database") or {}
    disk = checks.get("disk", {}).get("details") or {}
    counts = sup.get("processes") or {}
    by_state: dict[str, int] = {}
    if isinstance(counts, dict):
        for key, n in counts.items():
            state = key.split("/")[-1] if isinstance(key, str) else str(key)
            by_state[state] = by_state.get(state, 0) + (n if isinstance(n, int) else 0)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(by_state.items())) or "none"
    free = disk.get("freeBytes")
    lines = [
        f"gateway {health.get('version', '?')}: {health.get('status', '?')}",
        f"  url        {base}",
        f"  state dir  {state_dir}",
        f"  processes  {sup.get('active', 0)} active ({summary})",
        f"  database   {'ok' if db.get('passed') else 'FAILED'}",
        f"  disk free  {free // (1024 * 1024) if isinstance(free, int) else '?'} MiB",
        *relay_lines(health.get("relay") or {"state": "off"}),
    ]
    for check in checks.values():
        if check.get("id") not in ("supervisor", "database", "disk") and not check.get("passed"):
            lines.append(f"  {check.get('label', check.get('id'))!s:<10} {check.get('error', 'failing')}")
    return "\n".join(lines)


def relay_lines(relay: dict[str, Any]) -> list[str]:
    """The cloud relay: its state, where, the last error and each command in flight."""
    state = str(relay.get("state", "off"))
    if state == "off":
        return ["  relay      off (GATEWAY_CLOSEDLOOP_RELAY_URL not set)"]
    parts = [state]
    if relay.get("url"):
        parts.append(f"to {relay['url']}")
    parts.append(f"{relay.get('activeCommands', 0)} running, {relay.get('queueDepth', 0)} queued")
    lines = [f"  relay      {'; '.join(parts)}"]
    if relay.get("lastError"):
        lines.append(f"             last error: {relay['lastError']}")
    for command in relay.get("inFlight") or []:
        lines.append(
            f"             {str(command.get('commandId', ''))[:8]}  {command.get('method', '')}"
            f" {command.get('path', '')} ({command.get('operationId', '')})"
        )
    return lines


# ---- agent logs as a conversation ---------------------------------------------------------------

_RESULT_FOLD = 3  # lines of a tool result shown before "(+N lines)"


def _one_line(value: Any, width: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def tool_target(name: str | None, tool_input: Any) -> str:
    """The one thing a person wants to see of a tool call: the command, file or pattern."""
    if not isinstance(tool_input, dict):
        return _one_line(tool_input) if tool_input is not None else ""
    for key in ("command", "file_path", "path", "pattern", "url", "query", "description", "prompt"):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return _one_line(value)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return _one_line(shlex.join(value))
    return _one_line(tool_input)


def fold(text: str, keep: int = _RESULT_FOLD) -> list[str]:
    lines = text.splitlines() or [""]
    shown = lines[:keep]
    if len(lines) > keep:
        shown.append(f"(+{len(lines) - keep} lines)")
    return shown


def usage_text(usage: Any) -> str:
    if not isinstance(usage, dict):
        return ""
    parts = []
    for key, label in (
        ("input_tokens", "in"),
        ("output_tokens", "out"),
        ("cache_read_input_tokens", "cached"),
    ):
        if isinstance(usage.get(key), int):
            parts.append(f"{usage[key]} {label}")
    return ", ".join(parts)


def event_lines(event: dict[str, Any], style: Style) -> list[str]:
    """One parsed agent event as printable lines (the same vocabulary the dashboard renders)."""
    kind = event.get("type")
    if kind == "multi":
        out: list[str] = []
        for inner in event.get("events") or []:
            if isinstance(inner, dict):
                out += event_lines(inner, style)
        return out
    if kind == "session":
        model = f" ({event['model']})" if event.get("model") else ""
        return [style.dim(f"── session {event.get('sessionId')}{model}")]
    if kind == "text":
        return [style.bold("assistant: ") + str(event.get("text", ""))]
    if kind == "thinking":
        return [style.dim(f"thinking: {event.get('text') or event.get('content') or ''}")]
    if kind == "tool_use":
        return [
            style.cyan(f"→ {event.get('name') or 'tool'}: ")
            + tool_target(event.get("name"), event.get("input"))
        ]
    if kind == "tool_result":
        output = str(event.get("output") or "")
        head = "  ← error" if event.get("isError") else "  ← result"
        if event.get("exitCode") not in (None, 0):
            head += f" (exit {event['exitCode']})"
        body = fold(output)
        paint = style.red if event.get("isError") else style.dim
        return [paint(head + ":")] + [paint(f"    {line}") for line in body]
    if kind == "result":
        facts = []
        if event.get("turns") is not None:
            facts.append(f"{event['turns']} turns")
        if event.get("durationMs") is not None:
            facts.append(f"{event['durationMs'] / 1000:.1f}s")
        if event.get("costUsd") is not None:
            facts.append(f"${event['costUsd']:.4f}")
        usage = usage_text(event.get("usage"))
        if usage:
            facts.append(usage)
        tail = f" ({', '.join(facts)})" if facts else ""
        if event.get("ok"):
            return [style.green(f"✓ done{tail}")]
        return [style.red(f"✗ failed{tail}: {event.get('error') or 'error'}")]
    if kind == "error":
        return [style.red(f"error: {event.get('message')}")]
    return [style.dim(_one_line(event))]


def looks_like_event_json(text: str) -> bool:
    return text.startswith("{") and text.endswith("}")


class Conversation:
    """Turns NDJSON ``log`` lines into conversation lines; plain lines pass through."""

    def __init__(self, style: Style) -> None:
        self.style = style
        self.seen_events = False

    def lines(self, obj: dict[str, Any]) -> list[str]:
        text = str(obj.get("text", ""))
        event = obj.get("event")
        if isinstance(event, dict):
            self.seen_events = True
            return event_lines(event, self.style)
        if self.seen_events and obj.get("stream") == "stdout" and looks_like_event_json(text):
            return []  # an agent's bookkeeping line (hooks, rate limits): not part of the talk
        if obj.get("stream") == "stderr":
            return [self.style.red(text)]
        if obj.get("stream") == "system":
            return [self.style.dim(text)]
        return [text]
