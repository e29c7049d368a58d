"""Per-partition snapshots: a partition's whole state at one applied offset (DESIGN.md §8).

A snapshot is an export of one partition's key range (``keys.partition_range``) read from one
consistent view, with what a store must know to continue from it: the applied offset, the
effective time and crc of the last applied record, the log's identity and the partition's
digest (the same hash ``runner.digest_partition`` computes). Restoring it into any store gives
that partition byte for byte the state a fold from offset 0 had at that offset, so recovery,
rebuild, audit and takeover replay only the records after it.

Why an export and not a RocksDB checkpoint: a checkpoint holds every partition at whatever
offset each had, is tied to RocksDB's files and cannot travel through Kafka; an export of one
partition is small (its live state, not its history), portable (a bytes blob: a file in
embedded mode, chunked records on the broker in scaled-out mode) and verifiable (the digest).

Blob layout: ``MAGIC``, u32 header length, the header (``SnapshotInfo`` as JSON), then a zlib
stream of frames ``u32 key length, key, u32 value length, value`` in key order.

When: the runner cuts a snapshot right after the first record whose effective time enters a
new ``interval`` bucket (``time // interval``). That depends only on the log, so every node and
every restart picks the same offsets — snapshots are deterministic in position, and two owners
publishing one are publishing the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from log import Log
from projections import keys as K
from projections import queries
from projections.store import View, ViewStore

logger = logging.getLogger(__name__)

MAGIC = b"MARCONI-SNAPSHOT-1\n"
U32 = struct.Struct(">I")
RESTORING = b"\xff\xff\xfe" + b"restoring"  # + u16 partition: a restore not finished yet
_BATCH_BYTES = 4 << 20
_CHUNK_BYTES = 512 << 10


class SnapshotError(Exception):
    """A snapshot that cannot be taken, found or used; the message says why."""


class LogTruncatedError(SnapshotError):
    """A partition must start below its log's start and no snapshot covers the gap."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What a snapshot holds and where it continues from."""

    partition: int
    offset: int  # the last applied record (the fold continues at offset + 1)
    time_ms: int  # effective time after that record
    crc: int  # crc32 of that record, as the store's meta has it
    log_id: str
    partitions: int
    digest: str  # of the partition's keys and values (runner.digest_partition)
    keys: int = 0
    size: int = 0  # bytes of the blob
    taken_ms: int = 0  # wall clock when it was written (for the age operators see)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SnapshotInfo:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in raw.items() if k in names})


# -- blobs ---------------------------------------------------------------------------------


_SHORT = 1 << 12
_LENGTHS = tuple(U32.pack(n) for n in range(_SHORT))  # the length fields of short keys, values


def pair_parts(key: bytes, value: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """A pair as a blob holds it: ``u32 key length, key, u32 value length, value``. A digest
    (a snapshot's, ``runner.digest_partition``) is a hash of these frames in key order.

    The parts, not their concatenation, so an export joins a chunk of frames at once; short
    lengths come from a table, not ``struct`` (a snapshot runs in a thread but holds the GIL
    for this, once per key of the partition)."""
    lk, lv = len(key), len(value)
    return (_LENGTHS[lk] if lk < _SHORT else U32.pack(lk), key,
            _LENGTHS[lv] if lv < _SHORT else U32.pack(lv), value)


def pair_frame(key: bytes, value: bytes) -> bytes:
    """One pair's frame (``pair_parts`` joined)."""
    return b"".join(pair_parts(key, value))


EXPORT_PAUSE = 2.0
"""How long a serving node's export sleeps after each chunk, per second it took on it.

The export thread holds the GIL while it reads and frames pairs, and against it the event
loop gets about half of the GIL: a 5.5-million-key partition took ~7 s of CPU to export and
POST throughput halved for as long (issue 15). Sleeping twice the chunk's time (during which
the loop had half) leaves the loop at least 5/6 of the GIL while an export runs, for an export
about three times as long; snapshots are minutes apart and nothing waits for one."""


class Pacer:
    """Called between an export's chunks: waits ``ratio`` times the time since the last call
    (``EXPORT_PAUSE``), so the thread yields the GIL in proportion to what it used. Not once
    ``hurry`` is set, and setting it ends a wait at once: a stopping node waits for its
    exports, and there is nothing to yield to any more."""

    def __init__(self, ratio: float = EXPORT_PAUSE, *, hurry: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ratio, self._clock = ratio, clock
        self._hurry = hurry if hurry is not None else threading.Event()
        self._mark = clock()

    def __call__(self) -> None:
        worked = self._clock() - self._mark
        if worked > 0 and self._ratio > 0 and not self._hurry.is_set():
            self._hurry.wait(worked * self._ratio)
        self._mark = self._clock()


def export(pairs: Iterable[tuple[bytes, bytes]], partition: int, state: dict[str, Any],
           identity: tuple[str, int], *,
           pause: Callable[[], None] | None = None) -> tuple[SnapshotInfo, bytes]:
    """A blob of ``pairs`` (one partition's keys in order, read from one consistent view)
    and its info. Pure CPU over the pairs: safe in a worker thread over a RocksDB iterator;
    ``pause`` is called after each chunk (a ``Pacer``: the serving node's export yields)."""
    h = hashlib.blake2b(digest_size=32)
    z = zlib.compressobj(1)
    parts: list[bytes] = []
    pending: list[bytes] = []
    add = pending.extend
    pending_bytes = 0
    count = 0

    def flush() -> None:
        chunk = b"".join(pending)
        pending.clear()
        h.update(chunk)  # hashing and compressing a chunk this big release the GIL
        parts.append(z.compress(chunk))

    for key, value in pairs:
        add(pair_parts(key, value))
        pending_bytes += len(key) + len(value) + 8
        count += 1
        if pending_bytes >= 1 << 20:
            flush()
            pending_bytes = 0
            if pause is not None:
                pause()
    flush()
    parts.append(z.flush())
    body = b"".join(parts)
    info = SnapshotInfo(partition=partition, offset=int(state["offset"]),
                        time_ms=int(state["time"]), crc=int(state["crc"]), log_id=identity[0],
                        partitions=identity[1], digest=h.hexdigest(), keys=count,
                        taken_ms=time.time_ns() // 1_000_000)
    size = 0
    while True:  # the header holds the blob's size, which includes the header
        info = SnapshotInfo(**{**info.as_json(), "size": size})
        header = orjson.dumps(info.as_json())
        if size == len(MAGIC) + U32.size + len(header) + len(body):
            break
        size = len(MAGIC) + U32.size + len(header) + len(body)
    return info, MAGIC + U32.pack(len(header)) + header + body


def read_info(blob: bytes) -> SnapshotInfo:
    """The header of a blob (SnapshotError if it is not one)."""
    if not blob.startswith(MAGIC):
        raise SnapshotError("not a Marconi snapshot (bad magic)")
    (n,) = U32.unpack_from(blob, len(MAGIC))
    start = len(MAGIC) + U32.size
    return SnapshotInfo.from_json(orjson.loads(blob[start:start + n]))


def pairs_of(blob: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The key/value pairs of a blob, in key order, checked against its digest at the end."""
    info = read_info(blob)
    (n,) = U32.unpack_from(blob, len(MAGIC))
    damaged = SnapshotError(f"snapshot of partition {info.partition} at offset "
                            f"{info.offset} is damaged: its contents do not match its digest")
    z = zlib.decompressobj()
    try:
        data = z.decompress(blob[len(MAGIC) + U32.size + n:]) + z.flush()
    except zlib.error:
        raise damaged from None
    h = hashlib.blake2b(data, digest_size=32)  # the frames, in order: parsed below
    pos, count = 0, 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise damaged
        (kn,) = U32.unpack_from(data, pos)
        key = data[pos + 4:pos + 4 + kn]
        pos += 4 + kn
        if pos + 4 > len(data):
            raise damaged
        (vn,) = U32.unpack_from(data, pos)
        value = data[pos + 4:pos + 4 + vn]
        pos += 4 + vn
        if pos > len(data):
            raise damaged
        count += 1
        yield key, value
    if h.hexdigest() != info.digest or count != info.keys or not z.eof:
        raise SnapshotError(f"snapshot of partition {info.partition} at offset {info.offset} "
                            "is damaged: its digest does not match its contents")


def restoring_key(partition: int) -> bytes:
    return RESTORING + K.U16.pack(partition)


def restoring(view: View, partition: int) -> bool:
    """Whether a restore of ``partition`` began and never finished (its state is unusable)."""
    return view.get(restoring_key(partition)) is not None


async def restore(store: ViewStore, blob: bytes, *, identity: tuple[str, int],
                  batch_bytes: int = _BATCH_BYTES) -> SnapshotInfo:
    """Replace one partition's state in ``store`` with a snapshot's, in bounded batches.

    A marker is committed first and removed with the meta record (the applied offset) in the
    last batch, so a crash mid-restore leaves a partition that says it must be restored again,
    never a half state that looks applied. Yields to the event loop between batches.
    """
    info = read_info(blob)
    if (info.log_id, info.partitions) != identity:
        raise SnapshotError(
            f"snapshot of partition {info.partition} belongs to log {info.log_id} with "
            f"{info.partitions} partitions, not {identity[0]} with {identity[1]}")
    p = info.partition
    marker = restoring_key(p)
    store.commit({marker: K.u64(info.offset)})
    lo, hi = K.partition_range(p)
    while True:  # wipe what the partition held (nothing, on a fresh node)
        doomed = [k for k, _ in _take(store.scan(lo, hi), 10_000)]
        if not doomed:
            break
        store.commit(dict.fromkeys(doomed))
        await asyncio.sleep(0)
    meta_key = K.meta(p)
    meta: bytes | None = None
    batch: dict[bytes, bytes | None] = {}
    size = 0
    for key, value in pairs_of(blob):
        if key == meta_key:
            meta = value
            continue
        batch[key] = value
        size += len(key) + len(value)
        if size >= batch_bytes:
            store.commit(batch)
            batch, size = {}, 0
            await asyncio.sleep(0)
    if meta is None:
        raise SnapshotError(f"snapshot of partition {p} has no meta record")
    batch[meta_key] = meta
    batch[marker] = None
    store.commit(batch)
    return info


def _take(it: Iterator[tuple[bytes, bytes]], n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for pair in it:
        out.append(pair)
        if len(out) >= n:
            break
    return out


# -- where snapshots are kept ----------------------------------------------------------------


class SnapshotStore(Protocol):
    """Where a node keeps snapshots: a directory (embedded) or the broker (scaled out)."""

    async def list(self, partition: int) -> list[SnapshotInfo]:
        """The retained snapshots of ``partition``, oldest first."""
        ...

    async def save(self, info: SnapshotInfo, blob: bytes) -> None:
        """Keep a snapshot (idempotent per offset), then drop the oldest beyond ``keep``."""
        ...

    async def load(self, info: SnapshotInfo) -> bytes:
        ...


class FileSnapshots:
    """Snapshots as files ``DIR/p<partition>/<offset>.snap``, written atomically."""

    def __init__(self, directory: str | os.PathLike[str], *, keep: int = 3) -> None:
        self.directory = Path(directory)
        self.keep = keep
        self._infos: dict[Path, SnapshotInfo] = {}

    def _dir(self, partition: int) -> Path:
        return self.directory / f"p{partition:05d}"

    def _path(self, info: SnapshotInfo) -> Path:
        return self._dir(info.partition) / f"{info.offset:020d}.snap"

    def list_sync(self, partition: int) -> list[SnapshotInfo]:
        found = []
        d = self._dir(partition)
        if not d.is_dir():
            return []
        for path in sorted(d.glob("*.snap")):
            info = self._infos.get(path)
            if info is None:
                try:
                    with open(path, "rb") as fh:
                        head = fh.read(64 << 10)
                    info = read_info(head)
                except (OSError, SnapshotError, orjson.JSONDecodeError, struct.error):
                    logger.warning("ignoring unreadable snapshot %s", path)
                    continue
                self._infos[path] = info
            found.append(info)
        return sorted(found, key=lambda i: i.offset)

    async def list(self, partition: int) -> list[SnapshotInfo]:
        return self.list_sync(partition)

    def save_sync(self, info: SnapshotInfo, blob: bytes) -> None:
        path = self._path(info)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, blob)
        for old in self.list_sync(info.partition)[:-self.keep]:
            with contextlib.suppress(FileNotFoundError):
                self._path(old).unlink()
            self._infos.pop(self._path(old), None)

    async def save(self, info: SnapshotInfo, blob: bytes) -> None:
        await asyncio.to_thread(self.save_sync, info, blob)

    def load_sync(self, info: SnapshotInfo) -> bytes:
        try:
            return self._path(info).read_bytes()
        except FileNotFoundError:
            raise SnapshotError(f"snapshot {self._path(info)} is gone (pruned?)") from None

    async def load(self, info: SnapshotInfo) -> bytes:
        return await asyncio.to_thread(self.load_sync, info)


class LogSnapshots:
    """Snapshots as records of a second log with the same partitions (a Kafka topic beside
    the command topic in scaled-out mode), so any node can restore any partition.

    A snapshot is a run of chunk records (``C``: header + at most 512 KiB of the blob) then a
    manifest (``M``) naming its first chunk and listing the ``keep`` newest snapshots, so the
    last manifest of a partition is its whole catalogue: finding the newest reads from the end
    back to the last manifest. Chunks carry a nonce, so two owners publishing at once (a stale
    owner during a rebalance) never mix. A Kafka topic cannot drop single records, so older
    snapshots stay on the broker unreferenced (the snapshot topic keeps ``retention.ms=-1``:
    time-based deletion would take the newest snapshot of an idle partition).
    """

    def __init__(self, log: Log, *, keep: int = 3, chunk_bytes: int = _CHUNK_BYTES) -> None:
        self.log = log
        self.keep = keep
        self._chunk = chunk_bytes
        self._catalogue: dict[int, tuple[int, list[dict[str, Any]]]] = {}

    async def _manifest(self, partition: int) -> list[dict[str, Any]]:
        end = await self.log.end_offset(partition)
        cached = self._catalogue.get(partition)
        if cached is not None and cached[0] == end:
            return cached[1]
        offset = end - 1
        floor = cached[0] - 1 if cached is not None else -1
        entries: list[dict[str, Any]] = cached[1] if cached is not None else []
        while offset > floor:
            (rec,) = await self.log.read(partition, offset, 1)
            if rec.value[:1] == b"M":
                entries = orjson.loads(rec.value[1:])["retained"]
                break
            offset -= 1
        self._catalogue[partition] = (end, entries)
        return entries

    async def list(self, partition: int) -> list[SnapshotInfo]:
        return [SnapshotInfo.from_json(e["info"]) for e in await self._manifest(partition)]

    async def save(self, info: SnapshotInfo, blob: bytes) -> None:
        p = info.partition
        retained = await self._manifest(p)
        if any(e["info"]["offset"] == info.offset for e in retained):
            return  # another owner published this one already (same position, same bytes)
        nonce = uuid.uuid4().hex
        first = -1
        chunks = 0
        for start in range(0, len(blob), self._chunk):
            header = orjson.dumps({"offset": info.offset, "nonce": nonce, "i": chunks})
            (at,) = await self.log.append(p, [b"C" + U32.pack(len(header)) + header
                                              + blob[start:start + self._chunk]])
            if first < 0:
                first = at
            chunks += 1
        entry = {"info": info.as_json(), "nonce": nonce, "first": first, "chunks": chunks}
        keep = sorted([*retained, entry], key=lambda e: e["info"]["offset"])[-self.keep:]
        manifest = orjson.dumps({"info": info.as_json(), "retained": keep})
        await self.log.append(p, [b"M" + manifest])

    async def load(self, info: SnapshotInfo) -> bytes:
        for entry in await self._manifest(info.partition):
            if entry["info"]["offset"] == info.offset:
                break
        else:
            raise SnapshotError(f"no snapshot of partition {info.partition} at offset "
                                f"{info.offset} on the snapshot log")
        parts: dict[int, bytes] = {}
        offset = entry["first"]
        while len(parts) < entry["chunks"]:
            records = await self.log.read(info.partition, offset, 8)
            if not records:
                raise SnapshotError(f"snapshot of partition {info.partition} at offset "
                                    f"{info.offset} is incomplete on the snapshot log")
            for rec in records:
                if rec.value[:1] == b"C":
                    (n,) = U32.unpack_from(rec.value, 1)
                    head = orjson.loads(rec.value[5:5 + n])
                    if head["nonce"] == entry["nonce"]:
                        parts[head["i"]] = rec.value[5 + n:]
            offset = records[-1].offset + 1
        return b"".join(parts[i] for i in range(entry["chunks"]))


# -- choosing a snapshot ---------------------------------------------------------------------


async def log_start(log: Log, partition: int) -> int:
    """The first offset the log still holds (0 for a log that never deletes)."""
    start = getattr(log, "start_offset", None)
    if start is None:
        return 0
    return int(await start(partition))


def newest_at_or_before(infos: Iterable[SnapshotInfo], *, offset: int | None = None,
                        time_ms: int | None = None, before_ms: int | None = None
                        ) -> SnapshotInfo | None:
    """The newest snapshot with offset ≤ ``offset``, time ≤ ``time_ms`` and time <
    ``before_ms`` (whichever are given)."""
    best = None
    for info in infos:
        if offset is not None and info.offset > offset:
            continue
        if time_ms is not None and info.time_ms > time_ms:
            continue
        if before_ms is not None and info.time_ms >= before_ms:
            continue
        if best is None or info.offset > best.offset:
            best = info
    return best


async def prepare(store: ViewStore, log: Log, partition: int,
                  snapshots: SnapshotStore | None) -> SnapshotInfo | None:
    """Make ``partition``'s local state usable before the runner folds the tail.

    Restores the newest snapshot when the store has nothing for the partition (a fresh node
    taking it over), when a restore was interrupted, or when the store stopped below the log's
    start (its next record is gone). Returns the snapshot restored, if any. A start below the
    log start with no snapshot to cover it is ``LogTruncatedError``: never a silent skip.
    """
    applied = int(queries.partition_state(store, partition)["offset"])
    interrupted = restoring(store, partition)
    start = await log_start(log, partition)
    behind = applied + 1 < start
    if not (interrupted or behind or (applied < 0 and snapshots is not None)):
        return None
    infos = await snapshots.list(partition) if snapshots is not None else []
    usable = [i for i in infos if i.offset + 1 >= start and (interrupted or i.offset > applied)]
    chosen = usable[-1] if usable else None
    if chosen is None:
        if behind:
            raise LogTruncatedError(
                f"partition {partition}: the store continues at offset {applied + 1} but the "
                f"log starts at {start} and no snapshot covers the gap; restore a snapshot "
                f"(`marconi snapshot --restore`) or give this node the snapshot store of the "
                f"cluster — records below {start} are gone and were not skipped")
        if interrupted:
            raise SnapshotError(f"partition {partition}: an interrupted restore left its "
                                "state unusable and no snapshot is available to redo it")
        return None
    assert snapshots is not None
    blob = await snapshots.load(chosen)
    info = await restore(store, blob, identity=(log.log_id, log.partitions))
    logger.info("partition %d: restored the snapshot at offset %d (%d keys)", partition,
                info.offset, info.keys)
    return info


def retention_by(log: Log, retention_ms: int | None,
                 clock: Callable[[], int]) -> Callable[[int, int], Awaitable[None]] | None:
    """The call that lets ``log`` drop what is older than ``retention_ms`` and below the
    oldest retained snapshot (None: ``forever``, keep the whole log)."""
    if retention_ms is None:
        return None

    async def retain(partition: int, keep_from: int) -> None:
        result = await log.retain(partition, keep_from, clock() - retention_ms)
        if result.removed_segments:
            logger.info("partition %d: retention removed %d records (%d bytes); the log "
                        "starts at %d", partition, result.removed_records,
                        result.removed_bytes, result.start_offset)

    return retain


# -- the runner's duty -----------------------------------------------------------------------


def _pairs_as_of_now(store: View, lo: bytes, hi: bytes) -> Iterable[tuple[bytes, bytes]]:
    """``[lo, hi)`` as the store holds it now, to read later in a thread: a RocksDB scan
    reads the state as of its creation (its bulk form: ``RocksStore.bulk_scan``); any other
    store's is read now."""
    from projections.rocksstore import RocksStore

    if isinstance(store, RocksStore):
        return store.bulk_scan(lo, hi)
    return list(store.scan(lo, hi))


@dataclass
class Snapshotter:
    """Takes a partition's snapshot when the log time enters a new ``interval_ms`` bucket.

    The runner asks ``crossed`` after each record; on True it commits right there and calls
    ``take``, which opens a consistent view synchronously (before the next commit) and exports
    it in a worker thread while the runner goes on applying: the API never waits for it.
    ``retention(partition, keep_from)`` is then called with the offset the oldest retained
    snapshot resumes at, so the log may drop what lies below it (and outside its window).
    """

    snapshots: SnapshotStore
    interval_ms: int
    retention: Callable[[int, int], Awaitable[None]] | None = None
    identity: tuple[str, int] = ("", 0)
    pause: float = EXPORT_PAUSE  # the export's ``Pacer`` ratio (0: never sleeps)
    taken: int = 0
    last: dict[int, SnapshotInfo] = field(default_factory=dict)
    _time: dict[int, int] = field(default_factory=dict)
    _tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    _waiting: int = 0
    _hurry: threading.Event = field(default_factory=threading.Event)  # set while draining

    async def recall(self, partition: int) -> None:
        """Remember the newest snapshot kept of ``partition`` (what operators see as its
        snapshot before this process takes one)."""
        infos = await self.snapshots.list(partition)
        if infos and (partition not in self.last or infos[-1].offset > self.last[partition].offset):
            self.last[partition] = infos[-1]

    def reset(self, store: View, partition: int) -> None:
        """Start judging crossings from the store's effective time (at every launch)."""
        self._time[partition] = int(queries.partition_state(store, partition)["time"])

    def crossed_at(self, partition: int, now: int) -> bool:
        """Whether the record just applied moved the partition into a new time bucket, given
        the partition's log time after it (``apply_into`` returns it: the runner does not
        read and decode the meta record again per record)."""
        before = self._time.get(partition, 0)
        self._time[partition] = now
        return before > 0 and now // self.interval_ms > before // self.interval_ms

    async def take(self, store: View, partition: int) -> None:
        """Snapshot the partition as committed now; the export runs in the background."""
        previous = self._tasks.get(partition)
        if previous is not None and not previous.done():
            self._waiting += 1
            try:
                await previous  # back-pressure: one export per partition at a time
            finally:
                self._waiting -= 1
        state = queries.partition_state(store, partition)
        lo, hi = K.partition_range(partition)
        pairs = _pairs_as_of_now(store, lo, hi)
        self._tasks[partition] = asyncio.get_running_loop().create_task(
            self._write(partition, pairs, dict(state)), name=f"snapshot-{partition}")

    async def _write(self, partition: int, pairs: Iterable[tuple[bytes, bytes]],
                     state: dict[str, Any]) -> None:
        try:
            pacer = Pacer(self.pause, hurry=self._hurry)
            info, blob = await asyncio.to_thread(export, pairs, partition, state,
                                                 self.identity, pause=pacer)
            await self.snapshots.save(info, blob)
            self.taken += 1
            self.last[partition] = info
            logger.info("partition %d: snapshot at offset %d (%d keys, %d bytes)", partition,
                        info.offset, info.keys, info.size)
            if self.retention is not None:
                infos = await self.snapshots.list(partition)
                if infos:  # the oldest snapshot resumes at offset + 1: keep from there
                    await self.retention(partition, infos[0].offset + 1)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed snapshot is retried at the next interval
            logger.exception("partition %d: snapshot failed", partition)

    async def drain(self) -> None:
        """Wait for the exports in flight (tests, clean stops), at full speed."""
        self._hurry.set()
        try:
            while True:
                running = [t for t in self._tasks.values() if not t.done()]
                if not running and not self._waiting:
                    return
                for task in running:
                    with contextlib.suppress(Exception):
                        await task
                await asyncio.sleep(0)
        finally:
            self._hurry.clear()

    def cancel(self, partition: int | None = None) -> None:
        for p, task in list(self._tasks.items()):
            if partition is None or p == partition:
                task.cancel()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` so a crash leaves the old file or the new one, never half of it."""
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
