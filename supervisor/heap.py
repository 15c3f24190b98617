"""The heap of a long-running gateway process, settled once start-up is over.

CPython's cyclic collector now and then runs a full collection, which walks every tracked
object: in a gateway that is every module, the app, the routes and every record loaded at
start-up, tens of milliseconds on this class of machine, and whichever log line is being
followed at that moment waits for it. Measured with 20 children writing 1,000 lines/s each
(``benchmarks/bench_peers.py --only follow``), that put the follow p99 at 25-50 ms with the p50
at 0.2 ms; with the start-up heap frozen the p99 is 1-4 ms.

``settle_heap`` is for the entry of a process that lives for days (``gateway serve``,
``gateway node-agent``), called once when it is ready; a program that embeds the engine decides
for itself. Synchronous, no cancellation point.
"""

from __future__ import annotations

import gc


def settle_heap() -> int:
    """Collect, then move every object that survived into the collector's permanent generation
    (never scanned again, never freed: so garbage is collected first). Returns how many."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


__all__ = ["settle_heap"]
