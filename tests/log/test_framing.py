"""Frames: scanning a file in chunks finds exactly what scanning it whole finds."""

from __future__ import annotations

import io
import os
from array import array
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from log.framing import frame, read_frames, scan, scan_file, unframe


@given(records=st.lists(st.binary(max_size=300), max_size=20), cut=st.integers(min_value=0),
       flip=st.one_of(st.none(), st.integers(min_value=0)),
       tail=st.sampled_from([b"", b"\x00" * 3, b"\x00" * 40, b"\xff" * 9]),
       chunk=st.sampled_from([1, 7, 64, 4096]))
def test_chunked_scan_equals_whole_scan(records: list[bytes], cut: int, flip: int | None,
                                        tail: bytes, chunk: int) -> None:
    data = bytearray(b"".join(frame(r) for r in records))
    data = data[: cut % (len(data) + 1)]
    if flip is not None and data:
        data[flip % len(data)] ^= 0xFF
    blob = bytes(data) + tail
    whole, chunked = array("q"), array("q")
    valid = scan(blob, whole)
    assert scan_file(io.BytesIO(blob), chunked, chunk=chunk) == valid
    assert chunked == whole
    assert unframe(blob[:valid], len(whole)) == records[: len(whole)] or flip is not None


def test_read_frames_skips_caps_and_verifies(tmp_path: Path) -> None:
    values = [os.urandom(n) for n in (0, 10, 5000, 70_000, 3, 200_000, 1)]
    data = b"".join(frame(v) for v in values)
    path = tmp_path / "seg"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        got, pos = read_frames(fd, 0, 0, len(values), len(data), 1 << 30)
        assert got == values and pos == len(data)
        got, _ = read_frames(fd, 0, 2, 3, len(data), 1 << 30)
        assert got == values[2:5]
        got, pos = read_frames(fd, 0, 3, 10, len(data), 100)  # at least one, then the cap
        assert got == values[3:4]
        again, _ = read_frames(fd, pos, 0, 1, len(data), 100)
        assert again == values[4:5]
        with pytest.raises(ValueError):
            read_frames(fd, 0, 0, len(values), len(data) - 1, 1 << 30)  # past the limit
    finally:
        os.close(fd)
    damaged = bytearray(data)
    damaged[len(frame(values[0])) + 9] ^= 1  # inside the second record's payload
    path.write_bytes(bytes(damaged))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="checksum"):
            read_frames(fd, 0, 0, 2, len(data), 1 << 30)
        assert read_frames(fd, 0, 2, 1, len(data), 1 << 30)[0] == values[2:3]  # skipped
    finally:
        os.close(fd)
