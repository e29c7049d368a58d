"""The modes of ``marconi bench bounded``: each drives one row of issue 10's table over HTTP.

Each mode gets a fresh server (``ops/bench/bounded.py`` starts and stops it) and returns its
figures as ``{name: value}`` rows.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx

from ops.bench.stats import percentile

if TYPE_CHECKING:
    from ops.bench.bounded import Server

HEADERS = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "bench-bounded"}
BODY = "x" * 1000


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _client(server: Server, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=120, **kw)


async def _post(client: httpx.AsyncClient, queue: str, n: int, concurrency: int = 8,
                ttl: Any = 3600, **extra: object) -> None:
    """``n`` 1 KB messages in posts of 10; ``ttl`` may be a callable (evaluated per post)."""
    batches = [min(10, n - i) for i in range(0, n, 10)]
    sem = asyncio.Semaphore(concurrency)

    async def one(k: int) -> None:
        async with sem:
            t = ttl() if callable(ttl) else ttl
            r = await client.post(f"/v2/queues/{queue}/messages", json={"messages": [
                {"body": BODY, "ttl": t, **extra} for _ in range(k)]})
            r.raise_for_status()

    await asyncio.gather(*(one(k) for k in batches))


class _Reader:
    """Reads another queue in a loop; keeps the worst latency (is anyone starved?)."""

    def __init__(self, client: httpx.AsyncClient, queue: str) -> None:
        self.client, self.queue = client, queue
        self.worst = 0.0
        self.reads = 0
        self.spans: list[tuple[float, float]] = []  # (start, end) of every read
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while not self._done.is_set():
            t = time.perf_counter()
            r = await self.client.get(f"/v2/queues/{self.queue}/messages?echo=true")
            r.raise_for_status()
            self.spans.append((t, time.perf_counter()))
            self.worst = max(self.worst, time.perf_counter() - t)
            self.reads += 1
            await asyncio.sleep(0.005)

    def worst_apart_from(self, start: float, end: float) -> float:
        """The worst read that did not overlap ``[start, end]`` (another request's time)."""
        return max((b - a for a, b in self.spans if b < start or a > end), default=0.0)

    def __enter__(self) -> _Reader:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()

    async def finish(self) -> None:
        self._done.set()
        if self._task is not None:
            await self._task


async def _purge(server: Server, n: int) -> dict[str, str]:
    """Row "purge of 100,000 messages": the purge's time and another queue's worst read."""
    async with _client(server) as client:
        await _post(client, "other", 10)
        await _post(client, "big", n)
        reader = _Reader(client, "other")
        with reader:
            await asyncio.sleep(0.3)
            t = time.perf_counter()
            r = await client.post("/v2/queues/big/purge", json={"resource_types": ["messages"]})
            purge_s = time.perf_counter() - t
            await asyncio.sleep(0.5)
        await reader.finish()
    return {"purge status": str(r.status_code), f"purge {n:,}: seconds": f"{purge_s:.2f}",
            "other queue: worst read ms": f"{reader.worst * 1000:.0f}"}


async def _claim_ms(client: httpx.AsyncClient, queue: str, rounds: int = 15) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        r = await client.post(f"/v2/queues/{queue}/claims?limit=1", json={"ttl": 60, "grace": 60})
        times.append(time.perf_counter() - t)
        if r.status_code == 201:
            cid = r.headers["location"].rsplit("/", 1)[-1]
            await client.delete(f"/v2/queues/{queue}/claims/{cid}")
    return statistics.median(times) * 1000


async def _delayed(server: Server, n: int) -> dict[str, str]:
    """Row "claim on a queue with 50,000 delayed messages" against an ordinary queue."""
    async with _client(server) as client:
        await client.put("/v2/queues/delayed", json={"_default_message_delay": 900})
        await _post(client, "delayed", n)
        await _post(client, "delayed", 5, delay=0)
        await _post(client, "plain", 5)
        delayed_ms, plain_ms = await _claim_ms(client, "delayed"), await _claim_ms(client, "plain")
    return {f"claim, {n:,} delayed + 5 free: median ms": f"{delayed_ms:.1f}",
            "claim, ordinary queue: median ms": f"{plain_ms:.1f}"}


async def _median_get(client: httpx.AsyncClient, path: str,
                      rounds: int = 15) -> tuple[float, httpx.Response]:
    times = []
    r: httpx.Response | None = None
    for _ in range(rounds):
        t = time.perf_counter()
        r = await client.get(path)
        times.append(time.perf_counter() - t)
        r.raise_for_status()
    assert r is not None
    return statistics.median(times) * 1000, r


async def _listing(server: Server, n: int) -> dict[str, str]:
    """Row "listing an emptied 50k queue; echo=false listing of a queue of one's own"."""
    out: dict[str, str] = {}
    async with _client(server) as client:
        await _post(client, "emptied", n)
        sem = asyncio.Semaphore(8)

        async def pop() -> None:
            async with sem:
                r = await client.delete("/v2/queues/emptied/messages?pop=20")
                r.raise_for_status()

        t = time.perf_counter()
        await asyncio.gather(*(pop() for _ in range((n + 19) // 20)))
        out[f"pop {n:,} (20 a request): seconds"] = f"{time.perf_counter() - t:.1f}"
        stats = (await client.get("/v2/queues/emptied/stats")).json()["messages"]
        out["emptied queue: total after the pops"] = str(stats["total"])
        ms, r = await _median_get(client, "/v2/queues/emptied/messages")
        out[f"list emptied {n // 1000}k queue: median ms"] = f"{ms:.1f}"
        ms, r = await _median_get(client, "/v2/queues/emptied/stats")
        out[f"stats emptied {n // 1000}k queue: median ms"] = f"{ms:.1f}"

        await _post(client, "own", n)
        ms, r = await _median_get(client, "/v2/queues/own/messages?echo=false")
        body = r.json() if r.status_code == 200 else {"messages": [], "links": []}
        out[f"list echo=false, {n // 1000}k own: median ms"] = f"{ms:.1f}"
        out["  ... messages returned, next link"] = (
            f"{len(body['messages'])}, {'yes' if body.get('links') else 'no'}")
        pages, path = 0, "/v2/queues/own/messages?echo=false"
        t = time.perf_counter()
        while path and pages < 10_000:
            r = await client.get(path)
            pages += 1
            body = r.json() if r.status_code == 200 else {"links": []}
            links = body.get("links") or []
            path = links[0]["href"] if links else ""
            if r.status_code == 200 and not body["messages"] and links and pages > 1 and \
                    path.endswith(f"marker={n}"):
                break
        out["  ... pages to walk the queue, seconds"] = f"{pages}, {time.perf_counter() - t:.1f}"
    return out


def _mem_row(m: dict[str, Any] | None) -> str:
    if m is None:
        return "n/a (the server has no memory report)"
    rk, ma = m.get("rocksdb", {}), m.get("malloc", {})
    return (f"memtables {rk.get('size-all-mem-tables', 0):.0f}, block cache "
            f"{rk.get('block-cache-usage', 0):.0f}, table readers "
            f"{rk.get('estimate-table-readers-mem', 0):.0f}, malloc in use "
            f"{ma.get('in_use_mb', 0):.0f} + free in heap {ma.get('free_in_heap_mb', 0):.0f}"
            f" (MB)")


async def _rss(server: Server, cycle_n: int, cycles: int, idle: float) -> dict[str, str]:
    """Row "RSS over cycles of post 30k x 1 KB, purge", with what the RSS is made of."""
    out: dict[str, str] = {}
    async with _client(server) as client:
        start = _rss_mb(server.pid)
        rss = []
        first: dict[str, Any] | None = None
        for i in range(cycles):
            await _post(client, "cycle", cycle_n)
            await client.post("/v2/queues/cycle/purge", json={"resource_types": ["messages"]})
            await asyncio.sleep(2.0)  # let sweeps collect the purged incarnation
            rss.append(_rss_mb(server.pid))
            if i == 0:
                first = server.memory()
        last = server.memory()
        out["RSS MB at start"] = f"{start:.0f}"
        out[f"RSS MB after each of {cycles} cycles"] = " ".join(f"{m:.0f}" for m in rss)
        out["RSS last - first cycle, MB"] = f"{rss[-1] - rss[0]:+.0f}"
        out["  first cycle"] = _mem_row(first)
        out["  last cycle"] = _mem_row(last)
        if idle > 0:
            await asyncio.sleep(idle)
            out[f"RSS MB after {idle:g} s idle"] = f"{_rss_mb(server.pid):.0f}"
            out["  after idle"] = _mem_row(server.memory())
    return out


async def _post_clock(server: Server, rate: float, server_minutes: float,
                      producers: int = 8) -> dict[str, str]:
    """Row "single-message POST throughput over 20 min of server time (a 10x clock)": req/s
    and p99 of the first and the last server minute (each ``60 / rate`` s of the bench)."""
    wall_s = server_minutes * 60 / rate
    samples: list[tuple[float, float]] = []  # (start, latency), wall seconds
    body = {"messages": [{"ttl": 300, "body": {"event": "bench", "pad": "x" * 64}}]}
    errors = 0

    async def producer(t0: float) -> None:
        nonlocal errors
        async with _client(server, limits=httpx.Limits(max_connections=1)) as client:
            while (t := time.perf_counter()) < t0 + wall_s:
                r = await client.post("/v2/queues/steady/messages", json=body)
                samples.append((t - t0, time.perf_counter() - t))
                errors += r.status_code != 201

    async with _client(server) as client:
        await client.put("/v2/queues/steady")
    t0 = time.perf_counter()
    await asyncio.gather(*(producer(t0) for _ in range(producers)))
    minute = 60 / rate
    bins: dict[int, list[float]] = {}
    for start, latency in samples:
        bins.setdefault(int(start // minute), []).append(latency)
    last = int(server_minutes) - 1

    def row(k: int) -> tuple[float, float]:
        values = sorted(bins.get(k, []))
        return len(values) / minute, percentile(values, 99) * 1000

    out = {f"POST x{producers} producers, {server_minutes:g} server min ({wall_s:.0f} s)":
           f"{len(samples):,} posts, {errors} errors"}
    for k in sorted({0, 1, *range(4, last, 5), last - 1, last}):
        if k in bins:
            rps, p99 = row(k)
            out[f"  server minute {k + 1}: req/s, p99 ms"] = f"{rps:,.0f}, {p99:.0f}"
    (r0, p0), (r1, p1) = row(0), row(last)
    out["last / first minute: req/s, p99"] = f"{r1 / r0:.2f}x, {p1 / p0:.2f}x"
    return out


async def _expired(server: Server, rate: float, n: int) -> dict[str, str]:
    """Row "a claim arriving when 99k messages expired but not yet swept": messages posted
    with TTLs that end at one moment; claims and another queue's reads from just before it
    until the sweep has caught up."""
    out: dict[str, str] = {}
    origin = time.monotonic()  # the bench's idea of server time: a constant skew, which
    # shifts the moment (the claims start early) but not how many expire at once

    def server_s() -> float:
        return (time.monotonic() - origin) * rate

    async with _client(server) as client:
        await _post(client, "other", 10)
        await client.put("/v2/queues/exp")
        t = time.monotonic()
        budget = 240 * rate  # the posting must end before the TTLs do
        deadline = server_s() + budget
        await _post(client, "exp", n, ttl=lambda: max(60, math.floor(deadline - server_s())))
        posted = time.monotonic() - t
        out[f"posted {n:,} with TTLs ending together: seconds"] = f"{posted:.1f}"
        if posted * rate > budget - 20 * rate:
            out["  warning"] = "posting took too long: the TTLs end spread out"
        await asyncio.sleep(max(0.0, (deadline - server_s()) / rate - 3))
        claims: list[float] = []
        reader = _Reader(client, "other")
        first_total, stats_ms = None, float("nan")
        stats_span = (0.0, 0.0)  # when the stats request ran (bench clock)
        took = 0  # messages the claims got (none: every message had expired)
        base = server.records()
        sweeps, changed, caught_up = 0, time.monotonic(), None
        with reader:  # the other queue is read from 3 s before the expiry
            # A claim before the expiry would take live messages (and extend their TTLs):
            # the first claim arrives just after it, before any Sweep could have run.
            await asyncio.sleep(max(0.0, (deadline - server_s()) / rate + 0.15))
            end = time.monotonic() + 120
            while time.monotonic() < end:
                t = time.monotonic()
                r = await client.post("/v2/queues/exp/claims?limit=10",
                                      json={"ttl": 60, "grace": 60})
                claims.append(time.monotonic() - t)
                took += len(r.json()["messages"]) if r.status_code == 201 else 0
                if first_total is None:  # stats counts the expired-but-unswept: timed alone
                    t = time.monotonic()
                    stats_span = (time.perf_counter(), 0.0)
                    first_total = (await client.get("/v2/queues/exp/stats")).json()[
                        "messages"]["total"]
                    stats_span = (stats_span[0], time.perf_counter())
                    stats_ms = (time.monotonic() - t) * 1000
                # Every record appended since, less the claims: the Sweeps of the catch-up.
                # In a thread: the control request polls for up to ~0.25 s, and blocking this
                # loop meanwhile would count against the reader's latency.
                now_sweeps = await asyncio.to_thread(server.records) - base - len(claims)
                if now_sweeps != sweeps:
                    sweeps, changed = now_sweeps, time.monotonic()
                elif sweeps > 0 and time.monotonic() - changed > 2.5:
                    caught_up = changed  # the sweeper runs every second: none for 2.5 s
                    break
                await asyncio.sleep(0.05)
        await reader.finish()
    out["first claim after the expiry, ms"] = f"{claims[0] * 1000:.1f}"
    claims.sort()
    out["claims until caught up: n, median ms, worst ms"] = (
        f"{len(claims)}, {statistics.median(claims) * 1000:.1f}, {claims[-1] * 1000:.0f}")
    out["  ... messages they claimed"] = str(took)
    out["expired: other queue: worst read ms"] = f"{reader.worst * 1000:.0f}"
    reads = sorted(b - a for a, b in reader.spans)
    out["expired: other queue: reads, p99 ms"] = (
        f"{len(reads)}, {reads[int(len(reads) * 0.99)] * 1000:.0f}" if reads else "0, -")
    out["  ... worst not during the stats request, ms"] = (
        f"{reader.worst_apart_from(*stats_span) * 1000:.0f}")
    out["stats after the first claim: total, ms"] = f"{first_total}, {stats_ms:.0f}"
    expiry_wall = origin + deadline / rate
    out["sweep caught up after the expiry, s"] = (
        "not within 120 s" if caught_up is None else f"{caught_up - expiry_wall:.1f}")
    out["  ... Sweep commands it took"] = str(sweeps)
    return out
