"""The admin history route's replays, in a worker process beside ``marconi serve``.

A cold history page replays the queue's partition from the newest snapshot at or before its
marker (or offset 0): up to a snapshot interval of CPU. In the server's process that starves
request handling (same GIL), so ``serve`` hands pages to one spawned worker process. The
worker keeps a ``HistoryReader`` whose parked cursors survive between pages, so sequential
paging is still one replay in total.

Each new replay opens the log read-only (a view of the segments as of that moment, ~0.13 s
for 100k records) and is bounded by the server's durable end offset, passed with the request,
so history never shows a record the writer has not fsynced.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from log import Log, partition_for
from log.filelog import FileLog
from projections.audit import Entry
from projections.snapshots import FileSnapshots
from service.history import HistoryReader

# -- in the worker process -----------------------------------------------------------------

_worker: dict[str, Any] = {}


class _Bounded:
    """A read-only log that ends where the live log's durable records end."""

    def __init__(self, log: FileLog, ends: dict[int, int]) -> None:
        self._log = log
        self._ends = dict(ends)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    @property
    def partitions(self) -> int:
        return self._log.partitions

    async def end_offset(self, partition: int) -> int:
        end = await self._log.end_offset(partition)
        return min(end, self._ends.get(partition, end))

    async def stop(self) -> None:
        await self._log.stop()


def _reader(log_path: str, snapshot_path: str | None
            ) -> tuple[asyncio.AbstractEventLoop, HistoryReader]:
    if "reader" not in _worker:
        async def open_log() -> Log:
            log = FileLog(Path(log_path), read_only=True)
            await log.start()
            return _Bounded(log, _worker["ends"])  # type: ignore[return-value]

        loop = asyncio.new_event_loop()
        snaps = FileSnapshots(snapshot_path) if snapshot_path is not None else None
        reader = HistoryReader(open_log=open_log, snapshots=snaps)
        _worker.update(loop=loop, reader=reader, ends={})
        # parked cursors hold scratch stores in the temp directory: remove them on exit
        atexit.register(lambda: loop.run_until_complete(reader.close()))
    return _worker["loop"], _worker["reader"]


def _page(log_path: str, snapshot_path: str | None, project: str, queue: str,
          marker: int | None, limit: int, partition: int, end: int) -> list[Entry]:
    loop, reader = _reader(log_path, snapshot_path)
    _worker["ends"][partition] = end
    return loop.run_until_complete(reader.page(project, queue, marker, limit))


def _warm() -> None:
    """Nothing: importing this module is the warm-up."""


def _die_with(parent: int) -> None:
    """Worker initializer: exit when the server does, even on ``kill -9`` (which leaves
    a pool worker blocked on its queue forever). Linux ``PR_SET_PDEATHSIG``."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(0)


# -- in the server -------------------------------------------------------------------------


class ProcessHistory:
    """``HistorySource`` over a FileLog, replaying in one spawned worker process."""

    def __init__(self, log: FileLog, snapshots: str | os.PathLike[str] | None = None) -> None:
        """Pages of ``log``'s history, replayed from the snapshots in ``snapshots`` (a
        ``FileSnapshots`` directory) when given."""
        self._log = log
        self._snapshots = None if snapshots is None else str(snapshots)
        ctx = multiprocessing.get_context("spawn")  # never fork a process with threads
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx,
                                         initializer=_die_with, initargs=(os.getpid(),))

    def warm(self) -> None:
        """Start the worker now, so the first page does not pay for the interpreter."""
        self._pool.submit(_warm)

    async def page(self, project: str, queue: str, marker: int | None,
                   limit: int) -> list[Entry]:
        partition = partition_for(project, queue, self._log.partitions)
        end = await self._log.end_offset(partition)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, _page, str(self._log.directory), self._snapshots, project, queue,
            marker, limit, partition, end)

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
