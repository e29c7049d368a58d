"""A ``marconi serve`` whose clock runs ``--rate`` times faster than the wall clock (benches only).

Twenty minutes of server time (outcome windows, TTLs, sweeps, snapshot intervals) pass in two
minutes of a benchmark. Not a setting and not a ``marconi serve`` flag: an operator must never
run a node on a false clock. The clock only stamps commands (DESIGN §7 "one clock per
partition"), so apply stays pure and the log folds the same on any clock.

    python -m ops.bench.clockserve --rate 10 --data DIR --port PORT [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable

import uvloop

from ops.logs import configure
from ops.serve import run
from ops.settings import SettingsError, load_settings


def scaled_clock(rate: float, wall: Callable[[], int] | None = None) -> Callable[[], int]:
    """Milliseconds that start at the wall clock and then advance ``rate`` times as fast."""
    read = wall or (lambda: time.time_ns() // 1_000_000)
    origin = read()
    mono0 = time.monotonic_ns()

    def clock() -> int:
        return origin + int((time.monotonic_ns() - mono0) * rate) // 1_000_000

    return clock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.clockserve")
    parser.add_argument("--rate", type=float, required=True, help="server seconds per second")
    parser.add_argument("--data", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if not args.rate > 0:
        parser.error("--rate must be positive")
    try:
        settings = load_settings(data=args.data, port=args.port, workers=args.workers)
    except SettingsError as exc:
        print(f"clockserve: {exc}", file=sys.stderr)
        return 2
    configure(args.log_level, settings.log_format)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run(settings, clock=scaled_clock(args.rate)))


if __name__ == "__main__":
    sys.exit(main())
