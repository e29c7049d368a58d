"""Ids (``projections.ids.new_id``) and request ids: version-7 UUIDs' bits, in the order they
were handed out (to the millisecond), never repeated, and a forked process draws its own."""

from __future__ import annotations

import os
import re
import time
import uuid

from projections import ids
from service.middleware import new_request_id

HEX = re.compile(r"[0-9a-f]{32}")


def test_ids_are_version_7_uuids_in_hex_and_never_repeat() -> None:
    ids_ = [ids.new_id() for _ in range(5000)]  # many draws of 256
    assert len(set(ids_)) == len(ids_)
    for one in ids_:
        assert HEX.fullmatch(one), one
        parsed = uuid.UUID(hex=one)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122, one


def test_an_id_starts_with_the_milliseconds_it_was_handed_out_at() -> None:
    before = time.time_ns() // 1_000_000
    one = ids.new_id()
    after = time.time_ns() // 1_000_000
    assert before <= int(one[:12], 16) <= after


def test_ids_handed_out_later_sort_after_earlier_ones() -> None:
    """What the store's id index wants (``projections/ids.py``): only ids of the same
    millisecond may come out of order, however many draws of random bits lie between."""
    earlier = [ids.new_id() for _ in range(300)]
    time.sleep(0.002)
    later = [ids.new_id() for _ in range(300)]
    assert max(earlier) < min(later)
    stamps = [int(one[:12], 16) for one in earlier + later]
    assert stamps == sorted(stamps)


def test_the_random_bits_differ_within_one_millisecond() -> None:
    tails = {ids.new_id()[12:] for _ in range(1000)}
    assert len(tails) == 1000


def test_request_ids_are_uuid_text() -> None:
    for _ in range(600):
        rid = new_request_id()
        assert rid.startswith("req-")
        parsed = uuid.UUID(rid[4:])
        assert str(parsed) == rid[4:] and parsed.version == 7


def test_a_forked_child_hands_out_none_of_its_parents_ids() -> None:
    ids.new_id()  # the parent holds undrawn random bits now
    left = set(ids._RANDOM)
    assert left
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        os.write(write, "".join(ids.new_id() for _ in range(300)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        got = pipe.read().decode()
    os.waitpid(pid, 0)
    child = {got[i + 12:i + 32] for i in range(0, len(got), 32)}
    assert len(child) == 300 and not child & left
