"""Reading segments that retention moved to ``log_archive_dir`` (gzip-compressed, as written).

Layout: ``<archive>/pNNNN/<base offset, 20 digits>.seg.gz``, one file per removed segment, the
same framing as a live segment. Audit reads them to answer for history below the log start.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from log.framing import HEADER, HEADER_SIZE, unframe
from log.types import LogCorruptError, Record

SUFFIX = ".seg.gz"


def archived_segments(archive: str | Path, partition: int) -> list[tuple[int, Path]]:
    """``(base offset, path)`` of every archived segment of ``partition``, oldest first."""
    directory = Path(archive) / f"p{partition:04d}"
    found = [(int(p.name[: -len(SUFFIX)]), p) for p in directory.glob(f"*{SUFFIX}")]
    return sorted(found)


def read_archive(archive: str | Path, partition: int, start: int = 0) -> Iterator[Record]:
    """Every archived record of ``partition`` from offset ``start`` on, checksums verified."""
    for base, path in archived_segments(archive, partition):
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
            if offset >= start:
                yield Record(offset, value)
            pos = end
            offset += 1
