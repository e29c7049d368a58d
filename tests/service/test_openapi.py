"""The OpenAPI document: it names exactly what the app serves, and its bounds are the ones
validation enforces (each checked at the boundary against the real app, under non-default
limits so a number copied from the defaults would fail)."""

from __future__ import annotations

import json
import uuid
from itertools import product
from typing import Any

import httpx
import pytest
import schemathesis

from ops.settings import Settings, TokenGrant
from service import openapi
from service.app import build_routes
from tests.service.conftest import Factory, Service

LIMITS = dict(
    max_queues_per_page=12, max_messages_per_page=13, max_messages_per_claim_or_pop=14,
    max_subscriptions_per_page=15, max_queue_metadata=3000, max_messages_post_size=5000,
    max_message_ttl=5000, max_message_delay=100, max_claim_ttl=700, max_claim_grace=800,
    secret_key="k",
)


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in doc["paths"].items() for method in item}


@pytest.mark.parametrize(("admin_mode", "with_history"), list(product([False, True], repeat=2)))
def test_document_names_every_route_and_method_and_no_other(admin_mode: bool,
                                                            with_history: bool) -> None:
    routes = build_routes(admin_mode, with_history=with_history)
    served = {(p, m) for p, m in openapi.served(routes) if openapi.documented(p)}
    doc = openapi.build(Settings(admin_mode=admin_mode), routes)
    assert operations(doc) == served
    assert ("/v2/health", "GET") in served if admin_mode else ("/v2/health", "GET") not in served


def test_every_description_is_of_a_route_the_app_can_serve() -> None:
    """A description left behind by a removed route fails here (and a new route without one
    fails above)."""
    full = openapi.served(build_routes(True, with_history=True))
    described = {key for key in openapi.OPERATIONS if openapi.documented(key[0])}
    assert described == {key for key in full if openapi.documented(key[0])}


def test_other_api_versions_are_left_to_their_own_documents() -> None:
    assert openapi.documented("/v2/queues") and openapi.documented("/")
    assert not openapi.documented("/v1.1/queues") and not openapi.documented("/v1/queues")
    assert not openapi.documented("/v2")  # not routed (§1.1)


def test_schemathesis_loads_every_operation() -> None:
    doc = openapi.build(Settings(**LIMITS, admin_mode=True), build_routes(True,
                                                                          with_history=True))
    schema = schemathesis.openapi.from_dict(doc)
    loaded = [result.ok() for result in schema.get_all_operations()]
    assert {(op.path, op.method.upper()) for op in loaded} == operations(doc)


async def test_served_document_is_the_apps_own(make_service: Factory) -> None:
    svc = await make_service(**LIMITS)
    r = await svc.client.get(openapi.PATH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == json.loads(json.dumps(openapi.build(svc.settings,
                                                           build_routes(False))))


async def test_document_passes_the_first_checks_like_any_v2_route(make_service: Factory) -> None:
    svc = await make_service()
    r = await svc.client.get(openapi.PATH, headers={"Client-ID": ""})
    assert r.status_code == 400 and r.json()["title"] == "Missing header value"
    r = await svc.client.get(openapi.PATH, headers={"Accept": "text/html"})
    assert r.status_code == 406
    r = await svc.client.post(openapi.PATH)
    assert r.status_code == 405 and r.headers["allow"] == "GET, OPTIONS"


async def test_document_needs_a_token_in_token_mode(make_service: Factory) -> None:
    svc = await make_service(auth="token", tokens={"t1": TokenGrant(project="p")})
    r = await svc.client.get(openapi.PATH)
    assert r.status_code == 401
    r = await svc.client.get(openapi.PATH, headers={"X-Auth-Token": "t1"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["paths"]["/v2/queues"]["get"]["security"] == [{"token": []}]
    assert "security" not in doc["paths"]["/"]["get"]


# -- the bounds in the document are the bounds validation enforces -------------------------


def _schema(doc: dict[str, Any], path: str, method: str, *keys: str) -> dict[str, Any]:
    """A request-body property schema, with nullable ``oneOf`` unwrapped."""
    body = doc["paths"][path][method]["requestBody"]["content"]
    node = next(iter(body.values()))["schema"]
    for key in keys:
        node = node["items"] if key == "[]" else node["properties"][key]
        if "oneOf" in node:
            node = node["oneOf"][0]
    return node


def _param(doc: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    for param in doc["paths"][path][method]["parameters"]:
        if param.get("name") == name:
            return param["schema"]
    raise KeyError(name)


def _bounds(schema: dict[str, Any]) -> list[tuple[int, bool]]:
    """(value, accepted) at each end of an integer range."""
    out = [(schema["minimum"], True), (schema["minimum"] - 1, False)]
    if "maximum" in schema:
        out += [(schema["maximum"], True), (schema["maximum"] + 1, False)]
    return out


async def _doc(svc: Service) -> dict[str, Any]:
    r = await svc.client.get(openapi.PATH)
    assert r.status_code == 200
    return r.json()


def _fresh() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


def _verdict(r: httpx.Response, accepted: bool, what: str) -> None:
    if accepted:
        assert r.status_code != 400, f"{what}: refused {r.json()}"
        assert r.status_code < 500, what
    else:
        assert r.status_code == 400, f"{what}: got {r.status_code}"


Q = "/v2/queues/{queue_name}"


async def test_body_integer_bounds_are_enforced_exactly(make_service: Factory) -> None:
    svc = await make_service(**LIMITS)
    doc = await _doc(svc)
    c = svc.client
    cases = {
        ("messages ttl", f"{Q}/messages", "post", ("messages", "[]", "ttl")):
            lambda q, v: c.post(f"/v2/queues/{q}/messages",
                                json={"messages": [{"body": 1, "ttl": v}]}),
        ("claim ttl", f"{Q}/claims", "post", ("ttl",)):
            lambda q, v: c.post(f"/v2/queues/{q}/claims", json={"ttl": v}),
        ("claim grace", f"{Q}/claims", "post", ("grace",)):
            lambda q, v: c.post(f"/v2/queues/{q}/claims", json={"grace": v}),
        ("claim renew ttl", f"{Q}/claims/{{claim_id}}", "patch", ("ttl",)):
            lambda q, v: c.patch(f"/v2/queues/{q}/claims/nope", json={"ttl": v}),
        ("subscription ttl", f"{Q}/subscriptions", "post", ("ttl",)):
            lambda q, v: c.post(f"/v2/queues/{q}/subscriptions",
                                json={"subscriber": f"http://h/{uuid.uuid4().hex}", "ttl": v}),
    }
    for key in ("_max_messages_post_size", "_default_message_ttl", "_default_message_delay",
                "_dead_letter_queue_messages_ttl"):
        cases[(key, Q, "put", (key,))] = (
            lambda q, v, key=key: c.put(f"/v2/queues/{q}", json={key: v}))
    checked = 0
    for (what, path, method, keys), send in cases.items():
        schema = _schema(doc, path, method, *keys)
        assert schema["type"] == "integer", what
        bounds = _bounds(schema)
        if what == "subscription ttl":  # the real maximum moves with the clock (year 9999)
            bounds = [*bounds[:3], (2**62, False)]
        for value, accepted in bounds:
            _verdict(await send(_fresh(), value), accepted, f"{what}={value}")
            checked += 1
    assert checked == 4 * len(cases)
    # the configured limits, not upstream's defaults
    assert _schema(doc, f"{Q}/messages", "post", "messages", "[]", "ttl")["maximum"] == 5000
    assert _schema(doc, f"{Q}/claims", "post", "grace")["maximum"] == 800


async def test_query_bounds_are_enforced_exactly(make_service: Factory) -> None:
    svc = await make_service(**LIMITS)
    doc = await _doc(svc)
    c = svc.client
    q = _fresh()
    cases = [
        ("/v2/queues", "get", "limit", lambda v: c.get("/v2/queues", params={"limit": v})),
        (f"{Q}/messages", "get", "limit",
         lambda v: c.get(f"/v2/queues/{q}/messages", params={"limit": v})),
        (f"{Q}/subscriptions", "get", "limit",
         lambda v: c.get(f"/v2/queues/{q}/subscriptions", params={"limit": v})),
        (f"{Q}/claims", "post", "limit",
         lambda v: c.post(f"/v2/queues/{q}/claims", params={"limit": v})),
        (f"{Q}/messages", "delete", "pop",
         lambda v: c.delete(f"/v2/queues/{q}/messages", params={"pop": v})),
    ]
    for path, method, name, send in cases:
        for value, accepted in _bounds(_param(doc, path, method, name)):
            _verdict(await send(value), accepted, f"{method} {path} {name}={value}")
    for method in ("get", "delete"):
        most = _param(doc, f"{Q}/messages", method, "ids")["maxItems"]
        assert most == 13
        for count, accepted in ((most, True), (most + 1, False)):
            ids = ",".join(f"m{i}" for i in range(count))
            r = await c.request(method.upper(), f"/v2/queues/{q}/messages", params={"ids": ids})
            _verdict(r, accepted, f"{method} ids x{count}")


async def test_body_size_limits_are_enforced_exactly(make_service: Factory) -> None:
    svc = await make_service(**LIMITS)
    doc = await _doc(svc)
    c = svc.client

    def padded(size: int, wrap: Any) -> bytes:
        raw = json.dumps(wrap("")).encode()
        return json.dumps(wrap("x" * (size - len(raw)))).encode()

    cases = [
        (Q, "put", lambda q, body: c.put(f"/v2/queues/{q}", content=body),
         lambda pad: {"description": pad}),
        (f"{Q}/messages", "post", lambda q, body: c.post(f"/v2/queues/{q}/messages",
                                                         content=body),
         lambda pad: {"messages": [{"body": pad}]}),
    ]
    for path, method, send, wrap in cases:
        limit = doc["paths"][path][method]["requestBody"]["x-max-bytes"]
        for size, accepted in ((limit, True), (limit + 1, False)):
            body = padded(size, wrap)
            assert len(body) == size
            _verdict(await send(_fresh(), body), accepted, f"{method} {path} {size} bytes")


async def test_enumerations_are_the_accepted_values(make_service: Factory) -> None:
    svc = await make_service(**LIMITS)
    doc = await _doc(svc)
    c = svc.client
    paths = _schema(doc, f"{Q}/share", "post", "paths", "[]")["enum"]
    for kind in paths:
        _verdict(await c.post(f"/v2/queues/{_fresh()}/share", json={"paths": [kind]}), True,
                 kind)
    _verdict(await c.post(f"/v2/queues/{_fresh()}/share", json={"paths": ["queues"]}), False,
             "queues")
    for kind in _schema(doc, f"{Q}/purge", "post", "resource_types", "[]")["enum"]:
        _verdict(await c.post(f"/v2/queues/{_fresh()}/purge",
                              json={"resource_types": [kind]}), True, kind)
    for word in _param(doc, "/v2/queues", "get", "detailed")["enum"]:
        _verdict(await c.get("/v2/queues", params={"detailed": word}), True, word)
    _verdict(await c.get("/v2/queues", params={"detailed": "maybe"}), False, "maybe")
    name = _param(doc, f"{Q}/stats", "get", "queue_name")
    ok = "a" * name["maxLength"]
    _verdict(await c.get(f"/v2/queues/{ok}/stats"), True, "longest name")
    _verdict(await c.get(f"/v2/queues/{ok}a/stats"), False, "name too long")
