"""A front process of ``marconi serve --workers N``: HTTP, the middleware checks, validation
and rendering on its own core, everything stateful in the core process (``ops/core.py``).

Started by ``marconi serve`` only (``python -m ops.front``), with the serve flags and the
core's socket. It binds ``host:port`` with ``SO_REUSEPORT`` beside its sibling fronts, so
the kernel spreads connections over them; it holds no log, no store and no lock, so
``kill -9`` of a front loses nothing the core acknowledged (its in-flight requests are
unanswered, like any dropped connection). It stops when the core goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pickle
import signal
import socket
import sys
from pathlib import Path

import uvloop
from hypercorn.asyncio import serve as hypercorn_serve

from ops import gcpause
from ops.settings import Settings, SettingsError
from service.app import create_app
from service.metrics import Metrics
from service.remotegateway import (
    CoreLink,
    CoreMetrics,
    ForwardedHistory,
    RemoteGateway,
)

logger = logging.getLogger("marconi.front")


def yield_to_core(nice: int) -> None:
    """Run ``nice`` steps nicer than the core that started this front (``front_nice``).

    The core is the one serial stage: every command waits for its apply and its fsync, so
    any CPU it loses to a front is lost by every request. At equal priority a front woken by
    the core's answer frames preempts the core mid-batch (in the core's profile under
    claim+delete, a tenth of its wall time was its socket writes); nicer fronts take the CPU
    the core leaves, not the core's. Measured (alternating rounds, medians): nice 10 gave
    claim+delete +17 %, POST 10 +13 %, POST +3 %; nice 5 less, nice 19 no more and a worse p99.
    """
    if nice > 0:
        os.nice(nice)


def reuseport_listener(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening socket sharing ``host:port`` with the other fronts (``SO_REUSEPORT``)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(address)
    sock.listen(backlog)
    sock.set_inheritable(False)
    return sock


async def run(args: argparse.Namespace) -> int:
    from ops.serve import hypercorn_config

    settings: Settings = pickle.loads(args.settings_bytes)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listener = reuseport_listener(settings.host, settings.port)
    link = await CoreLink.connect(args.core)
    link.closed.add_done_callback(lambda _: stop.set())
    gateway = RemoteGateway(link, args.partitions, timeout=settings.request_timeout)
    history = ForwardedHistory(link, settings.request_timeout + 1.0)
    metrics = Metrics()
    core_metrics = CoreMetrics(link, settings.request_timeout + 1.0)
    metrics.fan_in = core_metrics  # one scrape shows every process (service.metricsfanin)
    app = create_app(settings, gateway, history_reader=history, metrics=metrics)
    gcpause.settle()  # as the core does: no collection walks the startup heap again
    pushing = loop.create_task(core_metrics.push(metrics), name="metrics-push")
    try:
        await hypercorn_serve(app, hypercorn_config(settings, listener),  # type: ignore[arg-type]
                              shutdown_trigger=stop.wait)
    finally:
        pushing.cancel()
        link.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="marconi-front")
    parser.add_argument("--core", required=True, help="the core's Unix socket")
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--settings", required=True,
                        help="the serve process's settings (pickled, in its data directory)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    from ops.logs import configure

    args.settings_bytes = Path(args.settings).read_bytes()
    settings: Settings = pickle.loads(args.settings_bytes)
    configure(args.log_level, settings.log_format)
    yield_to_core(settings.front_nice)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(run(args))
    except (SettingsError, OSError) as exc:
        print(f"marconi front: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
