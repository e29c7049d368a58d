"""``marconi bench compare``: Marconi and the upstream Zaqar (Redis, gunicorn) side by side.

Both servers get the same load in turn, in one run: wrk single-message POSTs, wrk stats GETs,
and the Python load generator (producers, consumers claiming + deleting, observers). Reported:
throughput, p50/p99 latency and the server's CPU seconds, with the Marconi / Zaqar ratio.
Zaqar comes from ``../shared/anchors/zaqar`` (its ``setup.sh`` installs it).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ops.bench.http import run as run_load
from ops.bench.stats import percentile, table

ROOT = Path(__file__).resolve().parents[2]
ANCHORS = ROOT.parent / "shared" / "anchors" / "zaqar"
CLIENT_ID = "3381af92-2b9e-11e3-b191-71861300734c"
WRK_POST = f"""
wrk.method = "POST"
wrk.path = "/v2/queues/" .. os.getenv("WRK_QUEUE") .. "/messages"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Client-ID"] = "{CLIENT_ID}"
wrk.headers["X-Project-ID"] = "marconi-bench"
wrk.body = '{{"messages": [{{"ttl": 300, "body": {{"event": "single", "n": 1}}}}]}}'
"""


def _cpu_seconds(root_pid: int) -> float:
    """utime + stime of a process and all its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    tree = {root_pid}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                changed = True
    return sum(times.get(pid, 0.0) for pid in tree)


@dataclass
class Figures:
    values: dict[str, float] = field(default_factory=dict)


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is up (GET / answers 300)
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def _wrk(url: str, path: str, seconds: float, connections: int, script: str | None,
         queue: str) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of one wrk run."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency",
           "-H", f"Client-ID: {CLIENT_ID}", "-H", "X-Project-ID: marconi-bench"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url + path], capture_output=True, text=True,
                         env={**os.environ, "WRK_QUEUE": queue}, timeout=seconds + 60).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    return rate, pct("50"), pct("99")


def measure(url: str, pid: int, seconds: float) -> dict[str, float]:
    """Every figure for one server."""
    figures: dict[str, float] = {}
    queue = f"wrk-{os.getpid()}-{int(time.time())}"
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(WRK_POST)

    def phase(name: str, work: Callable[[], None]) -> None:
        cpu = _cpu_seconds(pid)
        work()
        figures[f"{name} server CPU s"] = _cpu_seconds(pid) - cpu

    def post() -> None:
        rate, p50, p99 = _wrk(url, "", seconds, 16, str(script), queue)
        figures.update({"wrk POST 1 msg req/s": rate, "wrk POST p50 ms": p50,
                        "wrk POST p99 ms": p99})

    def stats() -> None:
        rate, p50, p99 = _wrk(url, f"/v2/queues/{queue}/stats", seconds, 16, None, queue)
        figures.update({"wrk GET stats req/s": rate, "wrk GET stats p50 ms": p50,
                        "wrk GET stats p99 ms": p99})

    def cycle() -> None:
        tally, elapsed = asyncio.run(run_load(url, producers=20, consumers=20, observers=2,
                                              seconds=seconds))
        figures["load: posted msg/s"] = tally.posted / elapsed
        figures["load: claimed+deleted msg/s"] = tally.consumed / elapsed
        for kind in ("post", "claim", "delete"):
            values = sorted(tally.latencies.get(kind, []))
            figures[f"load: {kind} p50 ms"] = percentile(values, 50) * 1000
            figures[f"load: {kind} p99 ms"] = percentile(values, 99) * 1000
            figures[f"load: {kind} errors"] = tally.errors.get(kind, 0)

    phase("wrk POST", post)
    phase("wrk GET stats", stats)
    phase("load", cycle)
    return figures


def start_marconi(port: int) -> tuple[subprocess.Popen[bytes], str]:
    data = tempfile.mkdtemp(prefix="marconi-compare-")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "serve", "--data", data,
         "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, data


def main(seconds: float = 10.0, marconi_port: int = 8890, zaqar_port: int = 8889) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    if not (ANCHORS / "start.sh").exists():
        raise SystemExit(f"no Zaqar anchor scripts at {ANCHORS}")
    results: dict[str, dict[str, float]] = {}

    proc, data = start_marconi(marconi_port)
    try:
        url = f"http://127.0.0.1:{marconi_port}"
        _wait_http(url)
        print(f"measuring marconi serve (1 process) at {url} ...", flush=True)
        results["marconi"] = measure(url, proc.pid, seconds)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)

    subprocess.run(["bash", str(ANCHORS / "setup.sh")], check=True, capture_output=True)
    started = subprocess.run(["bash", str(ANCHORS / "start.sh"), str(zaqar_port), "gunicorn", "4"],
                             check=True, capture_output=True, text=True)
    zaqar_pid = int(started.stdout.strip().splitlines()[-1])
    try:
        url = f"http://127.0.0.1:{zaqar_port}"
        _wait_http(url)
        print(f"measuring zaqar 23 on redis (gunicorn, 4 workers) at {url} ...", flush=True)
        results["zaqar"] = measure(url, zaqar_pid, seconds)
    finally:
        subprocess.run(["bash", str(ANCHORS / "stop.sh"), str(zaqar_port)], capture_output=True)

    rows = []
    for key in results["marconi"]:
        m, z = results["marconi"][key], results["zaqar"].get(key, float("nan"))
        ratio = f"{m / z:.2f}" if z else "-"
        rows.append([key, f"{m:,.1f}", f"{z:,.1f}", ratio])
    print()
    print(table(["figure", "marconi", "zaqar", "marconi/zaqar"], rows))
