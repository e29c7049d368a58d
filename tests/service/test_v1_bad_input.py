"""Bad input on every v1.0 and v1.1 write route: the right 4xx, and not one record appended
(DESIGN §2.8) — the same pipeline as v2, with v1.0's own header rules."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.conftest import Factory, Service

# Every v1.x route that appends, with a body it would accept.
WRITES_1_0: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", "/v1/queues/w", {}),
    ("PUT", "/v1/queues/w/metadata", {"json": {"a": 1}}),
    ("DELETE", "/v1/queues/w", {}),
    ("POST", "/v1/queues/w/messages", {"json": [{"body": 1, "ttl": 60}]}),
    ("DELETE", "/v1/queues/w/messages?ids=a", {}),
    ("DELETE", "/v1/queues/w/messages/m", {}),
    ("POST", "/v1/queues/w/claims", {"json": {"ttl": 60, "grace": 60}}),
    ("PATCH", "/v1/queues/w/claims/c", {"json": {"ttl": 60}}),
    ("DELETE", "/v1/queues/w/claims/c", {}),
]
WRITES_1_1: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", "/v1.1/queues/w", {"json": {"a": 1}}),
    ("DELETE", "/v1.1/queues/w", {}),
    ("POST", "/v1.1/queues/w/messages", {"json": {"messages": [{"body": 1}]}}),
    ("DELETE", "/v1.1/queues/w/messages?ids=a", {}),
    ("DELETE", "/v1.1/queues/w/messages?pop=1", {}),
    ("DELETE", "/v1.1/queues/w/messages/m", {}),
    ("POST", "/v1.1/queues/w/claims", {"json": {"ttl": 60}}),
    ("PATCH", "/v1.1/queues/w/claims/c", {"json": {"ttl": 60}}),
    ("DELETE", "/v1.1/queues/w/claims/c", {}),
]

# v1.0 checks Client-ID only when present, and has no required X-Project-ID.
HEADERS_1_0: list[tuple[dict[str, str], str]] = [
    ({"Client-ID": ""}, "Wrong UUID value"),
    ({"Client-ID": "12345"}, "Wrong UUID value"),
    ({"X-Project-ID": ""}, "Empty project header not allowed"),
    ({"X-Project-ID": "p" * 257}, "Invalid queue identification"),
]
HEADERS_1_1: list[tuple[dict[str, str], str]] = [
    ({"Client-ID": ""}, "Missing header value"),
    ({"Client-ID": "12345"}, "Wrong UUID value"),
    ({"X-Project-ID": ""}, "Empty project header not allowed"),
    ({"X-Project-ID": "p" * 257}, "Invalid queue identification"),
]


def _merge(kwargs: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    return {**kwargs, "headers": {**kwargs.get("headers", {}), **headers}}


CASES = [(m, p, k, HEADERS_1_0) for m, p, k in WRITES_1_0] + [
    (m, p, k, HEADERS_1_1) for m, p, k in WRITES_1_1]


@pytest.mark.parametrize(("method", "path", "kwargs", "failures"), CASES)
async def test_header_failures_append_nothing(svc: Service, method: str, path: str,
                                              kwargs: dict[str, Any],
                                              failures: list[tuple[dict[str, str], str]]
                                              ) -> None:
    before = await svc.ends()
    for headers, title in failures:
        r = await svc.client.request(method, path, **_merge(kwargs, headers))
        assert r.status_code == 400, (headers, r.text)
        assert r.json()["title"] == title
    r = await svc.client.request(method, path.replace("/w", "/bad%20name", 1), **kwargs)
    assert r.json()["title"] == "Invalid queue identification"
    r = await svc.client.request(method, path, **_merge(kwargs, {"Accept": "text/xml"}))
    assert (r.status_code, r.content) == (406, b"")
    r = await svc.client.request(method, path, **_merge(kwargs, {
        "Content-Type": "application/x-www-form-urlencoded"}), content=b"a=1")
    assert (r.status_code, r.json()["title"]) == (400, "Invalid Content-Type")
    assert await svc.ends() == before
    r = await svc.client.request(method, path, **kwargs)
    assert r.status_code < 500  # the same request with good headers is served


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/v1/queues/w/metadata", b"{"),
    ("POST", "/v1/queues/w/messages", b'[{"body": 1, "ttl": 60}'),
    ("POST", "/v1/queues/w/claims", b"{'ttl': 60}"),
    ("PATCH", "/v1/queues/w/claims/c", b"ttl=60"),
    ("PUT", "/v1.1/queues/w", b"{"),
    ("POST", "/v1.1/queues/w/messages", b'{"messages": [{"body": 1}]'),
    ("POST", "/v1.1/queues/w/claims", b"{'ttl': 60}"),
    ("PATCH", "/v1.1/queues/w/claims/c", b"[1,]"),
])
async def test_malformed_json_appends_nothing(svc: Service, method: str, path: str,
                                              body: bytes) -> None:
    await svc.client.put("/v1/queues/w")
    before = await svc.ends()
    r = await svc.client.request(method, path, content=body,
                                 headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()) == (400, {"title": "Invalid request body",
                                               "description": "Request body could not be "
                                                              "parsed."})
    assert await svc.ends() == before


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/v1/queues/w/metadata", {"n": [1, {"m": 2**63}]}),
    ("POST", "/v1/queues/w/messages", [{"body": 2**64, "ttl": 60}]),
    ("POST", "/v1/queues/w/claims", {"ttl": 60, "grace": 10**30}),
    ("PUT", "/v1.1/queues/w", {"n": -(2**63) - 1}),
    ("POST", "/v1.1/queues/w/messages", {"messages": [{"body": 1, "ttl": 2**70}]}),
    ("PATCH", "/v1.1/queues/w/claims/c", {"ttl": 60, "grace": 2**64}),
])
async def test_huge_integers_append_nothing(svc: Service, method: str, path: str,
                                            body: Any) -> None:
    await svc.client.put("/v1/queues/w")
    before = await svc.ends()
    r = await svc.client.request(method, path, json=body)
    assert (r.status_code, r.json()) == (400, {"title": "Invalid request body",
                                               "description": "JSON contains integer that "
                                                              "is too large."})
    assert await svc.ends() == before


@pytest.mark.parametrize("path", ["/v1/queues/w/claims", "/v1/queues/w/claims/c",
                                  "/v1.1/queues/w/claims", "/v1.1/queues/w/claims/c"])
async def test_oversized_claim_bodies_are_refused_unread(svc: Service, path: str) -> None:
    before = await svc.ends()
    method = "POST" if path.endswith("claims") else "PATCH"
    r = await svc.client.request(method, path, content=b'{"x": "' + b"y" * 262144 + b'"}')
    assert (r.status_code, r.json()) == (400, {"title": "Invalid request body",
                                               "description": "Request body is too large."})
    assert await svc.ends() == before


async def test_v1_0_missing_queue_refusal_is_recorded_not_applied(svc: Service) -> None:
    """The one v1.0 refusal that needs state (is the queue there?) is decided by apply, so
    it is recorded once and changes nothing: the queue stays missing."""
    r = await svc.client.post("/v1/queues/w/messages", json=[{"body": 1, "ttl": 60}])
    assert r.status_code == 404
    assert (await svc.client.head("/v1/queues/w")).status_code == 404
    r = await svc.client.get("/v1/queues/w/messages", params={"echo": "true"})
    assert r.status_code == 204


async def test_token_auth_guards_v1_routes(make_service: Factory) -> None:
    from ops.settings import TokenGrant

    svc = await make_service(auth="token", tokens={"t0k": TokenGrant(project="p1")})
    before = await svc.ends()
    for method, path, kwargs in [*WRITES_1_0, *WRITES_1_1]:
        r = await svc.client.request(method, path, **kwargs)
        assert r.status_code == 401, path
    assert await svc.ends() == before
    r = await svc.client.put("/v1/queues/w", headers={"X-Auth-Token": "t0k"})
    assert r.status_code == 201
    r = await svc.client.head("/v1/queues/w", headers={"X-Auth-Token": "t0k",
                                                       "X-Project-ID": "other"})
    assert r.status_code == 204  # the token's project, not the header's


async def test_stuck_projection_is_503_on_every_v1_route(make_service: Factory) -> None:
    """The faulty-driver cases of upstream's v1 tests: every route answers 503 with Zaqar's
    body and Retry-After, health and ping 503 (HEAD stays 204)."""
    svc = await make_service(request_timeout=0.2, admin_mode=True)
    await svc.runner.stop()
    await svc.log.append(0, [b"not applied"])
    await svc.log.append(1, [b"not applied"])
    await svc.log.append(2, [b"not applied"])
    await svc.log.append(3, [b"not applied"])
    for method, path, kwargs in [*WRITES_1_0, *WRITES_1_1,
                                 ("GET", "/v1/queues", {}), ("GET", "/v1/queues/w", {}),
                                 ("GET", "/v1/queues/w/metadata", {}),
                                 ("GET", "/v1/queues/w/stats", {}),
                                 ("GET", "/v1/queues/w/messages", {}),
                                 ("GET", "/v1/queues/w/messages/m", {}),
                                 ("GET", "/v1/queues/w/claims/c", {}),
                                 ("GET", "/v1.1/queues", {}), ("GET", "/v1.1/queues/w", {}),
                                 ("GET", "/v1.1/queues/w/stats", {}),
                                 ("GET", "/v1.1/queues/w/messages?ids=a", {}),
                                 ("GET", "/v1.1/queues/w/claims/c", {}),
                                 ("GET", "/v1.1/health", {})]:
        r = await svc.client.request(method, path, **kwargs)
        assert r.status_code == 503, (method, path, r.text)
        assert r.headers["retry-after"] == "1"
        assert r.json()["title"] == "Service temporarily unavailable"
    for path in ("/v1/health", "/v1.1/ping"):
        assert (await svc.client.get(path)).status_code == 503
        assert (await svc.client.head(path)).status_code == 204


@pytest.mark.parametrize(("path", "allow"), [
    ("/v1/queues/q", "GET, HEAD, PUT, DELETE, OPTIONS"),
    ("/v1/queues/q/messages", "GET, POST, DELETE, OPTIONS"),
    ("/v1.1/queues/q", "GET, PUT, DELETE, OPTIONS"),
    ("/v1.1/queues/q/claims/c", "GET, PATCH, DELETE, OPTIONS"),
])
async def test_options_needs_no_headers(svc: Service, path: str, allow: str) -> None:
    import httpx

    async with httpx.AsyncClient(transport=svc.client._transport,
                                 base_url="http://marconi.test") as c:
        r = await c.options(path)
    assert (r.status_code, r.headers["allow"], r.content) == (200, allow, b"")


@pytest.mark.parametrize(("path", "params", "name"), [
    ("/v1/queues", {"limit": "x"}, "limit"),
    ("/v1/queues", {"detailed": "maybe"}, "detailed"),
    ("/v1.1/queues", {"detailed": "maybe"}, "detailed"),
    ("/v1/queues/w/messages", {"echo": "maybe"}, "echo"),
    ("/v1.1/queues/w/messages", {"include_claimed": "2"}, "include_claimed"),
    ("/v1.1/queues/w/messages", {"limit": "ten"}, "limit"),
])
async def test_bad_query_parameters(svc: Service, path: str, params: dict[str, str],
                                    name: str) -> None:
    r = await svc.client.get(path, params=params)
    assert r.status_code == 400
    assert r.json()["title"] == "Invalid parameter"
    assert r.json()["description"].startswith(f'The "{name}" parameter is invalid.')
    before = await svc.ends()
    r = await svc.client.post(path.replace("/messages", "/claims") if "messages" in path
                              else "/v1.1/queues/w/claims", params={"limit": "x"},
                              json={"ttl": 60, "grace": 60})
    assert (r.status_code, r.json()["title"]) == (400, "Invalid parameter")
    assert await svc.ends() == before
