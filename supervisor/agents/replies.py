"""Structured agent replies: one pydantic model per reply kind, its JSON schema, and the check.

A judge, a code review, an argue turn and a learnings extraction each answer JSON. Instead of
cutting that JSON out of prose (a ``{`` inside a justification broke it), the CLI is asked to
enforce a schema and the answer is parsed with pydantic:

- ``claude -p --json-schema '<schema>'`` offers the model a ``StructuredOutput`` tool whose
  input schema is ours; the CLI checks the call against it (up to 5 tries), ends the run on the
  first good call and puts the object in the result line's ``structured_output``.
- ``codex exec --output-schema FILE`` sends the schema as the Responses API's
  ``text.format`` (``json_schema``, ``strict: true``); the final agent message is the JSON text.
  codex itself checks nothing.

``reply_schema`` is what both CLIs are given: pydantic's schema with ``$ref``s inlined, every
object closed (``additionalProperties: false``) and every property required (nullable instead
of optional), and without numeric or length bounds, the subset OpenAI's strict mode and
Anthropic's tools both accept. The bounds stay in the models: ``parse_reply`` enforces them, so
a reply outside them is an ``AgentReplyError`` (502 ``bad_agent_reply``), never a silent FAIL.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import AgentReplyError

__all__ = [
    "MAX_FINDINGS",
    "MAX_LEARNINGS",
    "SEVERITIES",
    "AgentReply",
    "ArgueOutcome",
    "Finding",
    "JudgeVerdict",
    "Learning",
    "LearningsReply",
    "ReviewReply",
    "parse_reply",
    "reply_schema",
    "schema_file",
    "schema_text",
]

SEVERITIES = ("low", "medium", "high", "critical")
MAX_FINDINGS = 50
MAX_LEARNINGS = 10

#: Keywords left out of the schema a CLI is given (kept in the models, checked by pydantic).
_UNPORTABLE = frozenset(
    {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
     "minItems", "maxItems", "pattern", "format", "default", "title"}
)  # fmt: skip


class AgentReply(BaseModel):
    """Base of every reply kind: closed objects (an unknown key breaks the schema) and strict
    types (``"yes"`` is not a boolean, ``"0.9"`` not a number), as the schema says."""

    model_config = ConfigDict(extra="forbid", strict=True)


R = TypeVar("R", bound=AgentReply)


class JudgeVerdict(AgentReply):
    """A provider judge's verdict on one iteration of a loop."""

    passed: bool = Field(description="true if the work meets the criteria")
    score: float = Field(ge=0.0, le=1.0, description="how well it meets them, a number from 0 to 1")
    justification: str = Field(description="one or two sentences: why")


class Finding(AgentReply):
    """One problem a code review found."""

    file: str | None = Field(description="path of the file, relative to the repository; null if none")
    line: int | None = Field(ge=1, description="line number (1-based) in the new file; null if none")
    severity: Literal["low", "medium", "high", "critical"]
    title: str = Field(min_length=1, description="one line")
    body: str = Field(description="what is wrong and how to fix it")


class ReviewReply(AgentReply):
    """A code review: a summary and its findings (at most 50)."""

    summary: str
    findings: list[Finding] = Field(max_length=MAX_FINDINGS, description="at most 50; [] if none")


class ArgueOutcome(AgentReply):
    """The agent's answer to a finding: accept it or contest it, and why."""

    outcome: Literal["accept", "contest"]
    argument: str = Field(description="why")


class Learning(AgentReply):
    """One durable lesson for future runs on the repository."""

    title: str = Field(description="one line")
    body: str


class LearningsReply(AgentReply):
    """What the run taught, at most 10 lessons."""

    # An object, not a bare list: both CLIs want an object at the root of the schema.

    learnings: list[Learning] = Field(max_length=MAX_LEARNINGS, description="at most 10; [] if none")


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``$ref`` replaced by its definition and unportable keywords dropped."""
    if isinstance(node, list):
        return [_inline(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **extra}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$defs" or key in _UNPORTABLE:
            continue
        if key == "properties":
            out[key] = {name: _inline(v, defs) for name, v in value.items()}
        else:
            out[key] = _inline(value, defs)
    if out.get("type") == "object":
        props = out.get("properties", {})
        if out.get("additionalProperties") is not False or set(out.get("required", ())) != set(props):
            raise ValueError(f"reply schema objects must be closed, all fields required: {sorted(props)}")
    return out


def reply_schema(model: type[AgentReply]) -> dict[str, Any]:
    """The JSON schema a CLI is asked to enforce for ``model`` (self-contained, strict subset)."""
    raw = model.model_json_schema()
    return dict(_inline(raw, raw.get("$defs", {})))


def schema_text(model: type[AgentReply]) -> str:
    """``reply_schema`` as compact JSON with sorted keys (stable, so it can name a file)."""
    return json.dumps(reply_schema(model), sort_keys=True, separators=(",", ":"))


def schema_file(model: type[AgentReply], directory: Path) -> Path:
    """The schema written once under ``directory`` (codex takes a path, not the text).

    The name carries a hash of the content, so a changed model gets a new file and a file once
    written never changes under a running CLI; writing goes through a temporary file and
    ``os.replace`` so a concurrent reader never sees half of it.
    """
    text = schema_text(model)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = directory / f"{model.__name__}-{digest}.json"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def parse_reply(model: type[R], value: Any, who: str) -> R:
    """``value`` (the CLI's structured object, or the reply's text) checked against ``model``.

    A missing reply, text that is not JSON, or JSON that breaks the schema is an
    ``AgentReplyError`` naming ``who`` answered and what is wrong.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise AgentReplyError(f"{who} gave no structured reply ({model.__name__} expected)")
    try:
        if isinstance(value, str | bytes):
            return model.model_validate_json(value)
        return model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        shown = value if isinstance(value, str) else json.dumps(value)
        raise AgentReplyError(
            f"{who}'s reply breaks the {model.__name__} schema: {problems}",
            details={"reply": shown[:500]},
        ) from None
