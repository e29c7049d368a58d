"""The delivery duty: the owner of a partition sends what is due and logs every answer.

Like ``Sweep`` and the outbox this is an owner duty (DESIGN.md §7, §9): it starts once the
partition has caught up, reads pending deliveries from the state, hands each to a ``Sender``
(injected: the HTTP and SMTP code lives in ``service.notify``) and appends the answers as
``DeliveryReport`` commands, one per queue, many per append. A restart, a failover or a
second performer is harmless: what was not reported is still pending in the state and is
sent again (at-least-once; receivers de-duplicate with the idempotency key).

Bounded work and isolation:

* the due index is scanned from a cursor (seeded from the floor the reports keep in state),
  never from its head, ``scan`` keys at a time;
* at most ``per_subscription`` attempts of one subscription are in flight; the rest of its
  due deliveries wait in a bounded in-memory backlog, and past that they are skipped and
  found again from where they were skipped once the backlog drains — so a slow or dead
  subscriber only delays itself;
* at most ``max_inflight`` attempts per partition, and a semaphore shared by every
  partition bounds them overall; the API never waits on any of this;
* the API goes first: while requests are being served (``busy()``, the runner's view of
  requests waiting for apply) at most ``busy_inflight`` attempts are in flight, so posts do
  not queue behind sends, reports and fan-out on the one event loop;
* fan-out (rules >= 5) runs at the pace of sending: a ``FanOut`` command expands posted
  messages into at most ``fanout_slice`` pending deliveries, appended only while fewer than
  half the duty's working set is waiting, so the pending rows stay bounded whatever the
  number of subscriptions or the post rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from log import Log
from projections import delivery, queries
from projections.commands import DeliveryReport, FanOut, encode
from projections.delivery import Pending
from projections.store import View

logger = logging.getLogger(__name__)

SubKey = tuple[str, str, str]
Result = dict[str, Any]  # {"r": outcome, "status": int | None, "error": str}


class Sender(Protocol):
    """Makes one delivery attempt; never raises for the receiver's failures."""

    async def deliver(self, pending: Pending) -> Result:
        """``{"r": "delivered" | "failed" | "refused" | "cancelled", "status", "error"}``."""
        ...


class DeliveryDuty:
    """Sends one partition's due deliveries (see the module docstring)."""

    def __init__(self, log: Log, store: View, partition: int, sender: Sender, *,
                 applied: Callable[[int, int], Awaitable[None]], ids: Callable[[], str],
                 clock: Callable[[], int], overall: asyncio.Semaphore,
                 max_inflight: int = 64, per_subscription: int = 4, backlog: int = 256,
                 scan: int = 256, idle: float = 0.5,
                 on_result: Callable[[Pending, Result], None] | None = None,
                 busy: Callable[[], bool] | None = None, busy_inflight: int = 2,
                 fanout_slice: int = 128) -> None:
        self._log = log
        self._store = store
        self._p = partition
        self._sender = sender
        self._applied = applied
        self._ids = ids
        self._clock = clock
        self._overall = overall
        self._max_inflight = max_inflight
        self._per_sub = per_subscription
        self._backlog_max = backlog
        self._scan = scan
        self._idle = idle
        self._on_result = on_result
        self._busy = busy
        self._busy_inflight = max(busy_inflight, 1)
        self._fanout_slice = max(fanout_slice, 1)
        self._fanout_wake = asyncio.Event()
        self._fanout_wanted = False  # the fan-out loop waits for a FanOut to be appended
        self._fanout_done = asyncio.Event()
        self.fanouts = 0  # FanOut commands appended, for tests that count work
        self.wake = asyncio.Event()
        self._cursor = b""  # index key the next scan starts at
        self._known: dict[tuple[str, str, str, str], int] = {}  # key -> due, unreported
        self._backlog: dict[SubKey, deque[Pending]] = defaultdict(deque)
        self._active: dict[SubKey, int] = defaultdict(int)
        self._resume: dict[SubKey, bytes] = {}  # first index key skipped (backlog full)
        self._inflight = 0
        self._results: list[tuple[Pending, Result]] = []
        self._flush_wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.scanned = 0  # keys examined, for tests that count work

    async def run(self) -> None:
        self._cursor = delivery.due_start(self._p, delivery.floor(self._store, self._p))
        loop = asyncio.get_running_loop()
        flusher = loop.create_task(self._flush_loop())
        fanner = loop.create_task(self._fanout_loop())
        self._fanout_wake.set()  # entries may wait from before this owner started
        try:
            while True:
                self._scan_once()
                self._launch()
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that
                # lands in the turn the wake fires (a stop then waits forever on this loop).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._idle):
                        await self.wake.wait()
                self.wake.clear()
        finally:
            flusher.cancel()
            fanner.cancel()
            pending = [flusher, fanner, *self._tasks]
            for task in pending:
                task.cancel()
            # Bounded: a sender stuck past cancellation must not hold up a stop or revoke.
            await asyncio.wait(pending, timeout=5)

    # -- finding work ------------------------------------------------------------------

    def _scan_once(self) -> None:
        if len(self._known) >= self._max_inflight + self._backlog_max:
            return
        partition_time = queries.partition_state(self._store, self._p)["time"]
        now = max(self._clock(), partition_time)
        items = delivery.due(self._store, self._p, self._cursor, now, self._scan, now)
        self.scanned += len(items)
        stopped: bytes | None = None
        for item in items:
            if item.key in self._known:
                continue
            if len(self._known) >= self._max_inflight + self._backlog_max:
                stopped = item.index_key
                break
            sub = item.key[:3]
            if len(self._backlog[sub]) >= self._backlog_max:
                self._resume[sub] = min(self._resume.get(sub, item.index_key), item.index_key)
                continue
            self._known[item.key] = item.due
            self._backlog[sub].append(item)
        if stopped is not None:
            nxt = stopped
        elif len(items) >= self._scan:
            nxt = items[-1].index_key + b"\x00"  # more may follow this key
        else:
            nxt = delivery.due_start(self._p, now)  # everything due was seen
        self._cursor = nxt

    def inserted(self, first_key: bytes) -> None:
        """The runner committed new due-index keys, the smallest being ``first_key``."""
        if first_key < self._cursor:
            self._cursor = first_key
        self.wake.set()

    def fanout_added(self) -> None:
        """The runner committed a fan-out entry."""
        self._fanout_wake.set()

    def _limit(self) -> int:
        if self._busy is not None and self._busy():
            return min(self._busy_inflight, self._max_inflight)
        return self._max_inflight

    def _launch(self) -> None:
        loop = asyncio.get_running_loop()
        limit = self._limit()
        for sub, queue in self._backlog.items():
            while queue and self._active[sub] < self._per_sub and self._inflight < limit:
                item = queue.popleft()
                self._active[sub] += 1
                self._inflight += 1
                task = loop.create_task(self._attempt(sub, item))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _attempt(self, sub: SubKey, item: Pending) -> None:
        try:
            async with self._overall:
                result = await self._sender.deliver(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a sender bug must not stop the duty; retried as a failure
            logger.exception("partition %d: sender failed", self._p)
            result = {"r": "failed", "status": None, "error": f"sender error: {exc!r}"}
        finally:
            self._active[sub] -= 1
            self._inflight -= 1
        self._results.append((item, result))
        self._flush_wake.set()
        if self._on_result is not None:
            self._on_result(item, result)

    # -- fan-out (rules >= 5) ------------------------------------------------------------

    def _wants_work(self) -> bool:
        return len(self._known) < (self._max_inflight + self._backlog_max) // 2

    async def _fanout_loop(self) -> None:
        """Ask for a ``FanOut`` while entries wait and the duty is short of work; the flush
        loop appends it, with the reports of the moment (one commit round for both)."""
        while True:
            await self._fanout_wake.wait()
            self._fanout_wake.clear()
            while delivery.fanout_pending(self._store, self._p):
                if not self._wants_work():
                    await asyncio.sleep(0.01)  # sending catches up first
                    continue
                self._fanout_done.clear()
                self._fanout_wanted = True
                self._flush_wake.set()
                await self._fanout_done.wait()

    # -- reporting ---------------------------------------------------------------------

    BUSY_REPORT_INTERVAL = 0.25  # s between the duty's appends while requests are served

    def floor(self) -> int:
        """No unreported delivery of this partition is due before this."""
        keys = [self._cursor, *self._resume.values()]
        # A post not applied yet is due at its effective time, never before the partition's.
        partition_time = queries.partition_state(self._store, self._p)["time"]
        return min([delivery.due_time(self._p, k) for k in keys if k] +
                   list(self._known.values()) + [partition_time])

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = -1.0
        while True:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            if self._busy is not None and self._busy():
                # Every append the duty makes while requests are served can start a commit
                # round (an fsync) of its own that their appends then queue behind: append
                # at most every ``BUSY_REPORT_INTERVAL`` then, many results per report.
                wait = last + self.BUSY_REPORT_INTERVAL - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            last = loop.time()
            while self._results or self._fanout_wanted:
                batch, self._results = self._results, []
                fan = self._fanout_wanted
                try:
                    stamped = await self._report(batch, fan_out=fan)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("partition %d: delivery report failed; retrying",
                                     self._p)
                    self._results = batch + self._results
                    await asyncio.sleep(0.5)
                    continue
                if fan:
                    self._fanout_wanted = False
                    self.fanouts += 1
                    self._fanout_done.set()
                for item, _ in batch:
                    self._known.pop(item.key, None)
                    sub = item.key[:3]
                    if not self._backlog[sub] and not self._active[sub]:
                        self._backlog.pop(sub, None)
                        self._active.pop(sub, None)
                        if sub in self._resume:
                            self._cursor = min(self._cursor, self._resume.pop(sub))
                if any(result["r"] != "delivered" for _, result in batch):
                    # A retry is due at the report's effective time or later, never before
                    # its stamp. A scan that ran between the report's apply and this point
                    # skipped it as still known and may have moved the cursor past it.
                    self._cursor = min(self._cursor, delivery.due_start(self._p, stamped))
                self.wake.set()

    async def _report(self, batch: list[tuple[Pending, Result]], *,
                      fan_out: bool = False) -> int:
        """Append the batch's answers (and a ``FanOut``), wait until they are applied;
        returns their stamp."""
        by_queue: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for item, result in batch:
            by_queue.setdefault((item.project, item.queue), []).append(
                {"s": item.subscription_id, "i": item.item, "r": result["r"],
                 "status": result.get("status"), "error": result.get("error") or ""})
        floor = self.floor()
        now = self._clock()
        records = [encode(DeliveryReport(id=self._ids(), project=project, queue=queue,
                                         time_ms=now, results=results, floor_ms=floor))
                   for (project, queue), results in by_queue.items()]
        if fan_out:
            records.append(encode(FanOut(id=self._ids(), time_ms=now,
                                         max_count=self._fanout_slice)))
        offsets = await self._log.append(self._p, records)
        await self._applied(self._p, offsets[-1])
        return now
