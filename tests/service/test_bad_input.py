"""Bad input on every write route: the right 400 and not one record appended (DESIGN §2.8)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.conftest import Service

PATCH_TYPE = {"Content-Type": "application/openstack-messaging-v2.0-json-patch"}

# Every route that appends, with a body it would accept.
WRITES: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", "/v2/queues/w", {"json": {"a": 1}}),
    ("PATCH", "/v2/queues/w", {"json": [{"op": "add", "path": "/metadata/a", "value": 1}],
                               "headers": PATCH_TYPE}),
    ("DELETE", "/v2/queues/w", {}),
    ("POST", "/v2/queues/w/purge", {}),
    ("POST", "/v2/queues/w/messages", {"json": {"messages": [{"body": 1}]}}),
    ("DELETE", "/v2/queues/w/messages?ids=a", {}),
    ("DELETE", "/v2/queues/w/messages?pop=1", {}),
    ("DELETE", "/v2/queues/w/messages/m", {}),
    ("POST", "/v2/queues/w/claims", {"json": {"ttl": 60}}),
    ("PATCH", "/v2/queues/w/claims/c", {"json": {"ttl": 60}}),
    ("DELETE", "/v2/queues/w/claims/c", {}),
    ("POST", "/v2/queues/w/subscriptions", {"json": {"subscriber": "http://x"}}),
    ("PATCH", "/v2/queues/w/subscriptions/s", {"json": {"ttl": 60}}),
    ("DELETE", "/v2/queues/w/subscriptions/s", {}),
    ("PUT", "/v2/queues/w/subscriptions/s/confirm", {"json": {"confirmed": True}}),
]

HEADER_FAILURES: list[tuple[dict[str, str], str]] = [
    ({"Client-ID": ""}, "Missing header value"),
    ({"Client-ID": "12345"}, "Wrong UUID value"),
    ({"Client-ID": "3b5b5f6c-6d7e-4f2a-9c1b-0a1b2c3d4e5"}, "Wrong UUID value"),
    ({"X-Project-ID": ""}, "Empty project header not allowed"),
    ({"X-Project-ID": "p" * 257}, "Invalid queue identification"),
]


def _merge(kwargs: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    return {**kwargs, "headers": {**kwargs.get("headers", {}), **headers}}


@pytest.mark.parametrize(("method", "path", "kwargs"), WRITES)
async def test_header_failures_append_nothing(svc: Service, method: str, path: str,
                                              kwargs: dict[str, Any]) -> None:
    before = await svc.ends()
    for headers, title in HEADER_FAILURES:
        r = await svc.client.request(method, path, **_merge(kwargs, headers))
        assert r.status_code == 400, (headers, r.text)
        assert r.json()["title"] == title
    r = await svc.client.request(method, path.replace("/w", "/bad%20name", 1), **kwargs)
    assert r.json()["title"] == "Invalid queue identification"
    r = await svc.client.request(method, path, **_merge(kwargs, {"Accept": "text/xml"}))
    assert r.status_code == 406
    assert await svc.ends() == before
    r = await svc.client.request(method, path, **kwargs)
    assert r.status_code < 500  # the same request with good headers is served


@pytest.mark.parametrize("path", [
    "/v2/queues/w/claims", "/v2/queues/w/subscriptions", "/v2/queues/w/purge",
    "/v2/queues/w/share",
])
async def test_oversized_bodies_are_refused_unread(svc: Service, path: str) -> None:
    before = await svc.ends()
    r = await svc.client.post(path, content=b'{"x": "' + b"y" * 262144 + b'"}')
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid request body",
                        "description": "Request body is too large."}
    assert await svc.ends() == before


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/v2/queues/w", b"{"),
    ("POST", "/v2/queues/w/messages", b'{"messages": [{"body": 1}]'),
    ("POST", "/v2/queues/w/claims", b"{'ttl': 60}"),
    ("PATCH", "/v2/queues/w/claims/c", b"ttl=60"),
    ("POST", "/v2/queues/w/subscriptions", b'{"subscriber": "http://x",}'),
    ("PATCH", "/v2/queues/w/subscriptions/s", b"[1,]"),
    ("PUT", "/v2/queues/w/subscriptions/s/confirm", b"true"),
    ("POST", "/v2/queues/w/purge", b'{"resource_types": ["messages"]'),
])
async def test_malformed_json_appends_nothing(svc: Service, method: str, path: str,
                                              body: bytes) -> None:
    before = await svc.ends()
    r = await svc.client.request(method, path, content=body,
                                 headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid request body",
                        "description": "Request body could not be parsed."}
    assert await svc.ends() == before


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/v2/queues/w", {"n": [1, {"m": 2**63}]}),
    ("POST", "/v2/queues/w/messages", {"messages": [{"body": 1, "delay": -(2**63) - 1}]}),
    ("POST", "/v2/queues/w/claims", {"grace": 10**30}),
    ("PATCH", "/v2/queues/w/claims/c", {"ttl": 60, "grace": 2**64}),
    ("POST", "/v2/queues/w/subscriptions", {"subscriber": "http://x", "options": {"n": 2**70}}),
    ("PUT", "/v2/queues/w/subscriptions/s/confirm", {"confirmed": True, "x": 2**63}),
])
async def test_huge_integers_append_nothing(svc: Service, method: str, path: str,
                                            body: Any) -> None:
    before = await svc.ends()
    r = await svc.client.request(method, path, json=body)
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid request body",
                        "description": "JSON contains integer that is too large."}
    assert await svc.ends() == before
