"""The agent CLIs as providers: how to run claude and codex, and how to read their streams.

``providers`` builds each CLI's argv (runs, resumed chats, plans, reviews, judges) and parses
its stream-json or JSONL output into normalized events. ``replies`` holds the pydantic model of
each structured reply (judge verdicts, reviews, argue outcomes, learnings), the JSON schema
the CLIs are asked to enforce, and the check of what came back. No process is started here.
"""

from .providers import (
    ClaudeProvider,
    CodexProvider,
    MissingBinary,
    Provider,
    ProviderRegistry,
    RunOptions,
    RunSummary,
    parse_event,
    summarize,
)

__all__ = [
    "ClaudeProvider",
    "CodexProvider",
    "MissingBinary",
    "Provider",
    "ProviderRegistry",
    "RunOptions",
    "RunSummary",
    "parse_event",
    "summarize",
]
