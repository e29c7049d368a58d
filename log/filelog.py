"""FileLog: the embedded default log — partitioned segment files with group-commit fsync.

Layout under the log directory::

    meta.json                 {"format": 1, "log_id": ..., "partitions": N}
    LOCK                      flock'ed by the one process that may write
    p0000/START               {"start_offset": N}, once retention has removed anything
    p0000/00000000000000000000.seg   records (file name = offset of its first record)
    p0000/00000000000000000000.idx   its sparse offset index (log/segindex.py)
    p0000/00000000000000012345.seg

Durability: an append writes its frames to the page cache and waits for the next commit round;
a round fsyncs every file written since the previous round (one ``syncfs`` when many partitions
are dirty, else ``fdatasync`` per file) and only then makes the records visible and resolves the
waiting appends. A round starts as soon as the previous one ends (after one loop turn, so what
was ready runs first: ``ROUND_TURNS``), so one fsync covers every append that arrived meanwhile
(group commit). A round runs in the commit thread, or on the
event loop itself while rounds are quick (``INLINE_ROUND_S``).

Zeros ahead: the writer keeps the active segment's file written with zeros (and synced) some
way past its last record (``preallocate_bytes``), so a commit round overwrites blocks the file
already has. A synced write that grows a file must commit the file system's journal (its size
and new blocks), one that overwrites need not: on this machine's ext4 under load the round's
O_DSYNC write took 281 µs at the median against 162 µs into zeros (issue 15). A segment is cut
back to its records before it seals and at a clean stop; after a crash the zeros past the last
record are a tail no frame parses (a zeroed header fails its checksum), cut like a torn one.

Open in bounded time and memory: a segment is sealed (fsynced, closed) before the next one
starts, and its ``.idx`` is written and fsynced then; a clean stop writes the active segment's
``.idx`` too — the recovery point. Opening trusts an index whose checksum holds and that agrees
with its segment, and scans only the bytes no index covers: nothing after a clean stop, the
active segment's tail after a crash. A missing, torn or disagreeing index is rebuilt by a scan,
never trusted. Memory is per segment (an index of one entry per 4 KiB for the active segment and
for a few recently read sealed ones), not per record. Sealed segments are not re-checked at open;
a damaged record in one is found (LogCorruptError) when it is read.

Recovery: a bad frame in the scanned tail of the last segment is a torn tail and is truncated
away (it was never acknowledged, because acknowledged frames were fsynced); a bad frame in a
scanned sealed segment is corruption and the log refuses to open.

Write errors (disk full, EIO) are transient: the failed round fails its appends and those
queued behind them, the partitions are rolled back to their durable end in memory, and the next
round first truncates what the failed round may have half-written (and removes segments it
started), so the files stay a valid log. While writes fail, ``health()`` says so; a probe retries
every second so health recovers when the disk does, even with no client writing.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import ctypes
import ctypes.util
import fcntl
import gzip
import json
import logging
import os
import shutil
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self

from log import segindex
from log.framing import frame, read_frames, scan_sparse
from log.segindex import DEFAULT_INTERVAL, SparseIndex, index_path
from log.types import (
    LogCorruptError,
    LogError,
    LogHealth,
    LogLockedError,
    LogMismatchError,
    OffsetBelowStartError,
    Record,
    Retention,
    UnknownPartitionError,
    checked_records,
)

logger = logging.getLogger(__name__)

FORMAT = 1
SEGMENT_SUFFIX = ".seg"
START_FILE = "START"
PROBE_FILE = ".write-probe"
MAX_READ_BYTES = 8 * 1024 * 1024
MAX_SEGMENT_BYTES = 1 << 30  # index positions are 32-bit; keep well below
LOADED_INDEXES = 8  # sealed segments whose index stays in memory after a read
RECENT_BYTES = 512 * 1024
"""Bytes of its newest durable records a partition keeps in memory, so the runner folds what
a commit round just made durable without reading it back from disk (it reads a round right
after it is published). Reads further back go to the segment files."""
PROBE_INTERVAL_S = 1.0
INLINE_ROUND_S = 0.002
"""While a round's write and sync take less than this (a moving average of the recent ones,
``FileLog._round_s``), rounds run on the event loop, not in the commit thread. Handing a
round over costs two cross-thread wake-ups and a GIL hand-back, which on a fast disk is
more of the loop's CPU than the sync blocks it for (the core of ``serve --workers 2``: about
a sixth of its CPU per single-message POST). On a slower disk, and while writes fail, the
thread takes the rounds again, so reads and new appends go on during each fsync."""
ROUND_TURNS = 1
"""Loop turns a commit round waits for once woken by an append: what was ready by then
runs first. An inline round blocks the loop for its write and sync, so the answers of the
round just published and the appends of frames already read would otherwise wait behind the
next round's sync; this way those appends join the round and the answers leave before it.
``marconi bench compare --before`` (3 alternating rounds, ``serve --workers 2``): POST 10
messages/s +14 %, claim+delete +7 %, single POST +3 %. Single POSTs at 16 connections go
7.3-7.5 to a round instead of 5.4-5.7, so there are a quarter fewer syncs. It costs one loop
turn of latency."""
PREALLOCATE_BYTES = 1024 * 1024
"""How far past its last record the writer keeps the active segment zeroed (the default of
``FileLog(preallocate_bytes=...)``): one zero write and fdatasync of about 2 ms per MiB of log,
instead of a journal commit in every commit round. A young segment steps by its own size (at
least ``PREALLOCATE_MIN``), so a small log stays small; never past ``segment_bytes``."""
PREALLOCATE_MIN = 64 * 1024
ROUND_WEIGHT = 0.2  # of the newest round in ``_round_s``
SyncStrategy = Literal["auto", "fdatasync", "syncfs"]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_start(path: Path) -> int:
    """The persisted log start of a partition directory (0 if retention never ran)."""
    try:
        return int(json.loads((path / START_FILE).read_text())["start_offset"])
    except FileNotFoundError:
        return 0
    except (ValueError, KeyError, TypeError) as exc:
        raise LogCorruptError(f"{path / START_FILE} is damaged: {exc}") from exc


def _write_start(path: Path, start: int) -> None:
    """Persist a partition's log start atomically (written before segments are removed)."""
    tmp = path / (START_FILE + ".tmp")
    with open(tmp, "w") as fh:
        json.dump({"start_offset": start}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path / START_FILE)
    _fsync_dir(path)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _archive_segments(archive: Path, partition: int, paths: list[Path]) -> None:
    """Gzip each segment into ``archive/pNNNN/`` (fsynced) before the log deletes it."""
    target = archive / f"p{partition:04d}"
    target.mkdir(parents=True, exist_ok=True)
    for path in paths:
        dest = target / (path.name + ".gz")
        tmp = dest.with_suffix(".tmp")
        with open(path, "rb") as src, open(tmp, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
                shutil.copyfileobj(src, gz, 1024 * 1024)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dest)
    _fsync_dir(target)


def _delete_segments(directory: Path, paths: list[Path]) -> None:
    for path in paths:
        for victim in (path, index_path(path)):
            with contextlib.suppress(FileNotFoundError):
                victim.unlink()
    _fsync_dir(directory)


def _contiguous(chunks: list[tuple[_Segment, int, bytes]]) -> list[tuple[_Segment, int, bytes]]:
    """The chunks of a round with each run that continues the previous one in the same
    segment joined: one ``pwrite`` per run, not per append. The writer thread takes the GIL
    back after every write, and while the event loop is busy each take can wait for the
    switch interval, so a round of many small appends paid that wait once per append."""
    runs: list[tuple[_Segment, int, list[bytes]]] = []
    end = -1
    for seg, pos, data in chunks:
        if runs and runs[-1][0] is seg and pos == end:
            runs[-1][2].append(data)
        else:
            runs.append((seg, pos, [data]))
        end = pos + len(data)
    return [(seg, pos, parts[0] if len(parts) == 1 else b"".join(parts))
            for seg, pos, parts in runs]


def _set_exception(fut: asyncio.Future[None], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _close_writer(seg: _Segment) -> None:
    """Close a segment's write descriptors (writer thread)."""
    for attr in ("write_fd", "sync_fd"):
        fd = getattr(seg, attr)
        if fd >= 0:
            os.close(fd)
            setattr(seg, attr, -1)


def _cut_zeros(seg: _Segment) -> None:
    """Cut the zeros written ahead of ``seg``'s records (writer thread; the caller syncs)."""
    if seg.zeroed > seg.size:
        os.ftruncate(seg.write_fd, seg.size)
    seg.zeroed = seg.size


def _zeros_only(path: Path, start: int, end: int) -> bool:
    """Whether bytes ``[start, end)`` of ``path`` are all zero (read a MiB at a time)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        while start < end:
            chunk = fh.read(min(end - start, 1 << 20))
            if not chunk or chunk.count(0) != len(chunk):
                return False
            start += len(chunk)
    return True


def _segment_name(base: int) -> str:
    return f"{base:020d}{SEGMENT_SUFFIX}"


def _syncfs_or_raise(fd: int) -> None:
    if _syncfs(fd) != 0:  # type: ignore[misc]
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass
class OpenStats:
    """The work one ``start()`` did: what a bounded open is measured by (tests count it)."""

    bytes_scanned: int = 0
    records_scanned: int = 0
    indexes_trusted: int = 0
    indexes_rebuilt: int = 0  # missing, torn or disagreeing, so rebuilt by a scan


@dataclass(eq=False)
class _Segment:
    base: int
    path: Path
    count: int = 0  # records assigned, including frames not yet written
    size: int = 0  # bytes assigned, including frames not yet written
    index: SparseIndex | None = None  # None: on disk only (a sealed segment not read lately)
    indexed: bool = False  # its .idx on disk covers all of it (sealed and written)
    stale_index: bool = False  # an .idx on disk that a rollback made wrong: delete it
    on_disk: bool = True  # False until the writer creates the file
    read_fd: int = -1
    write_fd: int = -1  # used only by the writer (the commit thread)
    sync_fd: int = -1  # the same file opened O_DSYNC (writer only): a write that syncs itself
    zeroed: int = 0  # bytes of the file on disk: its records, then zeros written ahead (writer)
    first_ms: int = 0  # append time (log clock, ms) of its oldest record
    last_ms: int = 0  # ... and of its newest: retention's test


@dataclass
class _Partition:
    number: int
    path: Path
    segments: list[_Segment]
    bases: list[int]
    written_end: int
    durable_end: int
    durable_size: int  # byte length of the durable records in the segment holding durable_end
    chunks: list[tuple[_Segment, int, bytes]] = field(default_factory=list)
    open_segment: _Segment | None = None  # the one segment the writer holds open
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    removed: list[_Segment] = field(default_factory=list)  # rolled back; files to delete
    hint: tuple[int, _Segment, int] | None = None  # (next offset, segment, its position)
    fresh: list[bytes] = field(default_factory=list)  # values past durable_end, in order
    recent: list[bytes] = field(default_factory=list)  # the newest durable values...
    recent_base: int = 0  # ... from this offset up to durable_end
    recent_bytes: int = 0

    @property
    def active(self) -> _Segment:
        return self.segments[-1]

    @property
    def start(self) -> int:
        return self.segments[0].base


class FileLog:
    """The embedded log. See the module docstring for layout, durability and recovery."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        partitions: int | None = None,
        *,
        segment_bytes: int = 64 * 1024 * 1024,
        max_record_bytes: int = 4 * 1024 * 1024,
        durable: bool = True,
        read_only: bool = False,
        sync_strategy: SyncStrategy = "auto",
        archive_dir: str | os.PathLike[str] | None = None,
        clock: Callable[[], int] | None = None,
        index_interval: int = DEFAULT_INTERVAL,
        preallocate_bytes: int = PREALLOCATE_BYTES,
    ) -> None:
        if not 0 < segment_bytes <= MAX_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be in 1..{MAX_SEGMENT_BYTES}")
        if preallocate_bytes < 0:
            raise ValueError("preallocate_bytes must be >= 0 (0: no zeros ahead)")
        self._dir = Path(directory)
        self._requested_partitions = partitions
        self._segment_bytes = segment_bytes
        self._max_record_bytes = max_record_bytes
        self._durable = durable
        self._read_only = read_only
        self._sync_strategy = sync_strategy
        self._archive_dir = None if archive_dir is None else Path(archive_dir)
        self._clock = clock or _wall_ms
        self._interval = index_interval
        self._preallocate = preallocate_bytes if durable else 0  # unsynced: nothing to gain
        self._parts: list[_Partition] = []
        self._log_id = ""
        self._lock_fd = -1
        self._executor: ThreadPoolExecutor | None = None
        self._fsync_pool: ThreadPoolExecutor | None = None
        self._maintenance: ThreadPoolExecutor | None = None
        self._pending: dict[int, int] = {}  # partition -> written end to publish after sync
        self._next_round: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._round_s = float("inf")  # recent rounds' write+sync time (unknown: the thread)
        self.rounds = 0  # commit rounds run (each one write and sync of what was appended)
        self.inline_rounds = 0  # rounds run on the event loop (``INLINE_ROUND_S``)
        self._repairs: set[int] = set()  # partitions rolled back: truncate before writing
        self._health = LogHealth(True)
        self._loaded: OrderedDict[int, _Segment] = OrderedDict()  # sealed indexes in memory
        self._started = False
        self.open_stats = OpenStats()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def partitions(self) -> int:
        return len(self._parts)

    @property
    def log_id(self) -> str:
        return self._log_id

    @property
    def directory(self) -> Path:
        return self._dir

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._started:
            return
        self.open_stats = OpenStats()
        if self._read_only:
            self._open_read_only()
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            meta = self._load_or_create_meta()
            self._log_id = meta["log_id"]
            self._parts = [self._open_partition(n) for n in range(meta["partitions"])]
        except BaseException:
            self._close_files()
            self._release_lock()
            raise
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="filelog-commit")
        self._fsync_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="filelog-fsync")
        self._wake = asyncio.Event()
        self._health = LogHealth(True)
        self._repairs = set()
        self._committer = asyncio.get_running_loop().create_task(self._commit_loop())
        self._started = True

    def _open_read_only(self) -> None:
        """A reader beside a live writer (audit, digest of a copy): no lock, no repair.

        It sees the records whose frames were complete on disk when it opened; appends are
        refused. A record a crash of the writer would still truncate can be among them.
        """
        if not (self._dir / "meta.json").exists():
            raise LogMismatchError(f"no log at {self._dir}")
        meta = self._load_or_create_meta()
        self._log_id = meta["log_id"]
        self._parts = [self._open_partition(n) for n in range(meta["partitions"])]
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self._committer is not None:
            # Let the last round finish so every acknowledged append stays acknowledged.
            while self._next_round is not None:
                self._wake.set()
                await asyncio.sleep(0.001)
                if self._committer.done():
                    break
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        for part in self._parts:
            for fut in part.waiters:
                if not fut.done():
                    fut.set_result(None)
        if not self._read_only and self._executor is not None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self._write_recovery_point)
            except OSError as exc:  # the next open scans the active segments instead
                logger.warning("could not write the recovery point: %r", exc)
        for pool in (self._executor, self._fsync_pool, self._maintenance):
            if pool is not None:
                pool.shutdown(wait=True)
        self._close_files()
        self._release_lock()

    def _write_recovery_point(self) -> None:
        """Clean stop (writer thread): repair what a failed round left, fsync each active
        segment and write its index, so the next open trusts every index and scans nothing."""
        for p in sorted(self._repairs):
            self._repair(self._parts[p])
        self._repairs.clear()
        dirs = set()
        for part in self._parts:
            for seg in part.segments:
                if seg.indexed or seg.index is None or not seg.on_disk:
                    continue
                if seg.write_fd >= 0:
                    _cut_zeros(seg)
                    os.fdatasync(seg.write_fd)
                self._write_index(seg)
                dirs.add(part.path)
        for path in dirs:
            _fsync_dir(path)

    def _acquire_lock(self) -> None:
        path = self._dir / "LOCK"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LogLockedError(
                f"log directory {self._dir} is in use by another process (pid {holder}); "
                "only one process may open a FileLog for writing"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _load_or_create_meta(self) -> dict:
        path = self._dir / "meta.json"
        if path.exists():
            try:
                meta = json.loads(path.read_text())
            except ValueError as exc:
                raise LogCorruptError(f"{path} is not valid JSON: {exc}") from exc
            if meta.get("format") != FORMAT:
                raise LogMismatchError(f"{path}: unsupported log format {meta.get('format')!r}")
            wanted = self._requested_partitions
            if wanted is not None and wanted != meta["partitions"]:
                raise LogMismatchError(
                    f"log {self._dir} has {meta['partitions']} partitions, not {wanted}; "
                    "the partition count of a log never changes"
                )
            return meta
        if self._requested_partitions is None or self._requested_partitions <= 0:
            raise LogMismatchError(f"no log at {self._dir}: give a positive partition count")
        meta = {"format": FORMAT, "log_id": uuid.uuid4().hex,
                "partitions": self._requested_partitions}
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(meta, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(self._dir)
        return meta

    def _open_partition(self, number: int) -> _Partition:
        path = self._dir / f"p{number:04d}"
        if not self._read_only:
            created = not path.exists()
            path.mkdir(exist_ok=True)
            if created:
                _fsync_dir(self._dir)
        names = sorted(p for p in path.glob(f"*{SEGMENT_SUFFIX}"))
        start = _read_start(path)
        # A crash between persisting a new start and deleting the segments below it: finish.
        while len(names) > 1 and int(names[1].stem) <= start:
            if not self._read_only:
                _delete_segments(path, [names[0]])
            names.pop(0)
        segments: list[_Segment] = []
        expected_base = start
        wrote_index = False
        for i, seg_path in enumerate(names):
            base = int(seg_path.stem)
            if base != expected_base:
                raise LogCorruptError(
                    f"{seg_path}: starts at offset {base}, expected {expected_base} "
                    "(missing segment?)"
                )
            segment, rebuilt = self._open_segment(seg_path, base, last=i == len(names) - 1)
            wrote_index |= rebuilt
            segments.append(segment)
            expected_base = base + segment.count
        if wrote_index:
            _fsync_dir(path)
        if not segments:
            segments.append(_Segment(base=start, path=path / _segment_name(start),
                                     index=SparseIndex(self._interval), on_disk=False))
        active = segments[-1]
        end = active.base + active.count
        return _Partition(
            number=number, path=path, segments=segments, bases=[s.base for s in segments],
            written_end=end, durable_end=end, durable_size=active.size,
        )

    def _open_segment(self, seg_path: Path, base: int, *, last: bool) -> tuple[_Segment, bool]:
        """One segment's state, from its index where that can be trusted, else by a scan.

        Returns the segment and whether an index file was (re)written.
        """
        stats = self.open_stats
        size = os.stat(seg_path).st_size
        segment = _Segment(base=base, path=seg_path)
        try:
            found = segindex.read(index_path(seg_path), self._interval)
        except ValueError as exc:
            logger.warning("%s: index cannot be trusted (%s); rebuilding it",
                           index_path(seg_path), exc)
            found = None
        if found is not None and (found.base != base or found.size > size
                                  or (not last and found.size != size)):
            logger.warning("%s: index covers %d bytes of a %d-byte segment; rebuilding it",
                           index_path(seg_path), found.size, size)
            found = None
        if found is not None:
            stats.indexes_trusted += 1
            index, covered, count = found.index, found.size, found.count
            segment.first_ms, segment.last_ms = found.first_ms, found.last_ms
        else:
            index, covered, count = SparseIndex(self._interval), 0, 0
            if size and not (last and self._read_only):
                stats.indexes_rebuilt += 1
        valid = covered
        if covered < size:  # bytes no index covers: the tail after a crash, or a rebuild
            with open(seg_path, "rb") as fh:
                valid, scanned = scan_sparse(fh, covered, count, index.add)
            count += scanned
            stats.bytes_scanned += size - covered
            stats.records_scanned += scanned
            mtime_ms = int(os.stat(seg_path).st_mtime * 1000)
            segment.last_ms = max(segment.last_ms, mtime_ms)
            if not segment.first_ms:
                segment.first_ms = mtime_ms
        if valid != size and not self._read_only:
            if not last:
                raise LogCorruptError(
                    f"{seg_path}: damaged record at byte {valid} in a sealed segment"
                )
            if _zeros_only(seg_path, valid, size):  # written ahead (``_zero_ahead``)
                logger.info("cutting the %d zero bytes written ahead of the records of %s",
                            size - valid, seg_path)
            else:
                logger.warning(
                    "truncating torn tail of %s at byte %d (%d bytes dropped)",
                    seg_path, valid, size - valid,
                )
            with open(seg_path, "r+b") as fh:
                fh.truncate(valid)
                fh.flush()
                os.fsync(fh.fileno())
        segment.count, segment.size, segment.index = count, valid, index
        segment.zeroed = valid
        rebuilt = False
        if not last:
            segment.indexed = found is not None
            if found is None and not self._read_only:
                self._write_index(segment)
                rebuilt = True
            if segment.indexed:
                self._remember(segment)
        return segment, rebuilt

    def _write_index(self, seg: _Segment) -> None:
        """Write and fsync ``seg``'s index file (the caller fsyncs the directory)."""
        assert seg.index is not None
        data = segindex.encode(seg.base, seg.count, seg.size, seg.first_ms, seg.last_ms,
                               seg.index)
        segindex.write(index_path(seg.path), data)
        seg.indexed = True
        seg.stale_index = False

    def _close_files(self) -> None:
        for part in self._parts:
            for seg in [*part.segments, *part.removed]:
                for attr in ("read_fd", "write_fd", "sync_fd"):
                    fd = getattr(seg, attr)
                    if fd >= 0:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                        setattr(seg, attr, -1)
        self._parts = []
        self._loaded.clear()

    # -- writing ---------------------------------------------------------------------------

    def _partition(self, partition: int) -> _Partition:
        if not self._started:
            raise LogError("log is not started")
        if not 0 <= partition < len(self._parts):
            raise UnknownPartitionError(
                f"partition {partition} does not exist (log has {len(self._parts)})"
            )
        return self._parts[partition]

    async def append(self, partition: int, records: Sequence[bytes]) -> list[int]:
        part = self._partition(partition)
        if self._read_only:
            raise LogError(f"log {self._dir} is open read-only")
        if not records:
            return []
        values = checked_records(records, self._max_record_bytes)
        frames = [frame(rec) for rec in values]
        data = b"".join(frames)
        seg = part.active
        if seg.size > 0 and seg.size + len(data) > self._segment_bytes:
            base = part.written_end
            seg = _Segment(base=base, path=part.path / _segment_name(base),
                           index=SparseIndex(self._interval), on_disk=False)
            part.segments.append(seg)
            part.bases.append(base)
        index = seg.index
        assert index is not None  # the active segment's index is always in memory
        start = pos = seg.size
        relative = seg.count
        for fr in frames:
            index.add(relative, pos)
            relative += 1
            pos += len(fr)
        now = self._clock()
        if seg.count == 0:
            seg.first_ms = now
        seg.last_ms = max(seg.last_ms, now)
        seg.size = pos
        seg.count = relative
        first = part.written_end
        part.written_end += len(frames)
        part.chunks.append((seg, start, data))
        part.fresh.extend(values)
        offsets = list(range(first, part.written_end))
        if not self._durable:
            chunks, part.chunks = part.chunks, []
            try:
                self._write(part, chunks)
            except OSError as exc:
                self._rollback(part)
                self._repairs.add(part.number)
                raise LogError(f"log write failed: {exc!r}") from exc
            self._publish(part, part.written_end, chunks)
            return offsets
        self._pending[partition] = part.written_end
        round_done = self._next_round
        if round_done is None:
            # One future per commit round, shared by every append that round covers.
            round_done = self._next_round = asyncio.get_running_loop().create_future()
            self._wake.set()
        await asyncio.shield(round_done)  # a cancelled caller must not cancel the round
        return offsets

    async def _commit_loop(self) -> None:
        """Group commit: write and fsync everything appended since the last round, then ack.

        A failed round fails its appends and every append queued behind it (their offsets
        follow the failed ones), rolls the partitions back and leaves the repair to the next
        round; while the log is unhealthy a probe round runs every second without appends.
        """
        loop = asyncio.get_running_loop()
        while True:
            if self._health.ok:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), PROBE_INTERVAL_S)
            for _ in range(ROUND_TURNS):  # what was ready runs first
                await asyncio.sleep(0)
            self._wake.clear()
            round_done, self._next_round = self._next_round, None
            if round_done is None and self._health.ok:
                continue
            pending, self._pending = self._pending, {}
            work = []
            for p in pending:
                part = self._parts[p]
                chunks, part.chunks = part.chunks, []
                work.append((part, chunks))
            repairs = sorted(self._repairs)
            self.rounds += 1
            finished: asyncio.Future[None] = loop.create_future()
            if self._health.ok and self._round_s < INLINE_ROUND_S:
                self.inline_rounds += 1
                self._run_round_inline(finished, work, pending, repairs, round_done)
            else:
                assert self._executor is not None
                self._executor.submit(self._run_round, loop, finished, work, pending,
                                      repairs, round_done)
            try:
                await finished
            except BaseException as exc:  # nothing of this round is acknowledged
                if (isinstance(exc, asyncio.CancelledError) and finished.done()
                        and not finished.cancelled() and finished.exception() is None):
                    raise  # stopped just after the round was published: it stands
                failed = self._fail_round(exc, work, round_done)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                # Put the files back to the durable state now (it frees what the round
                # half-wrote); if that fails too, the next round tries again first.
                repairs = sorted(self._repairs)
                try:
                    await loop.run_in_executor(self._executor, self._repair_all, repairs)
                except OSError as again:
                    logger.warning("repair after a failed round failed too: %r", again)
                else:
                    self._repairs.difference_update(repairs)
                for fut in failed:
                    if not fut.done():
                        fut.set_exception(LogError(f"log write or fsync failed: {exc!r}"))
                        fut.exception()  # retrieved: a round nobody awaits is no leak
                continue

    def _run_round(self, loop: asyncio.AbstractEventLoop, finished: asyncio.Future[None],
                   work: list[tuple[_Partition, list]], pending: dict[int, int],
                   repairs: list[int], round_done: asyncio.Future[None] | None) -> None:
        """A round in the commit thread; the loop then publishes it in the callback the
        thread schedules, not in the commit task woken by it: the acknowledgements and the
        runner's wake-up come one loop turn sooner."""
        try:
            self._timed_write_and_sync(work, repairs, round_done is None)
        except BaseException as exc:
            loop.call_soon_threadsafe(_set_exception, finished, exc)
        else:
            loop.call_soon_threadsafe(self._round_written, finished, work, pending, repairs,
                                      round_done)

    def _run_round_inline(self, finished: asyncio.Future[None],
                          work: list[tuple[_Partition, list]], pending: dict[int, int],
                          repairs: list[int], round_done: asyncio.Future[None] | None) -> None:
        """A round on the event loop (``INLINE_ROUND_S``): it ends as the thread's does."""
        try:
            self._timed_write_and_sync(work, repairs, round_done is None)
        except Exception as exc:
            finished.set_exception(exc)
        else:
            self._round_written(finished, work, pending, repairs, round_done)

    def _timed_write_and_sync(self, work: list[tuple[_Partition, list]], repairs: list[int],
                              probe: bool) -> None:
        """``_write_and_sync``, its time kept in ``_round_s``. Rounds run one at a time, so
        the mark of a failed round (slow: the thread takes the next ones) can be set first."""
        recent, self._round_s = self._round_s, float("inf")
        began = time.monotonic()
        self._write_and_sync(work, repairs, probe)
        took = time.monotonic() - began
        self._round_s = took if recent == float("inf") else recent + ROUND_WEIGHT * (took - recent)

    def _round_written(self, finished: asyncio.Future[None],
                       work: list[tuple[_Partition, list]], pending: dict[int, int],
                       repairs: list[int], round_done: asyncio.Future[None] | None) -> None:
        """Publish a durable round (event loop), then let the commit task go on."""
        if finished.done():  # the commit task was cancelled meanwhile and failed the round
            return
        self._repairs.difference_update(repairs)
        for part, chunks in work:
            self._publish(part, pending[part.number], chunks)
        if not self._health.ok:
            logger.warning("log writes succeed again (after %.1f s): %s",
                           time.time() - (self._health.since or time.time()),
                           self._health.error)
            self._health = LogHealth(True)
        if round_done is not None and not round_done.done():
            round_done.set_result(None)
        finished.set_result(None)

    def _fail_round(self, exc: BaseException, work: list[tuple[_Partition, list]],
                    round_done: asyncio.Future[None] | None) -> list[asyncio.Future[None]]:
        """Roll back every partition the failed round or the next one touched; returns the
        round futures to fail once the files are repaired."""
        if self._health.ok:
            logger.error("log write or fsync failed; failing this round's appends and "
                         "retrying: %r", exc)
            self._health = LogHealth(False, repr(exc), time.time())
        else:
            self._health = self._health._replace(error=repr(exc))
        # Appends that arrived during the failed round hold offsets after the failed ones.
        queued, self._next_round = self._next_round, None
        self._pending = {}
        touched = {part.number for part, _ in work}
        touched.update(p.number for p in self._parts if p.chunks)
        for p in touched:
            self._rollback(self._parts[p])
            self._repairs.add(p)
        return [fut for fut in (round_done, queued) if fut is not None]

    def _repair_all(self, partitions: list[int]) -> None:
        for p in partitions:
            self._repair(self._parts[p])

    def _rollback(self, part: _Partition) -> None:
        """Forget every record past the durable end (event loop; the writer is idle)."""
        end = part.durable_end
        part.chunks = []
        part.fresh = []
        part.written_end = end
        part.hint = None
        keep = bisect.bisect_right(part.bases, end) - 1
        part.removed.extend(part.segments[keep + 1:])
        del part.segments[keep + 1:]
        del part.bases[keep + 1:]
        seg = part.segments[keep]
        seg.count = end - seg.base
        seg.size = part.durable_size if seg.count else 0
        part.durable_size = seg.size
        if seg.index is not None:
            seg.index.truncate(seg.count)
        if seg.indexed:
            seg.indexed = False
            seg.stale_index = True
        self._loaded.pop(id(seg), None)

    def _repair(self, part: _Partition) -> None:
        """Make the files match a rolled-back partition (writer thread): delete segments the
        failed round started, truncate the half-written tail, fsync."""
        for seg in part.removed:
            _close_writer(seg)
            if seg.read_fd >= 0:
                os.close(seg.read_fd)
                seg.read_fd = -1
        if part.removed:
            _delete_segments(part.path, [s.path for s in part.removed if s.on_disk])
            part.removed = []
        seg = part.active
        if part.open_segment is not None and part.open_segment is not seg:
            _close_writer(part.open_segment)
            part.open_segment = None
        for sealed in part.segments[:-1]:  # sealed, but the failed round wrote no index
            if not sealed.indexed and sealed.index is not None and sealed.on_disk:
                self._write_index(sealed)
                _fsync_dir(part.path)
        if seg.stale_index:
            with contextlib.suppress(FileNotFoundError):
                index_path(seg.path).unlink()
            _fsync_dir(part.path)
            seg.stale_index = False
        if seg.on_disk:
            fd = seg.write_fd if seg.write_fd >= 0 else os.open(seg.path, os.O_WRONLY)
            try:
                os.ftruncate(fd, seg.size)
                os.fdatasync(fd)
                seg.zeroed = seg.size
            finally:
                if fd != seg.write_fd:
                    os.close(fd)

    def _probe(self) -> None:
        """Can the disk take writes again? Write, sync and remove a small file."""
        path = self._dir / PROBE_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"\0" * 65536)
            os.fdatasync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()

    def _write(self, part: _Partition, chunks: list[tuple[_Segment, int, bytes]], *,
               dsync: bool = False) -> None:
        """Write a partition's chunks at their assigned positions (writer thread only);
        ``dsync``: through the segment's O_DSYNC descriptor, so each write returns durable.

        Moving on to a new segment first fsyncs and closes the previous one and writes its
        index, so a sealed segment is always complete on disk with its index, and only the
        last segment can have a torn tail.
        """
        for seg, pos, data in _contiguous(chunks):
            if seg is not part.open_segment:
                old = part.open_segment
                if old is not None:
                    _cut_zeros(old)  # a sealed segment is exactly its records
                    os.fdatasync(old.write_fd)
                    _close_writer(old)
                    part.open_segment = None
                    if old.base < seg.base and not old.indexed:
                        self._write_index(old)
                        _fsync_dir(part.path)
                flags = os.O_WRONLY if seg.on_disk else os.O_WRONLY | os.O_CREAT
                seg.write_fd = os.open(seg.path, flags, 0o644)
                if not seg.on_disk:
                    seg.on_disk = True
                    os.fsync(seg.write_fd)
                    _fsync_dir(part.path)
                part.open_segment = seg
            fd = seg.write_fd
            if pos + len(data) > seg.zeroed and self._preallocate:
                self._zero_ahead(seg, pos, pos + len(data))
            if dsync:
                if seg.sync_fd < 0:
                    seg.sync_fd = os.open(seg.path, os.O_WRONLY | os.O_DSYNC)
                fd = seg.sync_fd
            view = memoryview(data)
            while view:
                written = os.pwrite(fd, view, pos)
                view = view[written:]
                pos += written

    def _zero_ahead(self, seg: _Segment, pos: int, end: int) -> None:
        """Before a write of ``[pos, end)`` past the zeroed part of ``seg``'s file: write
        zeros from there on (never over a record: ``pos`` is the end of the written ones) and
        fdatasync them, so this write and the next rounds' overwrite blocks the file has
        (``PREALLOCATE_BYTES``). A segment's last write, past ``segment_bytes``, just grows it.
        """
        step = min(self._preallocate, max(PREALLOCATE_MIN, pos))
        target = min(end + step, self._segment_bytes)
        if target <= end:
            return
        start = max(seg.zeroed, pos)
        written = os.pwrite(seg.write_fd, bytes(target - start), start)  # short: a full disk
        os.fdatasync(seg.write_fd)
        seg.zeroed = start + written

    def _write_and_sync(self, work: list[tuple[_Partition, list]], repairs: list[int],
                        probe: bool) -> None:
        self._repair_all(repairs)
        if probe:
            self._probe()
        # One partition (the common round): its writes sync themselves (O_DSYNC), so the
        # thread makes one system call, not a write and an fdatasync, and retakes the GIL
        # once. Under load every retake waits for the loop's switch interval, and every
        # acknowledgement of the round with it. Several partitions: write them all, then
        # sync them together (one syncfs or parallel fdatasyncs), as before.
        dsync = len(work) == 1 and self._sync_strategy != "syncfs"
        fds = []
        for part, chunks in work:
            self._write(part, chunks, dsync=dsync)
            if part.open_segment is not None:
                fds.append(part.open_segment.write_fd)
        if not fds or dsync:
            return
        strategy = self._sync_strategy
        if strategy == "auto":
            strategy = "syncfs" if len(fds) >= 3 and _syncfs is not None else "fdatasync"
        if strategy == "syncfs" and _syncfs is not None:
            _syncfs_or_raise(fds[0])
        elif len(fds) == 1:
            os.fdatasync(fds[0])
        else:
            assert self._fsync_pool is not None
            list(self._fsync_pool.map(os.fdatasync, fds))

    def _publish(self, part: _Partition, end: int,
                 chunks: list[tuple[_Segment, int, bytes]]) -> None:
        if chunks:
            _, pos, data = chunks[-1]
            part.durable_size = pos + len(data)
            if len(part.segments) > 1:  # evict the sealed index once it is on disk
                sealed = part.segments[-2]
                if sealed.indexed and sealed.index is not None and id(sealed) not in self._loaded:
                    self._remember(sealed)
        if end <= part.durable_end:
            return
        self._keep_recent(part, end)
        part.durable_end = end
        waiters, part.waiters = part.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    @staticmethod
    def _keep_recent(part: _Partition, end: int) -> None:
        """Move the values that become durable up to ``end`` into the partition's recent
        records, dropping the oldest past ``RECENT_BYTES`` (in bulk: a read never copies)."""
        count = end - part.durable_end
        durable = part.fresh[:count]
        del part.fresh[:count]
        if part.recent_base + len(part.recent) != part.durable_end:
            part.recent, part.recent_base, part.recent_bytes = [], part.durable_end, 0
        part.recent.extend(durable)
        part.recent_bytes += sum(map(len, durable))
        if part.recent_bytes > 2 * RECENT_BYTES:
            drop, kept = len(part.recent), 0  # keep at most the newest RECENT_BYTES
            while drop > 1 and kept + len(part.recent[drop - 1]) <= RECENT_BYTES:
                drop -= 1
                kept += len(part.recent[drop])
            del part.recent[:drop]
            part.recent_base += drop
            part.recent_bytes = kept

    # -- retention -------------------------------------------------------------------------

    async def start_offset(self, partition: int) -> int:
        return self._partition(partition).start

    def health(self) -> LogHealth:
        return self._health

    async def retain(self, partition: int, keep_from: int, older_than_ms: int) -> Retention:
        """Remove whole sealed segments from the head while each one ends at or below
        ``keep_from`` and its newest record was appended before ``older_than_ms``.

        Order on disk, so a crash at any point leaves a valid log: archive copies first
        (fsynced), then the new start is persisted, then the segment files are deleted (an
        open finishes a deletion a crash interrupted).
        """
        part = self._partition(partition)
        if self._read_only:
            raise LogError(f"log {self._dir} is open read-only")
        doomed: list[_Segment] = []
        for seg in part.segments[:-1]:
            if seg.base + seg.count > keep_from or seg.last_ms >= older_than_ms:
                break
            if seg is part.open_segment or seg.write_fd >= 0 or not seg.indexed:
                break  # still being sealed by the writer
            doomed.append(seg)
        if not doomed:
            return Retention(part.start)
        new_start = doomed[-1].base + doomed[-1].count
        loop = asyncio.get_running_loop()
        if self._maintenance is None:
            self._maintenance = ThreadPoolExecutor(max_workers=1,
                                                   thread_name_prefix="filelog-retain")
        archive = self._archive_dir
        if archive is not None:
            await loop.run_in_executor(self._maintenance, _archive_segments, archive,
                                       part.number, [s.path for s in doomed])
        await loop.run_in_executor(self._maintenance, _write_start, part.path, new_start)
        # Concurrent retain calls: another may have removed some of them meanwhile.
        gone = [s for s in doomed if s in part.segments]
        for seg in gone:
            i = part.segments.index(seg)
            del part.segments[i]
            del part.bases[i]
            self._loaded.pop(id(seg), None)
            if seg.read_fd >= 0:
                os.close(seg.read_fd)
                seg.read_fd = -1
        if part.hint is not None and part.hint[1] in doomed:
            part.hint = None
        removed_bytes = sum(s.size for s in doomed)
        await loop.run_in_executor(self._maintenance, _delete_segments, part.path,
                                   [s.path for s in doomed])
        logger.info("partition %d: retention removed %d segments (%d records, %d bytes); "
                    "log start now %d", partition, len(doomed), new_start - doomed[0].base,
                    removed_bytes, new_start)
        return Retention(new_start, new_start - doomed[0].base, removed_bytes, len(doomed),
                         archive is not None)

    async def log_bytes(self, partition: int) -> int:
        """Bytes of durable records the partition holds on disk (its retained segments)."""
        part = self._partition(partition)
        active = part.active
        tail = part.durable_size if part.durable_end > active.base else 0
        return sum(s.size for s in part.segments[:-1]) + tail

    # -- reading ---------------------------------------------------------------------------

    def _remember(self, seg: _Segment) -> None:
        """Keep a sealed segment's index in memory among the few most recently used."""
        self._loaded[id(seg)] = seg
        self._loaded.move_to_end(id(seg))
        while len(self._loaded) > LOADED_INDEXES:
            _, old = self._loaded.popitem(last=False)
            if old.indexed:
                old.index = None

    def _index_of(self, seg: _Segment) -> SparseIndex:
        index = seg.index
        if index is not None:
            if seg.indexed:
                self._remember(seg)
            return index
        try:
            found = segindex.read(index_path(seg.path), self._interval)
        except ValueError as exc:
            found = None
            logger.warning("%s: index cannot be trusted (%s); rescanning the segment",
                           index_path(seg.path), exc)
        if found is not None and (found.base, found.count, found.size) == (
                seg.base, seg.count, seg.size):
            index = found.index
        else:
            index = SparseIndex(self._interval)
            with open(seg.path, "rb") as fh:
                valid, count = scan_sparse(fh, 0, 0, index.add)
            if (valid, count) != (seg.size, seg.count):
                raise LogCorruptError(f"{seg.path}: damaged record at byte {valid}")
        seg.index = index
        self._remember(seg)
        return index

    async def end_offset(self, partition: int) -> int:
        return self._partition(partition).durable_end

    async def wait(self, partition: int, offset: int, timeout: float | None = None) -> int:
        part = self._partition(partition)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while part.durable_end <= offset and self._started:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            fut = loop.create_future()
            part.waiters.append(fut)
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel of the caller
            # that lands in the loop turn the future completes in (a runner's stop then hangs).
            try:
                async with asyncio.timeout(remaining):
                    await fut
            except TimeoutError:
                break
            finally:
                if fut.cancelled():  # timed out or cancelled: do not keep it to the next append
                    with contextlib.suppress(ValueError):
                        part.waiters.remove(fut)
        return part.durable_end

    async def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        part = self._partition(partition)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if max_records <= 0:
            raise ValueError(f"max_records must be positive, got {max_records}")
        if offset < part.start:
            raise OffsetBelowStartError(partition, offset, part.start)
        end = min(part.durable_end, offset + max_records)
        if part.recent_base <= offset < part.recent_base + len(part.recent):
            first = offset - part.recent_base
            values = part.recent[first:first + (end - offset)]
            return [Record(o, v) for o, v in zip(range(offset, end), values, strict=True)]
        out: list[Record] = []
        budget = MAX_READ_BYTES
        while offset < end and budget > 0:
            seg = part.segments[bisect.bisect_right(part.bases, offset) - 1]
            seg_end = min(end, seg.base + seg.count)
            hint = part.hint
            index = self._index_of(seg)
            if hint is not None and hint[0] == offset and hint[1] is seg:
                at, pos = offset, hint[2]
            else:
                rel, pos = index.floor(offset - seg.base)
                at = seg.base + rel
            if seg.read_fd < 0:
                seg.read_fd = os.open(seg.path, os.O_RDONLY)
            limit = part.durable_size if seg is part.active else seg.size
            upto = index.after(seg_end - seg.base)
            expect = (limit if upto is None else min(upto, limit)) - pos
            try:
                values, pos = read_frames(seg.read_fd, pos, offset - at, seg_end - offset,
                                          limit, budget, expect)
            except (ValueError, OSError) as exc:
                raise LogCorruptError(
                    f"{seg.path}: record near offset {offset} is damaged: {exc}"
                ) from exc
            out.extend(Record(o, v) for o, v in zip(range(offset, offset + len(values)),
                                                   values, strict=True))
            offset += len(values)
            budget -= sum(len(v) for v in values)
            part.hint = (offset, seg, pos)
            if offset < seg_end:
                break  # the byte budget ran out inside this segment
        return out


__all__ = ["FileLog", "OpenStats"]
