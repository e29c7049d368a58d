"""The seam between the projection and its storage: ordered bytes keys, atomic commits."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable


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
        """Apply every change or none of them (one RocksDB WriteBatch)."""
        ...

    def close(self) -> None: ...
