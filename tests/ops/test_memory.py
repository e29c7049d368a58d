"""The ``memory`` report a bench reads from a running server (what the RSS is made of)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ops import memory
from projections.rocksstore import RocksStore


def test_the_report_names_rocksdb_memory_and_the_heaps(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "store", memory_mb=8) as store:
        store.commit({b"k%06d" % i: b"v" * 100 for i in range(2000)})
        report = memory.report(store)
    assert report["rss_mb"] > 0
    assert report["rocksdb"]["cur-size-all-mem-tables"] > 0  # the 200 KB just written
    assert set(report["rocksdb"]) >= {"block-cache-usage", "estimate-table-readers-mem"}
    assert report["python"]["objects"] > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_an_operators_own_mmap_threshold_is_left_alone() -> None:
    assert memory.tune_malloc({"MALLOC_MMAP_THRESHOLD_": "65536"}) is False
    assert memory.malloc_info()["heap_mb"] > 0
