"""What a node's RSS is made of: RocksDB's own accounting, the C heap, the Python heap.

Answered by the ``memory`` control request (``ops/admin.py``) so a bench can watch a running
server from outside; nothing here changes state except ``trim`` (glibc ``malloc_trim``).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import sys
import tracemalloc
from collections.abc import Mapping
from typing import Any

from projections.rocksstore import RocksStore

ROCKS_PROPERTIES = (
    "rocksdb.cur-size-all-mem-tables",  # active + unflushed immutable memtables
    "rocksdb.size-all-mem-tables",  # ... plus memtables pinned by iterators/snapshots
    "rocksdb.block-cache-usage",
    "rocksdb.block-cache-pinned-usage",
    "rocksdb.estimate-table-readers-mem",  # index and filter blocks outside the cache
    "rocksdb.num-immutable-mem-table",
    "rocksdb.num-live-versions",
    "rocksdb.num-snapshots",
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _libc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def rss_mb() -> float:
    """This process's resident set, MB (Linux ``/proc``; NaN elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def malloc_info() -> dict[str, float]:
    """glibc's heap, MB: in use, free inside the heap (fragmentation), mmapped blocks."""
    if _LIBC is None or not hasattr(_LIBC, "mallinfo2"):
        return {}
    _LIBC.mallinfo2.restype = _MallInfo2
    mi = _LIBC.mallinfo2()
    mb = 1 << 20
    return {"heap_mb": mi.arena / mb, "in_use_mb": mi.uordblks / mb,
            "free_in_heap_mb": mi.fordblks / mb, "mmapped_mb": mi.hblkhd / mb}


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD = 1 << 20


def tune_malloc(env: Mapping[str, str], threshold: int = MMAP_THRESHOLD) -> bool:
    """Serve every C allocation of ``threshold`` bytes or more by its own mmap (glibc).

    Why: glibc raises its mmap threshold each time an mmapped block is freed (up to 32 MB).
    RocksDB's memtable arena blocks (write_buffer_size / 8) are such blocks: once the first
    memtable is flushed and freed, every later memtable is carved from the heap, and after a
    big batch or purge the freed memtables stay in the heap as free space glibc never returns
    (issue 10 item 5: 66 -> 275 MB over 25 post/purge cycles, 80-140 MB of it free heap).
    A fixed threshold keeps them mmapped, so a flushed memtable goes back to the kernel.
    An operator's own ``MALLOC_MMAP_THRESHOLD_`` wins (glibc reads it at start).
    """
    if _LIBC is None or not hasattr(_LIBC, "mallopt") or "MALLOC_MMAP_THRESHOLD_" in env:
        return False
    return bool(_LIBC.mallopt(M_MMAP_THRESHOLD, threshold))


def trim() -> bool:
    """Give the C heap's free pages back to the kernel (glibc ``malloc_trim(0)``)."""
    if _LIBC is None or not hasattr(_LIBC, "malloc_trim"):
        return False
    return bool(_LIBC.malloc_trim(0))


TRIM_INTERVAL_S = 10.0
TRIM_FREE_MB = 32.0


async def keep_trimmed(interval: float = TRIM_INTERVAL_S, free_mb: float = TRIM_FREE_MB) -> None:
    """Every ``interval``, hand the C heap's free pages back once more than ``free_mb`` sit
    in it (a purge or a big batch frees a lot at once: RocksDB's compactions and reads free
    their buffers in the arenas of its threads, which glibc only returns on a trim).
    The trim runs in a thread (ctypes drops the GIL): requests never wait on it."""
    if _LIBC is None or not hasattr(_LIBC, "malloc_trim"):
        return
    while True:
        await asyncio.sleep(interval)
        if malloc_info().get("free_in_heap_mb", 0.0) > free_mb:
            await asyncio.to_thread(trim)


def rocks_properties(store: RocksStore) -> dict[str, float]:
    """RocksDB's memory properties of ``store``, MB (or counts for ``num-*``)."""
    out: dict[str, float] = {}
    for name in ROCKS_PROPERTIES:
        value = store.int_property(name)
        if value is None:
            continue
        short = name.removeprefix("rocksdb.")
        out[short] = value if short.startswith("num-") else value / (1 << 20)
    return out


def python_heap(top: int = 8) -> dict[str, Any]:
    """gc generations and, when ``tracemalloc`` runs (``PYTHONTRACEMALLOC``), the top lines."""
    out: dict[str, Any] = {"gc_counts": list(gc.get_count()), "objects": len(gc.get_objects())}
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        out["traced_mb"] = current / (1 << 20)
        out["traced_peak_mb"] = peak / (1 << 20)
        stats = tracemalloc.take_snapshot().statistics("lineno")[:top]
        out["top"] = [f"{s.size / 1024:.0f} KB {s.count} {s.traceback[0]}" for s in stats]
    return out


def report(store: RocksStore | None, *, do_trim: bool = False) -> dict[str, Any]:
    """Everything above; with ``do_trim`` also the RSS after a ``malloc_trim``."""
    out: dict[str, Any] = {"rss_mb": rss_mb(), "malloc": malloc_info(),
                           "python": python_heap()}
    if store is not None:
        out["rocksdb"] = rocks_properties(store)
    if do_trim:
        out["trimmed"] = trim()
        out["rss_after_trim_mb"] = rss_mb()
    return out
