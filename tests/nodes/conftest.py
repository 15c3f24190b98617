"""The Ray cluster fixture for the tier-2 tests (module-scoped, started only when asked for)."""

from ray_support import ray_cluster

__all__ = ["ray_cluster"]
