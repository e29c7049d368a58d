"""``ops.gcpause.settle``: the startup heap leaves the collector's reach, young collections
become rarer (the core's POST tail was a full collection walking that heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ops import gcpause


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settle_freezes_the_heap_and_raises_the_thresholds(restore_gc: None) -> None:
    kept = [[i] for i in range(1000)]  # live containers: frozen, never walked again
    frozen = gcpause.settle()
    assert frozen >= len(kept) and gc.get_freeze_count() == frozen
    assert gc.get_threshold() == (gcpause.YOUNG_THRESHOLD, *gcpause.OLDER_THRESHOLDS)


def test_after_settle_a_request_sized_burst_runs_no_collection(restore_gc: None) -> None:
    """Counted, not timed: containers alive together (what requests in flight hold; the
    young count is allocations minus deallocations) trigger young collections at CPython's
    default threshold, none after settle."""
    runs = [0, 0, 0]

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            runs[info["generation"]] += 1

    def burst() -> None:
        held = [{"id": i, "body": [i]} for i in range(3000)]  # 6,000 containers at once
        del held

    gc.set_threshold(700, 10, 10)
    gc.collect()
    gc.callbacks.append(count)
    try:
        burst()
        default = sum(runs)
        gcpause.settle()
        runs[:] = [0, 0, 0]
        burst()
    finally:
        gc.callbacks.remove(count)
    assert default > 0
    assert runs == [0, 0, 0]
