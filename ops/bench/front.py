"""``marconi bench front``: the CPU a front process spends per request, in its own code.

A front (``ops/front.py``) is hypercorn + our app + ``RemoteGateway``. Hypercorn's share is a
floor we do not own; this costs the rest in-process: the app a front serves
(``create_app`` over a real ``RemoteGateway``) is driven straight
through ASGI, and the core link is ``InstantLink``, which answers every call at once with a
canned frame. What is measured is then every layer of ours a request crosses — middleware,
handler, validation, command encoding, outcome decoding, forwarding — and nothing else.

Scenarios are the hot paths: a one-message POST, a claim, a DELETE with its claim id and a
GET stats (forwarded to the core whole). Each prints process CPU µs per request (median of
``rounds``) and the Python function calls per request (counted by cProfile: on a shared
machine the one figure that does not move with the neighbours' load); with ``profile``, a
cProfile of one round.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from service import corewire as W
from service.app import create_app
from service.remotegateway import RemoteGateway
from service.types import ASGIApp

CLIENT = b"3381af92-2b9e-11e3-b191-71861300734c"
PROJECT = b"marconi-bench"
MESSAGE_ID = "5c4fbd5e8a4e4d4f9b6c2c3a0d1e2f30"
CLAIM_ID = "7a6b5c4d3e2f4a1b8c9d0e1f2a3b4c5d"
COUNTED = 500  # requests profiled to count Python calls per request


@dataclass(frozen=True)
class Scenario:
    """One request and the frame the core would answer it with."""

    name: str
    method: str
    path: str
    query: bytes
    body: bytes
    answer: tuple[int, bytes]
    status: int


def _outcome(doc: dict[str, Any]) -> tuple[int, bytes]:
    return W.OUTCOME, W.U64.pack(time.time_ns() // 1_000_000) + orjson.dumps(doc)


def scenarios() -> list[Scenario]:
    q = "/v2/queues/bench"
    snap = {"id": MESSAGE_ID, "ttl": 300, "c": time.time_ns() // 1_000_000,
            "body": {"event": "single", "n": 1}}
    stats = orjson.dumps({"messages": {"claimed": 0, "free": 1, "total": 1}})
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(stats)).encode())]
    return [
        Scenario("post", "POST", f"{q}/messages", b"",
                 b'{"messages": [{"ttl": 300, "body": {"event": "single", "n": 1}}]}',
                 _outcome({"ids": [MESSAGE_ID]}), 201),
        Scenario("claim", "POST", f"{q}/claims", b"", b'{"ttl": 300, "grace": 60}',
                 _outcome({"claim_id": CLAIM_ID, "messages": [snap]}), 201),
        Scenario("delete", "DELETE", f"{q}/messages/{MESSAGE_ID}",
                 f"claim_id={CLAIM_ID}".encode(), b"", _outcome({}), 204),
        Scenario("stats", "GET", f"{q}/stats", b"", b"",
                 (W.RESPONSE_KIND, W.response_payload(200, headers, stats)), 200),
    ]


class InstantLink:
    """A ``CoreLink`` stand-in that answers every call at once with ``answer``."""

    def __init__(self) -> None:
        self.answer: tuple[int, bytes] = (W.OUTCOME, b"")
        self.closed = asyncio.get_running_loop().create_future()

    async def call(self, kind: int, payload: bytes, timeout: float) -> tuple[int, bytes]:
        return self.answer


def front_app(link: InstantLink) -> ASGIApp:
    """The app ``ops.front`` serves, over ``link``."""
    from ops.settings import Settings

    settings = Settings(data=tempfile.mkdtemp(prefix="marconi-bench-front-"))
    gateway = RemoteGateway(link, 16)  # type: ignore[arg-type]
    return create_app(settings, gateway)


def driver(app: ASGIApp, s: Scenario) -> Callable[[], Any]:
    """A coroutine function sending ``s`` through ``app`` once, as hypercorn would."""
    headers = [(b"host", b"bench"), (b"content-type", b"application/json"),
               (b"client-id", CLIENT), (b"x-project-id", PROJECT)]
    if s.body:
        headers.append((b"content-length", str(len(s.body)).encode()))
    raw_path = s.path.encode()

    async def one() -> None:
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": "1.1", "method": s.method, "scheme": "http",
                 "path": s.path, "raw_path": raw_path, "query_string": s.query,
                 "root_path": "", "headers": list(headers), "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 8888), "state": {}}
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": s.body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [s.status]:
            raise AssertionError(f"{s.name}: answered {statuses}, expected {s.status}")

    return one


async def _run(requests: int, rounds: int, profile: str | None,
               only: list[str] | None) -> list[tuple[str, float, list[float], float]]:
    from ops import gcpause

    link = InstantLink()
    app = front_app(link)
    gcpause.settle()  # as ops.front does once serving
    results = []
    for s in scenarios():
        if only and s.name not in only:
            continue
        link.answer = s.answer
        one = driver(app, s)
        for _ in range(200):  # warm caches (canonical_uuid, header dates...)
            await one()
        costs = []
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(requests):
                await one()
            costs.append((time.process_time() - started) / requests * 1e6)
        prof = cProfile.Profile()
        profiled = requests if profile else COUNTED
        prof.enable()
        for _ in range(profiled):
            await one()
        prof.disable()
        stats = pstats.Stats(prof)
        calls = stats.total_calls / profiled  # type: ignore[attr-defined]
        results.append((s.name, statistics.median(costs), costs, calls))
        if profile:
            print(f"--- {s.name}")
            stats.sort_stats(profile).print_stats(int(os.environ.get("MARCONI_PROFILE_ROWS", "30")))
    return results


def main(requests: int = 5000, rounds: int = 5, profile: str | None = None,
         only: list[str] | None = None) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        results = runner.run(_run(requests, rounds, profile, only))
    print(f"front layers in-process, CPU µs/request (median, min of {rounds} rounds of "
          f"{requests}) and Python calls/request (cProfile: a count, free of noise)")
    for name, median, costs, calls in results:
        print(f"  {name:<7} {median:7.1f} {min(costs):7.1f}  calls {calls:5.0f}   "
              f"[{' '.join(f'{c:.1f}' for c in costs)}]")
