"""The durable ViewStore: RocksDB through rocksdict in raw (bytes) mode, one column family.

One column family on purpose: a partition's state, outcomes and applied offset must be visible
in one consistent read (a snapshot covers one column family) and change in one WriteBatch.
Commits are not fsynced: the log is the source of truth, and the applied offset travels in the
same batch as the state, so after a crash the runner resumes from whatever batch survived.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from itertools import chain, islice
from typing import Any

from rocksdict import (
    BlockBasedOptions,
    Cache,
    Checkpoint,
    DBCompressionType,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteOptions,
)

from projections.memstore import check_changes
from projections.store import ranges_of

StrPath = str | os.PathLike[str]


class StoreLockedError(Exception):
    """The store directory is held by another RocksStore (this process or another one)."""


class StoreClosedError(Exception):
    """The store (or the snapshot view) was closed; its scans stop with this error."""


def _options(memory_mb: int) -> Options:
    """Modest tuning that keeps opening fast: bigger memtable, bloom filters, LZ4."""
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(memory_mb << 20)
    opts.set_compression_type(DBCompressionType.lz4())
    opts.set_keep_log_file_num(3)
    opts.set_skip_stats_update_on_db_open(True)  # skip reading every SST's stats at open
    table = BlockBasedOptions()
    table.set_bloom_filter(10, False)  # full (not block-based) filter: cheap misses on get
    table.set_block_cache(Cache(memory_mb << 20))
    opts.set_block_based_table_factory(table)
    return opts


def _is_lock_error(error: Exception) -> bool:
    # rocksdict raises a bare Exception; RocksDB names the LOCK file in both variants:
    # "While lock file: <path>/LOCK: Resource temporarily unavailable" (another process) and
    # "lock hold by current process ... <path>/LOCK: No locks available" (this process).
    return "LOCK:" in str(error)


def _locked(path: str, error: Exception) -> StoreLockedError:
    return StoreLockedError(
        f"store {path!r} is in use by another process (or already open in this one): {error}"
    )


class _Scan:
    """Iterator over ``[start, stop)`` of one RocksDB iterator.

    The RocksDB iterator reads the implicit snapshot taken when it was created (at ``scan``),
    so later commits never show up mid-scan. The store may close it (``_abort``): a RocksDB
    iterator keeps the whole DB (and its LOCK) alive until it is dropped.
    """

    __slots__ = ("__weakref__", "_closed", "_it", "_opts", "_reverse", "_start", "_stop")

    def __init__(self, db: Rdict, start: bytes, stop: bytes, reverse: bool) -> None:
        # Kept as long as the iterator: a bulk scan's native iterator lost keys once its
        # options were freed (``_BulkScan``), so no iterator here outlives its bound.
        self._opts = opts = ReadOptions()
        opts.set_iterate_upper_bound(stop)  # rocksdict ignores a lower bound: checked below
        it = db.iter(opts)
        if reverse:
            it.seek_for_prev(stop)  # lands on stop itself if present: step off it
            if it.valid() and it.key() >= stop:
                it.prev()
        else:
            it.seek(start)
        self._it: Any = it
        self._start = start
        self._stop = stop
        self._reverse = reverse
        self._closed = False

    def __iter__(self) -> _Scan:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        it = self._it
        if it is None:
            if self._closed:
                raise StoreClosedError("the store was closed during this scan")
            raise StopIteration
        if it.valid():
            key: bytes = it.key()
            if self._start <= key < self._stop:
                value: bytes = it.value()
                if self._reverse:
                    it.prev()
                else:
                    it.next()
                return key, value
        else:
            it.status()  # raises if the iterator stopped on an error rather than the end
        self._it = None
        raise StopIteration

    def _abort(self) -> None:
        if self._it is not None:
            self._it = None
            self._closed = True


BULK_CHUNK = 4096  # pairs a bulk scan takes from RocksDB per step (``RocksStore.bulk_scan``)


class _BulkScan:
    """Iterator over ``[start, stop)`` for a reader of a whole range (a snapshot export).

    rocksdict's own ``items`` iterator yields each pair in one native call, where ``_Scan``
    makes four (and a Python frame): a third less CPU a key, held under the GIL, over the
    millions of keys of a big partition (issue 15). Its RocksDB iterator is created here, so
    it reads the implicit snapshot of this moment, as ``_Scan``'s does. Taken in chunks so a
    store closing meanwhile (``_abort``) ends it with ``StoreClosedError`` at the next chunk:
    an export never mistakes a cut-off range for a whole one.
    """

    __slots__ = ("__weakref__", "_closed", "_items", "_opts")

    def __init__(self, db: Rdict, start: bytes, stop: bytes) -> None:
        # Kept: without them the native iterator ended early, after a pause, in a test
        # (rocksdict 0.3.29's ``items`` does not keep its upper bound alive by itself).
        self._opts = ReadOptions()
        self._opts.set_iterate_upper_bound(stop)
        self._items: Any = db.items(from_key=start, read_opt=self._opts)
        self._closed = False

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return chain.from_iterable(self._chunks())

    def _chunks(self) -> Iterator[list[tuple[bytes, bytes]]]:
        while True:
            items = self._items
            if items is None:
                if self._closed:
                    raise StoreClosedError("the store was closed during this scan")
                return
            chunk: list[tuple[bytes, bytes]] = list(islice(items, BULK_CHUNK))
            if not chunk:
                self._items = None
                return
            yield chunk

    def _abort(self) -> None:
        if self._items is not None:
            self._items = None
            self._closed = True


class RocksSnapshot:
    """A View frozen at the moment it was taken, for reads that must not see half a batch.

    rocksdict 0.3.29's ``Snapshot`` honours the snapshot for ``snapshot[key]`` but not for
    ``Snapshot.iter()``/``items()`` (the snapshot is set on a copy of the read options the
    iterator never uses). A RocksDB iterator, though, always reads the implicit snapshot taken
    when it is created, so this view holds ONE unbounded iterator and answers gets and scans
    from it. Scans interleaved on that one iterator re-seek from their own last key when
    another reader moved it. Close it (or use ``with``) promptly: it pins memtables and files.
    """

    def __init__(self, db: Rdict) -> None:
        self._it: Any = db.iter()
        self._owner: object | None = None  # the scan that positioned the iterator last
        self._lock = threading.Lock()

    def _live(self) -> Any:
        it = self._it
        if it is None:
            raise StoreClosedError("snapshot view is closed")
        return it

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            it = self._live()
            self._owner = None
            it.seek(key)
            if it.valid():
                if it.key() == key:
                    value: bytes = it.value()
                    return value
                return None
            it.status()
            return None

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with ``start <= key < stop`` as of the snapshot (descending when ``reverse``)."""
        self._live()
        if start >= stop:
            return iter(())
        return _SnapshotScan(self, start, stop, reverse)

    def close(self) -> None:
        """Release the snapshot (drops the iterator, unpinning what it held)."""
        self._it = None

    _abort = close

    def __enter__(self) -> RocksSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SnapshotScan:
    """One scan over a RocksSnapshot's shared iterator (re-seeks after another reader)."""

    __slots__ = ("_done", "_last", "_reverse", "_start", "_stop", "_view")

    def __init__(self, view: RocksSnapshot, start: bytes, stop: bytes, reverse: bool) -> None:
        self._view = view
        self._start = start
        self._stop = stop
        self._reverse = reverse
        self._last: bytes | None = None
        self._done = False

    def __iter__(self) -> _SnapshotScan:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        if self._done:
            raise StopIteration
        view = self._view
        with view._lock:
            it = view._live()
            if view._owner is self:
                if self._reverse:
                    it.prev()
                else:
                    it.next()
            else:
                self._position(it)
                view._owner = self
            if it.valid():
                key: bytes = it.key()
                if self._start <= key < self._stop:
                    self._last = key
                    value: bytes = it.value()
                    return key, value
            else:
                it.status()
            self._done = True
            raise StopIteration

    def _position(self, it: Any) -> None:
        """Put the iterator on the next key to yield (first call, or after another reader)."""
        last = self._last
        if self._reverse:
            target = self._stop if last is None else last
            it.seek_for_prev(target)
            if it.valid() and it.key() >= target:
                it.prev()
        elif last is None:
            it.seek(self._start)
        else:
            it.seek(last)
            if it.valid() and it.key() == last:
                it.next()


class RocksStore:
    """A ViewStore on one RocksDB directory (default column family, raw bytes).

    ``scan`` reads a snapshot taken when it is called; ``commit`` is one WriteBatch. Closing the
    store also ends its open scans and snapshot views, which would otherwise keep RocksDB
    (and the directory's LOCK) alive after ``close``.
    """

    def __init__(self, path: StrPath, *, memory_mb: int = 64) -> None:
        """``memory_mb`` bounds the memtable and the block cache (each), so the store's
        memory does not grow with its data."""
        self._path = os.fspath(path)
        try:
            self._db: Rdict | None = Rdict(self._path, _options(memory_mb))
        except Exception as error:
            if _is_lock_error(error):
                raise _locked(self._path, error) from error
            raise
        self._write_opts = WriteOptions()
        self._write_opts.sync = False  # the log is the source of truth (module docstring)
        self._readers: weakref.WeakSet[_Scan | _BulkScan | RocksSnapshot] = weakref.WeakSet()

    @property
    def path(self) -> str:
        return self._path

    def _live(self) -> Rdict:
        db = self._db
        if db is None:
            raise StoreClosedError(f"store {self._path!r} is closed")
        return db

    def get(self, key: bytes) -> bytes | None:
        db = self._db  # ``_live`` inlined: the fold makes several gets per command
        if db is None:
            raise StoreClosedError(f"store {self._path!r} is closed")
        value: bytes | None = db.get(key)
        return value

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with ``start <= key < stop`` in key order, as of this call."""
        db = self._live()
        if start >= stop:
            return iter(())
        scan = _Scan(db, start, stop, reverse)
        self._readers.add(scan)
        return scan

    def bulk_scan(self, start: bytes, stop: bytes) -> Iterable[tuple[bytes, bytes]]:
        """``scan`` for reading a whole range once, as of this call (``_BulkScan``)."""
        db = self._live()
        if start >= stop:
            return ()
        scan = _BulkScan(db, start, stop)
        self._readers.add(scan)
        return scan

    def commit(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Validate every change, then write them as ONE WriteBatch (all or nothing)."""
        db = self._live()
        ranges = ranges_of(changes)
        if not changes and not ranges:
            return
        # Validated while the batch is built, not in a pass of its own (the runner commits
        # every slice): rocksdict refuses anything but bytes in raw mode, and nothing is
        # written before ``db.write``, so a bad change still rejects the whole batch, with
        # the TypeError every store raises (``check_changes``).
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        try:
            for start, stop in ranges:  # first: a later put inside the range must survive it
                if start < stop:
                    batch.delete_range(start, stop)
            for key, value in changes.items():
                if value is None:
                    delete(key)
                else:
                    put(key, value)
        except Exception:
            check_changes(changes)
            raise
        db.write(batch, self._write_opts)

    def snapshot_view(self) -> RocksSnapshot:
        """A View of the store as of now; later commits stay invisible to it."""
        view = RocksSnapshot(self._live())
        self._readers.add(view)
        return view

    def checkpoint(self, dest: StrPath) -> None:
        """A consistent copy of the store at ``dest`` (hard links where possible)."""
        dest = os.fspath(dest)
        if os.path.lexists(dest):
            raise FileExistsError(f"checkpoint destination {dest!r} already exists")
        Checkpoint(self._live()).create_checkpoint(dest)

    def int_property(self, name: str) -> int | None:
        """A RocksDB integer property (``rocksdb.cur-size-all-mem-tables``...): memory probes."""
        value = self._live().property_int_value(name)
        return None if value is None else int(value)

    def flush(self) -> None:
        """Write the memtable to disk (a cheap way to exercise SST reads in tests)."""
        self._live().flush()

    def close(self) -> None:
        """End open scans and snapshot views, then close RocksDB. Idempotent."""
        db = self._db
        if db is None:
            return
        for reader in list(self._readers):
            reader._abort()
        self._readers = weakref.WeakSet()
        self._db = None
        db.close()

    @staticmethod
    def destroy(path: StrPath) -> None:
        """Delete a (closed) store's files and directory; StoreLockedError if it is open."""
        path = os.fspath(path)
        try:
            Rdict.destroy(path, _options(8))
        except Exception as error:
            if _is_lock_error(error):
                raise _locked(path, error) from error
            raise

    def __enter__(self) -> RocksStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
