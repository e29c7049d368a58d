"""``marconi bench bounded``: the issue-10 figures through HTTP on a real ``marconi serve``.

Modes (``--modes``, each on a fresh server; ``ops/bench/bounded_modes.py``):

* ``purge``: purge of N messages while another queue is read: that read's worst latency;
* ``delayed``: claim on a queue with M delayed + 5 free messages: median claim latency (and on
  an ordinary queue, measured the same way, for the ratio);
* ``listing``: list an emptied 50k queue; ``echo=false`` list of a queue of one's own messages;
* ``rss``: RSS after cycles of "post K x 1 KB, purge", against the first cycle, with what it
  is made of (RocksDB memtables and cache, the C heap) and, with ``--idle``, after idling;
* ``post-clock``: single-message POSTs over 20 min of server time on a 10x clock
  (``ops/bench/clockserve.py``): req/s and p99 of the first and the last server minute;
* ``expired``: claims arriving when 99k messages have just expired (a 10x clock): claim
  latency, another queue's worst read, how long the sweep takes to catch up.

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
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ops import admin
from ops.bench.bounded_modes import (
    _delayed,
    _expired,
    _listing,
    _post_clock,
    _purge,
    _rss,
)
from ops.bench.stats import table

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MODES = ("purge", "delayed", "listing", "rss", "post-clock", "expired")
DEFAULT_MODES = ("purge", "delayed", "listing", "rss")
CLOCKED = {"post-clock", "expired"}  # run on ops/bench/clockserve.py (a faster clock)


@dataclass
class Server:
    """A ``marconi serve`` (or a clockserve) started for one mode, with its data directory."""

    url: str
    pid: int
    data: str
    proc: subprocess.Popen[bytes]

    def memory(self, trim: bool = False) -> dict[str, Any] | None:
        """The server's ``memory`` control answer (None from a tree without it)."""
        try:
            return admin.request(self.data, {"op": "memory", "trim": trim}, timeout=20)
        except (admin.ControlError, admin.NoAnswerError):
            return None

    def records(self) -> int:
        """Records in the server's log, every partition (the ``status`` control request)."""
        rows = admin.request(self.data, {"op": "status"}, timeout=20)["partitions"]
        return sum(int(row["end_offset"]) for row in rows)


def _start(source: Path, rate: float | None, env_extra: dict[str, str]) -> Server:
    port = _free_port()
    data = tempfile.mkdtemp(prefix="marconi-bench-bounded-")
    env = {**os.environ, "PYTHONPATH": str(source), **env_extra}
    if rate is None:
        argv = [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "serve", "--data",
                data, "--port", str(port)]
    else:
        argv = [sys.executable, "-m", "ops.bench.clockserve", "--rate", str(rate), "--data",
                data, "--port", str(port)]
    errors = open(f"{data}.stderr", "wb")  # the child keeps its own descriptor
    proc = subprocess.Popen(argv, cwd=source, env=env, stdout=subprocess.DEVNULL,
                            stderr=errors)
    errors.close()
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/v2/health", timeout=1).status_code < 500:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} ({' '.join(argv)})")
        time.sleep(0.1)
    return Server(url, proc.pid, data, proc)


def _stop(server: Server) -> None:
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    shutil.rmtree(server.data, ignore_errors=True)
    errors = Path(f"{server.data}.stderr")
    text = errors.read_text(errors="replace").strip() if errors.exists() else ""
    if text:  # a warning or a crash of the server: shown, not hidden
        print(f"bench bounded: the server's stderr ({errors}):\n{text[-4000:]}", flush=True)
    else:
        errors.unlink(missing_ok=True)


def main(tree: str | None = None, purge_n: int = 100_000, delayed_n: int = 50_000,
         cycle_n: int = 30_000, cycles: int = 6, modes: tuple[str, ...] = DEFAULT_MODES,
         idle: float = 0.0, rate: float = 10.0, server_minutes: float = 20.0,
         expired_n: int = 99_000, list_n: int = 50_000,
         env: dict[str, str] | None = None) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    source = Path(tree).resolve() if tree else ROOT
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"bench bounded: unknown modes {sorted(unknown)} (of {MODES})")
    figures: dict[str, str] = {}
    for mode in modes:
        server = _start(source, rate if mode in CLOCKED else None, env or {})
        print(f"bench bounded {mode}: server from {source} at {server.url}"
              + (f" (clock x{rate:g})" if mode in CLOCKED else ""), flush=True)
        try:
            if mode == "purge":
                coro = _purge(server, purge_n)
            elif mode == "delayed":
                coro = _delayed(server, delayed_n)
            elif mode == "listing":
                coro = _listing(server, list_n)
            elif mode == "rss":
                coro = _rss(server, cycle_n, cycles, idle)
            elif mode == "post-clock":
                coro = _post_clock(server, rate, server_minutes)
            else:
                coro = _expired(server, rate, expired_n)
            figures.update(asyncio.run(coro))
        except Exception as exc:
            figures[f"{mode}: failed"] = repr(exc)
        finally:
            _stop(server)
    print(table(["figure", "value"], list(figures.items())))
