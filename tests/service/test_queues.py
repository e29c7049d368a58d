"""Queue endpoints (zaqar-api.md §5, §6)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.service.conftest import Factory, Service

PATCH_TYPE = {"Content-Type": "application/openstack-messaging-v2.0-json-patch"}
DEFAULTS = {
    "_max_messages_post_size": 262144, "_default_message_ttl": 3600,
    "_default_message_delay": 0, "_dead_letter_queue": None,
    "_dead_letter_queue_messages_ttl": None, "_max_claim_count": None,
    "_enable_encrypt_messages": False,
}


async def patch(svc: Service, queue: str, ops: Any, **headers: str) -> Any:
    return await svc.client.patch(f"/v2/queues/{queue}", json=ops,
                                  headers={**PATCH_TYPE, **headers})


# -- list ------------------------------------------------------------------------------------


async def test_list_empty(svc: Service) -> None:
    r = await svc.client.get("/v2/queues")
    assert (r.status_code, r.json()) == (200, {"queues": [], "links": []})


async def test_list_pages_over_every_partition_in_name_order(svc: Service) -> None:
    names = [f"q{i:02d}" for i in range(25)]
    for name in reversed(names):
        assert (await svc.client.put(f"/v2/queues/{name}")).status_code == 201
    partitions = {svc.gateway.partition_of("proj", n) for n in names}
    assert len(partitions) > 1  # the fan-out is really exercised
    r = await svc.client.get("/v2/queues")
    body = r.json()
    assert [q["name"] for q in body["queues"]] == names[:10]  # default limit 10
    assert body["queues"][0] == {"name": "q00", "href": "/v2/queues/q00"}
    assert body["links"] == [{"rel": "next", "href": "/v2/queues?marker=q09"}]
    seen: list[str] = []
    href = "/v2/queues?limit=7"
    while True:
        page = (await svc.client.get(href)).json()
        if not page["queues"]:
            assert page["links"] == []
            break
        assert len(page["queues"]) == 7 or len(seen) + len(page["queues"]) == 25
        seen += [q["name"] for q in page["queues"]]
        href = page["links"][0]["href"]
        assert href.startswith("/v2/queues?limit=7&marker=")
    assert seen == names


async def test_list_detailed_name_count_and_filters(svc: Service) -> None:
    await svc.client.put("/v2/queues/alpha", json={"color": "red", "size": 3})
    await svc.client.put("/v2/queues/alphabet", json={"color": "blue"})
    await svc.client.put("/v2/queues/beta", json={"color": "red", "_default_message_ttl": 120})
    r = await svc.client.get("/v2/queues", params={"detailed": "true", "limit": 2})
    body = r.json()
    assert body["queues"][0] == {"name": "alpha", "href": "/v2/queues/alpha",
                                 "metadata": {"color": "red", "size": 3, **DEFAULTS}}
    assert body["links"][0]["href"] == "/v2/queues?limit=2&detailed=true&marker=alphabet"
    r = await svc.client.get("/v2/queues", params={"name": "alph", "with_count": "yes"})
    assert [q["name"] for q in r.json()["queues"]] == ["alpha", "alphabet"]
    assert r.json()["count"] == 3
    assert "metadata" not in r.json()["queues"][0]
    r = await svc.client.get("/v2/queues", params={"color": "red"})
    assert [q["name"] for q in r.json()["queues"]] == ["alpha", "beta"]
    assert r.json()["links"][0]["href"] == "/v2/queues?color=red&marker=beta"
    r = await svc.client.get("/v2/queues", params={"size": "3"})  # ints compare as ints
    assert [q["name"] for q in r.json()["queues"]] == ["alpha"]
    r = await svc.client.get("/v2/queues", params={"marker": "alphabet"})
    assert [q["name"] for q in r.json()["queues"]] == ["beta"]
    r = await svc.client.get("/v2/queues", params={"marker": "zzz", "with_count": "true"})
    assert r.json() == {"queues": [], "links": [], "count": 3}
    r = await svc.client.get("/v2/queues", params={"with_count": "true"},
                             headers={"X-Project-ID": "other"})
    assert r.json() == {"queues": [], "links": []}  # count omitted when 0


@pytest.mark.parametrize(("params", "title", "description"), [
    ({"limit": "0"}, "Invalid API request", "Limit must be at least 1 and no greater than 20."),
    ({"limit": "21"}, "Invalid API request", "Limit must be at least 1 and no greater than 20."),
    ({"limit": "x"}, "Invalid parameter",
     'The "limit" parameter is invalid. The value must be an integer.'),
    ({"detailed": "maybe"}, "Invalid parameter",
     'The "detailed" parameter is invalid. The value of the parameter must be "true" or '
     '"false".'),
    ({"with_count": "TRUE"}, "Invalid parameter",
     'The "with_count" parameter is invalid. The value of the parameter must be "true" or '
     '"false".'),
])
async def test_list_bad_params(svc: Service, params: dict[str, str], title: str,
                               description: str) -> None:
    r = await svc.client.get("/v2/queues", params=params)
    assert r.status_code == 400
    assert r.json() == {"title": title, "description": description}


async def test_list_blank_params_are_absent(svc: Service) -> None:
    r = await svc.client.get("/v2/queues?limit=&detailed=")
    assert r.status_code == 200


async def test_projects_are_isolated(svc: Service) -> None:
    await svc.client.put("/v2/queues/shared")
    await svc.client.post("/v2/queues/shared/messages", json={"messages": [{"body": 1}]})
    other = {"X-Project-ID": "other"}
    assert (await svc.client.get("/v2/queues", headers=other)).json()["queues"] == []
    r = await svc.client.get("/v2/queues/shared/messages", headers=other)
    assert r.json() == {"messages": [], "links": []}
    stats = (await svc.client.get("/v2/queues/shared/stats", headers=other)).json()
    assert stats == {"messages": {"claimed": 0, "free": 0, "total": 0}}


# -- create / get / delete ---------------------------------------------------------------------


async def test_put_201_then_204_keeps_first_metadata(svc: Service) -> None:
    r = await svc.client.put("/v2/queues/q", json={"a": 1})
    assert (r.status_code, r.headers["location"]) == (201, "/v2/queues/q")
    r = await svc.client.put("/v2/queues/q", json={"a": 2})
    assert (r.status_code, r.headers["location"]) == (204, "/v2/queues/q")
    assert (await svc.client.get("/v2/queues/q")).json() == {"a": 1, **DEFAULTS}


async def test_put_without_body_and_with_empty_body(svc: Service) -> None:
    assert (await svc.client.put("/v2/queues/a")).status_code == 201
    assert (await svc.client.put("/v2/queues/b", content=b"",
                                 headers={"Content-Length": "0"})).status_code == 201
    assert (await svc.client.get("/v2/queues/a")).json() == DEFAULTS


@pytest.mark.parametrize(("body", "title", "description"), [
    (b"[1]", "Invalid request body", "Document type not supported."),
    (b"junk", "Invalid request body", "Request body could not be parsed."),
    (b'"Try"', "Invalid request body", "Request body could not be parsed."),
    (b"123", "Invalid request body", "Request body could not be parsed."),
    (b'{"_default_message_ttl": 10}', "Invalid API request",
     "_default_message_ttl can not exceed 1209600 seconds, and must be at least 60 seconds "
     "long."),
    (b'{"_default_message_ttl": true}', "Invalid API request",
     "_default_message_ttl can not exceed 1209600 seconds, and must be at least 60 seconds "
     "long."),
    (b'{"_max_messages_post_size": "x"}', "Invalid API request",
     "_max_messages_post_size must be integer."),
    (b'{"_max_messages_post_size": 262145}', "Invalid API request",
     "_max_messages_post_size can not exceed 262144,  and must be at least greater than 0."),
    (b'{"_default_message_delay": 901}', "Invalid API request",
     "The TTL can not exceed 900 seconds, and must be at least 0 seconds long."),
    (b'{"_max_claim_count": "2"}', "Invalid API request", "_max_claim_count must be integer."),
    (b'{"_dead_letter_queue_messages_ttl": 59}', "Invalid API request",
     "The TTL for a message may not exceed 1209600 seconds, and must be at least 60 seconds "
     "long."),
    (b'{"_enable_encrypt_messages": 1}', "Invalid API request",
     "_enable_encrypt_messages must be boolean."),
    (b'{"_retry_policy": {"minimum_delay": 20, "maximum_delay": 25}}', "Invalid API request",
     "invalid minimum_delay and maximum_delay."),
    (b'{"n": 9223372036854775808}', "Invalid request body",
     "JSON contains integer that is too large."),
    (b'{"_max_claim_count": 1, "_dead_letter_queue": 5}', "Invalid API request",
     "_dead_letter_queue must be a valid queue name."),
    (b'{"_dead_letter_queue": "no spaces"}', "Invalid API request",
     "_dead_letter_queue must be a valid queue name."),
])
async def test_put_bad_bodies(svc: Service, body: bytes, title: str, description: str) -> None:
    before = await svc.ends()
    r = await svc.client.put("/v2/queues/q", content=body,
                             headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"title": title, "description": description}
    assert await svc.ends() == before


async def test_put_metadata_too_large(svc: Service) -> None:
    before = await svc.ends()
    body = b'{"k": "' + b"x" * 65536 + b'"}'
    r = await svc.client.put("/v2/queues/q", content=body)
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid API request",
                        "description": "Queue metadata is too large. Max size: 65536"}
    assert await svc.ends() == before


async def test_get_fills_reserved_defaults(svc: Service) -> None:
    assert (await svc.client.get("/v2/queues/missing")).json() == DEFAULTS
    await svc.client.put("/v2/queues/q", json={"description": "hello",
                                               "_default_message_ttl": 300,
                                               "_max_claim_count": 0})
    r = await svc.client.get("/v2/queues/q")
    assert r.json() == {**DEFAULTS, "description": "hello", "_default_message_ttl": 300}
    assert r.json()["_max_claim_count"] is None  # falsy shows the default


async def test_delete_is_idempotent_and_removes_everything(svc: Service) -> None:
    assert (await svc.client.delete("/v2/queues/never")).status_code == 204
    await svc.client.post("/v2/queues/q/messages", json={"messages": [{"body": 1}]})
    await svc.client.post("/v2/queues/q/subscriptions", json={"subscriber": "http://x"})
    assert (await svc.client.delete("/v2/queues/q")).status_code == 204
    r = await svc.client.get("/v2/queues/q/messages", params={"echo": "true"})
    assert r.json() == {"messages": [], "links": []}
    assert (await svc.client.get("/v2/queues")).json()["queues"] == []


# -- patch -------------------------------------------------------------------------------------


async def test_patch_applies_ops_in_order(svc: Service) -> None:
    await svc.client.put("/v2/queues/q", json={"old": 1, "gone": True})
    r = await patch(svc, "q", [
        {"op": "add", "path": "/metadata/k", "value": 1},
        {"op": "replace", "path": "/metadata/old", "value": 2},
        {"op": "remove", "path": "/metadata/gone"},
        {"op": "replace", "path": "/metadata/_max_claim_count", "value": 3},
        {"op": "remove", "path": "/metadata/_dead_letter_queue"},  # reserved, not stored
        {"op": "add", "path": "/METADATA/a~1b~0c", "value": {"deep": [1]}},
    ])
    assert r.status_code == 200
    expected = {**DEFAULTS, "old": 2, "k": 1, "_max_claim_count": 3, "a/b~c": {"deep": [1]}}
    assert r.json() == expected
    assert (await svc.client.get("/v2/queues/q")).json() == expected


@pytest.mark.parametrize(("ops", "status", "title", "description"), [
    ([{"op": "replace", "path": "/metadata/nope", "value": 1}], 409, "Resource conflict",
     "Can't replace non-existent object nope."),
    ([{"op": "remove", "path": "/metadata/nope"}], 409, "Resource conflict",
     "Can't remove non-existent object nope."),
    ([{"op": "add", "path": "/metadata/_default_message_ttl", "value": 5}], 400,
     "Invalid request body",
     "_default_message_ttl can not exceed 1209600 seconds, and must be at least 60 seconds "
     "long."),
])
async def test_patch_state_dependent_refusals(svc: Service, ops: Any, status: int, title: str,
                                              description: str) -> None:
    await svc.client.put("/v2/queues/q", json={"keep": 1})
    r = await patch(svc, "q", ops)
    assert r.status_code == status
    assert r.json() == {"title": title, "description": description}
    assert (await svc.client.get("/v2/queues/q")).json() == {"keep": 1, **DEFAULTS}


async def test_patch_missing_queue_is_404(svc: Service) -> None:
    r = await patch(svc, "missing", [{"op": "add", "path": "/metadata/k", "value": 1}])
    assert r.status_code == 404
    assert r.json() == {"title": "Not found",
                        "description": "Queue missing does not exist for project proj"}
    assert (await svc.client.get("/v2/queues")).json()["queues"] == []  # not created


BAD_PATCHES = [
    ({"op": "add"}, "Request body must be a JSON array of operation objects."),
    ([1], "Operations must be JSON objects."),
    ([{"path": "/metadata/k"}], "Unable to find `op` in JSON Schema change. It must be one of "
                                "the following: add, remove, replace."),
    ([{"op": "move", "path": "/metadata/k"}], "Invalid operation: `move`. It must be one of "
                                              "the following: add, remove, replace."),
    ([{"op": "add", "value": 1}], "Unable to find 'path' in JSON Schema change"),
    ([{"op": "add", "path": "/other/k", "value": 1}],
     "The root of path must be metadata, e.g /metadata/key."),
    ([{"op": "remove", "path": "/a/b/c"}],
     "Invalid JSON pointer for this resource: '/a/b/c, e.g /metadata/key'"),
    ([{"op": "add", "path": "/metadata", "value": 1}],
     "Invalid JSON pointer for this resource: '/metadata, e.g /metadata/key'"),
    ([{"op": "add", "path": "/metadata/k"}], 'Operation "add" requires a member named "value".'),
    ([{"op": "add", "path": "metadata/k", "value": 1}],
     'Pointer `metadata/k` does not start with "/".'),
    ([{"op": "add", "path": "/metadata//k", "value": 1}],
     'Pointer `/metadata//k` contains adjacent "/".'),
    ([{"op": "add", "path": "/metadata/k/", "value": 1}], 'Pointer `/metadata/k/` end with "/".'),
    ([{"op": "add", "path": "/metadata/k~2", "value": 1}],
     'Pointer `/metadata/k~2` contains "~" not part of a recognized escape sequence.'),
    ([{"op": "add", "path": 5, "value": 1}], 'Pointer `5` does not start with "/".'),
    ([{"op": "add", "path": "/metadata/_dead_letter_queue", "value": ["dlq"]}],
     "_dead_letter_queue must be a valid queue name."),
]


@pytest.mark.parametrize(("ops", "description"), BAD_PATCHES)
async def test_patch_syntax_errors_never_reach_the_log(svc: Service, ops: Any,
                                                       description: str) -> None:
    await svc.client.put("/v2/queues/q")
    before = await svc.ends()
    r = await patch(svc, "q", ops)
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid request body", "description": description}
    assert await svc.ends() == before


async def test_patch_media_type_size_and_empty_body(svc: Service) -> None:
    await svc.client.put("/v2/queues/q")
    before = await svc.ends()
    for content_type in ("application/json",
                         "application/openstack-messaging-v2.0-json-patch; charset=utf-8"):
        r = await svc.client.patch("/v2/queues/q", json=[],
                                   headers={"Content-Type": content_type})
        assert r.status_code == 415
        assert r.json() == {
            "title": "415 Unsupported Media Type",
            "description": "Accepted media type for PATCH: {'Accept-Patch': "
                           "'application/openstack-messaging-v2.0-json-patch'}."}
    r = await svc.client.patch("/v2/queues/q", content=b"", headers=PATCH_TYPE)
    assert r.json() == {"title": "Invalid request body",
                        "description": "PATCH body could not be empty for update."}
    r = await svc.client.patch("/v2/queues/q", content=b"[" + b" " * 65536 + b"]",
                               headers=PATCH_TYPE)
    assert r.json() == {"title": "Invalid request body",
                        "description": "Queue metadata is too large. Max size: 65536"}
    r = await svc.client.patch("/v2/queues/q", content=b"[{", headers=PATCH_TYPE)
    assert r.json()["description"] == "Request body could not be parsed."
    assert await svc.ends() == before


# -- stats -------------------------------------------------------------------------------------


async def test_stats(svc: Service) -> None:
    r = await svc.client.get("/v2/queues/q/stats")
    assert r.json() == {"messages": {"claimed": 0, "free": 0, "total": 0}}
    await svc.client.post("/v2/queues/q/messages",
                          json={"messages": [{"body": i} for i in range(3)]})
    svc.clock.advance(5)
    await svc.client.post("/v2/queues/q/claims?limit=1")
    r = await svc.client.get("/v2/queues/q/stats")
    stats = r.json()["messages"]
    assert (stats["claimed"], stats["free"], stats["total"]) == (1, 2, 3)
    for key in ("oldest", "newest"):
        assert set(stats[key]) == {"age", "created", "href"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stats[key]["created"])
        assert stats[key]["href"].startswith("/v2/queues/q/messages/")
        assert "claim_id" not in stats[key]["href"]
    assert stats["oldest"]["age"] >= 5
    ids = [m["id"] for m in (await svc.client.get(
        "/v2/queues/q/messages?echo=true&include_claimed=true")).json()["messages"]]
    assert stats["oldest"]["href"].endswith(ids[0])
    assert stats["newest"]["href"].endswith(ids[-1])


# -- purge -----------------------------------------------------------------------------------


async def _fill(svc: Service) -> None:
    await svc.client.post("/v2/queues/q/messages",
                          json={"messages": [{"body": i} for i in range(4)]})
    await svc.client.post("/v2/queues/q/claims?limit=1")
    await svc.client.post("/v2/queues/q/subscriptions", json={"subscriber": "http://x"})


async def test_purge_everything_keeps_claimed_messages(svc: Service) -> None:
    await _fill(svc)
    assert (await svc.client.post("/v2/queues/q/purge")).status_code == 204
    stats = (await svc.client.get("/v2/queues/q/stats")).json()["messages"]
    assert (stats["total"], stats["claimed"]) == (1, 1)
    assert (await svc.client.get("/v2/queues/q/subscriptions")).json()["subscriptions"] == []


async def test_purge_by_resource_type(svc: Service) -> None:
    await _fill(svc)
    r = await svc.client.post("/v2/queues/q/purge", json={"resource_types": ["subscriptions"]})
    assert r.status_code == 204
    assert (await svc.client.get("/v2/queues/q/stats")).json()["messages"]["total"] == 4
    r = await svc.client.post("/v2/queues/q/purge", json={"resource_types": ["messages"]})
    assert (await svc.client.get("/v2/queues/q/stats")).json()["messages"]["total"] == 1
    assert (await svc.client.post("/v2/queues/missing/purge")).status_code == 204


@pytest.mark.parametrize(("body", "description"), [
    ({"types": []}, 'Post body must contain key "resource_types".'),
    ({"resource_types": ["messages", "claims"]},
     "Resource types must be a sub set of {'messages', 'subscriptions'}."),
    ({"resource_types": "messages"},
     "Resource types must be a sub set of {'messages', 'subscriptions'}."),
])
async def test_purge_bad_bodies(svc: Service, body: Any, description: str) -> None:
    before = await svc.ends()
    r = await svc.client.post("/v2/queues/q/purge", json=body)
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid API request", "description": description}
    assert await svc.ends() == before


# -- share (pre-signed URLs) ---------------------------------------------------------------


async def test_share_needs_a_secret_key(svc: Service) -> None:
    r = await svc.client.post("/v2/queues/q/share", json={})
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid API request", "description": "The `key` can't be None"}


@pytest.fixture
async def signed(make_service: Factory) -> Service:
    return await make_service(secret_key="s3cret")


async def test_share_document(signed: Service) -> None:
    r = await signed.client.post("/v2/queues/sq/share", json={
        "paths": ["messages", "claims"], "methods": ["POST", "GET"],
        "expires": "2099-01-01T00:00:00.123456+00:00"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["paths"] == ["/v2/queues/sq/claims", "/v2/queues/sq/messages"]
    assert doc["methods"] == ["GET", "POST"]
    assert doc["project"] == "proj"
    assert doc["expires"] == "2099-01-01T00:00:00"
    import hashlib
    import hmac

    text = r"/v2/queues/sq/claims,/v2/queues/sq/messages\nGET,POST\nproj\n2099-01-01T00:00:00"
    assert doc["signature"] == hmac.new(b"s3cret", text.encode(), hashlib.sha256).hexdigest()
    r = await signed.client.post("/v2/queues/sq/share", json={})
    assert r.json()["paths"] == ["/v2/queues/sq/messages"]
    assert r.json()["methods"] == ["GET"]
    assert (await signed.client.get("/v2/queues")).json()["queues"] == []  # nothing created


@pytest.mark.parametrize(("body", "description"), [
    ({"project_id": "p"}, "Unknown keys: {'project_id'}"),
    ({"paths": ["queues"]}, "Invalid paths: {'queues'}"),
    ({"methods": "GET"}, "`methods` should be a list"),
    ({"expires": 12345}, "`expires` should be date format, for example 2016-01-01T00:00:00, "
                         "not integer value: 12345"),
    ({"expires": "12345"}, "`expires` should be date format, for example 2016-01-01T00:00:00, "
                           "not integer value: 12345"),
    ({"expires": "2001-01-01T00:00:00"}, "`expires` is lower than the current time"),
])
async def test_share_bad_bodies(signed: Service, body: Any, description: str) -> None:
    r = await signed.client.post("/v2/queues/sq/share", json=body)
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid API request", "description": description}


async def test_share_body_is_required(signed: Service) -> None:
    r = await signed.client.post("/v2/queues/sq/share", content=b"",
                                 headers={"Content-Length": "0"})
    assert r.json() == {"title": "Invalid request body",
                        "description": "Request body could not be parsed."}
    r = await signed.client.post("/v2/queues/sq/share", json=["messages"])
    assert r.json() == {"title": "Invalid request body",
                        "description": "Document type not supported."}


async def test_signed_requests(signed: Service) -> None:
    c = signed.client
    post = await c.post("/v2/queues/sq/messages", json={"messages": [{"body": "hi"}]})
    message_path = post.json()["resources"][0]
    doc = (await c.post("/v2/queues/sq/share",
                        json={"methods": ["GET", "POST"], "paths": ["messages"]})).json()
    token = {"URL-Signature": doc["signature"], "URL-Expires": doc["expires"],
             "URL-Methods": ",".join(doc["methods"]), "URL-Paths": ",".join(doc["paths"]),
             "X-Project-ID": doc["project"]}
    r = await c.get("/v2/queues/sq/messages?echo=true", headers=token)
    assert r.status_code == 200 and len(r.json()["messages"]) == 1
    assert (await c.get(message_path, headers=token)).status_code == 200  # regex search
    r = await c.post("/v2/queues/sq/messages", json={"messages": [{"body": 2}]}, headers=token)
    assert r.status_code == 201
    for method, path, headers in [
        ("DELETE", message_path, token),  # method not signed
        ("GET", "/v2/queues/sq/stats", token),  # path not signed
        ("GET", "/v2/queues/sq/messages", {**token, "URL-Signature": "0" * 64}),
        ("GET", "/v2/queues/sq/messages", {**token, "X-Project-ID": "other"}),
        ("GET", "/v2/queues/sq/messages", {**token, "URL-Paths": "/v2/queues"}),
        ("GET", "/v2/queues/sq/messages", {**token, "URL-Expires": "garbage"}),
    ]:
        r = await c.request(method, path, headers=headers)
        assert (r.status_code, r.json()) == (404, {"title": "404 Not Found"}), (method, path)


async def test_expired_signature_is_404(signed: Service) -> None:
    import hashlib
    import hmac

    expires = "2001-01-01T00:00:00"
    text = rf"/v2/queues/sq/messages\nGET\nproj\n{expires}"
    token = {"URL-Signature": hmac.new(b"s3cret", text.encode(), hashlib.sha256).hexdigest(),
             "URL-Expires": expires, "URL-Methods": "GET", "URL-Paths": "/v2/queues/sq/messages"}
    r = await signed.client.get("/v2/queues/sq/messages", headers=token)
    assert r.status_code == 404
