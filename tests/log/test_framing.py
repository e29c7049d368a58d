"""Frames: scanning a file in chunks finds exactly what scanning it whole finds."""

from __future__ import annotations

import io
from array import array

from hypothesis import given
from hypothesis import strategies as st

from log.framing import frame, scan, scan_file, unframe


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
