"""A MemoryStore that keeps deletes as tombstones and counts what scans pass over.

RocksDB (an LSM tree) keeps a deleted key as a tombstone until compaction, and an iterator
steps over every tombstone in its way: a scan that starts at the head of a range consumed
from the head costs everything deleted before it (DESIGN §7). ``MemoryStore`` forgets
deletes, so it cannot show that cost. This store never compacts and counts every entry a
scan steps on, live or dead, so tests and benchmarks can assert that work stays flat.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from sortedcontainers import SortedDict

from projections.memstore import check_changes
from projections.store import ranges_of


class TombstoneStore:
    """A ViewStore without compaction; ``stepped`` counts entries scans passed (with dead)."""

    def __init__(self) -> None:
        self._data: SortedDict = SortedDict()  # key -> value, or None for a tombstone
        self.stepped = 0
        self.dead = 0

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        if start >= stop:
            return iter(())
        return self._scan(start, stop, reverse)

    def _scan(self, start: bytes, stop: bytes, reverse: bool) -> Iterator[tuple[bytes, bytes]]:
        # Lazy, so a scan that stops early counts only what it stepped on. Commits never
        # happen while apply scans (they come between batches).
        for key in self._data.irange(start, stop, inclusive=(True, False), reverse=reverse):
            self.stepped += 1
            value = self._data[key]
            if value is not None:
                yield key, value

    def commit(self, changes: Mapping[bytes, bytes | None]) -> None:
        check_changes(changes)
        for start, stop in ranges_of(changes):
            # RocksDB keeps one range tombstone, and an iterator seeks past it; here every
            # key in the range is kept dead and counted when stepped on (an upper bound).
            for key in list(self._data.irange(start, stop, inclusive=(True, False))):
                if self._data[key] is not None:
                    self._data[key] = None
                    self.dead += 1
        for key, value in changes.items():
            if value is None and key not in self._data:
                continue
            if value is None and self._data[key] is not None:
                self.dead += 1
            elif value is not None and self._data.get(key, b"") is None:
                self.dead -= 1
            self._data[key] = value

    def live(self) -> Iterator[tuple[bytes, bytes]]:
        """Every live pair in key order (for digests)."""
        for key, value in self._data.items():
            if value is not None:
                yield key, value

    def close(self) -> None:
        """Nothing to release."""
