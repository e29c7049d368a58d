"""API v1.1 (``/v1.1``) in process: every route, status code and error body (upstream's
``zaqar/tests/unit/transport/wsgi/v1_1/`` cases; where v1.1 differs from v2)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.service.conftest import PROJECT, Factory, Service

Q = "/v1.1/queues/fizbit"


async def post(svc: Service, path: str, n: int = 1, **extra: object) -> list[str]:
    r = await svc.client.post(f"{path}/messages",
                              json={"messages": [{"body": i, "ttl": 300, **extra}
                                                 for i in range(n)]})
    assert r.status_code == 201, r.text
    return r.headers["location"].rsplit("=", 1)[-1].split(",")


async def test_queue_lifecycle(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{Q}/stats")  # lazy queues: zeros, not 404
    assert (r.status_code, r.json()) == (200, {"messages": {"claimed": 0, "free": 0,
                                                            "total": 0}})
    r = await client.get(Q)
    assert (r.status_code, r.json()) == (200, {})  # no reserved defaults, ever
    r = await client.put(Q, json={"messages": {"ttl": 600}})
    assert r.status_code == 201 and r.headers["location"] == Q
    assert "content-location" not in r.headers
    r = await client.get(Q)
    assert r.json() == {"messages": {"ttl": 600}}
    assert (await client.put(Q, content=b"")).status_code == 204
    r = await client.head(Q)
    assert (r.status_code, r.headers["allow"]) == (405, "GET, PUT, DELETE, OPTIONS")
    r = await client.patch(Q, json=[])
    assert r.status_code == 405
    assert (await client.delete(Q)).status_code == 204
    assert (await client.get(Q)).json() == {}


@pytest.mark.parametrize(("body", "title", "description"), [
    (b"{", "Invalid request body", "Request body could not be parsed."),
    (b"[]", "Invalid request body", "Document type not supported."),
    (b".", "Invalid request body", "Request body could not be parsed."),
    (b"  ", "Invalid request body", "Request body could not be parsed."),
    (b'{"_default_message_ttl": 59}', "Invalid API request",
     "_default_message_ttl can not exceed 1209600 seconds, and must be at least 60 seconds "
     "long."),
    (b'{"_max_messages_post_size": 262145}', "Invalid API request",
     "_max_messages_post_size can not exceed 262144,  and must be at least greater than 0."),
])
async def test_bad_queue_metadata(svc: Service, body: bytes, title: str,
                                  description: str) -> None:
    before = await svc.ends()
    r = await svc.client.put(Q, content=body)
    assert (r.status_code, r.json()) == (400, {"title": title, "description": description})
    assert await svc.ends() == before


async def test_pipeline_rules_are_v2s(svc: Service) -> None:
    bare = httpx.AsyncClient(transport=svc.client._transport, base_url="http://marconi.test")
    async with bare as c:
        r = await c.put(Q, headers={"X-Project-ID": PROJECT})
        assert (r.status_code, r.json()["title"]) == (400, "Missing header value")
        r = await c.put(Q, headers={"Client-ID": str(uuid.uuid4())})
        assert (r.status_code, r.json()["title"]) == (400, "Project-Id Missing")
        r = await c.put(Q, headers={"Client-ID": "12345", "X-Project-ID": PROJECT})
        assert r.json()["title"] == "Wrong UUID value"
    r = await svc.client.put("/v1.1/queues/Nice-Bo@t")
    assert r.json()["title"] == "Invalid queue identification"
    r = await svc.client.get("/v1.1/queues", headers={"Accept": "application/xml"})
    assert (r.status_code, r.content) == (406, b"")


async def test_list_queues(svc: Service) -> None:
    c = svc.client
    r = await c.get("/v1.1/queues")
    assert (r.status_code, r.json()) == (200, {"queues": [], "links": []})
    r = await c.get("/v1.1/queues", params={"limit": 21})
    assert (r.status_code, r.json()["description"]) == (
        400, "Limit must be at least 1 and no greater than 20.")
    for i in (1, 2, 3):
        await c.put(f"/v1.1/queues/q{i}", json={"node": 30 + i})
    await c.put("/v1.1/queues/q3", json={"alt": 1}, headers={"X-Project-ID": "alt"})
    r = await c.get("/v1.1/queues", params={"limit": 2})
    body = r.json()
    assert body["queues"] == [{"name": "q1", "href": "/v1.1/queues/q1"},
                              {"name": "q2", "href": "/v1.1/queues/q2"}]
    assert body["links"] == [{"rel": "next", "href": "/v1.1/queues?limit=2&marker=q2"}]
    r = await c.get(body["links"][0]["href"])
    assert [q["name"] for q in r.json()["queues"]] == ["q3"]
    r = await c.get("/v1.1/queues", params={"detailed": "true", "node": "31"})  # no filters
    assert [q["metadata"] for q in r.json()["queues"]] == [{"node": 31}, {"node": 32},
                                                          {"node": 33}]
    r = await c.get("/v1.1/queues", params={"marker": "zzz"})
    assert r.json() == {"queues": [], "links": []}


async def test_messages(svc: Service) -> None:
    c = svc.client
    r = await c.post(f"{Q}/messages", json={"messages": [{"body": "a"},
                                                         {"body": {"k": 1}, "ttl": 200}]})
    assert r.status_code == 201  # the queue is created lazily; ttl defaults to the setting
    ids = r.headers["location"].split("?ids=")[1].split(",")
    assert r.json() == {"resources": [f"{Q}/messages/{i}" for i in ids]}  # no "partial"
    m = (await c.get(f"{Q}/messages/{ids[0]}")).json()
    assert set(m) == {"id", "href", "ttl", "age", "body"}
    assert (m["id"], m["href"], m["ttl"]) == (ids[0], f"{Q}/messages/{ids[0]}", 3600)
    r = await c.get(f"{Q}/messages", params={"ids": ",".join(ids)})
    assert [m["body"] for m in r.json()["messages"]] == ["a", {"k": 1}]
    r = await c.get(f"{Q}/messages", params={"ids": "a,b"})
    assert (r.status_code, r.json()) == (404, {
        "title": "Not found",
        "description": f"No messages with IDs: ['a', 'b'] found in the queue fizbit for "
                       f"project {PROJECT}."})
    other = {"Client-ID": str(uuid.uuid4())}
    r = await c.get(f"{Q}/messages", params={"limit": 1}, headers=other)
    page = r.json()
    assert [m["body"] for m in page["messages"]] == ["a"]
    assert page["links"][0]["href"].startswith(f"{Q}/messages?limit=1&marker=")
    r = await c.get(page["links"][0]["href"], headers=other)
    assert [m["body"] for m in r.json()["messages"]] == [{"k": 1}]
    r = await c.get(r.json()["links"][0]["href"], headers=other)
    assert (r.status_code, r.json()) == (200, {"messages": [], "links": []})
    r = await c.get("/v1.1/queues/nonexistent/messages")
    assert r.json() == {"messages": [], "links": []}
    stats = (await c.get(f"{Q}/stats")).json()["messages"]
    assert stats["total"] == 2 and stats["newest"]["href"] == f"{Q}/messages/{ids[1]}"


async def test_queue_reserved_keys_do_not_shape_a_post(svc: Service) -> None:
    c = svc.client
    r = await c.put(Q, json={"_default_message_ttl": 120, "_default_message_delay": 300})
    assert r.status_code == 201
    ids = await post(svc, Q, n=1)
    r = await c.post(f"{Q}/messages", json={"messages": [{"body": 1}]})
    ids.append(r.headers["location"].rsplit("=", 1)[-1])
    r = await c.get(f"{Q}/messages", params={"ids": ",".join(ids)})
    assert [m["ttl"] for m in r.json()["messages"]] == [300, 3600]
    # never delayed: claimable at once
    assert (await c.post(f"{Q}/claims", json={"ttl": 60, "grace": 60})).status_code == 201


@pytest.mark.parametrize(("doc", "title", "description"), [
    ([{"body": 1}], "Invalid API request", "No messages were found in the request body."),
    ({"message": []}, "Invalid API request", "No messages were found in the request body."),
    ({"messages": {}}, "Invalid request body", "Document type not supported."),
    ({"messages": []}, "Invalid API request", "No messages to enqueu."),
    ({"messages": [{"ttl": 60}]}, "Invalid request body", 'Missing "body" field.'),
    ({"messages": [{"ttl": "x"}]}, "Invalid request body",
     'The value of the "ttl" field must be a int.'),
    ({"messages": [{"body": 1, "ttl": 59}]}, "Invalid API request",
     "The TTL for a message may not exceed 1209600 seconds, and must be at least 60 seconds "
     "long."),
])
async def test_post_bad_messages(svc: Service, doc: object, title: str,
                                 description: str) -> None:
    before = await svc.ends()
    r = await svc.client.post(f"{Q}/messages", json=doc)
    assert (r.status_code, r.json()) == (400, {"title": title, "description": description})
    assert await svc.ends() == before


async def test_delete_and_pop(svc: Service) -> None:
    c = svc.client
    ids = await post(svc, Q, n=5)
    r = await c.delete(f"{Q}/messages")
    assert r.json()["description"] == ('The request should have either "ids" or "pop" '
                                       "parameter in the request, to be able to delete.")
    r = await c.delete(f"{Q}/messages", params={"ids": ids[0], "pop": 1})
    assert r.json()["description"] == ("pop and id params cannot be present together in the "
                                       "delete request.")
    r = await c.delete(f"{Q}/messages", params={"pop": 21})
    assert r.json()["description"] == "Pop value must be at least 1 and may not be greater " \
                                      "than 20."
    assert (await c.delete(f"{Q}/messages", params={"ids": ids[0]})).status_code == 204
    r = await c.delete(f"{Q}/messages", params={"pop": 2})
    assert r.status_code == 200
    popped = r.json()["messages"]
    assert [m["body"] for m in popped] == [1, 2]
    assert set(popped[0]) == {"id", "age", "ttl", "body", "claim_id", "claim_count"}
    r = await c.delete("/v1.1/queues/nothere/messages", params={"pop": 1})
    assert (r.status_code, r.json()) == (200, {"messages": []})
    assert (await c.delete(f"{Q}/messages/{ids[3]}")).status_code == 204
    r = await c.get(f"{Q}/messages/{ids[3]}")
    assert (r.status_code, r.json()["title"]) == (404, "Not found")


async def test_claims(svc: Service) -> None:
    c = svc.client
    await post(svc, Q, n=3)
    r = await c.post(f"{Q}/claims")  # no body: the default ttl and grace
    assert r.status_code == 201
    claim_href = r.headers["location"]
    claim_id = claim_href.rsplit("/", 1)[-1]
    assert claim_href == f"{Q}/claims/{claim_id}"
    items = r.json()["messages"]
    assert [m["body"] for m in items] == [0, 1, 2]
    assert all(set(m) == {"id", "href", "ttl", "age", "body"} for m in items)
    assert all(m["href"] == f"{Q}/messages/{m['id']}?claim_id={claim_id}" for m in items)
    assert (await c.post(f"{Q}/claims", json={"ttl": 60})).status_code == 204
    r = await c.get(claim_href)
    claim = r.json()
    assert (claim["ttl"], claim["href"], len(claim["messages"])) == (300, claim_href, 3)
    r = await c.get(f"{Q}/messages/{items[0]['id']}")
    assert r.json()["href"].endswith(f"?claim_id={claim_id}")  # v1.1 shows the claim
    assert (await c.patch(claim_href, json={"ttl": 120})).status_code == 204
    assert (await c.get(claim_href)).json()["ttl"] == 120
    r = await c.delete(f"{Q}/messages/{items[0]['id']}")
    assert (r.status_code, r.json()["title"]) == (403, "Unable to delete")
    assert (await c.delete(items[0]["href"])).status_code == 204
    assert (await c.delete(claim_href)).status_code == 204
    assert (await c.get(claim_href)).status_code == 404
    assert (await c.patch(claim_href, json={"ttl": 100})).status_code == 404
    r = await c.post(f"{Q}/claims", json={"ttl": 60, "grace": 60}, params={"limit": 21})
    assert r.json()["description"] == "Limit must be at least 1 and may not be greater than 20."
    r = await c.post(f"{Q}/claims", json={"ttl": 60, "grace": 59})
    assert r.json()["description"].startswith("The grace for a claim may not exceed")
    r = await c.post(f"{Q}/claims", json={"ttl": None})
    assert r.json() == {"title": "Invalid request body",
                        "description": 'The value of the "ttl" field must be a int.'}


async def test_home_ping_and_unrouted(svc: Service) -> None:
    c = svc.client
    r = await c.get("/v1.1/")
    assert r.headers["content-type"] == "application/json-home"
    resources = r.json()["resources"]
    assert resources["rel/queue"]["hints"]["allow"] == ["PUT", "DELETE"]
    assert all((doc.get("href-template") or doc["href"]).startswith("/v1.1/")
               for doc in resources.values())
    assert "rel/health" not in resources
    for method in ("GET", "HEAD"):
        r = await c.request(method, "/v1.1/ping")
        assert (r.status_code, r.content) == (204, b"")
    for path in (f"{Q}/purge", f"{Q}/share", f"{Q}/subscriptions", "/v1.1/health",
                 "/v1.1/pools", "/v1.1/flavors", "/v1.1/queues/q/metadata"):
        r = await c.get(path)
        assert (r.status_code, r.json()) == (404, {"title": "404 Not Found"}), path


async def test_health_in_admin_mode_without_a_role(make_service: Factory) -> None:
    svc = await make_service(admin_mode=True)
    r = await svc.client.get("/v1.1/health")  # no X-Roles: v1.1 had no policy check
    assert r.status_code == 200
    body = r.json()
    assert body["storage_reachable"] is True
    assert all(op["succeeded"] for op in body["operation_status"].values())
    assert (await svc.client.get("/v2/health")).status_code == 403  # v2's stays
    resources = (await svc.client.get("/v1.1/")).json()["resources"]
    assert resources["rel/health"]["href"] == "/v1.1/health"
    assert resources["rel/pools"]["href-template"].startswith("/v1.1/pools")


async def test_checksum(make_service: Factory) -> None:
    svc = await make_service(enable_checksum=True)
    ids = await post(svc, Q)
    m = (await svc.client.get(f"{Q}/messages/{ids[0]}")).json()
    assert m["checksum"].startswith("MD5:")
