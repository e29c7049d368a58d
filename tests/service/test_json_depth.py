"""One JSON depth limit on every body; what is accepted is always readable back (issue 9 item 3).

Before: 252-1023 levels in a message body, metadata, a PATCH value or subscription options
answered 500 ("Recursion limit reached" from the encoder), and metadata or options a level or
two shallower were stored, after which ``GET /v2/queues?detailed=true`` or the subscription
list answered 500 for that project for good.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.validation import MAX_JSON_DEPTH, PATCH_MEDIA_TYPE, TOO_DEEP
from tests.service.conftest import Service

TOO_DEEP_BODY = {"title": "Invalid request body", "description": TOO_DEEP}


def nested(depth: int) -> bytes:
    """A JSON document of exactly ``depth`` levels of arrays."""
    return b"[" * depth + b"]" * depth


def nested_object(depth: int) -> bytes:
    """``{"a": {"a": ... {}}}`` of ``depth`` levels."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def _requests(value: bytes) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """Every body kind, carrying ``value`` at the top level of the document (+1 or +2)."""
    json_h = {"Content-Type": "application/json"}
    return [
        ("POST", "/v2/queues/q/messages", b'{"messages": [{"body": ' + value + b"}]}", json_h),
        ("PUT", "/v2/queues/meta", b'{"k": ' + value + b"}", json_h),
        ("PATCH", "/v2/queues/q", b'[{"op": "add", "path": "/metadata/k", "value": '
         + value + b"}]", {"Content-Type": PATCH_MEDIA_TYPE}),
        ("POST", "/v2/queues/q/subscriptions",
         b'{"subscriber": "http://127.0.0.1:9/x", "options": {"k": ' + value + b"}}", json_h),
        ("POST", "/v2/queues/q/claims", b'{"ttl": 60, "x": ' + value + b"}", json_h),
    ]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100, 253, 300, 1023, 1500, 100_000])
@pytest.mark.parametrize("kind", ["array", "object"])
async def test_too_deep_is_400_with_nothing_appended(svc: Service, depth: int,
                                                     kind: str) -> None:
    c = svc.client
    assert (await c.put("/v2/queues/q")).status_code == 201
    value = nested(depth) if kind == "array" else nested_object(depth)
    before = await svc.ends()
    for method, path, body, headers in _requests(value):
        r = await c.request(method, path, content=body, headers=headers)
        assert r.status_code == 400, (method, path, r.status_code)
        assert set(r.json()) == {"title", "description"}  # past a size cap: that 400 instead
        if len(body) < 60_000:
            assert r.json()["title"] == "Invalid request body", (method, path)
    assert await svc.ends() == before


async def test_the_limit_itself_is_named(svc: Service) -> None:
    r = await svc.client.put("/v2/queues/meta", content=b'{"k": ' + nested(MAX_JSON_DEPTH)
                             + b"}", headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()) == (400, TOO_DEEP_BODY)


async def test_deepest_accepted_documents_read_back(svc: Service) -> None:
    """At the limit everything is stored and every read that renders it answers 200."""
    c = svc.client
    value = nested(MAX_JSON_DEPTH - 3)  # the deepest envelope: {"messages": [{"body": v}]}
    assert (await c.put("/v2/queues/q")).status_code == 201
    for method, path, body, headers in _requests(value):
        r = await c.request(method, path, content=body, headers=headers)
        assert r.status_code in (200, 201, 204), (method, path, r.status_code, r.text)
    reads = ["/v2/queues?detailed=true", "/v2/queues/q", "/v2/queues/meta",
             "/v2/queues/q/messages?echo=true", "/v2/queues/q/subscriptions"]
    for path in reads:
        r = await c.get(path)
        assert r.status_code == 200, (path, r.text)
    got: Any = (await c.get("/v2/queues/meta")).json()["k"]
    depth = 0
    while isinstance(got, list):
        depth += 1
        got = got[0] if got else None
    assert depth == MAX_JSON_DEPTH - 3
