"""The seam between the projection and its storage: ordered bytes keys, atomic commits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

Range = tuple[bytes, bytes]


class ChangeSet(dict[bytes, bytes | None]):
    """A batch's point writes (None deletes) plus its range deletes ``[start, stop)``.

    A plain dict to everything that reads the point writes; ``ranges`` ride along to the
    store's commit, which applies them before the point writes (the overlay drops a point
    write a later range delete covers, so whatever point write remains came after it). One
    range delete drops a whole generation of keys in one write instead of one per key.
    """

    __slots__ = ("ranges",)

    def __init__(self, items: Mapping[bytes, bytes | None] | Iterable[tuple[bytes, bytes | None]]
                 = (), ranges: Sequence[Range] = ()) -> None:
        super().__init__(items)
        self.ranges: list[Range] = list(ranges)


def ranges_of(changes: Mapping[bytes, bytes | None]) -> Sequence[Range]:
    """The range deletes a batch carries (none for a plain mapping)."""
    return changes.ranges if isinstance(changes, ChangeSet) else ()


@runtime_checkable
class View(Protocol):
    """Read access to an ordered key space of bytes."""

    def get(self, key: bytes) -> bytes | None:
        """The value at ``key``, or None."""
        ...

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with ``start <= key < stop`` in key order (descending when ``reverse``)."""
        ...


@runtime_checkable
class ViewStore(View, Protocol):
    """A view that can take an atomic batch of changes (``None`` deletes the key)."""

    def commit(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Apply every change or none of them (one RocksDB WriteBatch); the range deletes
        of a ``ChangeSet`` first, then the point writes."""
        ...

    def close(self) -> None: ...
