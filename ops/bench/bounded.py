"""``marconi bench bounded``: the issue-10 figures through HTTP on a real ``marconi serve``.

* purge of N messages while another queue is read: that read's worst latency;
* claim on a queue with M delayed + 5 free messages: median claim latency (and on an
  ordinary queue, measured the same way, for the ratio);
* RSS after cycles of "post K x 1 KB, purge", against the first cycle.

``--tree DIR`` runs the server from another checkout (e.g. the code before a change), so the
"before" and "after" are measured the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from ops.bench.stats import table

ROOT = Path(__file__).resolve().parents[2]
HEADERS = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "bench-bounded"}
BODY = "x" * 1000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _post(client: httpx.AsyncClient, queue: str, n: int, concurrency: int = 8,
                **extra: object) -> None:
    batches = [min(10, n - i) for i in range(0, n, 10)]
    sem = asyncio.Semaphore(concurrency)

    async def one(k: int) -> None:
        async with sem:
            r = await client.post(f"/v2/queues/{queue}/messages", json={"messages": [
                {"body": BODY, "ttl": 3600, **extra} for _ in range(k)]})
            r.raise_for_status()

    await asyncio.gather(*(one(k) for k in batches))


async def _measure(url: str, pid: int, purge_n: int, delayed_n: int, cycle_n: int,
                   cycles: int) -> dict[str, str]:
    out: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=120) as client:
        # 1. purge while another queue is read
        await _post(client, "other", 10)
        await _post(client, "big", purge_n)
        worst = 0.0
        done = asyncio.Event()

        async def reader() -> None:
            nonlocal worst
            while not done.is_set():
                t = time.perf_counter()
                r = await client.get("/v2/queues/other/messages?echo=true")
                r.raise_for_status()
                worst = max(worst, time.perf_counter() - t)
                await asyncio.sleep(0.005)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.3)
        t = time.perf_counter()
        r = await client.post("/v2/queues/big/purge", json={"resource_types": ["messages"]})
        purge_s = time.perf_counter() - t
        await asyncio.sleep(0.5)
        done.set()
        await task
        out["purge status"] = str(r.status_code)
        out[f"purge {purge_n:,}: seconds"] = f"{purge_s:.2f}"
        out["other queue: worst read ms"] = f"{worst * 1000:.0f}"

        # 2. claim on a delayed queue vs an ordinary one
        r = await client.put("/v2/queues/delayed", json={"_default_message_delay": 900})
        await _post(client, "delayed", delayed_n)
        await _post(client, "delayed", 5, delay=0)
        await _post(client, "plain", 5)

        async def claim_ms(queue: str, rounds: int = 15) -> float:
            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                r = await client.post(f"/v2/queues/{queue}/claims?limit=1",
                                      json={"ttl": 60, "grace": 60})
                times.append(time.perf_counter() - t)
                if r.status_code == 201:
                    cid = r.headers["location"].rsplit("/", 1)[-1]
                    await client.delete(f"/v2/queues/{queue}/claims/{cid}")
            return statistics.median(times) * 1000

        delayed_ms, plain_ms = await claim_ms("delayed"), await claim_ms("plain")
        out[f"claim, {delayed_n:,} delayed + 5 free: median ms"] = f"{delayed_ms:.1f}"
        out["claim, ordinary queue: median ms"] = f"{plain_ms:.1f}"

        # 3. RSS over post/purge cycles
        rss = []
        for _ in range(cycles):
            await _post(client, "cycle", cycle_n)
            r = await client.post("/v2/queues/cycle/purge", json={"resource_types": ["messages"]})
            await asyncio.sleep(2.0)  # let sweeps collect the purged incarnation
            rss.append(_rss_mb(pid))
        out[f"RSS MB after each of {cycles} cycles"] = " ".join(f"{m:.0f}" for m in rss)
        out["RSS last - first cycle, MB"] = f"{rss[-1] - rss[0]:+.0f}"
    return out


def main(tree: str | None = None, purge_n: int = 100_000, delayed_n: int = 50_000,
         cycle_n: int = 30_000, cycles: int = 6) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    source = Path(tree).resolve() if tree else ROOT
    port = _free_port()
    data = tempfile.mkdtemp(prefix="marconi-bench-bounded-")
    env = {**os.environ, "PYTHONPATH": str(source)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "serve", "--data", data,
         "--port", str(port)], cwd=source, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/v2/health", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        print(f"bench bounded: marconi serve from {source} at {url}", flush=True)
        figures = asyncio.run(_measure(url, proc.pid, purge_n, delayed_n, cycle_n, cycles))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)
    print(table(["figure", "value"], list(figures.items())))
