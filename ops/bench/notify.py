"""``marconi bench notify``: notification delivery against a fast local receiver.

Starts a real ``marconi serve`` (private targets allowed) and a minimal keep-alive HTTP
receiver in its own process, then prints:

* deliveries/s: messages posted up front to a queue with ``--subs`` subscriptions, timed
  until the receiver has every delivery;
* POST latency (p50/p99) of ``--producers`` single-message producers on a queue without
  subscriptions and on one with ``--fanout`` subscriptions (deliveries running meanwhile),
  alternated ``--rounds`` times; medians of the rounds and the p99 ratio.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from ops.bench.stats import percentile

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "bench-notify"

RECEIVER = r'''
import asyncio, sys
count = 0
async def handle(reader, writer):
    global count
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if head.startswith(b"GET /count"):
                body = str(count).encode()
            else:
                count += 1
                body = b""
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode()
                         + b"\r\n\r\n" + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("process exited early")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def _count(receiver: str) -> int:
    return int(httpx.get(f"{receiver}/count", timeout=5).text)


def _headers() -> dict[str, str]:
    return {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}


def _subscribe(base: str, queue: str, receiver: str, n: int) -> None:
    with httpx.Client(base_url=base, headers=_headers(), timeout=30) as c:
        for i in range(n):
            r = c.post(f"/v2/queues/{queue}/subscriptions",
                       json={"subscriber": f"{receiver}/s{i}", "ttl": 86400})
            r.raise_for_status()


def _wait_count(receiver: str, target: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while True:
        if _count(receiver) >= target:
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise RuntimeError(f"receiver got {_count(receiver)} of {target}")
        time.sleep(0.02)


def throughput(base: str, receiver: str, subs: int, messages: int) -> float:
    queue = f"tput-{uuid.uuid4().hex[:6]}"
    _subscribe(base, queue, receiver, subs)
    before = _count(receiver)
    started = time.perf_counter()
    with httpx.Client(base_url=base, headers=_headers(), timeout=30) as c:
        for start in range(0, messages, 10):
            c.post(f"/v2/queues/{queue}/messages", json={"messages": [
                {"body": {"n": n}} for n in range(start, min(start + 10, messages))]})
    done = _wait_count(receiver, before + subs * messages)
    return subs * messages / (done - started)


async def _producer(base: str, queue: str, stop: float, out: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, headers=_headers(), timeout=30,
                                 limits=httpx.Limits(max_connections=1)) as c:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            r = await c.post(f"/v2/queues/{queue}/messages",
                             json={"messages": [{"body": {"t": t}}]})
            if r.status_code == 201:
                out.append(time.perf_counter() - t)


def post_latency(base: str, queue: str, producers: int, seconds: float) -> tuple[float, float,
                                                                                   int]:
    latencies: list[float] = []

    async def run() -> None:
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(_producer(base, queue, stop, latencies)
                               for _ in range(producers)))

    asyncio.run(run())
    latencies.sort()
    return percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000, len(latencies)


def main(*, subs: int = 10, messages: int = 2000, fanout: int = 100, producers: int = 4,
         seconds: float = 8.0, rounds: int = 3) -> None:
    work = Path(tempfile.mkdtemp(prefix="marconi-bench-notify-"))
    port, rport = _free_port(), _free_port()
    base, receiver = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{rport}"
    env = {**os.environ, "MARCONI_NOTIFICATION_PRIVATE_TARGETS": "true",
           "PYTHONPATH": str(ROOT)}
    rproc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(rport)],
                             stdout=subprocess.DEVNULL)
    server = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "serve", "--data",
         str(work / "data"), "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL)
    try:
        _wait(f"{receiver}/count", rproc)
        _wait(f"{base}/", server)
        rate = throughput(base, receiver, subs, messages)
        print(f"deliveries/s to a fast local receiver ({subs} subscriptions x {messages} "
              f"messages): {rate:,.0f}")
        _subscribe(base, "fanout", receiver, fanout)
        plain: list[tuple[float, float, int]] = []
        fanned: list[tuple[float, float, int]] = []
        for _ in range(rounds):
            plain.append(post_latency(base, "plain", producers, seconds))
            fanned.append(post_latency(base, "fanout", producers, seconds))
            settle = _count(receiver)
            time.sleep(0.5)
            while _count(receiver) != settle:  # let the backlog drain between rounds
                settle = _count(receiver)
                time.sleep(0.5)
        for label, runs in (("no subscriptions", plain), (f"{fanout} subscriptions", fanned)):
            p50 = statistics.median(r[0] for r in runs)
            p99 = statistics.median(r[1] for r in runs)
            posts = statistics.median(r[2] / seconds for r in runs)
            print(f"POST, {label:>18}: p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
                  f"{posts:7.0f} posts/s  (median of {rounds} rounds, {producers} producers)")
        ratio = statistics.median(r[1] for r in fanned) / statistics.median(
            r[1] for r in plain)
        print(f"p99 ratio with/without subscriptions: {ratio:.2f}")
    finally:
        for proc in (server, rproc):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
