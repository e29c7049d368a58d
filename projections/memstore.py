"""An in-memory ViewStore on a SortedDict, for pure tests and scratch replays (no I/O)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import islice

from sortedcontainers import SortedDict

from projections.store import ranges_of

# Keys a scan copies per step: small enough that "the first 20 of a million" stays cheap,
# large enough that a full scan does not pay a tree seek per key.
CHUNK = 64


def check_changes(changes: Mapping[bytes, bytes | None]) -> None:
    """Raise TypeError unless every key is bytes and every value bytes or None.

    Every store validates a whole batch before touching anything, so a bad batch is
    rejected as a unit (the same error from every implementation).
    """
    for start, stop in ranges_of(changes):
        if type(start) is not bytes or type(stop) is not bytes:
            raise TypeError(f"range delete bounds must be bytes, got {start!r}, {stop!r}")
    for key, value in changes.items():
        if type(key) is not bytes:
            raise TypeError(f"store keys must be bytes, got {type(key).__name__}: {key!r}")
        if value is not None and type(value) is not bytes:
            raise TypeError(
                f"store values must be bytes or None, got {type(value).__name__} at {key!r}"
            )


def range_chunk(
    data: SortedDict,
    start: bytes,
    stop: bytes,
    after: bytes | None,
    reverse: bool,
    n: int = CHUNK,
) -> list[bytes]:
    """Up to ``n`` keys of ``data`` in ``[start, stop)`` strictly past ``after`` in scan order.

    Copying a short run of keys (not holding a live SortedDict iterator across yields) is what
    lets a suspended scan survive writes: the caller re-seeks from ``after`` when ``data``
    changed since the chunk was taken.
    """
    if after is None:
        keys = data.irange(start, stop, inclusive=(True, False), reverse=reverse)
    elif reverse:
        keys = data.irange(start, after, inclusive=(True, False), reverse=True)
    else:
        keys = data.irange(after, stop, inclusive=(False, False))
    return list(islice(keys, n))


class MemoryStore:
    """A ViewStore held in a SortedDict: same contract as RocksStore, no disk.

    Scans behave like a cursor: a commit made while a scan is suspended is seen for the keys
    the scan has not reached yet; a scan never fails, repeats a key or goes backwards.
    (RocksStore scans are stricter: they read the snapshot taken when ``scan`` was called.)
    """

    def __init__(self, items: Mapping[bytes, bytes] | None = None) -> None:
        self._data: SortedDict = SortedDict()
        self._version = 0  # bumped by every commit so suspended scans know to re-seek
        if items:
            self.commit(items)

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with ``start <= key < stop``, ascending (descending when ``reverse``)."""
        if start >= stop:
            return iter(())
        return self._scan(start, stop, reverse)

    def _scan(self, start: bytes, stop: bytes, reverse: bool) -> Iterator[tuple[bytes, bytes]]:
        data = self._data
        after: bytes | None = None
        while True:
            version = self._version
            keys = range_chunk(data, start, stop, after, reverse)
            for key in keys:
                if self._version != version:
                    break  # a commit landed while suspended: re-seek past ``after``
                yield key, data[key]
                after = key
            else:
                if len(keys) < CHUNK and self._version == version:
                    return

    def commit(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Validate the whole batch, then apply it: all or nothing."""
        check_changes(changes)
        ranges = ranges_of(changes)
        if not changes and not ranges:
            return
        data = self._data
        for start, stop in ranges:
            for key in list(data.irange(start, stop, inclusive=(True, False))):
                del data[key]
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        self._version += 1

    def close(self) -> None:
        """Nothing to release; present so MemoryStore is a drop-in ViewStore."""

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
