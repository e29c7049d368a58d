"""Record framing for segment files: ``[length u32][crc32 u32][payload]``.

The checksum covers the length bytes too, so a zeroed or half-written header never parses as a
valid empty record.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from typing import BinaryIO

HEADER = struct.Struct(">II")
HEADER_SIZE = HEADER.size


def frame(payload: bytes) -> bytes:
    """The on-disk bytes of one record."""
    length = len(payload).to_bytes(4, "big")
    crc = zlib.crc32(payload, zlib.crc32(length))
    return length + crc.to_bytes(4, "big") + payload


def scan(buf: bytes | memoryview, positions: array, base: int = 0) -> int:
    """Append the start position (plus ``base``) of every intact frame in ``buf``.

    Stops at the first frame that is short or fails its checksum; returns the byte position
    just past the last intact frame (the valid length of ``buf``).
    """
    pos = 0
    end = len(buf)
    unpack = HEADER.unpack_from
    crc32 = zlib.crc32
    while pos + HEADER_SIZE <= end:
        length, crc = unpack(buf, pos)
        body_start = pos + HEADER_SIZE
        body_end = body_start + length
        if body_end > end:
            break
        if crc32(buf[body_start:body_end], crc32(buf[pos : pos + 4])) != crc:
            break
        positions.append(base + pos)
        pos = body_end
    return pos


def scan_file(fh: BinaryIO, positions: array, chunk: int = 4 * 1024 * 1024) -> int:
    """``scan`` over a whole file read in chunks, so opening a log never holds a segment in
    memory; returns the valid length (where the first short or damaged frame starts)."""
    base = 0
    buf = b""
    while True:
        data = fh.read(chunk)
        buf = buf + data if buf else data
        consumed = scan(buf, positions, base)
        rest = len(buf) - consumed
        if not data:
            return base + consumed
        if rest >= HEADER_SIZE:
            length = HEADER.unpack_from(buf, consumed)[0]
            if consumed + HEADER_SIZE + length <= len(buf):
                return base + consumed  # a complete frame that fails its checksum
        base += consumed
        buf = buf[consumed:]


def unframe(buf: bytes, count: int) -> list[bytes]:
    """Decode ``count`` consecutive frames from ``buf``, verifying each checksum."""
    out: list[bytes] = []
    pos = 0
    unpack = HEADER.unpack_from
    crc32 = zlib.crc32
    view = memoryview(buf)
    for _ in range(count):
        length, crc = unpack(buf, pos)
        body_start = pos + HEADER_SIZE
        body = bytes(view[body_start : body_start + length])
        if len(body) != length or crc32(body, crc32(view[pos : pos + 4])) != crc:
            raise ValueError(f"corrupt frame at byte {pos}")
        out.append(body)
        pos = body_start + length
    return out
