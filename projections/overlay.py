"""Pending writes over a base view: how a batch of commands sees its own effects (DESIGN §7).

The runner applies many commands into one Overlay and commits ``overlay.changes`` as one
WriteBatch. Every read apply makes — point reads and ordered scans — goes through the overlay,
so two claims in one batch cannot take the same messages.
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedDict

from projections.memstore import CHUNK, range_chunk
from projections.store import ChangeSet, Range, View

_MISSING = object()
_RANGE = object()  # journal entry of a range delete (undone by dropping the newest range)


def _check_key(key: object) -> None:
    if type(key) is not bytes:
        raise TypeError(f"store keys must be bytes, got {type(key).__name__}: {key!r}")


class Overlay:
    """A View of pending puts and deletes (tombstones) layered over ``base``.

    Scans merge the pending entries with ``base.scan`` lazily, so taking the first few items of
    a huge range costs a few items, not the range. Pending writes made while a scan of this
    overlay is suspended are seen for keys the scan has not reached yet (a cursor, like
    MemoryStore); writes behind the scan's position are not revisited. Overlays stack: the base
    may itself be an Overlay.
    """

    def __init__(self, base: View) -> None:
        self._base = base
        self._pending: SortedDict = SortedDict()  # key -> value, or None for a delete
        # New keys wait here (a plain dict) until the next scan sorts them in with one bulk
        # update: a batch that only writes never pays for a sorted insert per key.
        self._fresh: dict[bytes, bytes | None] = {}
        self._version = 0  # bumped by every write so suspended scans know to re-seek
        self._journal: list[tuple[bytes, object]] | None = None  # undo log of a savepoint
        # Keys put by ``put_new`` (the base lacks them): deleting one drops the pending entry
        # instead of staging a tombstone, so a key born and gone within one batch (an outcome
        # pruned in the same rebuild batch) costs the store nothing at commit.
        self._born: set[bytes] = set()
        # Range deletes ``[start, stop)`` staged by ``delete_range``: they hide base keys; a
        # pending key inside one was written after it (earlier ones are dropped by it).
        self._ranges: list[Range] = []
        # The first three bytes (partition and kind, ``projections.keys``) of every key staged,
        # and the base's answers to ``has_any`` for ranges under a head never staged: the base
        # does not change while an overlay is open, so each is asked of it once per batch.
        self._heads: set[bytes] = set()
        self._base_any: dict[Range, bool] = {}

    @property
    def base(self) -> View:
        return self._base

    @property
    def changes(self) -> ChangeSet:
        """The pending writes (None deletes) and range deletes, ready for
        ``ViewStore.commit``. A copy."""
        out = ChangeSet(self._pending, self._ranges)
        out.update(self._fresh)
        return out

    @property
    def ranges(self) -> list[Range]:
        """The range deletes staged so far (a copy)."""
        return list(self._ranges)

    def _stage(self, key: bytes, value: bytes | None) -> None:
        # A key is pending in at most one of ``_fresh`` and ``_pending``: one or two lookups
        # find where it goes and, for a savepoint's journal, what it was.
        fresh = self._fresh
        previous = fresh.get(key, _MISSING)
        if previous is _MISSING:
            previous = self._pending.get(key, _MISSING)
            if previous is _MISSING:
                fresh[key] = value
            else:
                self._pending[key] = value
        else:
            fresh[key] = value
        if self._journal is not None:
            self._journal.append((key, previous))
        self._version += 1
        self._heads.add(key[:3])  # kept after a rollback: a stale head only costs a seek

    def _sort_fresh(self) -> None:
        if self._fresh:
            self._pending.update(self._fresh)
            self._fresh = {}

    def put(self, key: bytes, value: bytes) -> None:
        """Stage ``key = value``; types are checked here, where the bug is, not at commit."""
        if type(key) is not bytes:
            _check_key(key)
        if type(value) is not bytes:
            raise TypeError(f"store values must be bytes, got {type(value).__name__} at {key!r}")
        self._stage(key, value)

    def put_many(self, items: list[tuple[bytes, bytes]]) -> None:
        """``put`` of each ``(key, value)``, in order (a post's message keys)."""
        put = self.put
        for key, value in items:
            put(key, value)

    def put_new(self, key: bytes, value: bytes) -> None:
        """``put`` of a key the caller just read through this overlay and found absent.

        If the key is not pending either, the base lacks it (the base does not change while
        an overlay is open), so a later ``delete`` can forget the key instead of staging a
        tombstone. A pending key (a tombstone over a base key) is put as usual.
        """
        fresh = key not in self._fresh and key not in self._pending
        self.put(key, value)
        if fresh:
            self._born.add(key)

    def delete(self, key: bytes) -> None:
        """Stage a delete: a tombstone hides the base's key until the overlay is cleared."""
        if type(key) is not bytes:
            _check_key(key)
        if key in self._born:
            self._born.discard(key)
            self._forget(key)
            return
        self._stage(key, None)

    def delete_range(self, start: bytes, stop: bytes) -> None:
        """Stage a delete of every key in ``[start, stop)``: one write at commit, whatever
        the number of keys (a RocksDB range tombstone). Pending writes in the range go."""
        if type(start) is not bytes or type(stop) is not bytes:
            raise TypeError(f"range delete bounds must be bytes, got {start!r}, {stop!r}")
        if start >= stop:
            return
        self._sort_fresh()
        for key in list(self._pending.irange(start, stop, inclusive=(True, False))):
            if self._journal is not None:
                self._journal.append((key, self._pending[key]))
            del self._pending[key]
            self._born.discard(key)
        if self._journal is not None:
            self._journal.append((b"", _RANGE))
        self._ranges.append((start, stop))
        self._version += 1

    def _hidden(self, key: bytes) -> bool:
        """Whether a staged range delete covers ``key`` (for base keys)."""
        return any(start <= key < stop for start, stop in self._ranges)

    def _forget(self, key: bytes) -> None:
        """Drop a pending key the base lacks: reads find nothing, commit writes nothing."""
        if self._journal is not None:
            previous = self._fresh.get(key, _MISSING)
            if previous is _MISSING:
                previous = self._pending.get(key, _MISSING)
            self._journal.append((key, previous))
        self._fresh.pop(key, None)
        self._pending.pop(key, None)
        self._version += 1

    def savepoint(self) -> None:
        """Start recording writes so ``rollback`` can undo them (one command's writes)."""
        self._journal = []

    def release(self) -> None:
        """Keep the writes since the savepoint."""
        self._journal = None

    def rollback(self) -> None:
        """Undo every write since the savepoint, newest first."""
        journal, self._journal = self._journal or [], None
        for key, previous in reversed(journal):
            if previous is _RANGE:
                self._ranges.pop()
            elif previous is _MISSING:
                self._fresh.pop(key, None)
                self._pending.pop(key, None)
            elif key in self._pending:
                self._pending[key] = previous
            else:
                self._fresh[key] = previous  # type: ignore[assignment]
        self._version += 1

    def clear(self) -> None:
        """Drop every pending write (after a commit, or to abandon a batch)."""
        self._pending.clear()
        self._fresh.clear()
        self._born.clear()
        self._ranges.clear()
        self._heads.clear()
        self._base_any.clear()  # the base is about to change (a commit) or be read anew
        self._version += 1

    def has_any(self, start: bytes, stop: bytes) -> bool:
        """Whether a key lies in ``[start, stop)`` (what ``next(iter(scan(...)))`` tells).

        A range within one partition-and-kind head (``start`` and ``stop`` share their first
        three bytes) that nothing staged in this overlay falls under, with no range delete
        staged, has exactly the base's keys: the base is asked once per batch and remembered.
        A post asks whether its queue has subscriptions this way (issue 15: a scan per post
        was a RocksDB iterator and a sort of every key the batch had written so far).
        """
        head = start[:3]
        if len(head) == 3 and stop[:3] == head and head not in self._heads and not self._ranges:
            found = self._base_any.get((start, stop))
            if found is None:
                found = self._base_any[(start, stop)] = next(
                    iter(self._base.scan(start, stop)), None) is not None
            return found
        return next(iter(self.scan(start, stop)), None) is not None

    def get(self, key: bytes) -> bytes | None:
        value = self._fresh.get(key, _MISSING)
        if value is _MISSING:
            value = self._pending.get(key, _MISSING)
            if value is _MISSING:
                if self._ranges and self._hidden(key):
                    return None
                return self._base.get(key)
        return value  # type: ignore[return-value]

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with ``start <= key < stop`` in key order (descending when ``reverse``)."""
        if start >= stop:
            return iter(())
        return self._merge(start, stop, reverse)

    def _merge(self, start: bytes, stop: bytes, reverse: bool) -> Iterator[tuple[bytes, bytes]]:
        """Merge the base scan with pending entries, pending winning on equal keys.

        ``after`` is the last key processed from either side. Pending keys are copied in
        short chunks; when the overlay changed since a chunk was taken, the chunk is dropped
        and re-read past ``after``, so ``chunk[index]`` is always the first pending key past
        ``after``. A base key is therefore only ever passed over when it is yielded or when
        the pending side takes the same key (yields it, or hides it if it is a tombstone).
        """
        pending = self._pending
        base_items = self._base.scan(start, stop, reverse=reverse)
        head = next(base_items, None)
        after: bytes | None = None
        chunk: list[bytes] = []
        index = 0
        chunk_version = -1
        while True:
            if chunk_version != self._version or (index == len(chunk) and len(chunk) == CHUNK):
                self._sort_fresh()
                chunk = range_chunk(pending, start, stop, after, reverse)
                index = 0
                chunk_version = self._version
            if index < len(chunk):
                pending_key = chunk[index]
                if head is not None:
                    base_key, base_value = head
                    if base_key == pending_key:
                        head = next(base_items, None)  # shadowed by the pending entry
                    elif (base_key > pending_key) if reverse else (base_key < pending_key):
                        head = next(base_items, None)
                        after = base_key
                        if not (self._ranges and self._hidden(base_key)):
                            yield base_key, base_value
                        continue
                index += 1
                after = pending_key
                value = pending[pending_key]
                if value is not None:
                    yield pending_key, value
            elif head is not None:
                key, value = head
                head = next(base_items, None)
                after = key
                if not (self._ranges and self._hidden(key)):
                    yield key, value
            else:
                return
