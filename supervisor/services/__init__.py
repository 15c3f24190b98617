"""Agent-free domain services: worktrees and git, the repo registry, deploys and files.

Each takes the supervisor (and the store) and runs its helpers (git) as supervised children.
None of them imports Symphony: ticket-bound rules live in ``gateway.supervisor.symphony``.
"""
