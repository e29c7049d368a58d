"""The commands the core keeps for apply's fold (``commands.decode_to_append``) stay bounded
by bytes as well as by count: appends that fail (a full disk) never fold their records, and
their entries must not pile up."""

from __future__ import annotations

from projections import commands as C
from projections.commands import NewMessage, PostMessages, decode_appended, decode_to_append


def _record(n: int, body_bytes: int) -> bytes:
    return C.encode(PostMessages(id=f"cmd-{n}", project="p", queue="q", time_ms=1,
                                 messages=[NewMessage(id=f"m{n}", body="x" * body_bytes)]))


def test_kept_records_stay_under_the_byte_cap_when_none_is_folded() -> None:
    body = 200_000
    for n in range(3 * C.DECODED_MAX_BYTES // body):
        decode_to_append(_record(n, body))
        assert C._decoded.size <= C.DECODED_MAX_BYTES
        assert C._decoded.size == sum(len(r) for r in C._decoded)


def test_a_kept_command_is_taken_once_and_its_bytes_given_back() -> None:
    record = _record(-1, 10)
    kept = decode_to_append(record)
    before = C._decoded.size
    assert decode_appended(record) is kept
    assert C._decoded.size == before - len(record)
    again = decode_appended(record)  # gone: decoded from the bytes themselves
    assert again is not kept and again == kept
