"""The framework's own floor on this machine (``marconi bench compare --servers ...,floor``).

A bare Starlette route on the same tuned Hypercorn as ``marconi serve``: it parses the
POSTed JSON and answers 201 with a body shaped like Marconi's; a GET answers a small JSON
document. No middleware, validation, log or store. Whatever it serves is the ceiling of any
design on this stack here, so Marconi's figures (and a target such as "3 times Zaqar") are read
against it in the same run. ``--processes N`` runs N of them on one port (SO_REUSEPORT), as
the fronts of ``marconi serve --workers N`` share theirs.

Run as ``python -m ops.bench.floor --port P [--processes N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys

import orjson
import uvloop
from hypercorn.asyncio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ops.front import reuseport_listener
from ops.hypercorn_tuning import TunedConfig, install

POSTED = orjson.dumps({"resources": ["/v2/queues/q/messages/0123456789abcdef01234567"]})
STATS = orjson.dumps({"messages": {"free": 0, "claimed": 0, "total": 0}})


async def post(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(POSTED, 201, media_type="application/json")


async def get(request: Request) -> Response:
    return Response(STATS, 200, media_type="application/json")


def app() -> Starlette:
    return Starlette(routes=[Route("/{path:path}", post, methods=["POST"]),
                             Route("/{path:path}", get, methods=["GET"])])


async def run(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    config = TunedConfig()
    config.bind = [f"fd://{reuseport_listener('127.0.0.1', port).detach()}"]
    config.accesslog = None
    config.errorlog = None
    config.read_timeout = None
    config.keep_alive_max_requests = 1_000_000
    install()
    await serve(app(), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.floor", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args(argv)
    siblings = [subprocess.Popen([sys.executable, "-m", "ops.bench.floor", "--port",
                                  str(args.port)]) for _ in range(args.processes - 1)]
    try:
        uvloop.run(run(args.port))
    finally:
        for proc in siblings:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
