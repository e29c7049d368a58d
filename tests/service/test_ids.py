"""Ids (``service.context.new_id``) and request ids: version-4 UUIDs' bits, never repeated,
and a forked process draws its own."""

from __future__ import annotations

import os
import re
import uuid

from service import context
from service.middleware import new_request_id

HEX = re.compile(r"[0-9a-f]{32}")


def test_ids_are_version_4_uuids_in_hex_and_never_repeat() -> None:
    ids = [context.new_id() for _ in range(5000)]  # many draws of 256
    assert len(set(ids)) == len(ids)
    for one in ids:
        assert HEX.fullmatch(one), one
        parsed = uuid.UUID(hex=one)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122, one


def test_request_ids_are_uuid_text() -> None:
    for _ in range(600):
        rid = new_request_id()
        assert rid.startswith("req-")
        parsed = uuid.UUID(rid[4:])
        assert str(parsed) == rid[4:] and parsed.version == 4


def test_a_forked_child_hands_out_none_of_its_parents_ids() -> None:
    context.new_id()  # the parent holds undrawn ids now
    left = set(context._IDS)
    assert left
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        os.write(write, "".join(context.new_id() for _ in range(300)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        got = pipe.read().decode()
    os.waitpid(pid, 0)
    child = {got[i:i + 32] for i in range(0, len(got), 32)}
    assert len(child) == 300 and not child & left
