"""``marconi bench front --server``: CPU per request of each process of a real
``marconi serve --workers N`` under wrk (POSTs of ``messages`` messages, one by default).

Wall-clock rates on a shared machine say little; CPU time does: each process's user+system
time (``/proc/<pid>/stat``) over the requests wrk completed. The fronts are summed (the
kernel spreads connections over them); the core is reported apart. ``tree`` runs another
checkout's code (``<tree>/.venv``) the same way, for an A/B in the same minute.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ops.bench.wrk_scripts import CLIENT_ID, PROJECT, one, post

TICK = os.sysconf("SC_CLK_TCK")

# The other hot paths, each one request repeated (the queue stays empty: a claim answers 204,
# a DELETE of a message that is not there 204, as Zaqar's do; each still crosses the core).
OTHER_SCRIPTS = {
    "claim": one("POST", "/claims?limit=10", '{"ttl": 300, "grace": 60}'),
    "delete": one("DELETE", "/messages/5c4fbd5e8a4e4d4f9b6c2c3a0d1e2f30"),
    "stats": one("GET", "/stats"),
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def fronts_of(pid: int) -> list[int]:
    """The front processes (``ops.front``) among ``pid``'s children (not its other helpers)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"ops.front" in Path(f"/proc/{child}/cmdline").read_bytes():
                out.append(int(child))
    return out


def _request(url: str, method: str = "GET") -> int:
    req = urllib.request.Request(url, method=method, headers={
        "Client-ID": CLIENT_ID, "X-Project-ID": PROJECT})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return int(resp.status)


def start(tree: Path, port: int, workers: int, data: Path) -> subprocess.Popen[bytes]:
    """``marconi serve`` of ``tree`` on ``port``, answering once it does."""
    proc = subprocess.Popen(
        [str(tree / ".venv/bin/marconi"), "--log-level", "WARNING", "serve", "--data", str(data),
         "--port", str(port), "--workers", str(workers)],
        cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            _request(f"http://127.0.0.1:{port}/v2/ping")
            if len(fronts_of(proc.pid)) >= workers:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"marconi serve ({tree}) did not answer on port {port}")


def measure(port: int, pids: list[int], seconds: int, connections: int,
            script: Path) -> tuple[int, list[float]]:
    """Requests wrk completed and the CPU µs per request of each pid."""
    before = [cpu_seconds(p) for p in pids]
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
         f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True,
        env={**os.environ, "WRK_QUEUE": "bench"}).stdout
    after = [cpu_seconds(p) for p in pids]
    found = re.search(r"(\d+) requests in", out)
    requests = int(found.group(1)) if found else 0
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if failed:  # the figures would price error answers, not the path meant
        print(f"  {failed.group(1)} answers were not 2xx", file=sys.stderr)
    return requests, [(b - a) / max(requests, 1) * 1e6 for a, b in zip(before, after, strict=True)]


def main(trees: list[Path], port: int = 8910, workers: int = 2, seconds: int = 8,
         connections: int = 16, runs: int = 3, messages: int = 1,
         scenario: str = "post") -> None:
    work = Path(tempfile.mkdtemp(prefix="marconi-bench-front-server-"))
    script = work / "post.lua"
    script.write_text(post(messages) if scenario == "post" else OTHER_SCRIPTS[scenario])
    results: dict[str, list[tuple[float, float, int]]] = {str(t): [] for t in trees}
    for _ in range(runs):
        for i, tree in enumerate(trees):  # alternate: each run of each tree in the same minute
            data = work / f"data-{i}-{time.monotonic_ns()}"
            proc = start(tree, port + i, workers, data)
            try:
                assert _request(f"http://127.0.0.1:{port + i}/v2/queues/bench", "PUT") in (201,
                                                                                           204)
                fronts = fronts_of(proc.pid)
                measure(port + i, [proc.pid, *fronts], 2, connections, script)  # warm up
                n, costs = measure(port + i, [proc.pid, *fronts], seconds, connections, script)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            core, front = costs[0], sum(costs[1:])
            results[str(tree)].append((front, core, n))
            print(f"{tree}: front {front:.0f} µs/req (sum of {len(fronts)}), core {core:.0f}, "
                  f"{n} requests", file=sys.stderr)
    print(f"--workers {workers}, wrk -t1 -c{connections} {seconds}s "
          f"{f'{messages}-message POSTs' if scenario == 'post' else scenario}: "
          f"CPU µs/request, median of {runs}")
    for tree, rows in results.items():
        fronts = sorted(r[0] for r in rows)
        cores = sorted(r[1] for r in rows)
        print(f"  {tree}: fronts {fronts[len(fronts) // 2]:.0f}  core {cores[len(cores) // 2]:.0f}"
              f"   [fronts {' '.join(f'{f:.0f}' for f in fronts)}]")
