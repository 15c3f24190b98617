"""Approval policy: which requests run, which are refused, and which wait for a person.

Decision order for a request (operation, principal, method, path):
1. a matching ``deny`` rule -> 403 ``operation_denied``;
2. ``X-Desktop-Force-Approval: 1`` -> ask;
3. a matching, unexpired ``allow`` rule (an "always allow") -> run;
4. the operation's tier <= the principal's threshold -> run; else ask.

Rules and thresholds live in SQLite (migration 3 and the settings table) and are mirrored in
memory, so the per-request decision never touches the database. Held requests live in
``Approvals``: the request's task waits on an event that a person's decision sets; when the
client goes away the task is cancelled and its ``finally`` withdraws the approval.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from gateway.http.operations import POLICY_EXEMPT, Tier, tier_of
from gateway.supervisor import Store, iso

PRINCIPALS = ("gateway", "session", "relay")
ALLOW_TTL = 7 * 24 * 3600.0
APPROVAL_TIMEOUT = 300.0
_THRESHOLD_KEY = "policy.thresholds"

Verdict = Literal["run", "ask", "deny"]


@dataclass(slots=True)
class Rule:
    id: str
    effect: Literal["deny", "allow"]
    principal: str | None = None
    operation: str | None = None
    method: str | None = None
    path_prefix: str | None = None
    created_at: float = 0.0
    expires_at: float | None = None

    def matches(self, operation: str | None, principal: str, method: str, path: str) -> bool:
        return (
            (self.principal is None or self.principal == principal)
            and (self.operation is None or self.operation == operation)
            and (self.method is None or self.method == method)
            and (self.path_prefix is None or path.startswith(self.path_prefix))
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "effect": self.effect,
            "principal": self.principal,
            "operation": self.operation,
            "method": self.method,
            "pathPrefix": self.path_prefix,
            "createdAt": iso(self.created_at),
            "expiresAt": iso(self.expires_at),
        }


#: The ``policy_rules`` table (owner ``policy``): deny and expiring always-allow rules.
POLICY_SCHEMA: list[str] = [
    """
    CREATE TABLE policy_rules (
        id TEXT PRIMARY KEY,
        effect TEXT NOT NULL,
        principal TEXT,
        operation TEXT,
        method TEXT,
        path_prefix TEXT,
        created_at REAL NOT NULL,
        expires_at REAL
    );
    """,
]


class Policy:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.thresholds: dict[str, Tier] = dict.fromkeys(PRINCIPALS, Tier.HIGH)
        self.rules: list[Rule] = []

    async def load(self) -> None:
        """Create or migrate the rules table, then read the thresholds and rules."""
        await self.store.migrate("policy", POLICY_SCHEMA)
        row = await self.store.fetchone("SELECT value FROM settings WHERE key = ?", (_THRESHOLD_KEY,))
        if row is not None:
            for principal, tier in json.loads(row[0]).items():
                if principal in PRINCIPALS:
                    self.thresholds[principal] = Tier.parse(tier)
        rows = await self.store.fetchall(
            "SELECT id, effect, principal, operation, method, path_prefix, created_at, expires_at"
            " FROM policy_rules ORDER BY created_at"
        )
        self.rules = [Rule(*tuple(r)) for r in rows]

    def decide(
        self, operation: str | None, principal: str, method: str, path: str, *, forced: bool
    ) -> tuple[Verdict, Rule | None]:
        if operation in POLICY_EXEMPT:
            return "run", None
        now = self.clock()
        live = [r for r in self.rules if r.expires_at is None or r.expires_at > now]
        for rule in live:
            if rule.effect == "deny" and rule.matches(operation, principal, method, path):
                return "deny", rule
        if forced:
            return "ask", None
        for rule in live:
            if rule.effect == "allow" and rule.matches(operation, principal, method, path):
                return "run", rule
        if tier_of(operation) <= self.thresholds.get(principal, Tier.HIGH):
            return "run", None
        return "ask", None

    async def set_thresholds(self, values: dict[str, Tier]) -> None:
        self.thresholds.update(values)
        payload = json.dumps({p: t.label for p, t in self.thresholds.items()})
        await self.store.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (_THRESHOLD_KEY, payload),
        )

    async def add_rule(
        self,
        effect: Literal["deny", "allow"],
        *,
        principal: str | None = None,
        operation: str | None = None,
        method: str | None = None,
        path_prefix: str | None = None,
        ttl: float | None = None,
    ) -> Rule:
        """Add a rule; allow rules expire after 7 days unless ``ttl`` says otherwise."""
        now = self.clock()
        if ttl is None and effect == "allow":
            ttl = ALLOW_TTL
        rule = Rule(
            id=f"r_{secrets.token_hex(6)}",
            effect=effect,
            principal=principal,
            operation=operation,
            method=method.upper() if method else None,
            path_prefix=path_prefix,
            created_at=now,
            expires_at=now + ttl if ttl is not None else None,
        )
        await self.store.execute(
            "INSERT INTO policy_rules (id, effect, principal, operation, method, path_prefix,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rule.id, rule.effect, rule.principal, rule.operation, rule.method, rule.path_prefix,
             rule.created_at, rule.expires_at),
        )  # fmt: skip
        self.rules.append(rule)
        return rule

    async def remove_rule(self, rule_id: str) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != rule_id]
        await self.store.execute("DELETE FROM policy_rules WHERE id = ?", (rule_id,))
        return len(self.rules) < before

    def to_json(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "thresholds": {p: t.label for p, t in self.thresholds.items()},
            "rules": [r.to_json() for r in self.rules if r.expires_at is None or r.expires_at > now],
        }


Decision = Literal["approved", "denied", "always_allow"]
Outcome = Literal["pending", "approved", "denied", "always_allow", "expired", "withdrawn"]


_DETAIL_STRINGS = ("cwd", "ticketId", "kind", "repoPath", "branch", "provider", "mode")


def approval_detail(body: bytes, content_type: str | None) -> dict[str, Any] | None:
    """What a held request would do, for the person who decides: from its JSON body, the
    command (``argv``), ``cwd``, the *names* of the variables it sets (never their values),
    the ticket and a few other short fields. None when the body is not a JSON object.
    """
    if not body or "json" not in (content_type or "").lower():
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    detail: dict[str, Any] = {}
    argv = data.get("argv")
    if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
        detail["argv"] = [a[:500] for a in argv[:64]] + (["…"] if len(argv) > 64 else [])
    env = data.get("env")
    if isinstance(env, dict):
        detail["envKeys"] = sorted(str(k)[:100] for k in env)[:64]
    for key in _DETAIL_STRINGS:
        value = data.get(key)
        if isinstance(value, str) and value:
            detail[key] = value[:500]
    for key in ("prompt", "message"):
        value = data.get(key)
        if isinstance(value, str) and value:
            detail[key] = value[:300] + ("…" if len(value) > 300 else "")
    return detail or None


@dataclass(slots=True)
class Approval:
    id: str
    operation: str | None
    principal: str
    method: str
    path: str
    reason: str | None
    created_at: float
    expires_at: float
    detail: dict[str, Any] | None = None  # what the request would do: argv, cwd, env keys, ...
    outcome: Outcome = "pending"
    decided: trio.Event = field(default_factory=trio.Event)
    command_id: str | None = None  # the relayed command this request serves, if any

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "tier": tier_of(self.operation).label,
            "principal": self.principal,
            "method": self.method,
            "path": self.path,
            "reason": self.reason,
            "createdAt": iso(self.created_at),
            "expiresAt": iso(self.expires_at),
            "status": self.outcome,
            "commandId": self.command_id,
            "detail": self.detail,
        }


class Approvals:
    """Held requests waiting on a person; recent outcomes are kept for the UI (bounded)."""

    def __init__(
        self,
        policy: Policy,
        timeout: float = APPROVAL_TIMEOUT,
        on_outcome: Callable[[Approval], None] | None = None,
    ) -> None:
        self.policy = policy
        self.timeout = timeout
        self.pending: dict[str, Approval] = {}
        self.recent: list[Approval] = []
        self.on_outcome = on_outcome
        self._changed = trio.Event()

    @property
    def changed(self) -> trio.Event:
        """Set at the next change of the pending or recent list (grab it before reading)."""
        return self._changed

    async def hold(
        self,
        operation: str | None,
        principal: str,
        method: str,
        path: str,
        reason: str | None,
        *,
        command_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Outcome:
        """Wait for a decision or the timeout; cancellation (client gone) withdraws it."""
        now = self.policy.clock()
        approval = Approval(
            id=f"a_{secrets.token_hex(6)}",
            operation=operation,
            principal=principal,
            method=method,
            path=path,
            reason=reason,
            detail=detail,
            created_at=now,
            expires_at=now + self.timeout,
            command_id=command_id,
        )
        self.pending[approval.id] = approval
        self._wake()
        try:
            with trio.move_on_after(self.timeout):
                await approval.decided.wait()
            if approval.outcome == "pending":
                approval.outcome = "expired"
            return approval.outcome
        finally:
            if approval.outcome == "pending":
                approval.outcome = "withdrawn"
            self.pending.pop(approval.id, None)
            self.recent = [*self.recent[-49:], approval]
            if self.on_outcome is not None:
                self.on_outcome(approval)
            self._wake()

    async def decide(self, approval_id: str, decision: Decision, ttl: float | None = None) -> Approval | None:
        """Record a person's decision; ``always_allow`` also adds an expiring allow rule."""
        approval = self.pending.get(approval_id)
        if approval is None or approval.outcome != "pending":
            return None
        if decision == "always_allow":
            await self.policy.add_rule(
                "allow",
                principal=approval.principal,
                operation=approval.operation,
                method=approval.method,
                path_prefix=approval.path,
                ttl=ttl,
            )
        # The database call above is a checkpoint: the request may have gone meanwhile.
        if approval.outcome != "pending":
            return None
        approval.outcome = decision
        approval.decided.set()
        return approval

    def find(self, approval_id: str) -> Approval | None:
        found = self.pending.get(approval_id)
        if found is not None:
            return found
        return next((a for a in reversed(self.recent) if a.id == approval_id), None)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for_change(self) -> None:
        await self._changed.wait()
