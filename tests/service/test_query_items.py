"""``service.validation.query_items`` reads a query string exactly as Starlette's
``QueryParams`` does (its fast path skips ``parse_qsl`` when nothing needs unquoting)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from service.validation import query_items

CASES = [b"", b"&", b"&&", b"a", b"a=", b"=b", b"=", b"a=b=c", b"a&&b=1", b"a=1&a=2",
         b"claim_id=7a6b5c4d3e2f4a1b8c9d0e1f2a3b4c5d", b"limit=5&echo=true", b"a;b=1",
         b"ids=a,b,c", b"a=%20b", b"a+b=c+d", b"a=%zz", b"a=%C3%A9", b"\xe9=\xff", b"a=b#c"]


def expected(raw: bytes) -> list[tuple[str, str]]:
    return QueryParams(raw).multi_items()


@pytest.mark.parametrize("raw", CASES)
def test_known_query_strings_read_as_starlette_reads_them(raw: bytes) -> None:
    assert query_items(raw) == expected(raw)


@given(st.lists(st.sampled_from([b"a", b"b", b"=", b"&", b"%", b"+", b"2", b"0", b";",
                                 b"\xe9", b" ", b"%41", b"#"]), max_size=12))
def test_any_query_string_reads_as_starlette_reads_it(parts: list[bytes]) -> None:
    raw = b"".join(parts)
    assert query_items(raw) == expected(raw)
