"""API v1.0 (``/v1``) in process: every route, status code and error body (upstream's
``zaqar/tests/unit/transport/wsgi/v1/`` cases, with the exact texts)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.service.conftest import PROJECT, Factory, Service

Q = "/v1/queues/fizbit"
NOT_FOUND_Q = {"title": "Not found", "description": f"Queue fizbit does not exist for project "
                                                    f"{PROJECT}"}


def bare(svc: Service, **headers: str) -> httpx.AsyncClient:
    """A client with only the given headers (v1.0 needs neither Client-ID nor project)."""
    return httpx.AsyncClient(transport=svc.client._transport, base_url="http://marconi.test",
                             headers=headers)


async def chunked_nothing():  # a body without Content-Length that turns out empty
    for chunk in ():
        yield chunk


async def post(svc: Service, path: str, n: int = 1, ttl: int = 300) -> list[str]:
    r = await svc.client.post(f"{path}/messages", json=[{"body": i, "ttl": ttl}
                                                         for i in range(n)])
    assert r.status_code == 201, r.text
    return r.headers["location"].rsplit("=", 1)[-1].split(",")


# -- queues ----------------------------------------------------------------------------------


async def test_queue_lifecycle(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{Q}/stats")
    assert (r.status_code, r.json()) == (404, NOT_FOUND_Q)
    r = await client.get(f"{Q}/metadata")
    assert (r.status_code, r.json()) == (404, NOT_FOUND_Q)
    r = await client.head(Q)
    assert (r.status_code, r.content) == (404, b"")
    r = await client.get(Q)
    assert (r.status_code, r.content) == (404, b"")

    r = await client.put(Q, json={"ignored": True})  # metadata has its own resource
    assert r.status_code == 201 and r.headers["location"] == Q
    r = await client.put(Q)
    assert r.status_code == 204
    for method in ("GET", "HEAD"):
        r = await client.request(method, Q)
        assert (r.status_code, r.content) == (204, b"")
        assert r.headers["content-location"] == Q

    r = await client.get(f"{Q}/metadata")
    assert (r.status_code, r.json()) == (200, {})
    r = await client.put(f"{Q}/metadata", json={"messages": {"ttl": 600}})
    assert r.status_code == 204 and r.headers["location"] == f"{Q}/metadata"
    r = await client.put(f"{Q}/metadata", json={"messages": {"ttl": 100}, "x": 1})
    assert r.status_code == 204
    r = await client.put(f"{Q}/metadata", json={"x": 2})  # replaces, not merges
    r = await client.get(f"{Q}/metadata")
    assert r.json() == {"x": 2}
    assert r.headers["content-location"] == f"{Q}/metadata"

    r = await client.get(f"{Q}/stats")
    assert r.json() == {"messages": {"claimed": 0, "free": 0, "total": 0}}
    assert r.headers["content-location"] == f"{Q}/stats"

    r = await client.delete(Q)
    assert r.status_code == 204
    assert (await client.head(Q)).status_code == 404
    assert (await client.get(f"{Q}/stats")).status_code == 404
    r = await client.put(f"{Q}/metadata", json={"a": 1})
    assert (r.status_code, r.json()) == (404, NOT_FOUND_Q)


async def test_metadata_bad_input(svc: Service) -> None:
    c = svc.client
    await c.put(Q)
    cases = [
        (None, {"title": "Invalid request body",
                "description": "Request body can not be empty"}),
        (b"", {"title": "Invalid request body",
               "description": "Request body could not be parsed."}),
        (b"{", {"title": "Invalid request body",
                "description": "Request body could not be parsed."}),
        (b"[]", {"title": "Invalid request body",
                 "description": "Document type not supported."}),
        (b'{"_default_message_ttl": 60}', {
            "title": "Invalid API request",
            "description": 'Reserved queue attributes in metadata (which names start with '
                           '"_") can not be set in API v1.'}),
        (b'{"p": "' + b"x" * 65536 + b'"}', {
            "title": "Invalid API request",
            "description": "Queue metadata is too large. Max size: 65536"}),
    ]
    before = await svc.ends()
    for body, expected in cases:
        r = await c.put(f"{Q}/metadata", content=chunked_nothing() if body is None else body)
        assert (r.status_code, r.json()) == (400, expected), body
    assert await svc.ends() == before


async def test_queue_names_and_projects(svc: Service) -> None:
    c = svc.client
    assert (await c.put("/v1/queues/Nice-Boat_2")).status_code == 201
    for bad in ("/v1/queues/Nice-Bo@t", "/v1/queues/_" + "niceboat" * 8,
                "/v1/queues/non-ascii-n%C5%93me"):
        r = await c.put(bad)
        assert r.status_code == 400
        assert r.json()["title"] == "Invalid queue identification"
    r = await c.put("/v1/queues/m", headers={"X-Project-ID": "JAM Project" * 24})
    assert r.status_code == 400
    r = await c.put("/v1/queues/m", headers={"X-Project-ID": ""})
    assert r.json()["title"] == "Empty project header not allowed"


async def test_no_project_is_the_global_namespace(svc: Service) -> None:
    async with bare(svc) as c:  # no X-Project-ID, no Client-ID
        assert (await c.put("/v1/queues/g1")).status_code == 201
        assert (await c.head("/v1/queues/g1")).status_code == 204
        r = await c.get("/v1/queues")
        assert [q["name"] for q in r.json()["queues"]] == ["g1"]
    assert (await svc.client.head("/v1/queues/g1")).status_code == 404  # project "proj"
    r = await svc.client.get("/v1/queues")
    assert r.status_code == 204


async def test_client_id_is_optional_but_must_be_a_uuid(svc: Service) -> None:
    async with bare(svc) as c:
        assert (await c.put(Q)).status_code == 201
        for bad in ("", "0xdeadbeef", "550893e0-2b6e-11e3-835a-5cf9dd72369"):
            r = await c.put(Q, headers={"Client-ID": bad})
            assert (r.status_code, r.json()) == (400, {"title": "Wrong UUID value",
                                                       "description": "Malformed hexadecimal "
                                                                      "UUID."})
        # listing and posting messages still need one
        for method, kwargs in (("GET", {}), ("POST", {"json": [{"body": 0, "ttl": 100}]})):
            r = await c.request(method, f"{Q}/messages", **kwargs)
            assert (r.status_code, r.json()) == (400, {
                "title": "Missing header value",
                "description": 'The "Client-Id" header is required.'})


async def test_list_queues(svc: Service) -> None:
    c = svc.client
    r = await c.get("/v1/queues")
    assert (r.status_code, r.content) == (204, b"")
    r = await c.get("/v1/queues", params={"limit": 21})
    assert (r.status_code, r.json()) == (400, {
        "title": "Invalid API request",
        "description": "Limit must be at least 1 and no greater than 20."})
    for i in (1, 2, 3):
        await c.put(f"/v1/queues/q{i}")
        await c.put(f"/v1/queues/q{i}/metadata", json={"node": 30 + i})
    r = await c.get("/v1/queues", params={"limit": 2})
    body = r.json()
    assert r.headers["content-location"] == "/v1/queues?limit=2"
    assert body["queues"] == [{"name": "q1", "href": "/v1/queues/q1"},
                              {"name": "q2", "href": "/v1/queues/q2"}]
    assert body["links"] == [{"rel": "next", "href": "/v1/queues?limit=2&marker=q2"}]
    r = await c.get(body["links"][0]["href"])
    assert [q["name"] for q in r.json()["queues"]] == ["q3"]
    r = await c.get(r.json()["links"][0]["href"])
    assert r.status_code == 204
    r = await c.get("/v1/queues", params={"detailed": "true"})
    assert r.json()["queues"][0]["metadata"] == {"node": 31}  # as stored, no defaults
    assert r.json()["links"][0]["href"] == "/v1/queues?detailed=true&marker=q3"
    assert (await c.get("/v1/queues", params={"marker": "zzz"})).status_code == 204


# -- messages --------------------------------------------------------------------------------


async def test_post_and_get(svc: Service) -> None:
    c = svc.client
    await c.put(Q)
    docs = [{"body": 239, "ttl": 100}, {"body": {"key": "value"}, "ttl": 200}]
    r = await c.post(f"{Q}/messages", json=docs)
    assert r.status_code == 201
    ids = r.headers["location"].split("?ids=")[1].split(",")
    assert r.headers["location"] == f"{Q}/messages?ids={','.join(ids)}"
    assert r.json() == {"partial": False,
                        "resources": [f"{Q}/messages/{i}" for i in ids]}
    r = await c.get(f"{Q}/messages/{ids[1]}")
    assert r.status_code == 200
    assert r.headers["content-location"] == f"{Q}/messages/{ids[1]}"
    msg = r.json()
    assert set(msg) == {"href", "ttl", "age", "body"}  # no id in v1.0
    assert (msg["href"], msg["ttl"], msg["body"]) == (f"{Q}/messages/{ids[1]}", 200,
                                                      {"key": "value"})
    r = await c.get(f"{Q}/messages/{ids[1]}", headers={"X-Project-ID": "777777"})
    assert r.status_code == 404
    r = await c.get(f"{Q}/messages", params={"ids": ",".join(ids)})
    assert r.status_code == 200
    assert [m["ttl"] for m in r.json()] == [100, 200]  # a bare array
    r = await c.get("/v1/queues/notthere/messages", params={"ids": "a,b,c"})
    assert (r.status_code, r.content) == (204, b"")
    r = await c.get(f"{Q}/messages", params={"ids": ",".join([ids[0]] * 21)})
    assert (r.status_code, r.json()) == (400, {
        "title": "Invalid API request",
        "description": "Limit must be at least 1 and may not be greater than 20."})


async def test_post_to_a_missing_queue_is_404(svc: Service) -> None:
    before = await svc.ends()
    r = await svc.client.post("/v1/queues/nonexistent/messages", json=[{"body": 1, "ttl": 60}])
    assert (r.status_code, r.json()) == (404, {
        "title": "Not found",
        "description": f"Queue nonexistent does not exist for project {PROJECT}"})
    assert (await svc.client.head("/v1/queues/nonexistent")).status_code == 404
    assert [b - a for a, b in zip(before, await svc.ends(), strict=True)].count(1) == 1
    r = await svc.client.post("/v1/queues/" + "v" * 64 + "/messages",
                              json=[{"body": 1, "ttl": 60}])
    assert r.status_code == 404
    r = await svc.client.post("/v1/queues/" + "v" * 65 + "/messages",
                              json=[{"body": 1, "ttl": 60}])
    assert r.status_code == 400


POST_ERRORS = [
    (b"[", "Invalid request body", "Request body could not be parsed."),
    (b"[]", "Invalid API request", "No messages to enqueu."),
    (b"{}", "Invalid request body", "Document type not supported."),
    (b".", "Invalid request body", "Request body could not be parsed."),
    (b'{"messages": [{"body": 1, "ttl": 60}]}', "Invalid request body",
     "Document type not supported."),
    (b'[{"body": 1}]', "Invalid request body", 'Missing "ttl" field.'),
    (b'[{"ttl": 60}]', "Invalid request body", 'Missing "body" field.'),
    (b'[{"ttl": "60", "body": 1}]', "Invalid request body",
     'The value of the "ttl" field must be a int.'),
    (b"[1]", "Invalid request body", "Document type not supported."),
    (b'[{"body": 1, "ttl": 59}]', "Invalid API request",
     "The TTL for a message may not exceed 1209600 seconds, and must be at least 60 seconds "
     "long."),
    (b'[{"body": 1, "ttl": 1209601}]', "Invalid API request",
     "The TTL for a message may not exceed 1209600 seconds, and must be at least 60 seconds "
     "long."),
    (b'{"overflow": 9223372036854775808}', "Invalid request body",
     "JSON contains integer that is too large."),
]


@pytest.mark.parametrize(("body", "title", "description"), POST_ERRORS)
async def test_post_bad_messages(svc: Service, body: bytes, title: str,
                                 description: str) -> None:
    await svc.client.put(Q)
    before = await svc.ends()
    r = await svc.client.post(f"{Q}/messages", content=body)
    assert (r.status_code, r.json()) == (400, {"title": title, "description": description})
    assert await svc.ends() == before


async def test_post_too_large_and_empty(svc: Service) -> None:
    await svc.client.put(Q)
    before = await svc.ends()
    r = await svc.client.post(f"{Q}/messages", content=b" " * 262145)
    assert (r.status_code, r.json()) == (400, {
        "title": "Invalid API request",
        "description": "Message collection size is too large. Max size 262144"})
    r = await svc.client.post(f"{Q}/messages", content=chunked_nothing())
    assert r.json() == {"title": "Invalid request body",
                        "description": "Request body can not be empty"}
    r = await svc.client.post(f"{Q}/messages")  # Content-Length: 0
    assert r.json() == {"title": "Invalid request body",
                        "description": "Request body could not be parsed."}
    assert await svc.ends() == before


async def test_list_messages(svc: Service) -> None:
    c = svc.client
    await c.put(Q)
    await post(svc, Q, n=10)
    path = f"{Q}/messages"
    r = await c.get(path, params={"limit": 3, "echo": "true"})
    assert r.headers["content-location"] == f"{path}?limit=3&echo=true"
    pages = 0
    seen: list[int] = []
    while r.status_code == 200:
        body = r.json()
        seen += [m["body"] for m in body["messages"]]
        assert all(set(m) == {"href", "ttl", "age", "body"} for m in body["messages"])
        href = body["links"][0]["href"]  # the params as given, marker first once it is
        assert href.startswith(f"{path}?") and {"limit=3", "echo=true"} <= set(
            href.split("?")[1].split("&"))
        r = await c.get(body["links"][0]["href"])
        pages += 1
    assert (pages, r.status_code, seen) == (4, 204, list(range(10)))
    assert (await c.get(path)).status_code == 204  # echo off: all ours
    assert (await c.get(path, params={"marker": "sfhlsfdjh2048"})).status_code == 204
    assert (await c.get("/v1/queues/nonexistent/messages")).status_code == 204
    r = await c.get(path, params={"limit": 21})
    assert r.json()["description"] == "Limit must be at least 1 and may not be greater than 20."
    r = await c.get(f"{Q}/stats")
    stats = r.json()["messages"]
    assert stats["total"] == 10
    assert stats["oldest"]["href"].startswith(f"{path}/")


async def test_delete_messages(svc: Service) -> None:
    c = svc.client
    await c.put(Q)
    ids = await post(svc, Q, n=5)
    r = await c.delete(f"{Q}/messages")
    assert (r.status_code, r.json()) == (400, {"title": "Missing parameter",
                                               "description": 'The "ids" parameter is '
                                                              "required."})
    r = await c.delete(f"{Q}/messages", params={"pop": 2})  # no pop in v1.0
    assert r.status_code == 400
    r = await c.delete(f"{Q}/messages", params={"ids": ",".join([ids[0]] * 21)})
    assert r.json()["description"] == "Limit must be at least 1 and may not be greater than 20."
    assert (await c.delete(f"{Q}/messages", params={"ids": ",".join(ids)})).status_code == 204
    assert (await c.get(f"{Q}/messages", params={"ids": ",".join(ids)})).status_code == 204
    assert (await c.delete(f"{Q}/messages", params={"ids": ",".join(ids)})).status_code == 204
    r = await c.delete("/v1/queues/notthere/messages", params={"ids": "a,b,c"})
    assert r.status_code == 204
    one = (await post(svc, Q))[0]
    assert (await c.delete(f"{Q}/messages/{one}")).status_code == 204
    r = await c.get(f"{Q}/messages/{one}")
    assert (r.status_code, r.json()["title"]) == (404, "Not found")
    assert (await c.delete(f"{Q}/messages/{one}")).status_code == 204


# -- claims ----------------------------------------------------------------------------------


async def test_claim_lifecycle(svc: Service) -> None:
    c = svc.client
    await c.put(Q)
    await post(svc, Q, n=10)
    r = await c.post(f"{Q}/claims", json={"ttl": 100, "grace": 60})
    assert r.status_code == 201
    claimed = r.json()
    assert isinstance(claimed, list) and len(claimed) == 10  # a bare array
    claim_href = r.headers["location"]
    claim_id = claim_href.rsplit("/", 1)[-1]
    assert claim_href == f"{Q}/claims/{claim_id}"
    assert all(m["href"].endswith(f"?claim_id={claim_id}") and "id" not in m for m in claimed)
    assert (await c.post(f"{Q}/claims", json={"ttl": 100, "grace": 60},
                         params={"limit": 3})).status_code == 204
    other = {"Client-ID": str(uuid.uuid4())}
    assert (await c.get(f"{Q}/messages", headers=other)).status_code == 204
    r = await c.get(f"{Q}/messages", params={"include_claimed": "true"}, headers=other)
    listed = r.json()["messages"]
    assert len(listed) == 10 and all("claim_id" not in m["href"] for m in listed)

    r = await c.get(claim_href)
    claim = r.json()
    assert r.headers["content-location"] == claim_href
    assert (claim["ttl"], claim["href"], len(claim["messages"])) == (100, claim_href, 10)
    assert set(claim) == {"age", "ttl", "messages", "href"}

    message_href, params = claimed[0]["href"].split("?")
    r = await c.delete(message_href)
    assert (r.status_code, r.json()["title"]) == (403, "Unable to delete")
    assert (await c.delete(f"{message_href}?{params}")).status_code == 204

    assert (await c.patch(claim_href, json={"ttl": 60})).status_code == 204
    assert (await c.get(claim_href)).json()["ttl"] == 60
    assert (await c.delete(claim_href)).status_code == 204
    message_href, params = claimed[1]["href"].split("?")
    r = await c.delete(f"{message_href}?{params}")
    assert (r.status_code, r.json()) == (400, {
        "title": "Unable to delete",
        "description": "The specified claim does not exist or has expired."})
    assert (await c.get(message_href)).status_code == 200
    r = await c.get(claim_href)
    assert (r.status_code, r.json()["title"]) == (404, "Not found")
    assert (await c.patch(claim_href, json={"ttl": 100, "grace": 60})).status_code == 404
    assert (await c.delete(claim_href)).status_code == 204


async def test_claims_on_missing_queues_and_claims(client: httpx.AsyncClient) -> None:
    path = "/v1/queues/nonexistent/claims"
    assert (await client.post(path, json={"ttl": 100, "grace": 60})).status_code == 204
    assert (await client.get(f"{path}/aaabbbba")).status_code == 404
    assert (await client.delete(f"{path}/a")).status_code == 204
    assert (await client.patch(f"{path}/a", json={"ttl": 100})).status_code == 404


CLAIM_ERRORS = [
    (None, "Invalid request body", "Request body can not be empty"),
    (b"[", "Invalid request body", "Request body could not be parsed."),
    (b"[]", "Invalid request body", "Document type not supported."),
    (b".", "Invalid request body", "Request body could not be parsed."),
    (b'"fail"', "Invalid request body", "Request body could not be parsed."),
    (b"{}", "Invalid request body", 'Missing "ttl" field.'),
]


@pytest.mark.parametrize(("body", "title", "description"), CLAIM_ERRORS)
async def test_bad_claim_bodies(svc: Service, body: bytes | None, title: str,
                                description: str) -> None:
    c = svc.client
    await c.put(Q)
    await post(svc, Q)
    href = (await c.post(f"{Q}/claims", json={"ttl": 100, "grace": 60})).headers["location"]
    before = await svc.ends()
    for method, path in (("POST", f"{Q}/claims"), ("PATCH", href)):
        r = await c.request(method, path, content=chunked_nothing() if body is None else body)
        assert (r.status_code, r.json()) == (400, {"title": title,
                                                   "description": description}), method
    assert await svc.ends() == before


@pytest.mark.parametrize(("doc", "description"), [
    ({"ttl": 60}, 'Missing "grace" field.'),
    ({"ttl": 60, "grace": None}, 'The value of the "grace" field must be a int.'),
    ({"ttl": -1, "grace": -1}, "The TTL for a claim may not exceed 43200 seconds, and must be "
                               "at least 60 seconds long."),
    ({"ttl": 59, "grace": 60}, "The TTL for a claim may not exceed 43200 seconds, and must be "
                               "at least 60 seconds long."),
    ({"ttl": 60, "grace": 59}, "The grace for a claim may not exceed 43200 seconds, and must "
                               "be at least 60 seconds long."),
    ({"ttl": 60, "grace": 43201}, "The grace for a claim may not exceed 43200 seconds, and "
                                  "must be at least 60 seconds long."),
    ({"ttl": 43201, "grace": 60}, "The TTL for a claim may not exceed 43200 seconds, and must "
                                  "be at least 60 seconds long."),
])
async def test_unacceptable_claims(svc: Service, doc: dict, description: str) -> None:
    await svc.client.put(Q)
    before = await svc.ends()
    r = await svc.client.post(f"{Q}/claims", json=doc)
    assert r.status_code == 400
    assert r.json()["description"] == description
    r = await svc.client.post(f"{Q}/claims", json={"ttl": 100, "grace": 60},
                              params={"limit": 21})
    assert r.json()["description"] == "Limit must be at least 1 and may not be greater than 20."
    assert await svc.ends() == before


@pytest.mark.parametrize("ttl", [-1, 59, 43201])
async def test_unacceptable_renewals(svc: Service, ttl: int) -> None:
    await svc.client.put(Q)
    await post(svc, Q)
    href = (await svc.client.post(f"{Q}/claims", json={"ttl": 100, "grace": 60})
            ).headers["location"]
    before = await svc.ends()
    r = await svc.client.patch(href, json={"ttl": ttl})
    assert (r.status_code, r.json()["title"]) == (400, "Invalid API request")
    r = await svc.client.patch(href, json={"grace": 60})
    assert r.json()["description"] == 'Missing "ttl" field.'
    assert await svc.ends() == before


# -- service endpoints -----------------------------------------------------------------------


async def test_home_and_health(svc: Service) -> None:
    async with bare(svc) as c:
        r = await c.get("/v1/")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json-home"
        assert r.headers["cache-control"] == "max-age=86400"
        resources = r.json()["resources"]
        assert all(doc["href-template"].startswith("/v1/") for doc in resources.values())
        assert resources["rel/queue"]["hints"]["allow"] == ["GET", "HEAD", "PUT", "DELETE"]
        assert set(resources) == {"rel/queues", "rel/queue", "rel/queue-metadata",
                                  "rel/queue-stats", "rel/messages", "rel/post-messages",
                                  "rel/claim"}
        for method in ("GET", "HEAD"):
            r = await c.request(method, "/v1/health")
            assert (r.status_code, r.content) == (204, b"")
        assert (await c.get("/v1/ping")).status_code == 404


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PATCH", Q, "GET, HEAD, PUT, DELETE, OPTIONS"),
    ("POST", f"{Q}/metadata", "GET, PUT, OPTIONS"),
    ("GET", f"{Q}/claims", "POST, OPTIONS"),
    ("POST", "/v1/health", "GET, HEAD, OPTIONS"),
])
async def test_wrong_methods(client: httpx.AsyncClient, method: str, path: str,
                             allow: str) -> None:
    r = await client.request(method, path)
    assert (r.status_code, r.headers["allow"]) == (405, allow)
    assert r.json() == {"title": "405 Method Not Allowed"}


@pytest.mark.parametrize("path", [f"{Q}/purge", f"{Q}/share", f"{Q}/subscriptions",
                                  "/v1/pools", "/v1/queues/q/messages/m/x", "/v1"])
async def test_unrouted_paths(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert (r.status_code, r.json()) == (404, {"title": "404 Not Found"})


async def test_shares_state_with_v2(svc: Service) -> None:
    c = svc.client
    r = await c.post("/v2/queues/shared/messages", json={"messages": [{"body": "v2"}]})
    assert r.status_code == 201
    assert (await c.head("/v1/queues/shared")).status_code == 204  # v2 created it lazily
    r = await c.get("/v1/queues/shared/messages", params={"echo": "true"})
    assert [m["body"] for m in r.json()["messages"]] == ["v2"]


async def test_checksum_not_in_v1_0(make_service: Factory) -> None:
    svc = await make_service(enable_checksum=True)
    await svc.client.put(Q)
    ids = await post(svc, Q)
    assert "checksum" not in (await svc.client.get(f"{Q}/messages/{ids[0]}")).json()


async def test_delete_with_a_claim_of_an_unclaimed_message(svc: Service) -> None:
    c = svc.client
    await c.put(Q)
    ids = await post(svc, Q, n=2)
    href = (await c.post(f"{Q}/claims", json={"ttl": 100, "grace": 60},
                         params={"limit": 1})).headers["location"]
    claim_id = href.rsplit("/", 1)[-1]
    r = await c.delete(f"{Q}/messages/{ids[1]}", params={"claim_id": claim_id})
    assert (r.status_code, r.json()) == (400, {
        "title": "Unable to delete",
        "description": "A claim was specified, but the message is not currently claimed."})
    r = await c.delete(f"{Q}/messages/{ids[1]}", params={"claim_id": "invalid"})
    assert (r.status_code, r.json()["description"]) == (
        400, "The specified claim does not exist or has expired.")
    assert (await c.get(f"{Q}/messages/{ids[1]}")).status_code == 200
