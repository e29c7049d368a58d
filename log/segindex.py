"""The sparse offset index of a segment (Kafka's ``.index`` idea) and its file format.

One entry every ``interval`` bytes of segment: (offset relative to the segment's base, byte
position of that record). A read bisects the entries and scans forward at most ``interval``
bytes, so memory is per segment, not per record (64 MiB at 4 KiB: 16 Ki entries, 128 KiB).

The file beside ``<base>.seg`` is ``<base>.idx``::

    header  ">4sHHQQQqqI": magic b"MIDX", version, reserved, base, count, size,
            first_ms, last_ms, entry count
    entries n x (relative offset u32, position u32), big-endian
    crc32   u32 of everything before it

``size`` is the segment length the index covers and ``count`` the records in it; ``first_ms`` /
``last_ms`` are the append times (the log's clock) of its oldest and newest record, which
retention compares with its cutoff: records are opaque bytes to the log, so the log stamps the
time itself rather than parsing a command. The file is written to a temporary name, fsynced and
renamed, and is trusted only if its checksum holds and it agrees with the segment (base, and
size: equal for a sealed segment, not larger for the last one); otherwise it is rebuilt by
scanning the segment, never trusted.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path

INDEX_SUFFIX = ".idx"
MAGIC = b"MIDX"
VERSION = 1
HEADER = struct.Struct(">4sHHQQQqqI")
CRC = struct.Struct(">I")
DEFAULT_INTERVAL = 4096


@dataclass
class SparseIndex:
    """Entries of one segment plus what it covers; ``add`` keeps one entry per interval."""

    interval: int = DEFAULT_INTERVAL
    offsets: array = field(default_factory=lambda: array("I"))  # relative to the base
    positions: array = field(default_factory=lambda: array("I"))
    next_at: int = 0  # the byte position from which the next record gets an entry

    def add(self, relative: int, position: int) -> None:
        if position >= self.next_at:
            self.offsets.append(relative)
            self.positions.append(position)
            self.next_at = position + self.interval

    def floor(self, relative: int) -> tuple[int, int]:
        """The entry at or before ``relative``: (relative offset, position)."""
        lo, hi = 0, len(self.offsets)
        while lo < hi:  # bisect_right over an array without copying it
            mid = (lo + hi) // 2
            if self.offsets[mid] <= relative:
                lo = mid + 1
            else:
                hi = mid
        if lo == 0:
            return 0, 0
        return self.offsets[lo - 1], self.positions[lo - 1]

    def after(self, relative: int) -> int | None:
        """The position of the first entry at or after ``relative`` (None: past the last),
        an upper bound on where the records before ``relative`` end."""
        lo, hi = 0, len(self.offsets)
        while lo < hi:  # bisect_left
            mid = (lo + hi) // 2
            if self.offsets[mid] < relative:
                lo = mid + 1
            else:
                hi = mid
        return self.positions[lo] if lo < len(self.offsets) else None

    def truncate(self, count: int) -> None:
        """Drop the entries of records at or after relative offset ``count`` (a rollback)."""
        keep = len(self.offsets)
        while keep and self.offsets[keep - 1] >= count:
            keep -= 1
        del self.offsets[keep:]
        del self.positions[keep:]
        self.next_at = self.positions[-1] + self.interval if keep else 0


@dataclass
class IndexFile:
    """The decoded contents of a ``.idx`` file."""

    base: int
    count: int
    size: int
    first_ms: int
    last_ms: int
    index: SparseIndex


def index_path(segment: Path) -> Path:
    return segment.with_suffix(INDEX_SUFFIX)


def encode(base: int, count: int, size: int, first_ms: int, last_ms: int,
           index: SparseIndex) -> bytes:
    offsets = array("I", index.offsets)
    positions = array("I", index.positions)
    pairs = array("I", bytes(8 * len(offsets)))
    pairs[0::2] = offsets
    pairs[1::2] = positions
    if pairs.itemsize != 4:
        raise RuntimeError("array('I') is not 32-bit on this platform")
    if sys.byteorder == "little":
        pairs.byteswap()
    body = HEADER.pack(MAGIC, VERSION, 0, base, count, size, first_ms, last_ms,
                       len(offsets)) + pairs.tobytes()
    return body + CRC.pack(zlib.crc32(body))


def decode(data: bytes, interval: int) -> IndexFile:
    """The index in ``data``; ValueError if it is torn, damaged or of another format."""
    if len(data) < HEADER.size + CRC.size:
        raise ValueError("index file is too short")
    (crc,) = CRC.unpack_from(data, len(data) - CRC.size)
    body = data[: -CRC.size]
    if zlib.crc32(body) != crc:
        raise ValueError("index file checksum mismatch")
    magic, version, _, base, count, size, first_ms, last_ms, n = HEADER.unpack_from(body)
    if magic != MAGIC or version != VERSION:
        raise ValueError(f"not a segment index (magic {magic!r}, version {version})")
    if len(body) != HEADER.size + 8 * n:
        raise ValueError("index file length does not match its entry count")
    pairs = array("I")
    pairs.frombytes(body[HEADER.size:])
    if sys.byteorder == "little":
        pairs.byteswap()
    index = SparseIndex(interval=interval, offsets=pairs[0::2], positions=pairs[1::2])
    if n and (index.offsets[0] != 0 or index.positions[0] != 0):
        raise ValueError("index does not start at the segment's first record")
    if n and (index.offsets[-1] >= max(count, 1) or index.positions[-1] >= max(size, 1)):
        raise ValueError("index entry beyond the records it claims to cover")
    index.next_at = index.positions[-1] + interval if n else 0
    return IndexFile(base, count, size, first_ms, last_ms, index)


def write(path: Path, data: bytes) -> None:
    """Write an index file durably: temporary name, fsync, rename (the caller fsyncs the
    directory once for all the files it wrote)."""
    tmp = path.with_suffix(".idx.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read(path: Path, interval: int) -> IndexFile | None:
    """The index at ``path``, None if there is none; ValueError if it cannot be trusted."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode(data, interval)
