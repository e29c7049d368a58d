"""``marconi bench http URL``: a Zaqar v2 load generator that works against any compatible server.

Producers post single messages, consumers claim and delete what they claimed (with the claim
id), observers list. Figures: requests/s per role, messages posted and consumed per second,
p50/p99 latency per request kind.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import httpx

from ops.bench.stats import percentile, table

PROJECT = "marconi-bench"


@dataclass
class Tally:
    """Counts only what starts after the warm-up (connections, first queue writes)."""

    measure_from: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    posted: int = 0
    consumed: int = 0

    def timed(self, kind: str, started: float, ok: bool) -> bool:
        """Record one request; whether it counted (it started after the warm-up)."""
        if started < self.measure_from:
            return False
        self.latencies[kind].append(time.perf_counter() - started)
        if not ok:
            self.errors[kind] += 1
        return True


def _headers() -> dict[str, str]:
    return {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT,
            "Content-Type": "application/json"}


def _client(url: str) -> httpx.AsyncClient:
    """One client (one keep-alive connection) per worker: httpx's shared pool scales badly."""
    return httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=1))


async def _producer(url: str, path: str, stop: float, tally: Tally) -> None:
    async with _client(url) as client:
        await _produce(client, path, stop, tally)


async def _consumer(url: str, path: str, stop: float, tally: Tally, limit: int) -> None:
    async with _client(url) as client:
        await _consume(client, path, stop, tally, limit)


async def _observer(url: str, path: str, stop: float, tally: Tally) -> None:
    async with _client(url) as client:
        await _observe(client, path, stop, tally)


async def _produce(client: httpx.AsyncClient, path: str, stop: float, tally: Tally) -> None:
    headers = _headers()
    body = {"messages": [{"ttl": 300, "body": {"event": "bench", "pad": "x" * 64}}]}
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        r = await client.post(f"{path}/messages", json=body, headers=headers)
        if tally.timed("post", t0, r.status_code == 201) and r.status_code == 201:
            tally.posted += 1


async def _consume(client: httpx.AsyncClient, path: str, stop: float, tally: Tally,
                   limit: int) -> None:
    headers = _headers()
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        r = await client.post(f"{path}/claims?limit={limit}", json={"ttl": 60, "grace": 60},
                              headers=headers)
        tally.timed("claim", t0, r.status_code in (201, 204))
        if r.status_code != 201:
            await asyncio.sleep(0.005)
            continue
        for msg in r.json()["messages"]:
            t0 = time.perf_counter()
            d = await client.delete(msg["href"], headers=headers)
            if tally.timed("delete", t0, d.status_code == 204) and d.status_code == 204:
                tally.consumed += 1


async def _observe(client: httpx.AsyncClient, path: str, stop: float, tally: Tally) -> None:
    headers = _headers()
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        r = await client.get(f"{path}/messages?limit=10&echo=true", headers=headers)
        tally.timed("list", t0, r.status_code == 200)


async def run(url: str, *, producers: int, consumers: int, observers: int, seconds: float,
              claim_limit: int = 10, queue: str | None = None,
              warmup: float = 1.0) -> tuple[Tally, float]:
    """Drive the load for ``warmup + seconds``; returns the tally and the measured time."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a log line per request skews it
    queue = queue or f"bench-{uuid.uuid4().hex[:8]}"
    path = f"/v2/queues/{queue}"
    async with _client(url) as client:
        await client.put(path, headers=_headers())
        started = time.perf_counter() + warmup
        tally = Tally(measure_from=started)
        stop = started + seconds
        await asyncio.gather(
            *(_producer(url, path, stop, tally) for _ in range(producers)),
            *(_consumer(url, path, stop, tally, claim_limit) for _ in range(consumers)),
            *(_observer(url, path, stop, tally) for _ in range(observers)),
        )
        elapsed = time.perf_counter() - started
        await client.delete(path, headers=_headers())
    return tally, elapsed


def summary_rows(tally: Tally, elapsed: float) -> list[list[object]]:
    rows: list[list[object]] = []
    for kind in ("post", "claim", "delete", "list"):
        values = sorted(tally.latencies.get(kind, []))
        if not values:
            continue
        rows.append([kind, f"{len(values) / elapsed:,.0f}",
                     f"{percentile(values, 50) * 1000:.1f}",
                     f"{percentile(values, 99) * 1000:.1f}", tally.errors.get(kind, 0)])
    return rows


def main(url: str, producers: int = 20, consumers: int = 20, observers: int = 2,
         seconds: float = 10.0) -> None:
    tally, elapsed = asyncio.run(run(url, producers=producers, consumers=consumers,
                                     observers=observers, seconds=seconds))
    print(f"bench http {url}: {producers} producers, {consumers} consumers, "
          f"{observers} observers, {elapsed:.1f} s")
    print(f"messages posted {tally.posted / elapsed:,.0f}/s, consumed (claim + delete) "
          f"{tally.consumed / elapsed:,.0f}/s")
    print(table(["request", "req/s", "p50 ms", "p99 ms", "errors"], summary_rows(tally, elapsed)))
