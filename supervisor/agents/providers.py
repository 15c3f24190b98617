"""Agent CLI providers: the argv each CLI needs, and its stream parsed into normalized events.

A provider knows one CLI (``claude`` or ``codex``): how to start a one-shot run, resume a chat
turn, plan without editing, and give a judge verdict, always headless with stdin at /dev/null,
and how to read the JSON lines the CLI prints. Parsing is per line and stateless, so any reader
of a log (the NDJSON routes, a job looking back at its child's output) can parse any line.

Normalized events (``type`` plus camelCase fields):

- ``session``      ``{"sessionId"}``: the provider's session/thread id, what a resume takes
- ``text``         ``{"text"}``: assistant text
- ``thinking``     ``{"text"}``: the model's visible reasoning (claude thinking blocks, codex
  reasoning items)
- ``tool_use``     ``{"id", "name", "input"}``
- ``tool_result``  ``{"toolUseId", "output", "content", "isError"}`` (``output`` as text,
  ``content`` as the CLI gave it; ``fromAssistant`` when it came in an assistant message)
- ``result``       ``{"ok", "costUsd", "turns", "durationMs", "text", "sessionId", "usage",
  "subtype", "isError", "contextWindow", "modelUsage"}``; claude's also ``structured``
  (``--json-schema``'s ``structured_output``) and ``replyRejected`` when it gave up on the schema
- ``error``        ``{"message"}``

Unknown event types and non-JSON lines parse to nothing: they stay in the log, and never fail
a run.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]

#: Tools a headless claude run may use without asking (``--allowedTools``).
CLAUDE_RUN_TOOLS = ("Bash", "Edit", "Write", "Read", "Glob", "Grep")
#: Tools a judge or a planner may use: reading only.
CLAUDE_READ_TOOLS = ("Read", "Glob", "Grep")


class MissingBinary(Exception):
    """The CLI a provider needs is not installed or its configured path points nowhere."""

    def __init__(self, binary: str, path: str | None = None) -> None:
        where = f" (configured path {path} does not exist or is not executable)" if path else ""
        super().__init__(
            f"the {binary} binary is not available{where}; install it or set its path with "
            f'PATCH /api/gateway/settings/binary-paths {{"{binary}": "/abs/path/to/{binary}"}}'
        )
        self.binary = binary
        self.path = path


@dataclass(slots=True)
class RunOptions:
    """Per-run knobs a provider turns into flags. Permissions are always explicit."""

    model: str | None = None
    allowed_tools: Sequence[str] | None = None  # claude: None = the provider's default set
    permission_mode: str | None = None  # claude: default | acceptEdits | plan ...
    sandbox: str | None = None  # codex: read-only | workspace-write | danger-full-access
    extra: Sequence[str] = ()
    #: A structured reply: the JSON schema's text (claude ``--json-schema``) and the same
    #: schema in a file (codex ``--output-schema``); see ``replies``.
    json_schema: str | None = None
    schema_file: str | None = None


def _loads(line: bytes | str) -> dict[str, Any] | None:
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _stringify(content: Any) -> str:
    """Tool result content: a string, or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for c in content:
            if isinstance(c, dict) and isinstance(c.get("text"), str):
                parts.append(c["text"])
            elif isinstance(c, str):
                parts.append(c)
        return "\n".join(parts)
    if content is None:
        return ""
    return json.dumps(content)


class Provider(abc.ABC):
    """Base: a CLI name (the settings key of its binary) and the methods every provider has."""

    name: str = ""
    binary: str = ""

    @abc.abstractmethod
    def run_argv(self, exe: str, prompt: str, opts: RunOptions | None = None) -> list[str]:
        """argv for a one-shot headless run of ``prompt``."""

    @abc.abstractmethod
    def resume_argv(
        self, exe: str, session_id: str, prompt: str, opts: RunOptions | None = None
    ) -> list[str]:
        """argv for the next turn of the provider session ``session_id``."""

    @abc.abstractmethod
    def plan_argv(self, exe: str, prompt: str, opts: RunOptions | None = None) -> list[str]:
        """argv for a run that plans and changes nothing."""

    @abc.abstractmethod
    def judge_argv(self, exe: str, prompt: str, opts: RunOptions | None = None) -> list[str]:
        """argv for a read-only run that answers a verdict."""

    @abc.abstractmethod
    def parse_line(self, line: bytes | str) -> list[Event]:
        """Normalized events of one line of the CLI's stream (none for unknown lines)."""

    @abc.abstractmethod
    def structured(self, summary: RunSummary) -> Any:
        """The structured reply of a run started with a schema: an object or JSON text, or None."""

    def prompt_on_stdin(self, argv: list[str]) -> tuple[list[str], bytes] | None:
        """``argv`` (built by the methods above, prompt last after ``--``) rewritten to read the
        prompt from stdin, and the prompt's bytes; None if this CLI cannot or argv has no prompt.

        Why: one argv element is capped at Linux's 128 KiB (``MAX_ARG_STRLEN``), so a longer
        prompt fails at exec; on stdin it has no such limit (``ProcessSpec.stdin``).
        """
        return None

    def is_result_line(self, line: bytes) -> bool:
        """The engine's result detector: this line is the CLI's final result."""
        return any(e["type"] == "result" for e in self.parse_line(line))

    def parse_lines(self, lines: Iterable[bytes | str]) -> list[Event]:
        out: list[Event] = []
        for line in lines:
            out.extend(self.parse_line(line))
        return out


class ClaudeProvider(Provider):
    """``claude -p --output-format stream-json --verbose ... -- PROMPT``.

    The prompt goes after ``--``: ``--allowedTools`` takes a variable number of values and a
    prompt starting with ``-`` must never be read as a flag. ``--resume=<id>`` uses the ``=``
    form for the same reason. Permissions are explicit: a permission mode and the allowed
    tools, never ``--dangerously-skip-permissions``.
    """

    name = "claude"
    binary = "claude"

    def _base(self, exe: str, opts: RunOptions, tools: Sequence[str], mode: str) -> list[str]:
        argv = [exe, "-p", "--output-format", "stream-json", "--verbose"]
        if opts.model:
            argv += ["--model", opts.model]
        argv += ["--permission-mode", opts.permission_mode or mode]
        allowed = list(opts.allowed_tools) if opts.allowed_tools is not None else list(tools)
        if allowed:
            argv += ["--allowedTools", *allowed]
        if opts.json_schema is not None:
            argv += ["--json-schema", opts.json_schema]
        argv += list(opts.extra)
        return argv

    def run_argv(self, exe: str, prompt: str, opts: RunOptions | None = None) -> list[str]:
        return [*self._base(exe, opts or RunOptions(), CLAUDE_RUN_TOOLS, "default"), "--", prompt]

    def resume_argv(
        self, exe: str, session_id: str, prompt: str, opts: RunOptions | None = None
    ) -> list[str]:
        base = self._base(exe, opts or RunOptions(), CLAUDE_RUN_TOOLS, "default")
        return [*base, f"--resume={session_id}", "--", prompt]

    def prompt_on_stdin(self, argv: list[str]) -> tuple[list[str], bytes] | None:
        """``claude -p`` with no prompt argument reads the prompt from stdin (ClosedLoop feeds
        its loop prompts this way, ``-p -`` with the prompt file on stdin)."""
        if len(argv) < 2 or argv[-2] != "--":
            return None
        return argv[:-2], argv[-1].encode("utf-8")

    def plan_argv(self, exe: str, prompt: str, opts: RunOptions | None = None) -> list[str]:
        opts = opts or RunOptions()
        return [*self._base(exe, opts, CLAUDE_READ_TOOLS, "plan"), "--", prompt]

    def judge_argv(self, exe: str, prompt: str, opts: RunOptions | None = None) -> list[str]:
        opts = opts or RunOptions()
        return [*self._base(exe, opts, CLAUDE_READ_TOOLS, "default"), "--", prompt]

    def parse_line(self, line: bytes | str) -> list[Event]:
        obj = _loads(line)
        if obj is None:
            return []
        kind = obj.get("type")
        if kind == "system":
            if obj.get("subtype") == "init" and obj.get("session_id"):
                return [{"type": "session", "sessionId": obj["session_id"], "model": obj.get("model")}]
            return []
        if kind == "assistant":
            return self._blocks(obj, assistant=True)
        if kind == "user":
            return self._blocks(obj, assistant=False)
        if kind == "result":
            is_error = bool(obj.get("is_error")) or obj.get("subtype") not in (None, "success")
            text = obj.get("result")
            event: Event = {
                "type": "result",
                "ok": not is_error,
                "costUsd": obj.get("total_cost_usd"),
                "turns": obj.get("num_turns"),
                "durationMs": obj.get("duration_ms"),
                "text": text if isinstance(text, str) else None,
                "sessionId": obj.get("session_id"),
                "usage": obj.get("usage"),
                "subtype": obj.get("subtype"),
                "isError": bool(obj.get("is_error")),
                "contextWindow": obj.get("context_window"),
                "modelUsage": obj.get("modelUsage"),
                # --json-schema: the StructuredOutput tool's accepted input
                "structured": obj.get("structured_output"),
            }
            if obj.get("subtype") == "error_max_structured_output_retries":
                event["replyRejected"] = True
            if is_error:
                errors = obj.get("errors")
                message = text if isinstance(text, str) and text else None
                if not message and isinstance(errors, list) and errors:
                    message = "; ".join(str(e) for e in errors)
                event["error"] = message or obj.get("subtype") or "error result"
            return [event]
        return []

    def structured(self, summary: RunSummary) -> Any:
        """The result line's ``structured_output`` (None if the model never called the tool)."""
        return summary.result.get("structured") if summary.result else None

    def _blocks(self, obj: dict[str, Any], *, assistant: bool) -> list[Event]:
        message = obj.get("message")
        if not isinstance(message, dict):
            return []
        content = message.get("content")
        if isinstance(content, str):
            return [{"type": "text", "text": content}] if assistant else []
        if not isinstance(content, list):
            return []
        out: list[Event] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if assistant and btype == "text" and isinstance(block.get("text"), str):
                out.append({"type": "text", "text": block["text"]})
            elif assistant and btype == "thinking" and isinstance(block.get("thinking"), str):
                out.append({"type": "thinking", "text": block["thinking"]})
            elif assistant and btype == "tool_use":
                out.append(
                    {
                        "type": "tool_use",
                        "id": block.get("id"),
                        "name": block.get("name"),
                        "input": block.get("input"),
                    }
                )
            elif btype == "tool_result":
                result: Event = {
                    "type": "tool_result",
                    "toolUseId": block.get("tool_use_id"),
                    "output": _stringify(block.get("content")),
                    "content": block.get("content"),
                    "isError": bool(block.get("is_error")),
                }
                if assistant:
                    result["fromAssistant"] = True
                out.append(result)
        return out


class CodexProvider(Provider):
    """``codex exec --json --skip-git-repo-check --sandbox MODE -c approval_policy="never" -- P``.

    A resumed turn is ``codex exec ... resume <thread id> -- PROMPT``. The sandbox mode is
    explicit (default ``workspace-write``; planners and judges get ``read-only``); approvals are
    off because nobody can answer them headless.
    """

    name = "codex"
    binary = "codex"

    def __init__(self, sandbox: str = "workspace-write") -> None:
        self.sandbox = sandbox

    def _base(self, exe: str, opts: RunOptions, sandbox: str) -> list[str]:
        argv = [exe, "exec", "--json", "--skip-git-repo-check"]
        if opts.model:
            argv += ["--model", opts.model]
        argv += ["--sandbox", opts.sandbox or sandbox, "-c", 'approval_policy="never"']
        if opts.json_schema is not None and opts.schema_file is None:
            raise ValueError("codex takes its output schema as a file: set RunOptions.schema_file")
        if opts.schema_file is not None:
            argv += ["--output-schema", opts.schema_file]
        return [*argv, *opts.extra]

    def run_argv(self, exe: str, prompt: str, opts: RunOptions | None = None) -> list[str]:
        return [*self._base(exe, opts or RunOptions(), self.sandbox), "--", prompt]

    def resume_argv(
        self, exe: str, session_id: str, prompt: str, opts: RunOptions | None = None
    ) -> list[str]:
        if session_id.startswith("-"):
            raise ValueError("a session id cannot start with '-'")
        return [*self._base(exe, opts or RunOptions(), self.sandbox), "resume", session_id, "--", prompt]

    def prompt_on_stdin(self, argv: list[str]) -> tuple[list[str], bytes] | None:
        """``codex exec [resume <id>] -- -`` reads the prompt from stdin (codex 0.171:
        "If not provided as an argument (or if `-` is used), instructions are read from stdin")."""
        if len(argv) < 2 or argv[-2] != "--":
            return None
        return [*argv[:-1], "-"], argv[-1].encode("utf-8")

    def plan_argv(self, exe: str, prompt: str, opts: RunOptions | None = None) -> list[str]:
        return [*self._base(exe, opts or RunOptions(), "read-only"), "--", prompt]

    def judge_argv(self, exe: str, prompt: str, opts: RunOptions | None = None) -> list[str]:
        return [*self._base(exe, opts or RunOptions(), "read-only"), "--", prompt]

    def structured(self, summary: RunSummary) -> Any:
        """The final agent message: with ``--output-schema`` the API constrains it to the JSON."""
        return summary.texts[-1] if summary.texts else None

    def parse_line(self, line: bytes | str) -> list[Event]:
        obj = _loads(line)
        if obj is None:
            return []
        kind = obj.get("type")
        if kind == "thread.started" and obj.get("thread_id"):
            return [{"type": "session", "sessionId": obj["thread_id"]}]
        if kind == "item.started":
            item = obj.get("item")
            if isinstance(item, dict) and item.get("type") == "command_execution":
                return [
                    {
                        "type": "tool_use",
                        "id": item.get("id"),
                        "name": "command_execution",
                        "input": {"command": item.get("command")},
                    }
                ]
            return []
        if kind == "item.completed":
            return self._item(obj.get("item"))
        if kind == "turn.completed":
            return [
                {
                    "type": "result",
                    "ok": True,
                    "costUsd": None,
                    "turns": 1,
                    "durationMs": None,
                    "text": None,
                    "sessionId": None,
                    "usage": obj.get("usage"),
                }
            ]
        if kind == "turn.failed":
            err = obj.get("error")
            message = err.get("message") if isinstance(err, dict) else str(err or "turn failed")
            return [
                {
                    "type": "result",
                    "ok": False,
                    "costUsd": None,
                    "turns": 1,
                    "durationMs": None,
                    "text": None,
                    "sessionId": None,
                    "usage": None,
                    "error": _unwrap_error(message),
                }
            ]
        if kind == "error":
            return [{"type": "error", "message": _unwrap_error(obj.get("message"))}]
        return []

    def _item(self, item: Any) -> list[Event]:
        if not isinstance(item, dict):
            return []
        itype = item.get("type")
        if itype == "agent_message" and isinstance(item.get("text"), str):
            return [{"type": "text", "text": item["text"]}]
        if itype == "reasoning" and isinstance(item.get("text"), str) and item["text"]:
            return [{"type": "thinking", "text": item["text"]}]
        if itype == "command_execution":
            code = item.get("exit_code")
            return [
                {
                    "type": "tool_result",
                    "toolUseId": item.get("id"),
                    "output": item.get("aggregated_output") or "",
                    "content": item.get("aggregated_output") or "",
                    "isError": code not in (0, None),
                    "exitCode": code,
                }
            ]
        if itype == "error":
            return [{"type": "error", "message": _unwrap_error(item.get("message"))}]
        return []


def _unwrap_error(message: Any) -> str:
    """codex nests the API's JSON error body in ``message``; show its message."""
    if not isinstance(message, str):
        return str(message) if message is not None else "error"
    inner = _loads(message)
    if inner is not None:
        err = inner.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
    return message


@dataclass(slots=True)
class RunSummary:
    """What a finished agent run said, folded from its events."""

    session_id: str | None = None
    texts: list[str] = field(default_factory=list)
    result: Event | None = None
    errors: list[str] = field(default_factory=list)
    turns: int = 0
    cost_usd: float | None = None

    @property
    def ok(self) -> bool | None:
        return None if self.result is None else bool(self.result.get("ok"))

    @property
    def final_text(self) -> str:
        if self.result and self.result.get("text"):
            return str(self.result["text"])
        return self.texts[-1] if self.texts else ""

    @property
    def reply_rejected(self) -> bool:
        """The CLI gave up on a structured reply (claude: the model kept breaking the schema)."""
        return bool(self.result and self.result.get("replyRejected"))

    @property
    def error(self) -> str | None:
        if self.result is not None and not self.result.get("ok"):
            return str(self.result.get("error") or "the agent reported an error")
        return self.errors[-1] if self.errors else None

    def add(self, event: Event) -> None:
        kind = event["type"]
        if kind == "session" and event.get("sessionId"):
            self.session_id = self.session_id or event["sessionId"]
        elif kind == "text":
            self.texts.append(event["text"])
        elif kind == "error":
            self.errors.append(event["message"])
        elif kind == "result":
            self.result = event
            self.turns += int(event.get("turns") or 0)
            if event.get("costUsd") is not None:
                self.cost_usd = (self.cost_usd or 0.0) + float(event["costUsd"])
            if event.get("sessionId"):
                self.session_id = self.session_id or event["sessionId"]


def summarize(provider: Provider, lines: Iterable[bytes | str]) -> RunSummary:
    summary = RunSummary()
    for event in provider.parse_lines(lines):
        summary.add(event)
    return summary


class ProviderRegistry:
    """The providers by name, and the binary path each one's CLI resolves to."""

    def __init__(
        self,
        providers: Iterable[Provider] | None = None,
        binary_path: Callable[[str], str | None] | None = None,
    ) -> None:
        import shutil

        self._providers: dict[str, Provider] = {}
        for p in providers if providers is not None else (ClaudeProvider(), CodexProvider()):
            self._providers[p.name] = p
        self._binary_path = binary_path or shutil.which

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def names(self) -> list[str]:
        return list(self._providers)

    def get(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            raise KeyError(f"unknown provider {name!r} (known: {', '.join(self._providers)})") from None

    def executable(self, name: str) -> str:
        """The provider's binary, or ``MissingBinary`` naming it."""
        import os

        provider = self.get(name)
        path = self._binary_path(provider.binary)
        if not path:
            raise MissingBinary(provider.binary)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise MissingBinary(provider.binary, path)
        return path


_DEFAULT = ProviderRegistry(binary_path=lambda _name: None)


def parser_for(name: str | None) -> Provider | None:
    """The provider whose stream format a record's ``event_parser`` names, if any."""
    return _DEFAULT.get(name) if name and name in _DEFAULT else None


def parse_event(parser: str | None, raw: bytes | str) -> Event | None:
    """The parsed event of one log line of a record whose ``event_parser`` is ``parser``.

    For NDJSON ``log`` lines: one event, or ``{"type": "multi", "events": [...]}`` when a line
    carried several (claude may put text and a tool call in one message), or None.
    """
    if not parser or parser not in _DEFAULT:
        return None
    events = _DEFAULT.get(parser).parse_line(raw)
    if not events:
        return None
    if len(events) == 1:
        return events[0]
    return {"type": "multi", "events": events}
