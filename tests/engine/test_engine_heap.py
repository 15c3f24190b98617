"""``settle_heap``: what `gateway serve` and `gateway node-agent` do once they listen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.supervisor.heap import settle_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # give this test process its ordinary collector back


def test_settle_heap_freezes_what_survives_and_not_garbage(unfrozen: None) -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    Node()  # garbage from the start, in a cycle
    frozen = settle_heap()
    assert frozen > 0 and gc.get_freeze_count() == frozen
    gc.unfreeze()  # get_objects does not list the permanent generation: bring it back to look
    assert not [o for o in gc.get_objects() if isinstance(o, Node)], "garbage was frozen with the heap"
