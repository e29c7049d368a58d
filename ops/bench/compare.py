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
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ops.bench import wrk_scripts
from ops.bench.http import run as run_load
from ops.bench.stats import percentile, table

ROOT = Path(__file__).resolve().parents[2]
ANCHORS = ROOT.parent / "shared" / "anchors" / "zaqar"
CLIENT_ID = wrk_scripts.CLIENT_ID


def _cpu_seconds(root_pid: int, *, descendants: bool = True) -> float:
    """utime + stime of a process and (by default) all its descendants."""
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
    changed = descendants
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


def wait_http(url: str, timeout: float = 60) -> None:
    """Return once ``url`` answers HTTP at all (a server just started)."""
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
         queue: str, threads: int = 1) -> tuple[float, float, float, str]:
    """(requests/s, p50 ms, p99 ms, wrk's output) of one wrk run."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
           "--latency", "-H", f"Client-ID: {CLIENT_ID}", "-H", "X-Project-ID: marconi-bench"]
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

    return rate, pct("50"), pct("99"), out


WARMUP_QUEUE = "wrk-warmup"


def warm_up(url: str, seconds: float) -> float:
    """Single-message POSTs for ``seconds``, into a queue of their own, before anything is
    measured: a server's first requests pay for imports, caches, connections and its first
    memtable (a p99 of 150 ms seen on a cold first run). Returns wrk's requests/s."""
    if seconds <= 0:
        return 0.0
    rate, _, _, _ = _wrk(url, "", seconds, 16, str(write_scripts() / "post1.lua"),
                         WARMUP_QUEUE)
    return rate


def write_scripts() -> Path:
    """A fresh directory holding the wrk scripts of the phases: post1, post10, claim."""
    scripts = Path(tempfile.mkdtemp())
    for name, text in (("post1", wrk_scripts.post(1)), ("post10", wrk_scripts.post(10)),
                       ("claim", wrk_scripts.CLAIM_DELETE)):
        (scripts / f"{name}.lua").write_text(text)
    return scripts


CLAIM_COUNTS = ("claimed", "deleted", "claims", "deletes", "failed", "overlaps")


def claim_counts(out: str) -> dict[str, int]:
    """What the claim+delete script counted from the answers (``wrk_scripts.CLAIM_DELETE``):
    messages claimed (in 201 bodies), deleted (DELETEs answered 204), requests of each kind,
    non-2xx answers; all 0 when wrk printed none (it failed)."""
    m = re.search(" ".join(rf"{name} (\d+)" for name in CLAIM_COUNTS), out)
    return {name: int(m.group(i + 1)) if m else 0 for i, name in enumerate(CLAIM_COUNTS)}


POST_ONLY = ("wrk POST", "wrk POST 10", "wrk GET stats")
"""The phases the framework floor (``ops/bench/floor.py``) can answer: it has no claims."""


def measure(url: str, pid: int, seconds: float, *, load: bool = True,
            phases: tuple[str, ...] | None = None, split: bool = False) -> dict[str, float]:
    """Every figure for one server (a fresh queue each time); ``phases`` picks some only.

    ``split``: the root process's own share is reported too (``core``: the core of
    ``marconi serve --workers N``; the fronts' share is the rest)."""
    figures: dict[str, float] = {}
    queue = f"wrk-{os.getpid()}-{time.time_ns()}"
    scripts = write_scripts()

    def phase(name: str, work: Callable[[], int]) -> None:
        if phases is not None and name not in phases:
            return
        cpu, own = _cpu_seconds(pid), _cpu_seconds(pid, descendants=False)
        requests = work()
        used = _cpu_seconds(pid) - cpu
        own = _cpu_seconds(pid, descendants=False) - own
        figures[f"{name} server CPU s"] = used
        if requests:
            figures[f"{name} server CPU-us/req"] = used / requests * 1e6
            if split:
                figures[f"{name} core CPU-us/req"] = own / requests * 1e6

    def post() -> int:
        rate, p50, p99, _ = _wrk(url, "", seconds, 16, str(scripts / "post1.lua"), queue)
        figures.update({"wrk POST 1 msg req/s": rate, "wrk POST p50 ms": p50,
                        "wrk POST p99 ms": p99})
        return int(rate * seconds)

    def batched() -> int:
        rate, _, p99, _ = _wrk(url, "", seconds, 16, str(scripts / "post10.lua"), queue)
        figures.update({"wrk POST 10 msgs msg/s": rate * 10, "wrk POST 10 p99 ms": p99})
        return int(rate * seconds)

    def claim_delete() -> int:
        # one connection per thread: the script can tell which request each answer is for
        rate, _, p99, out = _wrk(url, "", seconds, 16, str(scripts / "claim.lua"), queue,
                                 threads=16)
        counts = claim_counts(out)
        figures.update({"wrk claim+delete msg/s": counts["deleted"] / seconds,
                        "wrk claimed msg/s": counts["claimed"] / seconds,
                        "wrk claim+delete failed": counts["failed"],
                        "wrk claim+delete overlaps": counts["overlaps"],
                        "wrk claim+delete req/s": rate, "wrk claim+delete p99 ms": p99})
        return int(rate * seconds)

    def stats() -> int:
        rate, p50, p99, _ = _wrk(url, f"/v2/queues/{queue}/stats", seconds, 16, None, queue)
        figures.update({"wrk GET stats req/s": rate, "wrk GET stats p50 ms": p50,
                        "wrk GET stats p99 ms": p99})
        return int(rate * seconds)

    def cycle() -> int:
        tally, elapsed = asyncio.run(run_load(url, producers=20, consumers=20, observers=2,
                                              seconds=seconds))
        figures["load: posted msg/s"] = tally.posted / elapsed
        figures["load: claimed+deleted msg/s"] = tally.consumed / elapsed
        for kind in ("post", "claim", "delete"):
            values = sorted(tally.latencies.get(kind, []))
            figures[f"load: {kind} p50 ms"] = percentile(values, 50) * 1000
            figures[f"load: {kind} p99 ms"] = percentile(values, 99) * 1000
            figures[f"load: {kind} errors"] = tally.errors.get(kind, 0)
        return 0

    phase("wrk POST", post)
    phase("wrk POST 10", batched)  # also fills the queue the claim phase drains
    phase("wrk claim+delete", claim_delete)
    phase("wrk GET stats", stats)
    if load:
        phase("load", cycle)
    return figures


def start_marconi(port: int, workers: int | None = None,
                  root: Path = ROOT) -> tuple[subprocess.Popen[bytes], str]:
    """``marconi serve`` of the checkout at ``root`` (this one by default) on a fresh data
    directory, run by this interpreter: another checkout's server is what ``--before`` runs."""
    data = tempfile.mkdtemp(prefix="marconi-compare-")
    extra = [] if workers is None else ["--workers", str(workers)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "serve", "--data", data,
         "--port", str(port), *extra], cwd=root, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    return proc, data


def start_floor(port: int, processes: int) -> subprocess.Popen[bytes]:
    """The framework floor (``ops/bench/floor.py``), ``processes`` of it on one port."""
    return subprocess.Popen([sys.executable, "-m", "ops.bench.floor", "--port", str(port),
                             "--processes", str(processes)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(seconds: float = 10.0, marconi_port: int = 8890, zaqar_port: int = 8889, *,
         rounds: int = 1, workers: int | None = None, load: bool = True,
         servers: tuple[str, ...] = ("marconi", "zaqar"), floor_port: int = 8887,
         floor_processes: int | None = None, before: Path | None = None,
         before_port: int = 8891, warmup: float = 3.0) -> None:
    """Start the servers, then measure them in turn, ``rounds`` times; print medians.

    ``floor`` is the bare framework (``ops/bench/floor.py``, POST and GET phases only) with
    ``floor_processes`` processes (default: as many as marconi's fronts). ``before`` is the
    checkout of an earlier commit: its ``marconi serve`` (its own default shape) is measured
    too, as server ``before``, for before/after figures of one run. Each server is warmed up
    once (``warm_up``, ``warmup`` seconds) before the first round."""
    if before is not None and "before" not in servers:
        servers = (*servers[:1], "before", *servers[1:])
    if "before" in servers and (before is None or not (before / "ops" / "cli.py").exists()):
        raise SystemExit("server 'before' needs --before: a checkout of marconi "
                         "(git worktree add DIR COMMIT)")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    if "zaqar" in servers and not (ANCHORS / "start.sh").exists():
        raise SystemExit(f"no Zaqar anchor scripts at {ANCHORS}")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    targets: dict[str, tuple[str, int]] = {}
    servers_up: list[tuple[subprocess.Popen[bytes], str]] = []  # marconi servers, data dirs
    floor: subprocess.Popen[bytes] | None = None
    zaqar_started = False
    try:
        if "marconi" in servers:
            proc, data = start_marconi(marconi_port, workers)
            servers_up.append((proc, data))
            targets["marconi"] = (f"http://127.0.0.1:{marconi_port}", proc.pid)
        if "before" in servers:
            assert before is not None
            proc, data = start_marconi(before_port, root=before)
            servers_up.append((proc, data))
            targets["before"] = (f"http://127.0.0.1:{before_port}", proc.pid)
        if "zaqar" in servers:
            subprocess.run(["bash", str(ANCHORS / "setup.sh")], check=True,
                           capture_output=True)
            started = subprocess.run(
                ["bash", str(ANCHORS / "start.sh"), str(zaqar_port), "gunicorn", "4"],
                check=True, capture_output=True, text=True)
            zaqar_started = True
            targets["zaqar"] = (f"http://127.0.0.1:{zaqar_port}",
                                int(started.stdout.strip().splitlines()[-1]))
        if "floor" in servers:
            from ops.serve import usable_cores

            floor = start_floor(floor_port, floor_processes or workers or usable_cores())
            targets["floor"] = (f"http://127.0.0.1:{floor_port}", floor.pid)
        for url, _ in targets.values():
            wait_http(url)
        for url, _ in targets.values():
            warm_up(url, warmup)
        for n in range(rounds):
            for name, (url, pid) in targets.items():
                averages = " ".join(f"{x:.2f}" for x in os.getloadavg())
                print(f"round {n + 1}/{rounds}: measuring {name} at {url} (load average "
                      f"{averages}) ...", flush=True)
                runs[name].append(measure(url, pid, seconds, load=load and name != "floor",
                                          phases=POST_ONLY if name == "floor" else None,
                                          split=name == "marconi" and workers != 1))
    finally:
        if floor is not None:
            floor.send_signal(signal.SIGTERM)
            floor.wait(timeout=30)
        for proc, data in servers_up:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            shutil.rmtree(data, ignore_errors=True)
        if zaqar_started:
            subprocess.run(["bash", str(ANCHORS / "stop.sh"), str(zaqar_port)],
                           capture_output=True)

    print()
    print(summary(runs, seconds))


def summary(runs: dict[str, list[dict[str, float]]], seconds: float) -> str:
    """The medians of every figure, each server beside the first with their ratios; with more
    than one round, every round's figures too (this machine's noise is read off them)."""
    servers = list(runs)
    rounds = len(runs[servers[0]])
    results = {name: {key: statistics.median(r.get(key, float("nan")) for r in rs)
                      for key in rs[0]} for name, rs in runs.items()}
    first, *rest = servers
    rows = []
    for key in results[first]:
        m = results[first][key]
        row = [key, f"{m:,.1f}"]
        others = [results[name].get(key, float("nan")) for name in rest]
        row += [f"{z:,.1f}" for z in others]
        row += [f"{m / z:.2f}" if z and z == z else "-" for z in others]
        rows.append(row)
    text = (f"medians of {rounds} alternating round(s), {seconds:g} s per phase\n"
            + table(["figure", *servers, *(f"{first}/{name}" for name in rest)], rows))
    if rounds > 1:
        each = [[key, *(" / ".join(f"{r.get(key, float('nan')):,.1f}" for r in runs[name])
                        for name in servers)] for key in results[first]]
        text += "\n\neach round, in order\n" + table(["figure", *servers], each)
    return text
