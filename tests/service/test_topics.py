"""Topics over HTTP: upstream Zaqar's v2 topic tests
(zaqar/tests/unit/transport/wsgi/v2_0/test_topic_lifecycle.py, TestTopicLifecycleMongoDB),
ported case by case to the real ASGI app, plus what makes a topic a topic here (its own
namespace beside queues, messages and subscriptions routed to it)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.service.conftest import Factory, Service

TOPICS = "/v2/topics"
MARS = f"{TOPICS}/mars"
VENUS = f"{TOPICS}/venus"
PATCH_TYPE = "application/openstack-messaging-v2.0-json-patch"
TOPIC_DEFAULTS = {"_default_message_ttl": 3600, "_max_messages_post_size": 262144,
                  "_default_message_delay": 0}
MAX_METADATA = 65536


def headers(project: str | None = "3387309841abc_", client: str | None = None) -> dict[str, str]:
    out = {"Client-ID": client or str(uuid.uuid4())}
    if project is not None:
        out["X-Project-ID"] = project
    return out


async def req(svc: Service, method: str, path: str, *, project: str | None = "3387309841abc_",
              body: str | None = None, query: str = "", extra: dict[str, str] | None = None,
              client: str | None = None) -> Any:
    h = headers(project, client)
    h.update(extra or {})
    # Raw requests: the fixture client's default project header must not leak in.
    return await svc.client.request(method, path + (f"?{query}" if query else ""),
                                    content=body, headers=h)


@pytest.fixture
async def bare(svc: Service) -> Service:
    svc.client.headers.pop("X-Project-ID", None)
    svc.client.headers.pop("Client-ID", None)
    return svc


async def test_without_project_id(bare: Service) -> None:
    assert (await req(bare, "PUT", MARS, project=None)).status_code == 400
    assert (await req(bare, "DELETE", MARS, project=None)).status_code == 400


async def test_empty_project_id(bare: Service) -> None:
    assert (await req(bare, "PUT", MARS, project="")).status_code == 400
    assert (await req(bare, "DELETE", MARS, project="")).status_code == 400


@pytest.mark.parametrize("project", ["480924", "foo"])
async def test_basics_thoroughly(bare: Service, project: str) -> None:
    stats = MARS + "/stats"
    assert (await req(bare, "GET", stats, project=project)).status_code == 200
    doc = '{"messages": {"ttl": 600}}'
    r = await req(bare, "PUT", MARS, project=project, body=doc)
    assert r.status_code == 201
    assert r.headers["location"] == MARS
    r = await req(bare, "GET", MARS, project=project)
    assert r.status_code == 200
    assert r.json() == {"messages": {"ttl": 600}, **TOPIC_DEFAULTS}
    assert (await req(bare, "GET", stats, project=project)).status_code == 200
    assert (await req(bare, "DELETE", MARS, project=project)).status_code == 204
    assert (await req(bare, "GET", stats, project=project)).status_code == 200


@pytest.mark.parametrize("client_id", ["1234567890", "11111111111111111111111111111111111"])
async def test_basics_thoroughly_with_different_client_id(make_service: Factory,
                                                          client_id: str) -> None:
    svc = await make_service(client_id_uuid_safe="off")
    svc.client.headers.pop("X-Project-ID", None)
    stats = MARS + "/stats"
    kw: dict[str, Any] = {"project": "480924", "client": client_id}
    assert (await req(svc, "GET", stats, **kw)).status_code == 200
    r = await req(svc, "PUT", MARS, body='{"messages": {"ttl": 600}}', **kw)
    assert (r.status_code, r.headers["location"]) == (201, MARS)
    r = await req(svc, "GET", MARS, **kw)
    assert r.json() == {"messages": {"ttl": 600}, **TOPIC_DEFAULTS}
    assert (await req(svc, "GET", stats, **kw)).status_code == 200
    assert (await req(svc, "DELETE", MARS, **kw)).status_code == 204
    assert (await req(svc, "GET", stats, **kw)).status_code == 200


async def test_name_restrictions(bare: Service) -> None:
    assert (await req(bare, "PUT", TOPICS + "/Nice-Boat_2")).status_code == 201
    r = await req(bare, "PUT", TOPICS + "/Nice-Bo@t")
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid topic identification", "description":
                        "The format of the submitted topic name or project id is not valid."}
    assert (await req(bare, "PUT", TOPICS + "/_" + "niceboat" * 8)).status_code == 400
    assert (await req(bare, "PUT", TOPICS + "/Service.test_topic")).status_code == 201


async def test_project_id_restriction(bare: Service) -> None:
    path = TOPICS + "/Muv-Luv"
    assert (await req(bare, "PUT", path, project="JAM Project" * 24)).status_code == 400
    assert (await req(bare, "PUT", path, project="JAM Project")).status_code == 201


async def test_non_ascii_name(bare: Service) -> None:
    for name in ("non-ascii-n\u0153me", "non-ascii-n\xc4me"):
        path = TOPICS + "/" + name
        assert (await req(bare, "PUT", path)).status_code == 400
        assert (await req(bare, "DELETE", path)).status_code == 400


async def test_no_metadata(bare: Service) -> None:
    assert (await req(bare, "PUT", VENUS)).status_code == 201
    assert (await req(bare, "PUT", VENUS, body="")).status_code == 204
    doc = (await req(bare, "GET", VENUS)).json()
    assert doc.get("_max_messages_post_size") == 256 * 1024
    assert doc.get("_default_message_ttl") == 3600
    assert doc.get("_default_message_delay") == 0


@pytest.mark.parametrize("document", ["{", "[]", ".", "  "])
async def test_bad_metadata(bare: Service, document: str) -> None:
    assert (await req(bare, "PUT", VENUS, body=document)).status_code == 400


async def test_too_much_metadata(bare: Service) -> None:
    assert (await req(bare, "PUT", VENUS)).status_code == 201
    doc = '{{"messages": {{"ttl": 600}}, "padding": "{pad}"}}'
    padding_len = MAX_METADATA - (len(doc) - 10) + 1
    r = await req(bare, "PUT", VENUS, body=doc.format(pad="x" * padding_len))
    assert r.status_code == 400


async def test_way_too_much_metadata(bare: Service) -> None:
    assert (await req(bare, "PUT", VENUS)).status_code == 201
    doc = '{{"messages": {{"ttl": 600}}, "padding": "{pad}"}}'
    r = await req(bare, "PUT", VENUS, body=doc.format(pad="x" * MAX_METADATA * 100))
    assert r.status_code == 400


async def test_custom_metadata(bare: Service) -> None:
    doc = '{{"messages": {{"ttl": 600}}, "padding": "{pad}"}}'
    padding_len = MAX_METADATA - (len(doc) - 2)
    doc = doc.format(pad="x" * padding_len)
    assert (await req(bare, "PUT", VENUS, body=doc)).status_code == 201
    r = await req(bare, "GET", VENUS)
    import json
    assert r.status_code == 200
    assert r.json() == {**json.loads(doc), **TOPIC_DEFAULTS}


async def test_update_metadata(bare: Service) -> None:
    path = TOPICS + "/xyz"
    project = str(uuid.uuid4())
    patch = {"Content-Type": PATCH_TYPE}

    async def patch_with(body: str) -> int:
        r = await req(bare, "PATCH", path, project=project, body=body, extra=patch)
        return int(r.status_code)

    assert (await req(bare, "PUT", path, project=project)).status_code == 201
    assert await patch_with('[{"op":"add", "path": "/metadata/key1", "value": 1},'
                            '{"op":"add", "path": "/metadata/key2", "value": 1}]') == 200
    assert await patch_with('[{"op":"remove", "path": "/metadata/_default_message_ttl"}]') == 200
    assert await patch_with('[{"op":"replace", "path": "/metadata/key1", "value": 2}]') == 200
    assert await patch_with('[{"op":"replace", "path": "/metadata/_default_message_ttl",'
                            '"value": 300}]') == 200
    r = await req(bare, "GET", path, project=project)
    assert r.json() == {"key1": 2, "key2": 1, "_default_message_ttl": 300,
                        "_max_messages_post_size": 262144, "_default_message_delay": 0}
    assert await patch_with('[{"op":"remove", "path": "/metadata/key1"}]') == 200
    assert await patch_with('[{"op":"remove", "path": "/metadata/_default_message_ttl"}]') == 200
    r = await req(bare, "GET", path, project=project)
    assert r.json() == {"key2": 1, **TOPIC_DEFAULTS}
    assert await patch_with('[{"op":"replace", "path": "/metadata/key3", "value":2}]') == 409
    assert await patch_with('[{"op":"remove", "path": "/metadata/key3"}]') == 409
    await req(bare, "DELETE", path, project=project)
    assert await patch_with('[{"op":"add", "path": "/metadata/key1", "value": 1},'
                            '{"op":"add", "path": "/metadata/key2", "value": 1}]') == 404
    assert await patch_with('[{"op":"replace", "path": "/metadata/key3", "value":2}]') == 404
    assert await patch_with('[{"op":"remove", "path": "/metadata/key3"}]') == 404


async def test_list(bare: Service) -> None:
    project = str(644079696574693)
    alt_project = str(644079696574693 + 1)
    client = str(uuid.uuid4())
    r = await req(bare, "GET", TOPICS, project=project, client=client)
    assert r.status_code == 200
    assert r.json()["topics"] == [] and r.json()["links"] == []
    r = await req(bare, "GET", TOPICS, project=project, client=client, query="limit=21")
    assert r.status_code == 400
    for name, proj, body in (("q1", project, '{"node": 31}'), ("q2", project, '{"node": 32}'),
                             ("q3", project, '{"node": 33}'), ("q3", alt_project, '{"alt": 1}')):
        await req(bare, "PUT", f"{TOPICS}/{name}", project=proj, body=body, client=client)
    r = await req(bare, "GET", TOPICS, project=project, client=client, query="limit=2")
    assert len(r.json()["topics"]) == 2
    r = await req(bare, "GET", TOPICS, project=project, client=client, query="limit=5")
    doc = r.json()
    target, params = doc["links"][0]["href"].split("?")
    assert (await req(bare, "GET", target, project=project, client=client,
                      query=params)).status_code == 200
    assert len(doc["topics"]) == 3  # not the alt project's
    r = await req(bare, "GET", TOPICS, project=project, client=client, query="detailed=true")
    assert r.status_code == 200
    doc = r.json()
    target, params = doc["links"][0]["href"].split("?")
    topic = doc["topics"][0]
    r = await req(bare, "GET", topic["href"], project=project, client=client)
    assert topic["metadata"] == r.json()
    assert r.json() == {"node": 31, **TOPIC_DEFAULTS}
    r = await req(bare, "GET", TOPICS, project=project, client=client, query="node=34")
    assert r.status_code == 200 and r.json()["topics"] == []
    assert (await req(bare, "GET", target, project=project, client=client,
                      query=params)).status_code == 200
    assert (await req(bare, "GET", target, project=project, client=client,
                      query="marker=zzz")).status_code == 200


async def test_list_with_filter(bare: Service) -> None:
    project = str(644079696574693)
    for name, body in (("q1", '{"test_metadata_key1": "value1"}'),
                       ("q2", '{"_max_messages_post_size": 2000}'),
                       ("q3", '{"test_metadata_key2": 30}')):
        await req(bare, "PUT", f"{TOPICS}/{name}", project=project, body=body)
    r = await req(bare, "GET", TOPICS, project=project, query="name=q&test_metadata_key2=30")
    assert [t["name"] for t in r.json()["topics"]] == ["q3"]
    r = await req(bare, "GET", TOPICS, project=project, query="_max_messages_post_size=2000")
    assert [t["name"] for t in r.json()["topics"]] == ["q2"]
    r = await req(bare, "GET", TOPICS, project=project, query="name=q")
    assert len(r.json()["topics"]) == 3


# -- Marconi: what makes a topic a topic ---------------------------------------------------


async def test_topics_and_queues_are_separate_namespaces(svc: Service) -> None:
    assert (await svc.client.put("/v2/topics/same", json={"kind": "topic"})).status_code == 201
    assert (await svc.client.put("/v2/queues/same", json={"kind": "queue"})).status_code == 201
    assert (await svc.client.get("/v2/topics/same")).json()["kind"] == "topic"
    assert (await svc.client.get("/v2/queues/same")).json()["kind"] == "queue"
    queues = (await svc.client.get("/v2/queues")).json()["queues"]
    topics = (await svc.client.get("/v2/topics")).json()["topics"]
    assert [q["name"] for q in queues] == ["same"]
    assert [(t["name"], t["href"]) for t in topics] == [("same", "/v2/topics/same")]
    r = await svc.client.get("/v2/queues", params={"marker": "!"})
    assert [q["name"] for q in r.json()["queues"]] == ["same"]  # a marker cannot reach topics
    r = await svc.client.get("/v2/queues", params={"with_count": "true"})
    assert r.json()["count"] == 1


async def test_topic_messages_and_subscriptions(svc: Service) -> None:
    r = await svc.client.post("/v2/topics/t/messages", json={"messages": [{"body": 1}]})
    assert r.status_code == 201
    (href,) = r.json()["resources"]
    assert href.startswith("/v2/topics/t/messages/")
    assert r.headers["location"].startswith("/v2/topics/t/messages?ids=")
    page = (await svc.client.get("/v2/topics/t/messages", params={"echo": "true"})).json()
    assert [m["href"] for m in page["messages"]] == [href]
    assert (await svc.client.get(href)).json()["body"] == 1
    stats = (await svc.client.get("/v2/topics/t/stats")).json()["messages"]
    assert stats["total"] == 1 and stats["newest"]["href"] == href
    assert (await svc.client.get("/v2/queues/t/stats")).json()["messages"]["total"] == 0
    r = await svc.client.post("/v2/topics/t/subscriptions",
                              json={"subscriber": "http://10.0.0.1:5679"})
    assert (r.status_code, r.headers["location"]) == (201, "/v2/topics/t/subscriptions")
    sid = r.json()["subscription_id"]
    sub = (await svc.client.get(f"/v2/topics/t/subscriptions/{sid}")).json()
    assert sub["source"] == "t"
    listed = (await svc.client.get("/v2/topics/t/subscriptions")).json()
    assert [s["source"] for s in listed["subscriptions"]] == ["t"]
    assert (await svc.client.get(f"/v2/queues/t/subscriptions/{sid}")).status_code == 404
    assert (await svc.client.delete(href)).status_code == 204
    assert (await svc.client.post("/v2/topics/t/purge")).status_code == 204
    assert (await svc.client.get(f"/v2/topics/t/subscriptions/{sid}")).status_code == 404
