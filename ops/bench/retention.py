"""``marconi bench retention``: the retention soak of issue 11 on the real clock.

A real ``marconi serve`` with ``log_retention``, ``snapshot_interval`` and
``log_segment_bytes`` set, under a steady post / claim / delete load over HTTP for
``minutes``. Every ``sample`` seconds it reads ``/metrics`` (``marconi_log_bytes``,
``marconi_log_start_offset``, ``marconi_snapshot_offset``) and the bytes of ``data/log`` on
disk, and compares them with what the last ``retention + 4 * interval`` wrote (the issue's
"last 14 minutes" at 10m/2m) plus two segments per partition. At the end: ``marconi replay
--since`` of the last 3 minutes (seconds and records replayed), the server is stopped,
``marconi digest`` is compared with the digest of ``marconi rebuild``, and a restart resumes
(the queue answers with the same stats).

The issue's setting is ``--minutes 40 --retention 10m --interval 2m``; ``--scale 0.1`` runs
the same shape in a tenth of the time (1m retention, 12 s snapshots).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path

import httpx

from ops.settings import parse_duration
from ops.testbroker import free_port
from service.metrics import parse_samples

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "bench"


def _marconi(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)
    return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - started


def _disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Server:
    def __init__(self, data: Path, env: dict[str, str], partitions: int) -> None:
        self.data = data
        self.env = env
        self.partitions = partitions
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = open(self.data.parent / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "serve", "--data", str(self.data), "--port",
             str(self.port), "--partitions", str(self.partitions)],
            cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v2/ping", timeout=1).status_code == 204:
                    return
            time.sleep(0.1)
        raise TimeoutError("marconi serve did not start")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=60)


async def _load(url: str, seconds: float, rate: float, queues: int, body_bytes: int,
                written: deque[tuple[float, int]]) -> int:
    """Each queue, ``rate`` times a second: post 2 messages, claim 2, delete what it got."""
    pad = "x" * body_bytes
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
    done = 0
    stop_at = time.monotonic() + seconds

    async def worker(q: int) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            nxt = time.monotonic()
            while time.monotonic() < stop_at:
                r = await client.post(f"/v2/queues/s{q}/messages", json={
                    "messages": [{"body": {"pad": pad}, "ttl": 300}] * 2})
                size = 2 * body_bytes + 300
                claim = await client.post(f"/v2/queues/s{q}/claims?limit=2",
                                          json={"ttl": 60, "grace": 30})
                size += 200
                if claim.status_code == 201:
                    for m in claim.json()["messages"]:
                        await client.delete(m["href"])
                        size += 250
                written.append((time.monotonic(), size))
                done += r.status_code == 201
                nxt += 1 / rate
                await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    await asyncio.gather(*(worker(q) for q in range(queues)))
    return done


def _metrics(url: str) -> dict[str, dict[int, float]]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[str, dict[int, float]] = {}
    for name, labels, value in parse_samples(text):
        if "partition" in labels:
            out.setdefault(name, {})[int(labels["partition"])] = value
    return out


def main(minutes: float = 40.0, retention: str = "10m", interval: str = "2m",
         segment_bytes: int = 1 << 20, scale: float = 1.0, partitions: int = 2,
         queues: int = 3, rate: float = 4.0, body_bytes: int = 1000,
         sample: float | None = None) -> None:
    retention_s = parse_duration(retention) * scale
    interval_s = parse_duration(interval) * scale
    seconds = minutes * 60 * scale
    window_s = retention_s + 4 * interval_s
    sample = sample or max(2.0, interval_s / 4)
    root = Path(tempfile.mkdtemp(prefix="marconi-retention-bench-"))
    data = root / "data"
    env = dict(os.environ, MARCONI_LOG_RETENTION=f"{retention_s:g}s",
               MARCONI_SNAPSHOT_INTERVAL=f"{interval_s:g}s",
               MARCONI_LOG_SEGMENT_BYTES=str(segment_bytes), MARCONI_ADMIN_MODE="true")
    print(f"marconi serve, log_retention={retention_s:g}s snapshot_interval={interval_s:g}s "
          f"log_segment_bytes={segment_bytes}, {queues} queues x {rate:g}/s post+claim+"
          f"delete of {body_bytes} B bodies for {seconds:g} s (data {root})")
    server = Server(data, env, partitions)
    server.start()
    written: deque[tuple[float, int]] = deque()
    rows: list[tuple[float, int, int, int, list[int]]] = []
    started = time.monotonic()

    async def run() -> int:
        load = asyncio.create_task(_load(server.url, seconds, rate, queues, body_bytes,
                                         written))
        while not load.done():
            await asyncio.sleep(sample)
            now = time.monotonic()
            recent = sum(b for t, b in written if t > now - window_s)
            figures = await asyncio.to_thread(_metrics, server.url)
            logged = int(sum(figures.get("marconi_log_bytes", {}).values()))
            starts = [int(v) for _, v in sorted(figures.get("marconi_log_start_offset",
                                                            {}).items())]
            bound = int(1.5 * recent) + 2 * partitions * segment_bytes
            rows.append((now - started, _disk(data / "log"), logged, bound, starts))
        return await load

    posts = asyncio.run(run())
    print(f"{'t s':>7} {'disk MB':>8} {'log MB':>7} {'bound MB':>9}  start offsets")
    for t, disk, logged, bound, starts in rows[:: max(1, len(rows) // 20)] + rows[-1:]:
        print(f"{t:>7.0f} {disk / 1e6:>8.2f} {logged / 1e6:>7.2f} {bound / 1e6:>9.2f}  "
              f"{starts}")
    late = [r for r in rows if r[0] >= window_s]
    worst = max((r[1] / r[3] for r in late), default=float("nan"))
    print(f"{posts} posts; after the first {window_s:g} s the disk was at most "
          f"{worst:.2f} of the bound")

    since = time.time() - 180 * max(scale, 0.1)
    rc, _, err, replay_s = _marconi("replay", "--data", str(data), "--project", PROJECT,
                                    "--queue", "s0", "--since", f"{since:.3f}", "--json",
                                    "--no-progress", "--stats", env=env)
    print(f"replay --since (last {180 * max(scale, 0.1):g} s of s0): {replay_s:.2f} s, "
          f"{err.strip().splitlines()[-1] if err.strip() else rc}")
    before = httpx.get(f"{server.url}/v2/queues/s0/stats",
                       headers={"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}).json()
    server.stop()
    rc, out, err, digest_s = _marconi("digest", "--data", str(data), env=env)
    live = out.strip().splitlines()[-1] if rc == 0 else err
    rc, out, err, rebuild_s = _marconi("rebuild", "--data", str(data), env=env)
    print(f"digest {live[:16]}… ({digest_s:.1f} s); rebuild: {out.strip() or err.strip()} "
          f"({rebuild_s:.1f} s)")
    print(f"digest = digest after rebuild: {out.strip().endswith(live)}")
    server.start()
    after = httpx.get(f"{server.url}/v2/queues/s0/stats",
                      headers={"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}).json()
    server.stop()
    print(f"restart resumes: stats equal {before['messages']['total']} -> "
          f"{after['messages']['total']} (expiry may move the age figures)")
