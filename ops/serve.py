"""``marconi serve``: the embedded node — FileLog + RocksDB under one data directory, every
partition local, the Zaqar v2 API on Hypercorn (DESIGN.md §4).

Shutdown (SIGTERM/SIGINT): stop accepting, let in-flight requests finish, stop the runner,
stop the log (which flushes its last commit round), close the store. Starting again on the
same directory resumes from the store's applied offsets.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from log import LogError
from log.filelog import FileLog
from ops.admin import log_dir, store_dir
from ops.settings import Settings, SettingsError, load_settings
from projections.rocksstore import RocksStore, StoreLockedError
from projections.runner import Runner, StoreMismatchError
from service.app import create_app
from service.gateway import LocalGateway

logger = logging.getLogger("marconi.serve")


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.graceful_timeout = settings.graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


def prepare(settings: Settings, explicit_partitions: bool) -> tuple[Path, int | None]:
    """Create the data directory; returns it (resolved) and the partition count to ask for.

    A new log gets ``settings.partitions``; an existing one keeps its own count, unless a
    count was asked for explicitly (then FileLog refuses a mismatch).
    """
    data = Path(settings.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    if explicit_partitions or not (log_dir(data) / "meta.json").exists():
        return data, settings.partitions
    return data, None


async def run(settings: Settings, *, explicit_partitions: bool = False,
              stop: asyncio.Event | None = None) -> int:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT); returns the process exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    data, partitions = prepare(settings, explicit_partitions)
    log = FileLog(log_dir(data), partitions)
    await log.start()
    try:
        store = RocksStore(store_dir(data))
    except StoreLockedError:
        await log.stop()
        raise
    runner = Runner(log, store, range(log.partitions))
    try:
        await runner.start()
        gateway = LocalGateway(log, runner, store, timeout=settings.request_timeout)
        app = create_app(settings, gateway)
        url = f"http://{settings.host}:{settings.port}"
        logger.info("serving Zaqar v2 on %s (data %s, %d partitions)", url, data,
                    log.partitions)
        print(f"marconi: listening on {url}", flush=True)
        await hypercorn_serve(app, hypercorn_config(settings),  # type: ignore[arg-type]
                              shutdown_trigger=stop.wait)
        logger.info("shutting down: in-flight requests done")
    finally:
        await runner.stop()
        await log.stop()
        store.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    logger.info("stopped cleanly")
    return 0


def serve(args: argparse.Namespace) -> int:
    """Entry point of ``marconi serve`` (flags override the file and the environment)."""
    try:
        settings = load_settings(args.config, data=args.data, host=args.host, port=args.port,
                                 partitions=args.partitions)
    except SettingsError as exc:
        print(f"marconi: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(settings, explicit_partitions=args.partitions is not None))
    except (LogError, StoreLockedError, StoreMismatchError, OSError) as exc:
        print(f"marconi: cannot serve: {exc}", file=sys.stderr)
        return 1
