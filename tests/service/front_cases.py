"""Requests through a front's app (``ops.bench.front.front_app``: the app ``ops.front``
serves, over a real ``RemoteGateway``) with the core's answers canned, and what the front
answers and sends the core for each: ``tests/service/front_golden.json`` holds them as the
front answered at main bfaa5a2 (before issue 15's front work of h-front3), and
``test_front_bytes`` checks the front still answers every one byte for byte.

The answers are canned with fixed times, so nothing in a response is random but its request
id (checked for its shape, then left out). What goes to the core is kept with its random ids
and provisional stamp blanked (the core stamps the time again).

Regenerate (only when a response is *meant* to change) with
``.venv/bin/python -m tests.service.front_cases > tests/service/front_golden.json``.
"""

from __future__ import annotations

import asyncio
import base64
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import orjson

from ops.bench.front import front_app
from service import corewire as W
from service.types import ASGIApp

T0 = 1_764_000_000_000  # the core's stamp on every canned outcome (ms)
CLIENT = "3381af92-2b9e-11e3-b191-71861300734c"
PROJECT = "marconi-golden"
MID = "5c4fbd5e8a4e4d4f9b6c2c3a0d1e2f30"
MID2 = "6d5e4f3a2b1c4d5e8f7a6b5c4d3e2f1a"
CID = "7a6b5c4d3e2f4a1b8c9d0e1f2a3b4c5d"
Q = "/v2/queues/golden"
REQUEST_ID = re.compile(rb"req-[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def outcome(doc: dict[str, Any], stamp: int = T0) -> tuple[int, bytes]:
    return W.OUTCOME, W.U64.pack(stamp) + orjson.dumps(doc)


def error(status: int, title: str, description: str,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    return W.ERROR, orjson.dumps({"status": status, "title": title,
                                  "description": description, "headers": headers or {}})


def relayed(status: int, body: bytes) -> tuple[int, bytes]:
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()),
               (b"x-openstack-request-id", b"req-from-the-core")]
    return W.RESPONSE_KIND, W.response_payload(status, headers, body)


def snap(mid: str, body: Any, age_s: int = 5, ttl: int = 300) -> dict[str, Any]:
    return {"id": mid, "ttl": ttl, "c": T0 - age_s * 1000, "body": body}


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    query: str = ""
    body: bytes = b""
    answer: tuple[int, bytes] | None = None  # the core's (None: must not be asked)
    headers: tuple[tuple[str, str], ...] = ()  # beside the defaults (None value: left out)
    drop: tuple[str, ...] = ()  # default headers left out
    chunks: int = 1  # the body arrives in this many http.request messages
    content_length: bool = True


POST_ONE = b'{"messages": [{"ttl": 300, "body": {"event": "single", "n": 1}}]}'
POST_TWO = b'{"messages": [{"ttl": 300, "body": [1, 2]}, {"body": "x", "delay": 10}]}'

CASES: list[Case] = [
    # the hot paths
    Case("post one", "POST", f"{Q}/messages", body=POST_ONE, answer=outcome({"ids": [MID]})),
    Case("post two", "POST", f"{Q}/messages", body=POST_TWO,
         answer=outcome({"ids": [MID, MID2]})),
    Case("post in chunks", "POST", f"{Q}/messages", body=POST_TWO, chunks=3,
         answer=outcome({"ids": [MID, MID2]})),
    Case("post without length", "POST", f"{Q}/messages", body=POST_ONE, content_length=False,
         answer=outcome({"ids": [MID]})),
    Case("post unicode", "POST", f"{Q}/messages",
         body='{"messages": [{"body": {"ü": "\\u00e9\u2603", "big": 12345678901234567}}]}'
         .encode(), answer=outcome({"ids": [MID]})),
    Case("post to a topic", "POST", "/v2/topics/golden/messages", body=POST_ONE,
         answer=outcome({"ids": [MID]})),
    Case("claim", "POST", f"{Q}/claims", "limit=2", b'{"ttl": 300, "grace": 60}',
         outcome({"claim_id": CID, "messages": [snap(MID, {"a": [1, None, "é"]}),
                                                snap(MID2, "text", age_s=0, ttl=60)]})),
    Case("claim default body", "POST", f"{Q}/claims", answer=outcome(
        {"claim_id": CID, "messages": [snap(MID, 1, age_s=3600)]})),
    Case("claim nothing", "POST", f"{Q}/claims", body=b'{"ttl": 120}',
         answer=outcome({"claim_id": CID, "messages": []})),
    Case("claim a future stamp", "POST", f"{Q}/claims", body=b"{}",
         answer=outcome({"claim_id": CID, "messages": [snap(MID, 1, age_s=-3)]})),
    Case("delete with claim", "DELETE", f"{Q}/messages/{MID}", f"claim_id={CID}",
         answer=outcome({})),
    Case("delete", "DELETE", f"{Q}/messages/{MID}", answer=outcome({})),
    Case("delete ids", "DELETE", f"{Q}/messages", f"ids={MID},{MID2}", answer=outcome({})),
    Case("pop", "DELETE", f"{Q}/messages", "pop=2",
         answer=outcome({"messages": [snap(MID, {"k": 1}), snap(MID2, 2)]})),
    Case("release", "DELETE", f"{Q}/claims/{CID}", answer=outcome({})),
    Case("renew", "PATCH", f"{Q}/claims/{CID}", body=b'{"ttl": 100, "grace": 80}',
         answer=outcome({})),
    Case("stats (forwarded)", "GET", f"{Q}/stats",
         answer=relayed(200, b'{"messages": {"claimed": 0, "free": 1, "total": 1}}')),
    Case("list (forwarded)", "GET", f"{Q}/messages", "echo=true&limit=5",
         answer=relayed(200, b'{"messages": [], "links": []}')),
    Case("v1.1 post", "POST", "/v1.1/queues/golden/messages", body=POST_ONE,
         answer=outcome({"ids": [MID]})),
    Case("v1.1 claim", "POST", "/v1.1/queues/golden/claims", body=b'{"ttl": 300}',
         answer=outcome({"claim_id": CID, "messages": [snap(MID, 1)]})),
    Case("v1 post", "POST", "/v1/queues/golden/messages",
         body=b'[{"ttl": 300, "body": 1}]', answer=outcome({"ids": [MID]})),
    Case("v1 claim", "POST", "/v1/queues/golden/claims", body=b'{"ttl": 300}',
         answer=outcome({"claim_id": CID, "messages": [snap(MID, 1)]})),
    Case("v1 delete", "DELETE", f"/v1/queues/golden/messages/{MID}", f"claim_id={CID}",
         answer=outcome({})),
    # what the core refuses
    Case("delete claimed", "DELETE", f"{Q}/messages/{MID}", answer=outcome(
        {"error": "claimed", "description": "A claimed message needs its claim id."})),
    Case("delete bad claim", "DELETE", f"{Q}/messages/{MID}", f"claim_id={CID}",
         answer=outcome({"error": "bad_claim", "description": "wrong claim"})),
    Case("release gone", "DELETE", f"{Q}/claims/{CID}",
         answer=outcome({"error": "not_found", "description": "no such claim"})),
    Case("post over the queue cap", "POST", f"{Q}/messages", body=POST_ONE,
         answer=outcome({"error": "invalid", "description": "too many"})),
    Case("core error", "POST", f"{Q}/messages", body=POST_ONE,
         answer=error(503, "Service temporarily unavailable", "later", {"Retry-After": "1"})),
    Case("core error on a claim", "POST", f"{Q}/claims", body=b"{}",
         answer=error(404, "Not found", "gone")),
    # hostile input: Zaqar's 4xx, never the core
    Case("bad json", "POST", f"{Q}/messages", body=b'{"messages": [}'),
    Case("empty body", "POST", f"{Q}/messages"),
    Case("empty body without length", "POST", f"{Q}/messages", content_length=False),
    Case("not an object", "POST", f"{Q}/messages", body=b"[1, 2]"),
    Case("scalar body", "POST", f"{Q}/messages", body=b"12"),
    Case("no messages key", "POST", f"{Q}/messages", body=b'{"m": []}'),
    Case("messages not a list", "POST", f"{Q}/messages", body=b'{"messages": {}}'),
    Case("no messages", "POST", f"{Q}/messages", body=b'{"messages": []}'),
    Case("message not an object", "POST", f"{Q}/messages", body=b'{"messages": [1]}'),
    Case("message without body", "POST", f"{Q}/messages", body=b'{"messages": [{"ttl": 90}]}'),
    Case("ttl too small", "POST", f"{Q}/messages",
         body=b'{"messages": [{"ttl": 5, "body": 1}]}'),
    Case("ttl a float", "POST", f"{Q}/messages",
         body=b'{"messages": [{"ttl": 300.5, "body": 1}]}'),
    Case("integer too large", "POST", f"{Q}/messages",
         body=b'{"messages": [{"body": 99999999999999999999}]}'),
    Case("too deep", "POST", f"{Q}/messages",
         body=b'{"messages": [{"body": ' + b"[" * 70 + b"]" * 70 + b"}]}"),
    Case("too large declared", "POST", f"{Q}/messages", body=b"x" * 10,
         headers=(("content-length", "262145"),), content_length=False),
    Case("too large read", "POST", f"{Q}/messages", body=b" " * 262145, chunks=4,
         content_length=False),
    Case("bad content length", "POST", f"{Q}/messages", body=b"",
         headers=(("content-length", "abc"),), content_length=False),
    Case("form body", "POST", f"{Q}/messages", body=b"a=1",
         headers=(("content-type", "application/x-www-form-urlencoded"),),
         drop=("content-type",)),
    Case("accept html", "POST", f"{Q}/messages", body=POST_ONE,
         headers=(("accept", "text/html"),)),
    Case("accept json q", "POST", f"{Q}/messages", body=POST_ONE,
         headers=(("accept", "text/html, application/json;q=0.5"),),
         answer=outcome({"ids": [MID]})),
    Case("no client id", "POST", f"{Q}/messages", body=POST_ONE, drop=("client-id",)),
    Case("empty client id", "POST", f"{Q}/messages", body=POST_ONE, drop=("client-id",),
         headers=(("client-id", ""),)),
    Case("bad client id", "POST", f"{Q}/messages", body=POST_ONE, drop=("client-id",),
         headers=(("client-id", "not-a-uuid"),)),
    Case("uppercase client id", "POST", f"{Q}/messages", body=POST_ONE, drop=("client-id",),
         headers=(("client-id", CLIENT.upper()),), answer=outcome({"ids": [MID]})),
    Case("two client ids", "POST", f"{Q}/messages", body=POST_ONE,
         headers=(("client-id", "second"),), answer=outcome({"ids": [MID]})),
    Case("no project", "POST", f"{Q}/messages", body=POST_ONE, drop=("x-project-id",)),
    Case("empty project", "POST", f"{Q}/messages", body=POST_ONE, drop=("x-project-id",),
         headers=(("x-project-id", ""),)),
    Case("long project", "POST", f"{Q}/messages", body=POST_ONE, drop=("x-project-id",),
         headers=(("x-project-id", "p" * 257),)),
    Case("bad queue name", "POST", "/v2/queues/bad%20name/messages", body=POST_ONE),
    Case("long queue name", "POST", f"/v2/queues/{'q' * 65}/messages", body=POST_ONE),
    Case("unknown path", "POST", f"{Q}/messagez", body=POST_ONE),
    Case("path with newline", "POST", f"{Q}/messages\n", body=POST_ONE,
         answer=outcome({"ids": [MID]})),  # a route's ``$`` matches before a final newline
    Case("method not allowed", "PUT", f"{Q}/messages", body=POST_ONE),
    Case("made-up method", "BREW", f"{Q}/claims"),
    Case("options", "OPTIONS", f"{Q}/messages"),
    Case("claim limit zero", "POST", f"{Q}/claims", "limit=0", b"{}"),
    Case("claim limit text", "POST", f"{Q}/claims", "limit=ten", b"{}"),
    Case("claim ttl too big", "POST", f"{Q}/claims", body=b'{"ttl": 999999}'),
    Case("claim grace small", "POST", f"{Q}/claims", body=b'{"grace": 1}'),
    Case("claim body a list", "POST", f"{Q}/claims", body=b"[]"),
    Case("claim ttl null", "POST", f"{Q}/claims", body=b'{"ttl": null}'),
    Case("claim bad json", "POST", f"{Q}/claims", body=b"{"),
    Case("renew without body", "PATCH", f"{Q}/claims/{CID}"),
    Case("delete neither", "DELETE", f"{Q}/messages"),
    Case("delete both", "DELETE", f"{Q}/messages", f"ids={MID}&pop=1"),
    Case("pop zero", "DELETE", f"{Q}/messages", "pop=0"),
    Case("query with escapes", "DELETE", f"{Q}/messages/{MID}", "claim_id=%37a+b",
         answer=outcome({"error": "bad_claim", "description": "wrong claim"})),
    Case("query blank", "POST", f"{Q}/claims", "limit=&x", b"{}",
         answer=outcome({"claim_id": CID, "messages": []})),
]


@dataclass
class Link:
    """The core, canned: every call answered with ``answer``, every call kept."""

    answer: tuple[int, bytes] | None = None
    calls: list[tuple[int, bytes]] = field(default_factory=list)
    closed: Any = None

    async def call(self, kind: int, payload: bytes, timeout: float) -> tuple[int, bytes]:
        self.calls.append((kind, payload))
        if self.answer is None:
            raise AssertionError("the core was asked, and this request must not reach it")
        return self.answer


def sent_to_core(kind: int, payload: bytes) -> dict[str, Any]:
    """A call to the core without what is random in it (ids, the provisional stamp)."""
    if kind == W.EXECUTE:
        doc = orjson.loads(payload)
        assert len(doc.pop("id")) == 32 and isinstance(doc.pop("time_ms"), int)
        for m in doc.get("messages", []):
            assert len(m.pop("id")) == 32
        if doc["t"] == "claim.create":
            assert len(doc.pop("claim_id")) == 32
        return {"execute": doc}
    if kind == W.REQUEST:
        scope, body = W.request_from(payload)
        return {"request": {k: scope[k] for k in ("method", "path", "query_string")} | {
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": body.decode("latin-1")}}
    return {"kind": kind, "payload": base64.b64encode(payload).decode()}


def request_headers(case: Case) -> list[tuple[bytes, bytes]]:
    defaults = [("host", "golden"), ("content-type", "application/json"),
                ("client-id", CLIENT), ("x-project-id", PROJECT)]
    out = [(k, v) for k, v in defaults if k not in case.drop]
    if case.content_length and case.body:
        out.append(("content-length", str(len(case.body))))
    out += list(case.headers)
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out]


async def answer(app: ASGIApp, link: Link, case: Case) -> dict[str, Any]:
    """What the front answers ``case`` (status, headers, body) and what it asked the core."""
    link.answer, link.calls = case.answer, []
    path, _, _ = case.path.partition("?")
    from urllib.parse import unquote

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
             "http_version": "1.1", "method": case.method, "scheme": "http",
             "path": unquote(path), "raw_path": path.encode(),
             "query_string": case.query.encode(), "root_path": "",
             "headers": request_headers(case), "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 8888), "state": {}}
    size = max(1, -(-len(case.body) // case.chunks))
    parts = [case.body[i:i + size] for i in range(0, len(case.body), size)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                for i, p in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, *bodies = sent
    assert start["type"] == "http.response.start", start
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in start["headers"]]
    ids = [v for k, v in headers if k == "x-openstack-request-id"]
    assert len(ids) == 1 and REQUEST_ID.fullmatch(ids[0].encode()), headers
    assert all(b["type"] == "http.response.body" for b in bodies)
    assert not bodies[-1].get("more_body", False)
    return {"status": start["status"],
            "headers": [h for h in headers if h[0] != "x-openstack-request-id"],
            "body": b"".join(b.get("body", b"") for b in bodies).decode("utf-8"),
            "core": [sent_to_core(k, p) for k, p in link.calls]}


async def answers() -> dict[str, dict[str, Any]]:
    """Every case's answer, through one app (as one front serves them all)."""
    link = Link()
    link.closed = asyncio.get_running_loop().create_future()
    app = front_app(link)  # type: ignore[arg-type]
    return {case.name: await answer(app, link, case) for case in CASES}


def main() -> None:
    result = asyncio.run(answers())
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    main()
