"""``marconi serve``: the embedded node — FileLog + RocksDB under one data directory, every
partition local, the Zaqar v2 API on Hypercorn (DESIGN.md §4).

Beside the API: ``/metrics`` (Prometheus), ``/v2/health`` with per-partition detail, the
admin history route, and the control requests of the operator tools (``partitions``,
``snapshot``, live ``rebuild``; see ``ops/admin.py``).

Shutdown (SIGTERM/SIGINT): stop accepting, let in-flight requests finish, stop the runner,
stop the log (which flushes its last commit round), close the store. Starting again on the
same directory resumes from the store's applied offsets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import logging
import math
import os
import pickle
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from starlette.applications import Starlette

from log import Log, LogError
from log.filelog import FileLog
from ops import admin, gcpause, hypercorn_tuning, memory
from ops.admin import log_dir, snapshot_dir, store_dir
from ops.core import CoreServer
from ops.historyproc import ProcessHistory
from ops.notify import NotifierWiring
from ops.settings import Settings, SettingsError, load_settings
from ops.snapshot import write_snapshot
from projections import queries
from projections.rocksstore import RocksStore, StoreLockedError
from projections.runner import Runner, StoreMismatchError, wall_ms
from projections.snapshots import (
    FileSnapshots,
    SnapshotError,
    SnapshotStore,
    Snapshotter,
    retention_by,
)
from service.app import create_app
from service.gateway import LocalGateway
from service.metrics import CountingLog, LocalStatus, Metrics

logger = logging.getLogger("marconi.serve")


class ListenError(OSError):
    """The address to serve on cannot be bound (in use, not ours): one line, not a traceback."""


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on ``host:port``, bound before anything else starts.

    Binding here rather than inside Hypercorn means "listening on ..." is only printed once
    it is true, and a port in use is one clear line before the log or the store is opened.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise _listen_error(host, port, exc) from exc
    sock.set_inheritable(False)
    return sock


def _listen_error(host: str, port: int, exc: OSError) -> ListenError:
    """The one line an operator sees when the port cannot be had."""
    reason = ("the address is already in use (is another server running? choose "
              "another --port)" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc))
    return ListenError(f"cannot listen on {host}:{port}: {reason}")


def reserve(host: str, port: int) -> socket.socket:
    """``host:port`` bound (not listening) with ``SO_REUSEPORT``: the fronts' listeners join
    it, and a port another program holds is one clear line before anything starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # First without SO_REUSEPORT: that fails if anyone holds the port, even another
        # server's fronts (which would otherwise share it with ours).
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            address = probe.getsockname()  # port 0: the one the kernel chose
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise _listen_error(host, port, exc) from exc
    sock.set_inheritable(False)
    return sock


KEEP_ALIVE_S = 5.0  # Hypercorn's default: an idle keep-alive connection is closed after this
KEEP_ALIVE_MAX_REQUESTS = 1_000_000
SWITCH_INTERVAL_S = 0.0005


def hypercorn_config(settings: Settings, listener: socket.socket | None = None) -> Config:
    """Hypercorn's config; with ``listener`` it serves on that bound socket (and owns it)."""
    config = hypercorn_tuning.TunedConfig()
    config.bind = ([f"fd://{listener.detach()}"] if listener is not None
                   else [f"{settings.host}:{settings.port}"])
    config.graceful_timeout = settings.graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    # No per-read timeout: Hypercorn wraps every socket read of a connection in
    # ``wait_for`` when it is set (a task and a timer per read, ~10 % of a small POST). A
    # silent connection is dropped all the same: between requests by the keep-alive timeout,
    # while a body is due by ``service.bodytimeout`` (408, then close).
    config.read_timeout = None
    config.keep_alive_timeout = KEEP_ALIVE_S
    # Hypercorn closes a keep-alive connection after 1,000 requests by default: a busy
    # client then pays a reconnect (and its latency) every second or so, for nothing.
    config.keep_alive_max_requests = KEEP_ALIVE_MAX_REQUESTS
    hypercorn_tuning.install()  # one send per response (ops/hypercorn_tuning.py)
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


def snapshotter(settings: Settings, log: Log, data: Path,
                snapshots: SnapshotStore | None = None) -> Snapshotter:
    """The runner's snapshot duty: ``data/snapshots`` (embedded) or the given store."""
    store = snapshots or FileSnapshots(snapshot_dir(data), keep=settings.snapshot_keep)
    return Snapshotter(store, int(settings.snapshot_interval * 1000),
                       retention=retention_by(log, settings.log_retention_ms, wall_ms))


class EmbeddedNode:
    """The running parts of ``marconi serve`` and the operator requests it answers.

    A store swap (live rebuild): open the new store, start a second runner on it (it resumes
    from the store's own offsets and checks them against the log), wait until it has applied
    everything in the log, then point the app, the status and the pointer file at the new
    pair. Requests already in flight finish on the old pair, which keeps running for the
    request timeout and is then stopped, closed and deleted. Both runners apply the same log
    deterministically, so any request sees correct state on either side of the swap.
    """

    def __init__(self, settings: Settings, data: Path, log: FileLog,
                 clock: Callable[[], int] = wall_ms) -> None:
        self.settings = settings
        self.data = data
        self.clock = clock  # what stamps commands; only a bench passes another (bench clock)
        self.log = CountingLog(log)
        self.store: RocksStore | None = None
        self.runner: Runner | None = None
        self.status: LocalStatus | None = None
        # its worker starts on the first history page
        self.history = ProcessHistory(log, snapshot_dir(data))
        self.app: Starlette | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self.owner = f"{socket.gethostname()}:{settings.port}"
        self.notify = NotifierWiring(settings)  # the server sends notifications (§9)
        self.metrics: Metrics | None = None

    def _runner(self, store: RocksStore) -> Runner:
        runner = Runner(self.log, store, range(self.log.partitions), clock=self.clock,
                        snapshots=snapshotter(self.settings, self.log, self.data),
                        **self.notify.runner_options(self.settings))  # type: ignore[arg-type]
        if self.metrics is not None:
            runner.on_delivery = self.metrics.delivery
        return runner

    async def start(self) -> Starlette:
        self.store = RocksStore(store_dir(self.data), memory_mb=self.settings.store_memory_mb)
        self.runner = self._runner(self.store)
        await self.runner.start()
        await self.log.refresh()
        gateway = LocalGateway(self.log, self.runner, self.store, self.clock,
                               timeout=self.settings.request_timeout)
        self.status = LocalStatus(self.log, self.runner, self.store, owner=self.owner)
        metrics = self.metrics = Metrics(log=self.log, status=self.status)
        self.runner.on_delivery = metrics.delivery
        self.app = create_app(self.settings, gateway, history_reader=self.history,
                              status=self.status, metrics=metrics)
        return self.app

    async def stop(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        for task in list(self._retiring):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.history.close()
        if self.runner is not None:
            await self.runner.stop()
        if self.store is not None:
            self.store.close()
        await self.notify.aclose()

    # -- control requests (ops/admin.py) ---------------------------------------------------

    async def watch(self, interval: float = 0.2) -> None:
        """Answer the operator tools' requests dropped into ``control/``."""
        while True:
            try:
                for rid, body in admin.pending(self.data):
                    try:
                        result = await self.handle(body)
                        reply: dict[str, Any] = {"ok": True, **result}
                    except Exception as exc:  # reported to the tool, logged here
                        logger.exception("control request %s %r failed", rid, body.get("op"))
                        reply = {"ok": False, "error": str(exc) or type(exc).__name__}
                    admin.answer(self.data, rid, reply)
            except OSError:  # e.g. the control directory is unwritable: keep serving
                logger.exception("control directory %s", admin.control_dir(self.data))
            await asyncio.sleep(interval)

    async def handle(self, body: dict[str, Any]) -> dict[str, Any]:
        op = body.get("op")
        if op == "status":
            assert self.status is not None
            await self.status.refresh()
            return {"partitions": [row.as_json() for row in self.status.partition_status()]}
        if op == "snapshot":
            assert self.store is not None
            return {"snapshot": write_snapshot(self.store, str(body["dest"]))}
        if op == "swap":
            return await self.swap(str(body["store"]))
        if op == "memory":
            return memory.report(self.store, do_trim=bool(body.get("trim")))
        raise ValueError(f"unknown control request {op!r}")

    async def swap(self, name: str) -> dict[str, Any]:
        """Catch the store ``data/name`` up and serve from it (see the class docstring)."""
        path = self.data / name
        if path.parent != self.data or not path.is_dir() or not name.startswith("store-"):
            raise ValueError(f"{name!r} is not a store generation in {self.data}")
        assert self.app is not None and self.status is not None
        assert self.runner is not None and self.store is not None
        started = time.perf_counter()
        store = RocksStore(path, memory_mb=self.settings.store_memory_mb)
        runner = self._runner(store)
        try:
            before = {p: queries.partition_state(store, p)["offset"]
                      for p in range(self.log.partitions)}
            await runner.start()
            for p in range(self.log.partitions):
                await runner.barrier(p, timeout=max(60.0, self.settings.request_timeout))
        except BaseException:
            await runner.stop()
            store.close()
            raise
        caught_up = sum(runner.applied_offset(p) - before[p] for p in before)
        old_runner, old_store, old_path = self.runner, self.store, Path(self.store.path)
        self.app.state.gateway = LocalGateway(self.log, runner, store, self.clock,
                                              timeout=self.settings.request_timeout)
        self.status.runner, self.status.store = runner, store
        self.runner, self.store = runner, store
        admin.set_store(self.data, name)
        task = asyncio.get_running_loop().create_task(
            self._retire(old_runner, old_store, old_path))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        seconds = round(time.perf_counter() - started, 3)
        logger.info("swapped to store %s (caught up %d records in %.3f s)", name, caught_up,
                    seconds)
        return {"store": name, "caught_up": caught_up, "seconds": seconds}

    async def _retire(self, runner: Runner, store: RocksStore, path: Path) -> None:
        """Let requests that started on the old pair finish, then drop it."""
        try:
            await asyncio.sleep(self.settings.request_timeout + 1.0)
        finally:
            await runner.stop()
            store.close()
            if path != store_dir(self.data):
                shutil.rmtree(path, ignore_errors=True)
            logger.info("retired store %s", path.name)


async def run(settings: Settings, *, explicit_partitions: bool = False,
              stop: asyncio.Event | None = None, clock: Callable[[], int] = wall_ms) -> int:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT); returns the process exit code.

    ``clock`` stamps every command (and judges expiry); ``marconi serve`` always uses the
    wall clock, ``ops/bench/clockserve.py`` a faster one (no setting: operators never see it).
    """
    stop = stop or asyncio.Event()
    memory.tune_malloc(os.environ)  # before the store allocates its first memtable
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    workers = settings.workers or usable_cores()
    reservation: socket.socket | None = None
    if workers == 1:
        listener = listen(settings.host, settings.port)
    else:  # fronts share the port with SO_REUSEPORT; this bound socket keeps it ours
        listener = reservation = reserve(settings.host, settings.port)
    try:
        data, partitions = prepare(settings, explicit_partitions)
        log = FileLog(log_dir(data), partitions, segment_bytes=settings.log_segment_bytes,
                      archive_dir=settings.log_archive_dir,
                      preallocate_bytes=settings.log_preallocate_bytes)
        await log.start()
    except BaseException:
        listener.close()
        raise
    node = EmbeddedNode(settings, data, log, clock)
    watcher: asyncio.Task[None] | None = None
    summary: asyncio.Task[None] | None = None
    trimmer: asyncio.Task[None] | None = None
    try:
        app = await node.start()
        gcpause.settle()  # the startup heap is never garbage: no full collection walks it
        watcher = loop.create_task(node.watch(), name="control")
        url = f"http://{settings.host}:{settings.port}"
        logger.info("serving Zaqar v2 on %s (data %s, %d partitions)", url, data,
                    log.partitions)
        assert node.runner is not None
        summary = loop.create_task(log_caught_up(node.runner), name="caught-up")
        trimmer = loop.create_task(memory.keep_trimmed(), name="malloc-trim")
        if workers == 1:
            print(f"marconi: listening on {url}", flush=True)
            await hypercorn_serve(app, hypercorn_config(settings, listener),  # type: ignore[arg-type]
                                  shutdown_trigger=stop.wait)
        else:
            await serve_fronts(app, settings, data, log.partitions, workers, stop, url)
        logger.info("shutting down: in-flight requests done")
    finally:
        for task in (watcher, summary, trimmer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await node.stop()
        await log.stop()
        if reservation is not None:
            reservation.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    logger.info("stopped cleanly")
    return 0


FRONT_START_S = 60.0


def usable_cores() -> int:
    """The cores this process may run on (``workers = 0``): its CPU affinity, which a
    container or ``taskset`` narrows, not every core of the machine (``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def front_settings(settings: Settings, workers: int) -> Settings:
    """A front's settings: each front limits its share of the per-project request rate
    (the kernel spreads connections evenly over the fronts, so the sum is about the rate)."""
    if settings.rate_limit <= 0:
        return settings
    burst = settings.rate_burst or max(1, math.ceil(2 * settings.rate_limit))
    return dataclasses.replace(settings, rate_limit=settings.rate_limit / workers,
                               rate_burst=max(1, math.ceil(burst / workers)))


def _front_command(settings: Settings, data: Path, partitions: int) -> list[str]:
    settings_file = data / "front-settings.pickle"
    settings_file.touch(mode=0o600)
    settings_file.write_bytes(pickle.dumps(settings))
    return [sys.executable, "-m", "ops.front", "--core", str(data / "core.sock"),
            "--partitions", str(partitions), "--settings", str(settings_file),
            "--log-level", logging.getLevelName(logging.getLogger().getEffectiveLevel())]


async def serve_fronts(app: Starlette, settings: Settings, data: Path, partitions: int,
                       workers: int, stop: asyncio.Event, url: str) -> None:
    """``--workers N``: this process is the core (log, runner, store, ``ops/core.py``) and N
    front processes (``ops/front.py``) serve HTTP; a front that dies is started again."""
    core = CoreServer(app, data / "core.sock")
    await core.start()
    command = _front_command(front_settings(settings, workers), data, partitions)
    fronts: dict[int, asyncio.subprocess.Process] = {}

    async def start(slot: int) -> None:
        fronts[slot] = await asyncio.create_subprocess_exec(*command, cwd=Path.cwd(),
                                                            stdin=asyncio.subprocess.DEVNULL)

    async def keep(slot: int) -> None:
        while True:
            code = await fronts[slot].wait()
            if stop.is_set():
                return
            logger.warning("front %d (pid %d) exited with %s; starting it again", slot,
                           fronts[slot].pid, code)
            await asyncio.sleep(0.1)
            await start(slot)

    keepers: list[asyncio.Task[None]] = []
    try:
        for slot in range(workers):
            await start(slot)
            keepers.append(asyncio.get_running_loop().create_task(keep(slot)))
        deadline = time.monotonic() + FRONT_START_S
        while core.fronts < workers:
            if time.monotonic() > deadline:
                raise OSError(f"the front processes did not start in {FRONT_START_S:g} s")
            core.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await core.changed.wait()
        logger.info("%d front processes, pids %s", workers,
                    " ".join(str(p.pid) for p in fronts.values()))
        print(f"marconi: listening on {url}", flush=True)
        await stop.wait()
    finally:
        stop.set()
        for task in keepers:  # first, so that none starts a front while they stop
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for front in fronts.values():
            if front.returncode is None:
                front.send_signal(signal.SIGTERM)
        for front in fronts.values():
            try:
                async with asyncio.timeout(settings.graceful_timeout + 5):
                    await front.wait()
            except TimeoutError:
                front.kill()
                await front.wait()
        await core.stop()


async def log_caught_up(runner: Runner, interval: float = 0.05) -> None:
    """One line once every partition has caught up at start (not one per partition)."""
    started = time.perf_counter()
    while len(runner.ready_partitions) < len(runner.partitions):  # noqa: ASYNC110 - no
        await asyncio.sleep(interval)  # "all ready" event in the runner; ends at start
    applied = [runner.applied_offset(p) for p in runner.partitions]
    logger.info("%d partitions caught up in %.2f s (%d records applied)", len(applied),
                time.perf_counter() - started, sum(offset + 1 for offset in applied))


def serve(args: argparse.Namespace) -> int:
    """Entry point of ``marconi serve`` (flags override the file and the environment)."""
    try:
        settings = load_settings(args.config, data=args.data, host=args.host, port=args.port,
                                 partitions=args.partitions,
                                 workers=getattr(args, "workers", None),
                                 front_nice=getattr(args, "front_nice", None),
                                 log_format=getattr(args, "log_format", None))
    except SettingsError as exc:
        print(f"marconi: {exc}", file=sys.stderr)
        return 2
    from ops.logs import configure

    configure(getattr(args, "log_level", "INFO"), settings.log_format)
    # The log's commit thread needs the GIL back after every write and fsync; while the
    # event loop is busy it waits for the switch interval (5 ms by default) each time, and
    # every acknowledgement of that commit round waits with it (the POST p99 under load).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(run(settings, explicit_partitions=args.partitions is not None))
    except (LogError, StoreLockedError, StoreMismatchError, SnapshotError, OSError) as exc:
        print(f"marconi: cannot serve: {exc}", file=sys.stderr)
        return 1
