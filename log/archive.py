"""Reading segments that retention moved to ``log_archive_dir`` (gzip-compressed, as written).

Layout: ``<archive>/pNNNN/<base offset, 20 digits>.seg.gz``, one file per removed segment, the
same framing as a live segment. Audit reads them to answer for history below the log start.
"""

from __future__ import annotations

import bisect
import gzip
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

from log.framing import HEADER, HEADER_SIZE, unframe
from log.types import (
    Log,
    LogCorruptError,
    LogError,
    LogHealth,
    OffsetBelowStartError,
    Record,
    Retention,
)

SUFFIX = ".seg.gz"


def archived_segments(archive: str | Path, partition: int) -> list[tuple[int, Path]]:
    """``(base offset, path)`` of every archived segment of ``partition``, oldest first."""
    directory = Path(archive) / f"p{partition:04d}"
    found = [(int(p.name[: -len(SUFFIX)]), p) for p in directory.glob(f"*{SUFFIX}")]
    return sorted(found)


def read_archive(archive: str | Path, partition: int, start: int = 0) -> Iterator[Record]:
    """Every archived record of ``partition`` from offset ``start`` on, checksums verified."""
    for base, path in archived_segments(archive, partition):
        for record in _records(path, base):
            if record.offset >= start:
                yield record


def _records(path: Path, base: int) -> Iterator[Record]:
    data = gzip.decompress(path.read_bytes())
    pos = 0
    offset = base
    while pos < len(data):
        if pos + HEADER_SIZE > len(data):
            raise LogCorruptError(f"{path}: truncated frame at byte {pos}")
        length = HEADER.unpack_from(data, pos)[0]
        end = pos + HEADER_SIZE + length
        try:
            (value,) = unframe(data[pos:end], 1)
        except (ValueError, IndexError) as exc:
            raise LogCorruptError(f"{path}: damaged record at offset {offset}") from exc
        yield Record(offset, value)
        pos = end
        offset += 1


class ArchivedLog:
    """A read-only log: the archived segments of a log, then the log itself, as one history.

    For audit (``marconi replay --archive``): retention moved whole segments below the log
    start to ``log_archive_dir``; this view reads them back so a replay can start at offset 0
    (or at an older snapshot) again. ``start_offset`` is the first archived offset, or the
    log's own start where nothing is archived. One decompressed segment per partition is kept,
    so a replay reading forward decompresses each archived segment once. A segment that ends
    before the next one begins is a hole in the archive: reading it raises ``LogCorruptError``,
    never a silent skip.
    """

    def __init__(self, log: Log, archive: str | Path) -> None:
        self._log = log
        self._archive = Path(archive)
        self._segments: dict[int, list[tuple[int, Path]]] = {}
        self._cached: dict[int, tuple[int, list[Record]]] = {}

    @property
    def partitions(self) -> int:
        return self._log.partitions

    @property
    def log_id(self) -> str:
        return self._log.log_id

    async def start(self) -> None:
        await self._log.start()

    async def stop(self) -> None:
        await self._log.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _archived(self, partition: int, live: int) -> list[tuple[int, Path]]:
        """The archived segments below the live log's start ``live``, oldest first."""
        if partition not in self._segments:
            self._segments[partition] = archived_segments(self._archive, partition)
        return [(base, path) for base, path in self._segments[partition] if base < live]

    async def start_offset(self, partition: int) -> int:
        live = await self._log.start_offset(partition)
        archived = self._archived(partition, live)
        return archived[0][0] if archived else live

    async def end_offset(self, partition: int) -> int:
        return await self._log.end_offset(partition)

    async def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        live = await self._log.start_offset(partition)
        if offset >= live:
            return await self._log.read(partition, offset, max_records)
        segments = self._archived(partition, live)
        if not segments or offset < segments[0][0]:
            raise OffsetBelowStartError(partition, offset,
                                        segments[0][0] if segments else live)
        index = bisect.bisect_right([base for base, _ in segments], offset) - 1
        base, path = segments[index]
        upto = segments[index + 1][0] if index + 1 < len(segments) else live
        cached = self._cached.get(partition)
        if cached is None or cached[0] != base:
            records = list(_records(path, base))
            if base + len(records) != upto:
                raise LogCorruptError(
                    f"{path}: the archive holds offsets {base}..{base + len(records) - 1} of "
                    f"partition {partition}, but the next segment starts at {upto}: a hole")
            cached = (base, records)
            self._cached[partition] = cached
        records = cached[1]
        return records[offset - base: min(offset - base + max_records, len(records))]

    async def append(self, partition: int, records: Sequence[bytes]) -> list[int]:
        raise LogError("an archived log is read-only")

    async def retain(self, partition: int, keep_from: int, older_than_ms: int) -> Retention:
        raise LogError("an archived log is read-only")

    def health(self) -> LogHealth:
        return self._log.health()

    async def wait(self, partition: int, offset: int, timeout: float | None = None) -> int:
        return await self._log.wait(partition, offset, timeout)
