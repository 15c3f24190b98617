"""Single agent runs: ``launch`` starts one agent child (kind ``symphony``) on a ticket's worktree.

Everything a run shares with the other activities (the lock, the spec, folding its events when
it ends) is the ``Runner``'s; this activity is the short path through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import trio

from ..spec import ProcessRecord
from .runner import Runner


class Runs:
    """``launch``: one agent run, watched in the background until its results are stored."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    async def launch(
        self,
        ticket_id: str,
        repo_id: str,
        prompt: str,
        provider: str | None = "claude",
        model: str | None = None,
        base_ref: str | None = None,
        limits: Mapping[str, Any] | None = None,
        node: str | None = None,
    ) -> ProcessRecord:
        """Create or reuse the worktree and start one agent run (kind ``symphony``) on ``node``
        (``Runner.node_for``: None is the configured default, ``local`` unless set)."""
        prov, lim = self.runner.check_request(ticket_id, repo_id, prompt, provider, limits)
        exe = self.runner.executable(prov)
        where = self.runner.node_for(node)
        async with self.runner.prepared(ticket_id, repo_id, base_ref, prov, "a run") as ticket:
            argv = prov.run_argv(exe, prompt, self.runner.run_options(prov, model))
            spec = self.runner.agent_spec(prov, argv, ticket, lim, labels={"mode": "run"})
            record = await self.runner.sup.start(spec, node=where)
            self.runner.post_done[record.id] = trio.Event()
        self.runner.spawn(self.runner.watch_run, record, prov, ticket)
        return record
