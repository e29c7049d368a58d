"""Short garbage-collector pauses for a serving process (the POST tail latency).

A full collection walks every tracked object, and after start most of them are the startup
heap — modules, the app, settings — that never becomes garbage: measured under wrk POST
load in the core, one full collection of that heap stalled every in-flight request for
~19 ms. ``settle`` freezes what exists once the process is serving (``gc.freeze``: never
scanned again) and makes the young collections less frequent (a request's objects mostly die
by reference count, so fewer collections find the same garbage).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # allocations between young collections (CPython's default: 700)
OLDER_THRESHOLDS = (20, 20)  # young collections per middle one, middle per full (10, 10)


def settle() -> int:
    """Collect once, freeze the survivors, raise the thresholds; returns objects frozen."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    return gc.get_freeze_count()
