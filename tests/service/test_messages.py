"""Message endpoints (zaqar-api.md §8.1-§8.6, §10.6-§10.8)."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pytest

from tests.service.conftest import Factory, Service

MESSAGE_KEYS = {"id", "href", "ttl", "age", "body"}


async def post(svc: Service, queue: str, *bodies: Any, ttl: int | None = None,
               headers: dict[str, str] | None = None) -> list[str]:
    messages = [{"body": b} if ttl is None else {"body": b, "ttl": ttl} for b in bodies]
    r = await svc.client.post(f"/v2/queues/{queue}/messages", json={"messages": messages},
                              headers=headers)
    assert r.status_code == 201, r.text
    return [href.rsplit("/", 1)[1] for href in r.json()["resources"]]


def other_client() -> dict[str, str]:
    return {"Client-ID": str(uuid.uuid4())}


# -- post ------------------------------------------------------------------------------------


async def test_post_creates_queue_and_answers_resources(svc: Service) -> None:
    r = await svc.client.post("/v2/queues/mq/messages", json={"messages": [
        {"body": {"event": "one"}, "ttl": 300, "extra": "dropped"}, {"body": None},
        {"body": [1, "two", 3.5]}]})
    assert r.status_code == 201
    resources = r.json()["resources"]
    ids = [href.rsplit("/", 1)[1] for href in resources]
    assert resources == [f"/v2/queues/mq/messages/{i}" for i in ids]
    assert r.headers["location"] == f"/v2/queues/mq/messages?ids={','.join(ids)}"
    assert r.json() == {"resources": resources}
    assert [q["name"] for q in (await svc.client.get("/v2/queues")).json()["queues"]] == ["mq"]
    listed = (await svc.client.get("/v2/queues/mq/messages?echo=true")).json()["messages"]
    assert [m["body"] for m in listed] == [{"event": "one"}, None, [1, "two", 3.5]]
    assert [m["ttl"] for m in listed] == [300, 3600, 3600]
    assert all(set(m) == MESSAGE_KEYS for m in listed)


async def test_post_ttl_defaults_to_the_queue_default(svc: Service) -> None:
    await svc.client.put("/v2/queues/q", json={"_default_message_ttl": 120})
    await post(svc, "q", "x")
    m = (await svc.client.get("/v2/queues/q/messages?echo=true")).json()["messages"][0]
    assert m["ttl"] == 120


BAD_POSTS = [
    (b'{"messages": [{"body": 1, "ttl": 59}]}', "Invalid API request",
     "The TTL for a message may not exceed 1209600 seconds, and must be at least 60 seconds "
     "long."),
    (b'{"messages": [{"body": 1, "ttl": 1209601}]}', "Invalid API request",
     "The TTL for a message may not exceed 1209600 seconds, and must be at least 60 seconds "
     "long."),
    (b'{"messages": [{"body": 1, "ttl": true}]}', "Invalid API request",
     "The TTL for a message may not exceed 1209600 seconds, and must be at least 60 seconds "
     "long."),
    (b'{"messages": [{"body": 1, "ttl": 60.5}]}', "Invalid request body",
     'The value of the "ttl" field must be a int.'),
    (b'{"messages": [{"body": 1, "ttl": "60"}]}', "Invalid request body",
     'The value of the "ttl" field must be a int.'),
    (b'{"messages": [{"body": 1, "ttl": null}]}', "Invalid request body",
     'The value of the "ttl" field must be a int.'),
    (b'{"messages": [{"ttl": 60}]}', "Invalid request body", 'Missing "body" field.'),
    (b'{"messages": [1]}', "Invalid request body", "Document type not supported."),
    (b'{"messages": [{"body": 1}, "x"]}', "Invalid request body", "Document type not supported."),
    (b'{"messages": {"body": 1}}', "Invalid request body", "Document type not supported."),
    (b'{"messages": []}', "Invalid API request", "No messages to enqueu."),
    (b'{"body": 1}', "Invalid API request", "No messages were found in the request body."),
    (b'[{"body": 1}]', "Invalid API request", "No messages were found in the request body."),
    (b'{"messages": [{"body": 1, "ttl": 99999999999999999999}]}', "Invalid request body",
     "JSON contains integer that is too large."),
    (b'{"messages": [{"body": {"deep": [-9223372036854775809]}}]}', "Invalid request body",
     "JSON contains integer that is too large."),
    (b'{"messages": [{"body": 1}]', "Invalid request body", "Request body could not be parsed."),
    (b"\xff\xfe", "Invalid request body", "Request body could not be parsed."),
    (b'{"messages": [{"body": NaN}]}', "Invalid request body",
     "Request body could not be parsed."),
    (b"[" * 5000 + b"]" * 5000, "Invalid request body", "Request body could not be parsed."),
    (b"", "Invalid request body", "Request body could not be parsed."),
]


@pytest.mark.parametrize(("body", "title", "description"), BAD_POSTS)
async def test_post_bad_bodies_never_reach_the_log(svc: Service, body: bytes, title: str,
                                                   description: str) -> None:
    before = await svc.ends()
    r = await svc.client.post("/v2/queues/q/messages", content=body,
                              headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"title": title, "description": description}
    assert await svc.ends() == before
    assert (await svc.client.get("/v2/queues")).json()["queues"] == []


async def test_post_without_content_length_or_body(svc: Service) -> None:
    async def chunks():
        if False:
            yield b""

    r = await svc.client.post("/v2/queues/q/messages", content=chunks())
    assert r.json() == {"title": "Invalid request body",
                        "description": "Request body can not be empty"}


async def test_int64_bounds_are_accepted(svc: Service) -> None:
    body = {"max": 9223372036854775807, "min": -9223372036854775808,
            "text": "12345678901234567890123456789"}
    await post(svc, "q", body)
    m = (await svc.client.get("/v2/queues/q/messages?echo=true")).json()["messages"][0]
    assert m["body"] == body


async def test_post_size_limits(svc: Service) -> None:
    before = await svc.ends()
    big = json.dumps({"messages": [{"body": "x" * 262144}]}).encode()
    r = await svc.client.post("/v2/queues/q/messages", content=big)
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid API request",
                        "description": "Message collection size is too large. Max size 262144"}
    assert await svc.ends() == before
    await svc.client.put("/v2/queues/small", json={"_max_messages_post_size": 100})
    r = await svc.client.post("/v2/queues/small/messages",
                              json={"messages": [{"body": "y" * 100}]})
    assert r.status_code == 400
    assert r.json() == {"title": "Invalid API request", "description": (
        "Message collection size is too large. The max size for current queue is 100. It is "
        "calculated by max size = min(max_messages_post_size_config: 262144, "
        "max_messages_post_size_queue: 100).")}
    r = await svc.client.post("/v2/queues/small/messages", json={"messages": [{"body": "y"}]})
    assert r.status_code == 201


async def test_delay_only_on_delayed_queues(svc: Service) -> None:
    r = await svc.client.post("/v2/queues/plain/messages",
                              json={"messages": [{"body": 1, "delay": 901}]})
    assert r.status_code == 201  # ignored on ordinary queues
    await svc.client.put("/v2/queues/slow", json={"_default_message_delay": 30})
    r = await svc.client.post("/v2/queues/slow/messages",
                              json={"messages": [{"body": 1, "delay": 901}]})
    assert r.status_code == 400
    assert r.json()["description"] == ("The Delay TTL for a message may not exceed 900 seconds,"
                                       "and must be at least 0 seconds long.")
    await post(svc, "slow", "delayed")
    await svc.client.post("/v2/queues/slow/messages",
                          json={"messages": [{"body": "now", "delay": 0}]})
    listed = (await svc.client.get("/v2/queues/slow/messages?echo=true")).json()
    assert [m["body"] for m in listed["messages"]] == ["now"]
    assert "include_delayed" not in listed["links"][0]["href"]
    r = await svc.client.get("/v2/queues/slow/messages?echo=true&include_delayed=true")
    assert [m["body"] for m in r.json()["messages"]] == ["delayed", "now"]
    r = await svc.client.post("/v2/queues/slow/claims")
    assert [m["body"] for m in r.json()["messages"]] == ["now"]
    svc.clock.advance(31)
    assert len((await svc.client.get("/v2/queues/slow/messages?echo=true")).json()["messages"]) \
        == 1  # "now" is claimed; "delayed" is visible again


# -- list --------------------------------------------------------------------------------------


async def test_list_echo_and_include_claimed(svc: Service) -> None:
    await post(svc, "q", "mine")
    await post(svc, "q", "theirs", headers=other_client())
    r = await svc.client.get("/v2/queues/q/messages")
    assert [m["body"] for m in r.json()["messages"]] == ["theirs"]
    upper = svc.client_id.upper()  # echo compares UUID values, not spellings
    r = await svc.client.get("/v2/queues/q/messages", headers={"Client-ID": upper})
    assert [m["body"] for m in r.json()["messages"]] == ["theirs"]
    r = await svc.client.get("/v2/queues/q/messages?echo=true")
    assert [m["body"] for m in r.json()["messages"]] == ["mine", "theirs"]
    claim = await svc.client.post("/v2/queues/q/claims?limit=1")
    claim_id = claim.headers["location"].rsplit("/", 1)[1]
    r = await svc.client.get("/v2/queues/q/messages?echo=true")
    assert [m["body"] for m in r.json()["messages"]] == ["theirs"]
    r = await svc.client.get("/v2/queues/q/messages?echo=true&include_claimed=true")
    first = r.json()["messages"][0]
    assert first["href"].endswith(f"?claim_id={claim_id}")
    assert set(first) == MESSAGE_KEYS


async def test_list_pages_follow_markers(svc: Service) -> None:
    await post(svc, "q", *range(25))
    seen: list[int] = []
    r = await svc.client.get("/v2/queues/q/messages?limit=7&echo=true")
    while r.json()["messages"]:
        seen += [m["body"] for m in r.json()["messages"]]
        link = r.json()["links"][0]
        assert link["rel"] == "next"
        assert link["href"].startswith(
            "/v2/queues/q/messages?limit=7&echo=true&include_delayed=true&marker=")
        r = await svc.client.get(link["href"])
    assert r.json()["links"] == []
    assert seen == list(range(25))
    default = (await svc.client.get("/v2/queues/q/messages?echo=yes")).json()["messages"]
    assert len(default) == 10


@pytest.mark.parametrize("marker", ["abc", "-1", "1.5", "99999999999999999999999", "\u0661"])
async def test_malformed_marker_is_an_empty_page(svc: Service, marker: str) -> None:
    await post(svc, "q", 1)
    r = await svc.client.get("/v2/queues/q/messages", params={"marker": marker, "echo": "true"})
    assert r.json() == {"messages": [], "links": []}


@pytest.mark.parametrize(("params", "title", "description"), [
    ({"limit": "0"}, "Invalid API request",
     "Limit must be at least 1 and may not be greater than 20."),
    ({"limit": "21"}, "Invalid API request",
     "Limit must be at least 1 and may not be greater than 20."),
    ({"limit": "ten"}, "Invalid parameter",
     'The "limit" parameter is invalid. The value must be an integer.'),
    ({"echo": "sure"}, "Invalid parameter",
     'The "echo" parameter is invalid. The value of the parameter must be "true" or "false".'),
    ({"include_claimed": "2"}, "Invalid parameter",
     'The "include_claimed" parameter is invalid. The value of the parameter must be "true" or '
     '"false".'),
])
async def test_list_bad_params(svc: Service, params: dict[str, str], title: str,
                               description: str) -> None:
    r = await svc.client.get("/v2/queues/q/messages", params=params)
    assert r.status_code == 400
    assert r.json() == {"title": title, "description": description}


async def test_expired_messages_are_not_listed(svc: Service) -> None:
    await post(svc, "q", "short", ttl=60)
    await post(svc, "q", "long", ttl=600)
    svc.clock.advance(61)
    r = await svc.client.get("/v2/queues/q/messages?echo=true")
    assert [m["body"] for m in r.json()["messages"]] == ["long"]
    assert r.json()["messages"][0]["age"] >= 61


async def test_checksum_when_enabled(make_service: Factory) -> None:
    svc = await make_service(enable_checksum=True)
    await post(svc, "q", {"event": "BackupStarted"})
    m = (await svc.client.get("/v2/queues/q/messages?echo=true")).json()["messages"][0]
    digest = hashlib.md5(json.dumps({"event": "BackupStarted"}).encode()).hexdigest()
    assert m["checksum"] == f"MD5:{digest}"


async def test_claimed_messages_carry_their_checksum(make_service: Factory) -> None:
    svc = await make_service(enable_checksum=True)
    await post(svc, "q", {"event": "BackupStarted"}, [1, "é"])
    r = await svc.client.post("/v2/queues/q/claims?limit=5", json={"ttl": 60, "grace": 60})
    assert r.status_code == 201
    got = [(list(m), m["checksum"]) for m in r.json()["messages"]]
    assert got == [(["id", "href", "ttl", "age", "body", "checksum"],
                    "MD5:" + hashlib.md5(json.dumps(body).encode()).hexdigest())
                   for body in ({"event": "BackupStarted"}, [1, "é"])]


# -- get by ids / get one ----------------------------------------------------------------------


async def test_get_by_ids(svc: Service) -> None:
    ids = await post(svc, "q", "a", "b", "c")
    r = await svc.client.get(f"/v2/queues/q/messages?ids={ids[2]},{ids[0]},nope&echo=false")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"messages"}  # no links
    assert sorted(m["body"] for m in body["messages"]) == ["a", "c"]  # own messages included
    r = await svc.client.get("/v2/queues/q/messages", params=[("ids", ids[1]), ("ids", "x")])
    assert [m["body"] for m in r.json()["messages"]] == ["b"]
    r = await svc.client.get("/v2/queues/q/messages?ids=a,b")
    assert r.status_code == 404
    assert r.json() == {"title": "Not found", "description":
                        "No messages with IDs: ['a', 'b'] found in the queue q for project proj."}
    r = await svc.client.get("/v2/queues/q/messages?ids=" + ",".join(["x"] * 21))
    assert r.json() == {"title": "Invalid API request",
                        "description": "Limit must be at least 1 and may not be greater than 20."}


async def test_get_one(svc: Service) -> None:
    (mid,) = await post(svc, "q", {"k": "v"}, ttl=300)
    r = await svc.client.get(f"/v2/queues/q/messages/{mid}")
    assert r.status_code == 200
    assert r.json() == {"id": mid, "href": f"/v2/queues/q/messages/{mid}", "ttl": 300,
                        "age": 0, "body": {"k": "v"}}
    r = await svc.client.get("/v2/queues/q/messages/zzz")
    assert r.status_code == 404
    assert r.json() == {"title": "Not found",
                        "description": "Message zzz does not exist in queue q for project proj"}


# -- delete ------------------------------------------------------------------------------------


async def test_delete_one_claim_table(svc: Service) -> None:
    """§8.6 row by row."""
    free, held, other = await post(svc, "q", "free", "held", "other")
    claim_a = (await svc.client.post("/v2/queues/q/claims?limit=2")).headers["location"]
    claim_a = claim_a.rsplit("/", 1)[1]
    await svc.client.delete(f"/v2/queues/q/claims/{claim_a}")  # release: all free again
    claim_a = (await svc.client.post("/v2/queues/q/claims?limit=2")).headers["location"]
    claim_a = claim_a.rsplit("/", 1)[1]  # holds "free" and "held"
    claim_b = (await svc.client.post("/v2/queues/q/claims?limit=1")).headers["location"]
    claim_b = claim_b.rsplit("/", 1)[1]  # holds "other"
    unable = "Unable to delete"
    claimed = "This message is claimed; it cannot be deleted without a valid claim ID."
    cases = [
        ("nope", None, 204, None),
        (held, None, 403, claimed),
        (held, "123", 400, "The specified claim does not exist or has expired."),
        (held, claim_b, 403, claimed),
        (held, claim_a, 204, None),
    ]
    for mid, cid, status, description in cases:
        params = {} if cid is None else {"claim_id": cid}
        r = await svc.client.delete(f"/v2/queues/q/messages/{mid}", params=params)
        assert r.status_code == status, (mid, cid, r.text)
        if description is not None:
            assert r.json() == {"title": unable, "description": description}
    await svc.client.delete(f"/v2/queues/q/claims/{claim_b}")
    r = await svc.client.delete(f"/v2/queues/q/messages/{other}", params={"claim_id": claim_a})
    assert r.status_code == 400
    assert r.json() == {"title": unable, "description":
                        "A claim was specified, but the message is not currently claimed."}
    assert (await svc.client.delete(f"/v2/queues/q/messages/{other}")).status_code == 204
    assert (await svc.client.get(f"/v2/queues/q/messages/{other}")).status_code == 404
    assert (await svc.client.get(f"/v2/queues/q/messages/{free}")).status_code == 200


async def test_delete_by_ids_ignores_claims(svc: Service) -> None:
    ids = await post(svc, "q", 1, 2, 3)
    await svc.client.post("/v2/queues/q/claims?limit=1")
    r = await svc.client.delete(f"/v2/queues/q/messages?ids={ids[0]},{ids[1]},unknown")
    assert r.status_code == 204
    left = (await svc.client.get("/v2/queues/q/messages?echo=true&include_claimed=true")).json()
    assert [m["body"] for m in left["messages"]] == [3]


async def test_pop(svc: Service) -> None:
    ids = await post(svc, "q", "a", "b", "c", ttl=300)
    await svc.client.post("/v2/queues/q/claims?limit=1")  # "a" is claimed: pop skips it
    r = await svc.client.delete("/v2/queues/q/messages?pop=5")
    assert r.status_code == 200
    popped = r.json()["messages"]
    assert popped == [
        {"id": ids[1], "age": 0, "ttl": 300, "body": "b", "claim_id": None, "claim_count": 0},
        {"id": ids[2], "age": 0, "ttl": 300, "body": "c", "claim_id": None, "claim_count": 0}]
    r = await svc.client.delete("/v2/queues/q/messages?pop=1")
    assert r.json() == {"messages": []}


@pytest.mark.parametrize(("query", "title", "description"), [
    ("ids=a&pop=1", "Invalid API request",
     "pop and id params cannot be present together in the delete request."),
    ("", "Invalid API request", 'The request should have either "ids" or "pop" parameter in '
                                "the request, to be able to delete."),
    ("ids=", "Invalid API request", 'The request should have either "ids" or "pop" parameter '
                                    "in the request, to be able to delete."),
    ("pop=0", "Invalid API request",
     "Pop value must be at least 1 and may not be greater than 20."),
    ("pop=21", "Invalid API request",
     "Pop value must be at least 1 and may not be greater than 20."),
    ("pop=x", "Invalid parameter", 'The "pop" parameter is invalid. The value must be an '
                                   "integer."),
    ("ids=" + ",".join(str(i) for i in range(21)), "Invalid API request",
     "ids parameter should have at least 1 and not greater than 20 values."),
])
async def test_delete_many_bad_params(svc: Service, query: str, title: str,
                                      description: str) -> None:
    await post(svc, "q", 1)
    before = await svc.ends()
    r = await svc.client.delete(f"/v2/queues/q/messages?{query}")
    assert r.status_code == 400
    assert r.json() == {"title": title, "description": description}
    assert await svc.ends() == before


async def test_delete_with_claim_ids_mode(make_service: Factory) -> None:
    svc = await make_service(message_delete_with_claim_id=True)
    ids = await post(svc, "q", 1, 2, 3)
    r = await svc.client.delete(f"/v2/queues/q/messages?ids={ids[0]}")
    assert r.status_code == 400
    assert r.json()["description"] == (
        'The request should have both "ids" and "claim_ids" parameter in the request when '
        "message_delete_with_claim_id is True.")
    cid = (await svc.client.post("/v2/queues/q/claims?limit=2")).headers["location"]
    cid = cid.rsplit("/", 1)[1]
    r = await svc.client.delete(f"/v2/queues/q/messages?ids={','.join(ids)}&claim_ids={cid}")
    assert r.status_code == 204
    left = (await svc.client.get("/v2/queues/q/messages?echo=true&include_claimed=true")).json()
    assert [m["body"] for m in left["messages"]] == [3]  # unclaimed "3" is not under cid
