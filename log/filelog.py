"""FileLog: the embedded default log — partitioned segment files with group-commit fsync.

Layout under the log directory::

    meta.json                 {"format": 1, "log_id": ..., "partitions": N}
    LOCK                      flock'ed by the one process that may write
    p0000/00000000000000000000.seg
    p0000/00000000000000012345.seg   (file name = offset of its first record)

Durability: an append writes its frames to the page cache and waits for the next commit round;
a round fsyncs every file written since the previous round (one ``syncfs`` when many partitions
are dirty, else ``fdatasync`` per file) and only then makes the records visible and resolves the
waiting appends. A round starts as soon as the previous one ends, so one fsync covers every
append that arrived meanwhile (group commit).

Recovery: on open every segment is scanned; a bad frame in the last segment of a partition is a
torn tail and is truncated away (it was never acknowledged, because acknowledged frames were
fsynced); a bad frame in an earlier segment is corruption and the log refuses to open. Segments
are fsynced before a new one is started, so only the last can be torn.
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
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self

from log.framing import frame, scan_file, unframe
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
MAX_READ_BYTES = 8 * 1024 * 1024
SyncStrategy = Literal["auto", "fdatasync", "syncfs"]

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


START_FILE = "START"


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
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    _fsync_dir(directory)


def _segment_name(base: int) -> str:
    return f"{base:020d}{SEGMENT_SUFFIX}"


def _syncfs_or_raise(fd: int) -> None:
    if _syncfs(fd) != 0:  # type: ignore[misc]
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@dataclass
class _Segment:
    base: int
    path: Path
    positions: array = field(default_factory=lambda: array("q"))
    size: int = 0  # bytes assigned, including frames not yet written
    on_disk: bool = True  # False until the writer creates the file
    read_fd: int = -1
    write_fd: int = -1  # used only by the writer (the commit thread)
    last_ms: int = 0  # append time (log clock, ms) of its newest record: retention's test

    @property
    def count(self) -> int:
        return len(self.positions)


@dataclass
class _Partition:
    number: int
    path: Path
    segments: list[_Segment]
    bases: list[int]
    written_end: int
    durable_end: int
    chunks: list[tuple[_Segment, int, bytes]] = field(default_factory=list)
    open_segment: _Segment | None = None  # the one segment the writer holds open
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

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
    ) -> None:
        self._dir = Path(directory)
        self._requested_partitions = partitions
        self._segment_bytes = segment_bytes
        self._max_record_bytes = max_record_bytes
        self._durable = durable
        self._read_only = read_only
        self._sync_strategy = sync_strategy
        self._archive_dir = None if archive_dir is None else Path(archive_dir)
        self._clock = clock or _wall_ms
        self._maintenance: ThreadPoolExecutor | None = None
        self._health = LogHealth(True)
        self._parts: list[_Partition] = []
        self._log_id = ""
        self._lock_fd = -1
        self._executor: ThreadPoolExecutor | None = None
        self._fsync_pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, int] = {}  # partition -> written end to publish after sync
        self._next_round: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._started = False

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
        self._failure = None
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
        for part in self._parts:
            if part.open_segment is not None and part.open_segment.write_fd >= 0:
                with contextlib.suppress(OSError):
                    os.fdatasync(part.open_segment.write_fd)
        for pool in (self._executor, self._fsync_pool, self._maintenance):
            if pool is not None:
                pool.shutdown(wait=True)
        self._close_files()
        self._release_lock()

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
        while names and len(names) > 1 and int(names[1].stem) <= start:
            if not self._read_only:
                names[0].unlink()
                _fsync_dir(path)
            names.pop(0)
        segments: list[_Segment] = []
        expected_base = start
        for i, seg_path in enumerate(names):
            base = int(seg_path.stem)
            if base != expected_base:
                raise LogCorruptError(
                    f"{seg_path}: starts at offset {base}, expected {expected_base} "
                    "(missing segment?)"
                )
            segment = _Segment(base=base, path=seg_path)
            with open(seg_path, "rb") as fh:
                valid = scan_file(fh, segment.positions)
                size = os.fstat(fh.fileno()).st_size
            if valid != size and not self._read_only:
                if i != len(names) - 1:
                    raise LogCorruptError(
                        f"{seg_path}: damaged record at byte {valid} in a sealed segment"
                    )
                logger.warning(
                    "truncating torn tail of %s at byte %d (%d bytes dropped)",
                    seg_path, valid, size - valid,
                )
                with open(seg_path, "r+b") as fh:
                    fh.truncate(valid)
                    fh.flush()
                    os.fsync(fh.fileno())
            segment.size = valid
            segment.last_ms = int(os.stat(seg_path).st_mtime * 1000)
            segments.append(segment)
            expected_base = base + segment.count
        if not segments:
            segments.append(_Segment(base=start, path=path / _segment_name(start), on_disk=False))
        end = segments[-1].base + segments[-1].count
        return _Partition(
            number=number, path=path, segments=segments, bases=[s.base for s in segments],
            written_end=end, durable_end=end,
        )

    def _close_files(self) -> None:
        for part in self._parts:
            for seg in part.segments:
                for attr in ("read_fd", "write_fd"):
                    fd = getattr(seg, attr)
                    if fd >= 0:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                        setattr(seg, attr, -1)
        self._parts = []

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
        if self._failure is not None:
            raise LogError(f"log failed earlier and refuses writes: {self._failure!r}")
        if not records:
            return []
        frames = [frame(rec) for rec in checked_records(records, self._max_record_bytes)]
        data = b"".join(frames)
        seg = part.active
        if seg.size > 0 and seg.size + len(data) > self._segment_bytes:
            base = part.written_end
            seg = _Segment(base=base, path=part.path / _segment_name(base), on_disk=False)
            part.segments.append(seg)
            part.bases.append(base)
        start = pos = seg.size
        for fr in frames:
            seg.positions.append(pos)
            pos += len(fr)
        seg.size = pos
        seg.last_ms = max(seg.last_ms, self._clock())
        first = part.written_end
        part.written_end += len(frames)
        part.chunks.append((seg, start, data))
        offsets = list(range(first, part.written_end))
        if not self._durable:
            chunks, part.chunks = part.chunks, []
            self._write(part, chunks)
            self._publish(part, part.written_end)
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
        """Group commit: write and fsync everything appended since the last round, then ack."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            round_done, self._next_round = self._next_round, None
            if round_done is None:
                continue
            pending, self._pending = self._pending, {}
            work = []
            for p in pending:
                part = self._parts[p]
                chunks, part.chunks = part.chunks, []
                work.append((part, chunks))
            try:
                await loop.run_in_executor(self._executor, self._write_and_sync, work)
            except BaseException as exc:  # durability unknown: stop accepting writes
                self._failure = exc
                logger.error("log write or fsync failed; refusing further writes: %r", exc)
                if not round_done.done():
                    round_done.set_exception(LogError(f"log write or fsync failed: {exc!r}"))
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for p, end in pending.items():
                self._publish(self._parts[p], end)
            if not round_done.done():
                round_done.set_result(None)

    def _write(self, part: _Partition, chunks: list[tuple[_Segment, int, bytes]]) -> None:
        """Write a partition's chunks at their assigned positions (writer thread only).

        Moving on to a new segment first fsyncs and closes the previous one, so a sealed
        segment is always complete on disk and only the last segment can have a torn tail.
        """
        for seg, pos, data in chunks:
            if seg is not part.open_segment:
                old = part.open_segment
                if old is not None:
                    os.fdatasync(old.write_fd)
                    os.close(old.write_fd)
                    old.write_fd = -1
                flags = os.O_WRONLY if seg.on_disk else os.O_WRONLY | os.O_CREAT
                seg.write_fd = os.open(seg.path, flags, 0o644)
                if not seg.on_disk:
                    os.fsync(seg.write_fd)
                    _fsync_dir(part.path)
                    seg.on_disk = True
                part.open_segment = seg
            view = memoryview(data)
            while view:
                written = os.pwrite(seg.write_fd, view, pos)
                view = view[written:]
                pos += written

    def _write_and_sync(self, work: list[tuple[_Partition, list]]) -> None:
        fds = []
        for part, chunks in work:
            self._write(part, chunks)
            assert part.open_segment is not None
            fds.append(part.open_segment.write_fd)
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

    def _publish(self, part: _Partition, end: int) -> None:
        if end <= part.durable_end:
            return
        part.durable_end = end
        waiters, part.waiters = part.waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

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
            if seg is part.open_segment or seg.write_fd >= 0:
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
        del part.segments[: len(doomed)]
        del part.bases[: len(doomed)]
        removed_bytes = sum(s.size for s in doomed)
        for seg in doomed:
            if seg.read_fd >= 0:
                os.close(seg.read_fd)
                seg.read_fd = -1
        await loop.run_in_executor(self._maintenance, _delete_segments, part.path,
                                   [s.path for s in doomed])
        logger.info("partition %d: retention removed %d segments (%d records, %d bytes); "
                    "log start now %d", partition, len(doomed), new_start - doomed[0].base,
                    removed_bytes, new_start)
        return Retention(new_start, new_start - doomed[0].base, removed_bytes, len(doomed),
                         archive is not None)

    # -- reading ---------------------------------------------------------------------------

    async def end_offset(self, partition: int) -> int:
        return self._partition(partition).durable_end

    async def wait(self, partition: int, offset: int, timeout: float | None = None) -> int:
        part = self._partition(partition)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while part.durable_end <= offset and self._started:
            fut = loop.create_future()
            part.waiters.append(fut)
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                break
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                break
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
        out: list[Record] = []
        while offset < end:
            seg = part.segments[bisect.bisect_right(part.bases, offset) - 1]
            seg_end = min(end, seg.base + seg.count)
            first = seg.positions[offset - seg.base]
            # Bound the bytes of one read; always return at least one record.
            capped = bisect.bisect_right(seg.positions, first + MAX_READ_BYTES) + seg.base
            seg_end = max(offset + 1, min(seg_end, capped))
            count = seg_end - offset
            last_index = seg_end - seg.base
            stop = seg.positions[last_index] if last_index < seg.count else seg.size
            if seg.read_fd < 0:
                seg.read_fd = os.open(seg.path, os.O_RDONLY)
            buf = os.pread(seg.read_fd, stop - first, first)
            try:
                values = unframe(buf, count)
            except (ValueError, IndexError) as exc:
                raise LogCorruptError(
                    f"{seg.path}: record near offset {offset} is damaged: {exc}"
                ) from exc
            out.extend(Record(o, v) for o, v in zip(range(offset, seg_end), values, strict=True))
            offset = seg_end
            if stop - first >= MAX_READ_BYTES:
                break
        return out


__all__ = ["FileLog"]
