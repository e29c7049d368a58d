"""Record framing for segment files: ``[length u32][crc32 u32][payload]``.

The checksum covers the length bytes too, so a zeroed or half-written header never parses as a
valid empty record.
"""

from __future__ import annotations

import os
import struct
import zlib
from array import array
from collections.abc import Callable
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


def scan_sparse(fh: BinaryIO, start: int, first: int, add: Callable[[int, int], None],
                chunk: int = 4 * 1024 * 1024) -> tuple[int, int]:
    """Scan intact frames of ``fh`` from byte ``start`` (record number ``first`` there),
    calling ``add(record number, position)`` for each; returns (valid length, records).

    Reads in chunks, so opening a log never holds a segment in memory; stops at the first short
    or damaged frame (a torn tail) and reports where it starts.
    """
    fh.seek(start)
    base = start
    buf = b""
    number = first
    while True:
        data = fh.read(chunk)
        buf = buf + data if buf else data
        positions = array("q")
        consumed = scan(buf, positions, base)
        for pos in positions:
            add(number, pos)
            number += 1
        rest = len(buf) - consumed
        if not data:
            return base + consumed, number - first
        if rest >= HEADER_SIZE:
            length = HEADER.unpack_from(buf, consumed)[0]
            if consumed + HEADER_SIZE + length <= len(buf):
                return base + consumed, number - first  # a complete frame, bad checksum
        base += consumed
        buf = buf[consumed:]


def read_frames(fd: int, pos: int, skip: int, count: int, limit: int, max_bytes: int,
                expect: int = 0) -> tuple[list[bytes], int]:
    """From byte ``pos`` of ``fd``: skip ``skip`` frames, then decode up to ``count`` (at
    least one, then stopping before ``max_bytes`` of payload); never reads past ``limit``.

    ``expect`` is how many bytes the caller expects to need (its sparse index knows): read in
    one go when it is right. Returns the values and the position just after the last one
    decoded. Skipped frames are only walked by their lengths; every returned frame has its
    checksum verified (ValueError).
    """
    out: list[bytes] = []
    buf = b""
    buf_at = pos  # file position of buf[0]
    total = 0
    crc32 = zlib.crc32
    unpack = HEADER.unpack_from
    want = 16 * 1024  # read-ahead; doubles with each refill up to 1 MiB (long runs of reads)
    if expect > 0:
        buf = os.pread(fd, min(expect, limit - pos, max_bytes + 1024 * 1024), pos)

    def cover(start: int, stop: int) -> None:
        """Make ``buf`` hold the file bytes [start, stop) (reading ahead up to ``want``)."""
        nonlocal buf, buf_at, want
        if start >= buf_at and stop <= buf_at + len(buf):
            return
        want = min(want * 2, 1024 * 1024)
        if start < buf_at or start > buf_at + len(buf):
            buf, buf_at = b"", start
        else:
            buf, buf_at = buf[start - buf_at:], start
        need = stop - (buf_at + len(buf))
        fetch = min(max(need, want), max(limit - (buf_at + len(buf)), need))
        buf += os.pread(fd, fetch, buf_at + len(buf))
        if stop > buf_at + len(buf):
            raise ValueError(f"short frame at byte {start}")

    while len(out) < count:
        if pos + HEADER_SIZE > limit:
            raise ValueError(f"frame header at byte {pos} runs past the segment's end")
        cover(pos, pos + HEADER_SIZE)
        length, crc = unpack(buf, pos - buf_at)
        end = pos + HEADER_SIZE + length
        if end > limit:
            raise ValueError(f"frame at byte {pos} runs past the segment's end")
        if skip:
            skip -= 1
            pos = end
            continue
        if out and total + length > max_bytes:
            break
        cover(pos, end)
        rel = pos - buf_at
        body = buf[rel + HEADER_SIZE: rel + HEADER_SIZE + length]
        if crc32(body, crc32(buf[rel: rel + 4])) != crc:
            raise ValueError(f"checksum mismatch at byte {pos}")
        out.append(body)
        total += length
        pos = end
    return out, pos
