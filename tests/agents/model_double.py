"""A scripted "model double": a fake Anthropic + OpenAI model server on 127.0.0.1.

The real ``claude`` and ``codex`` CLIs are pointed at it (see ``clis.py``) and run their real
agent loops against scripted replies: text, a shell/Bash tool call, a delay, an HTTP error.

Usage::

    with ModelDouble() as md:
        md.claude.bash("echo hi > out.txt")      # turn 1: ask claude to run Bash
        md.claude.reply("done")                  # turn 2: answer after the tool_result
        md.codex.when(lambda r: "judge" in r.text, reply("feedback seen"))
        ... run the CLI with claude_env(md, home) ...
        assert md.requests_for("claude")[-1].tool_results

It is a stdlib ``ThreadingHTTPServer`` in a daemon thread, so it works from sync tests and from
trio tests alike (the CLIs are separate processes; nothing here blocks the trio loop).

Structured replies (``claude --json-schema``, ``codex exec --output-schema``): script a
``Structured(value)`` step (``md.claude.structured({...})``). claude offers the model a
``StructuredOutput`` tool whose ``input_schema`` is the schema: the double calls that tool with
``value`` (the CLI then ends the run and puts ``value`` in the result's ``structured_output``);
codex asks for ``text.format = {"type": "json_schema", "schema": ...}``: the double answers
``value`` as the message's JSON text. ``Request.output_schema`` is the schema a turn asked for.

Which requests are "turns": every ``POST /v1/messages`` that carries ``tools`` (claude's agent
loop) and every ``POST /v1/responses`` (codex). Auxiliary claude calls (no tools: title/topic
generation, quota probes, ...) get the provider's ``aux_text`` and do not consume the script.
"""

from __future__ import annotations

import gzip
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Text:
    """Stream an assistant text block / output_text message."""

    text: str


@dataclass(frozen=True)
class Bash:
    """Ask the agent to run a shell command.

    claude: a ``tool_use`` block for the ``Bash`` tool with ``{"command": ...}``.
    codex: a ``function_call`` for whichever shell tool the request offers
    (``exec_command`` / ``shell_command`` / ``shell``).
    """

    command: str
    timeout_ms: int | None = None
    description: str = "scripted command"
    background: bool = False  # claude only: ``run_in_background: true``


@dataclass(frozen=True)
class Delay:
    """Sleep ``seconds`` before continuing (before headers if it is the first step)."""

    seconds: float


@dataclass(frozen=True)
class HttpError:
    """Answer the request with an HTTP error instead of a stream (must be the only step
    that writes, i.e. comes before any Text/Bash step)."""

    status: int = 500
    message: str = "scripted error"
    error_type: str = "api_error"
    # claude honours ``x-should-retry``: False makes it give up at once (else it retries 5xx/429
    # with backoff, and retries a 400 once with fewer betas).
    should_retry: bool = False


@dataclass(frozen=True)
class Hang:
    """Stop writing mid-stream and hold the connection open for ``seconds``."""

    seconds: float = 3600.0


@dataclass(frozen=True)
class Structured:
    """Answer a schema-constrained turn with ``value`` (any JSON value, valid or not).

    claude: a ``tool_use`` of the request's ``StructuredOutput`` tool with ``value`` as input
    (plain JSON text if the request offers no such tool). codex: an assistant message whose
    text is ``json.dumps(value)``, as the Responses API's ``json_schema`` format produces.
    """

    value: Any


Step = Text | Bash | Delay | HttpError | Hang | Structured
Turn = list[Step]

#: The tool ``claude -p --json-schema`` adds; the model must call it with the reply.
STRUCTURED_TOOL = "StructuredOutput"


def reply(text: str) -> Turn:
    return [Text(text)]


def structured(value: Any) -> Turn:
    return [Structured(value)]


def bash(
    command: str,
    text: str | None = None,
    timeout_ms: int | None = None,
    background: bool = False,
) -> Turn:
    steps: Turn = [Text(text)] if text else []
    steps.append(Bash(command, timeout_ms=timeout_ms, background=background))
    return steps


# --------------------------------------------------------------------------- requests


@dataclass
class Request:
    """One request the double received (every request, turns and auxiliary ones)."""

    provider: str  # "claude" | "codex" | "other"
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any  # parsed JSON, or raw str, or None
    kind: str  # "turn" | "aux" | "count_tokens" | "models" | "other"
    received_at: float = field(default_factory=time.time)

    # -- helpers for predicates and assertions -----------------------------------------
    @property
    def text(self) -> str:
        """Every piece of text in the request (system, messages/input, tool results)."""
        out: list[str] = []
        _collect_text(self.body if isinstance(self.body, dict) else {}, out)
        return "\n".join(out)

    @property
    def messages(self) -> list[dict]:
        """Anthropic ``messages`` or OpenAI ``input`` items."""
        if not isinstance(self.body, dict):
            return []
        items = self.body.get("messages") or self.body.get("input") or []
        return items if isinstance(items, list) else []

    @property
    def tool_names(self) -> list[str]:
        if not isinstance(self.body, dict):
            return []
        names = []
        for t in self.body.get("tools") or []:
            names.append(t.get("name") or t.get("type") or "")
        return names

    @property
    def output_schema(self) -> dict | None:
        """The JSON schema this turn asked the model to answer in, if any: claude's
        ``StructuredOutput`` tool input schema, or codex's ``text.format`` json_schema."""
        if not isinstance(self.body, dict):
            return None
        for t in self.body.get("tools") or []:
            if isinstance(t, dict) and t.get("name") == STRUCTURED_TOOL:
                return t.get("input_schema")
        fmt = (self.body.get("text") or {}).get("format") if isinstance(self.body.get("text"), dict) else None
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return fmt.get("schema")
        return None

    @property
    def tool_results(self) -> list[dict]:
        """claude ``tool_result`` blocks / codex ``function_call_output`` items, in order."""
        out: list[dict] = []
        for m in self.messages:
            if not isinstance(m, dict):
                continue
            if m.get("type") in ("function_call_output", "custom_tool_call_output"):
                out.append(m)
            content = m.get("content")
            if isinstance(content, list):
                out.extend(c for c in content if isinstance(c, dict) and c.get("type") == "tool_result")
        return out

    @property
    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if isinstance(m, dict) and m.get("role") == "user":
                out: list[str] = []
                _collect_text(m, out)
                return "\n".join(out)
        return ""


def _collect_text(node: Any, out: list[str]) -> None:
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, list):
        for n in node:
            _collect_text(n, out)
    elif isinstance(node, dict):
        for key in ("system", "instructions", "messages", "input", "content", "text", "output"):
            if key in node:
                _collect_text(node[key], out)


# --------------------------------------------------------------------------- scripts


class ProviderScript:
    """The per-provider script: a FIFO of turns, predicate rules, and a default reply."""

    def __init__(self, name: str, default_text: str, aux_text: str) -> None:
        self.name = name
        self.default_text = default_text
        self.aux_text = aux_text
        self._turns: list[Turn] = []
        self._rules: list[list[Any]] = []  # [predicate, turn, remaining or None]
        self._lock = threading.Lock()

    # -- scripting -----------------------------------------------------------------------
    def add_turn(self, *steps: Step | Iterable[Step]) -> ProviderScript:
        turn: Turn = []
        for s in steps:
            if isinstance(s, (list, tuple)):
                turn.extend(s)
            else:
                turn.append(s)  # type: ignore[arg-type]
        with self._lock:
            self._turns.append(turn)
        return self

    def reply(self, text: str) -> ProviderScript:
        return self.add_turn(Text(text))

    def bash(self, command: str, text: str | None = None, **kw: Any) -> ProviderScript:
        return self.add_turn(bash(command, text, **kw))

    def structured(self, value: Any) -> ProviderScript:
        return self.add_turn(Structured(value))

    def error(self, status: int = 500, message: str = "scripted error") -> ProviderScript:
        return self.add_turn(HttpError(status, message))

    def when(
        self,
        predicate: Callable[[Request], bool],
        turn: Turn | str,
        times: int | None = None,
    ) -> ProviderScript:
        """Answer any turn request matching ``predicate`` with ``turn`` (checked before the
        queue). ``times=None`` means forever."""
        if isinstance(turn, str):
            turn = reply(turn)
        with self._lock:
            self._rules.append([predicate, list(turn), times])
        return self

    def clear(self) -> None:
        with self._lock:
            self._turns.clear()
            self._rules.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._turns)

    # -- consumption ---------------------------------------------------------------------
    def next_turn(self, req: Request) -> Turn:
        with self._lock:
            for rule in self._rules:
                pred, turn, remaining = rule
                if remaining is not None and remaining <= 0:
                    continue
                try:
                    hit = pred(req)
                except Exception:
                    hit = False
                if hit:
                    if remaining is not None:
                        rule[2] = remaining - 1
                    return turn
            if self._turns:
                return self._turns.pop(0)
        return [Text(self.default_text)]


# --------------------------------------------------------------------------- server


class ModelDouble:
    """Scripted fake model server. ``with ModelDouble() as md: md.base_url``."""

    def __init__(
        self,
        default_text: str = "Hello from the model double.",
        aux_text: str = "Scripted title",
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.claude = ProviderScript("claude", default_text, aux_text)
        self.codex = ProviderScript("codex", default_text, aux_text)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._log = log
        self._stopping = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> ModelDouble:
        double = self

        class Handler(_Handler):
            md = double

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name="model-double",
            daemon=True,
        )
        self._thread.start()
        return self

    def pause(self, seconds: float) -> None:
        """A scripted delay (a slow or hung model) that ends at once when the double stops.

        Handler threads would otherwise sleep out a long scripted hang after their test ended.
        """
        self._stopping.wait(seconds)

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ModelDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "ModelDouble not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (ANTHROPIC_BASE_URL; codex wants ``+ "/v1"``)."""
        return f"http://127.0.0.1:{self.port}"

    def script(self, provider: str) -> ProviderScript:
        return {"claude": self.claude, "codex": self.codex}[provider]

    # -- inspection ----------------------------------------------------------------------
    def requests_for(self, provider: str | None = None, kind: str | None = "turn") -> list[Request]:
        with self._lock:
            reqs = list(self.requests)
        return [
            r
            for r in reqs
            if (provider is None or r.provider == provider) and (kind is None or r.kind == kind)
        ]

    def _record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)
        if self._log:
            self._log(f"{req.provider} {req.kind} {req.method} {req.path}")

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}{uuid.uuid4().hex[:16]}"


# --------------------------------------------------------------------------- handler


class _Handler(BaseHTTPRequestHandler):
    md: ModelDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    # -- plumbing ------------------------------------------------------------------------
    def _read_body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            raw = gzip.decompress(raw)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("request-id", self.md.new_id("req"))
        self.send_header("x-request-id", self.md.new_id("req"))
        self.end_headers()
        self.close_connection = True

    def _sse(self, event: str, data: dict) -> None:
        payload = f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
        self.wfile.write(payload)
        self.wfile.flush()

    def _prelude(self, turn: Turn) -> tuple[list[Any], HttpError | None]:
        """Sleep out a turn's leading delays; its steps, and the error to answer instead if the
        script says so (both wire formats answer errors before any header)."""
        steps = list(turn)
        while steps and isinstance(steps[0], Delay):
            self.md.pause(steps.pop(0).seconds)
        return steps, steps[0] if steps and isinstance(steps[0], HttpError) else None

    def _request(self, provider: str, kind: str, body: Any) -> Request:
        parts = urlsplit(self.path)
        req = Request(
            provider=provider,
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            kind=kind,
        )
        self.md._record(req)
        return req

    # -- routing -------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._request("other", "other", None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if path.endswith("/models"):
            provider = "codex" if "openai" in self.headers.get("User-Agent", "").lower() else "other"
            self._request(provider, "models", None)
            self._json(200, _models_listing())
            return
        self._request("other", "other", None)
        self._json(200, {})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        body = self._read_body()
        try:
            if path.endswith("/v1/messages/count_tokens"):
                self._request("claude", "count_tokens", body)
                self._json(200, {"input_tokens": _estimate_tokens(body)})
            elif path.endswith("/v1/messages"):
                self._anthropic(body)
            elif path.endswith("/responses"):
                self._openai_responses(body)
            elif path.endswith("/chat/completions"):
                req = self._request("codex", "other", body)
                self._json(400, {"error": {"message": f"unsupported: {req.path}"}})
            else:
                self._request("other", "other", body)
                self._json(200, {})
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- Anthropic -----------------------------------------------------------------------
    def _anthropic(self, body: Any) -> None:
        body = body if isinstance(body, dict) else {}
        is_turn = bool(body.get("tools"))
        req = self._request("claude", "turn" if is_turn else "aux", body)
        script = self.md.claude
        turn = script.next_turn(req) if is_turn else [Text(script.aux_text)]
        model = body.get("model") or "claude-sonnet-4-5"
        msg_id = self.md.new_id("msg")
        in_tokens = _estimate_tokens(body)

        # Errors / leading delays happen before headers.
        steps, err = self._prelude(turn)
        if err is not None:
            self._json(
                err.status,
                {"type": "error", "error": {"type": err.error_type, "message": err.message}},
                headers={"x-should-retry": "true" if err.should_retry else "false"},
            )
            return

        steps = [self._claude_structured(step, req) for step in steps]
        blocks: list[dict] = []
        if not body.get("stream"):
            for step in steps:
                if isinstance(step, Text):
                    blocks.append({"type": "text", "text": step.text})
                elif isinstance(step, Bash | Structured):
                    blocks.append(self._claude_tool_block(step))
                elif isinstance(step, Delay):
                    self.md.pause(step.seconds)
            has_tool = any(b["type"] == "tool_use" for b in blocks)
            self._json(
                200,
                {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": blocks or [{"type": "text", "text": script.aux_text}],
                    "stop_reason": "tool_use" if has_tool else "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": in_tokens, "output_tokens": 5},
                },
            )
            return

        self._start_sse()
        self._sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": in_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 1,
                    },
                },
            },
        )
        index = 0
        out_tokens = 0
        has_tool = False
        for step in steps:
            if isinstance(step, Delay):
                self.md.pause(step.seconds)
            elif isinstance(step, Hang):
                self.md.pause(step.seconds)
                return
            elif isinstance(step, Text):
                block = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": c} for c in _chunks(step.text)]
                self._claude_content_block(index, block, deltas)
                out_tokens += max(1, len(step.text) // 4)
                index += 1
            elif isinstance(step, Bash | Structured):
                has_tool = True
                block = self._claude_tool_block(step)
                deltas = [
                    {"type": "input_json_delta", "partial_json": c}
                    for c in _chunks(json.dumps(block["input"]), 40)
                ]
                self._claude_content_block(index, {**block, "input": {}}, deltas)
                out_tokens += 10
                index += 1
        self._sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "tool_use" if has_tool else "end_turn",
                    "stop_sequence": None,
                },
                "usage": {"output_tokens": max(out_tokens, 1)},
            },
        )
        self._sse("message_stop", {"type": "message_stop"})

    def _claude_content_block(self, index: int, block: dict, deltas: list[dict]) -> None:
        """One content block of a streamed message: start, its deltas, stop."""
        self._sse(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        )
        for delta in deltas:
            self._sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        self._sse("content_block_stop", {"type": "content_block_stop", "index": index})

    @staticmethod
    def _claude_structured(step: Step, req: Request) -> Step:
        """A ``Structured`` step stays a tool call if the turn offers ``StructuredOutput``,
        else it becomes the value's JSON text (what a model without the tool would write)."""
        if isinstance(step, Structured) and STRUCTURED_TOOL not in req.tool_names:
            return Text(json.dumps(step.value))
        return step

    def _claude_tool_block(self, step: Bash | Structured) -> dict:
        if isinstance(step, Structured):
            return {
                "type": "tool_use",
                "id": self.md.new_id("toolu"),
                "name": STRUCTURED_TOOL,
                "input": step.value,
            }
        inp: dict[str, Any] = {"command": step.command, "description": step.description}
        if step.timeout_ms is not None:
            inp["timeout"] = step.timeout_ms
        if step.background:
            inp["run_in_background"] = True
        return {"type": "tool_use", "id": self.md.new_id("toolu"), "name": "Bash", "input": inp}

    # -- OpenAI Responses ----------------------------------------------------------------
    def _openai_responses(self, body: Any) -> None:
        body = body if isinstance(body, dict) else {}
        req = self._request("codex", "turn", body)
        turn = self.md.codex.next_turn(req)
        model = body.get("model") or "gpt-5"
        resp_id = self.md.new_id("resp")
        steps, err = self._prelude(turn)
        if err is not None:
            self._json(
                err.status,
                {"error": {"type": err.error_type, "message": err.message, "code": None}},
            )
            return

        tool_names = req.tool_names
        steps = [Text(json.dumps(s.value)) if isinstance(s, Structured) else s for s in steps]
        self._start_sse()
        base = {
            "id": resp_id,
            "object": "response",
            "created_at": int(time.time()),
            "model": model,
            "status": "in_progress",
            "output": [],
        }
        self._sse("response.created", {"type": "response.created", "response": base})
        self._sse("response.in_progress", {"type": "response.in_progress", "response": base})
        output: list[dict] = []
        for step in steps:
            if isinstance(step, Delay):
                self.md.pause(step.seconds)
            elif isinstance(step, Hang):
                self.md.pause(step.seconds)
                return
            elif isinstance(step, Text):
                oi = len(output)
                item_id = self.md.new_id("msg")
                item = {
                    "type": "message",
                    "id": item_id,
                    "role": "assistant",
                    "status": "in_progress",
                    "content": [],
                }
                self._sse(
                    "response.output_item.added",
                    {"type": "response.output_item.added", "output_index": oi, "item": item},
                )
                part = {"type": "output_text", "text": "", "annotations": []}
                self._sse(
                    "response.content_part.added",
                    {
                        "type": "response.content_part.added",
                        "item_id": item_id,
                        "output_index": oi,
                        "content_index": 0,
                        "part": part,
                    },
                )
                for chunk in _chunks(step.text):
                    self._sse(
                        "response.output_text.delta",
                        {
                            "type": "response.output_text.delta",
                            "item_id": item_id,
                            "output_index": oi,
                            "content_index": 0,
                            "delta": chunk,
                        },
                    )
                self._sse(
                    "response.output_text.done",
                    {
                        "type": "response.output_text.done",
                        "item_id": item_id,
                        "output_index": oi,
                        "content_index": 0,
                        "text": step.text,
                    },
                )
                done = {
                    **item,
                    "status": "completed",
                    "content": [{"type": "output_text", "text": step.text, "annotations": []}],
                }
                self._sse(
                    "response.output_item.done",
                    {"type": "response.output_item.done", "output_index": oi, "item": done},
                )
                output.append(done)
            elif isinstance(step, Bash):
                oi = len(output)
                item = self._codex_tool_item(step, tool_names)
                self._sse(
                    "response.output_item.added",
                    {
                        "type": "response.output_item.added",
                        "output_index": oi,
                        "item": {**item, "status": "in_progress"},
                    },
                )
                self._sse(
                    "response.output_item.done",
                    {"type": "response.output_item.done", "output_index": oi, "item": item},
                )
                output.append(item)
        in_tokens = _estimate_tokens(body)
        self._sse(
            "response.completed",
            {
                "type": "response.completed",
                "response": {
                    **base,
                    "status": "completed",
                    "output": output,
                    "usage": {
                        "input_tokens": in_tokens,
                        "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens": 10,
                        "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": in_tokens + 10,
                    },
                },
            },
        )

    def _codex_tool_item(self, step: Bash, tool_names: list[str]) -> dict:
        call_id = self.md.new_id("call")
        item_id = self.md.new_id("fc")
        if "exec_command" in tool_names:
            name, args = "exec_command", {"cmd": step.command}
            if step.timeout_ms is not None:
                args["yield_time_ms"] = step.timeout_ms
        elif "shell_command" in tool_names:
            name, args = "shell_command", {"command": step.command}
            if step.timeout_ms is not None:
                args["timeout_ms"] = step.timeout_ms
        else:
            name, args = "shell", {"command": ["bash", "-lc", step.command]}
            if step.timeout_ms is not None:
                args["timeout_ms"] = step.timeout_ms
        return {
            "type": "function_call",
            "id": item_id,
            "call_id": call_id,
            "name": name,
            "arguments": json.dumps(args),
            "status": "completed",
        }


# --------------------------------------------------------------------------- misc


def _chunks(text: str, size: int = 16) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _estimate_tokens(body: Any) -> int:
    try:
        return max(1, len(json.dumps(body)) // 4)
    except (TypeError, ValueError):
        return 1


def _models_listing() -> dict:
    # Serves both the OpenAI shape (object/data) and codex's own "models" list shape.
    return {"object": "list", "data": [], "models": []}
