"""The runner: tails the partitions it owns and folds them into the store, batch by batch.

One WriteBatch per batch, holding the state changes and the applied offset together
(DESIGN.md §2.4). Callers ``await applied(partition, offset)`` for the read barrier and the
write path. As the owner of its partitions it also appends the ``Sweep`` commands and sends
the dead-letter outbox (DESIGN.md §7).

The owned set can change at runtime (scaled-out mode): ``assign`` starts tailing partitions
from their stored applied offset (a partition never seen starts at 0), ``revoke`` stops their
tails and owner duties but keeps their state on disk, so a partition that comes back only
catches up. Both are plain calls that never await apply: they are made from rebalance
callbacks. ``ready(p)`` says whether a partition is owned and has caught up with the end the
log had when it was assigned; only then does it take requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import operator
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Self

import orjson

from log import Log, partition_for
from projections import delivery, queries
from projections import keys as K
from projections.apply import apply_into
from projections.commands import ImportDeadLetters, OutboxDone, SetRules, Sweep, encode
from projections.deliverer import DeliveryDuty, Sender
from projections.ids import new_id
from projections.overlay import Overlay
from projections.rules import versions
from projections.snapshots import SnapshotStore, Snapshotter, log_start, pair_frame, prepare
from projections.store import View, ViewStore

logger = logging.getLogger(__name__)

IDENTITY_KEY = b"\xff\xff\xffidentity"

SWEEP_MAX = 200
"""Items of each kind (claims, messages, subscriptions, garbage keys) one Sweep takes. A Sweep
is one record, and a record is folded and committed in one loop turn (never split), so this
bounds how long a catch-up holds the loop: about 5 keys per item. At 1,000 a Sweep of expired
messages was ~5,000 keys, 15-75 ms of apply and commit in one turn, and an HTTP read of
another partition, which needs several turns, waited behind several of them (issue 10)."""

SWEEP_BACKLOG = 100_000
"""Items a sweeper round takes in full slices before it lets the next round come (per
partition): the catch-up rate, whatever the slice size."""


class StoreMismatchError(Exception):
    """The store was not built from this log, or is ahead of it."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def digest(view: View) -> str:
    """A hash over every key and value of the store, in key order."""
    h = hashlib.blake2b(digest_size=32)
    for key, value in view.scan(b"", b"\xff" * 16):
        h.update(pair_frame(key, value))
    return h.hexdigest()


def digest_partition(view: View, partition: int) -> str:
    """A hash over one partition's keys and values (its state is one contiguous key range),
    so a node can prove the partitions it serves equal a rebuild from the log."""
    h = hashlib.blake2b(digest_size=32)
    for key, value in view.scan(K.U16.pack(partition), K.U16.pack(partition + 1)):
        h.update(pair_frame(key, value))
    return h.hexdigest()


_KIND = operator.itemgetter(2)  # every key of a batch starts u16 partition | u8 kind


def changed_kinds(changes: Mapping[bytes, bytes | None]) -> set[int]:
    """The key kinds a batch changes, in one C-level pass: the outbox and delivery hooks
    then walk the batch only when it touches their kind (most batches touch neither)."""
    return set(map(_KIND, changes))


def check_identity(store: ViewStore, log: Log) -> None:
    """Refuse a store built from another log; stamp a fresh store with this log's identity."""
    raw = store.get(IDENTITY_KEY)
    identity = {"log_id": log.log_id, "partitions": log.partitions}
    if raw is None:
        store.commit({IDENTITY_KEY: orjson.dumps(identity)})
        return
    stored = orjson.loads(raw)
    if stored != identity:
        raise StoreMismatchError(
            f"store belongs to log {stored['log_id']} with {stored['partitions']} partitions, "
            f"not {identity['log_id']} with {identity['partitions']}")


async def check_position(store: View, log: Log, partition: int) -> int:
    """The applied offset of a partition, checked against the log (never ahead, same record)."""
    applied = queries.partition_state(store, partition)["offset"]
    if applied < 0:
        return applied
    if applied < await log_start(log, partition):
        return applied  # restored from a snapshot whose last record has left the log
    end = await log.end_offset(partition)
    if applied >= end:
        raise StoreMismatchError(
            f"store has applied partition {partition} up to offset {applied}, but the log ends "
            f"at {end}: the store is ahead of its log")
    (record,) = await log.read(partition, applied, 1)
    if zlib.crc32(record.value) != queries.partition_state(store, partition)["crc"]:
        raise StoreMismatchError(
            f"partition {partition}: the record at offset {applied} differs from the one the "
            "store applied; the store was built from another log")
    return applied


async def fold(log: Log, store: ViewStore, partition: int, start: int, *,
               until: int | None = None, batch: int = 2000,
               on_commit: Callable[[int], None] | None = None) -> int:
    """Apply records ``start..until`` (or to the current end) of one partition; returns last."""
    applied = start - 1
    end = await log.end_offset(partition) if until is None else until
    while applied + 1 < end:
        records = await log.read(partition, applied + 1, min(batch, end - applied - 1))
        if not records:
            break
        tx = Overlay(store)
        for rec in records:
            apply_into(tx, partition, rec.offset, rec.value)
        store.commit(tx.changes)
        applied = records[-1].offset
        if on_commit is not None:
            on_commit(applied)
    return applied


class Runner:
    """Tails ``partitions`` of ``log`` into ``store``; the owner duties run beside it."""

    def __init__(
        self,
        log: Log,
        store: ViewStore,
        partitions: Iterable[int],
        *,
        batch_records: int = 1000,
        slice_ms: float = 5.0,
        sweep_interval: float = 1.0,
        sweep_max: int = SWEEP_MAX,
        clock: Callable[[], int] = wall_ms,
        ids: Callable[[], str] = new_id,
        sender: Sender | None = None,
        delivery_concurrency: int = 64,
        delivery_per_subscription: int = 4,
        rules_version: int | None = versions.LATEST,
        snapshots: Snapshotter | None = None,
    ) -> None:
        self._log = log
        self._store = store
        self._owned = sorted(set(partitions))
        self._batch = batch_records
        self._slice = slice_ms / 1000
        self._sweep_interval = sweep_interval
        self._sweep_max = sweep_max
        self._clock = clock
        self._ids = ids
        self._rules_version = rules_version  # None: never switch rules (an older fleet)
        self._last_sweep = ""
        self._snap = snapshots  # the snapshot duty (DESIGN.md §8), None: no snapshots
        self._applied: dict[int, int] = {}
        self._waiters: dict[int, list[tuple[int, asyncio.Future[None]]]] = {}
        self._outbox_wake: dict[int, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._part_tasks: dict[int, list[asyncio.Task[None]]] = {}
        self._ready: set[int] = set()
        self._ready_events: dict[int, asyncio.Event] = {}
        self._caught_up: dict[int, asyncio.Event] = {}
        self._started = False
        self._failed: BaseException | None = None
        # Notification delivery (DESIGN §9): an owner duty when a sender is wired.
        self._sender = sender
        self._delivery_overall = asyncio.Semaphore(max(delivery_concurrency, 1))
        self._delivery_per_sub = max(delivery_per_subscription, 1)
        self._duties: dict[int, DeliveryDuty] = {}
        self._request_waits = 0  # requests waiting for apply now (not the runner's duties)
        self._last_request = -1.0  # loop time a request last waited for apply
        self.on_delivery: Callable[..., None] | None = None  # metrics hook (item, result)

    @property
    def partitions(self) -> list[int]:
        return list(self._owned)

    @property
    def _snapshot_store(self) -> SnapshotStore | None:
        return self._snap.snapshots if self._snap is not None else None

    @property
    def snapshotter(self) -> Snapshotter | None:
        return self._snap

    def applied_offset(self, partition: int) -> int:
        return self._applied[partition]

    def ready(self, partition: int) -> bool:
        """Owned, tailing, and caught up with the log end seen when it was assigned."""
        return partition in self._ready and self._failed is None

    @property
    def ready_partitions(self) -> list[int]:
        return sorted(self._ready)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        check_identity(self._store, self._log)
        if self._snap is not None:
            self._snap.identity = (self._log.log_id, self._log.partitions)
        for p in self._owned:
            await prepare(self._store, self._log, p, self._snapshot_store)
            self._applied[p] = await check_position(self._store, self._log, p)
        self._started = True
        for p in self._owned:
            self._launch(p, checked=True)
        if self._sweep_interval > 0:
            loop = asyncio.get_running_loop()
            self._tasks.append(loop.create_task(self._sweeper(), name="sweeper"))

    async def stop(self) -> None:
        self._started = False
        tasks = self._tasks + [t for ts in self._part_tasks.values() for t in ts]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._part_tasks = {}
        self._ready.clear()
        if self._snap is not None:
            await self._snap.drain()
        for waiters in self._waiters.values():
            for _, fut in waiters:
                if not fut.done():
                    fut.cancel()

    # -- ownership changes -------------------------------------------------------------------

    def assign(self, partitions: Iterable[int]) -> list[int]:
        """Start owning ``partitions`` (those not owned yet); returns the ones started.

        Never awaits: the tail task checks the stored position against the log, catches up
        from it and only then marks the partition ready.
        """
        if not self._started:
            raise RuntimeError("runner is not started")
        added = sorted(set(partitions) - set(self._owned))
        for p in added:
            if not 0 <= p < self._log.partitions:
                raise ValueError(f"partition {p} does not exist")
        for p in added:
            self._owned.append(p)
            self._applied.setdefault(p, -1)
            self._launch(p, checked=False)
        self._owned.sort()
        return added

    def revoke(self, partitions: Iterable[int]) -> list[int]:
        """Stop owning ``partitions``: cancel their tails and duties, keep their state on disk.

        Requests waiting on them fail (the gateway answers 503). Returns the ones revoked.
        """
        removed = sorted(set(partitions) & set(self._owned))
        for p in removed:
            self._owned.remove(p)
            self._ready.discard(p)
            for task in self._part_tasks.get(p, []):
                task.cancel()
            for _, fut in self._waiters.get(p, []):
                if not fut.done():
                    fut.set_exception(RuntimeError(f"partition {p} was revoked"))
            self._waiters[p] = []
        return removed

    def _launch(self, p: int, *, checked: bool) -> None:
        """Start the tail and outbox tasks of ``p`` (after any previous ones have ended)."""
        previous = self._part_tasks.get(p, [])
        self._waiters[p] = []
        self._outbox_wake[p] = asyncio.Event()
        self._outbox_wake[p].set()
        ready = self._ready_events[p] = asyncio.Event()
        caught_up = self._caught_up[p] = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._part_tasks[p] = [
            loop.create_task(self._run_partition(p, checked, previous), name=f"tail-{p}"),
            loop.create_task(self._send_outbox_when(p, ready), name=f"outbox-{p}"),
            loop.create_task(self._upgrade_rules_when(p, caught_up), name=f"rules-{p}"),
        ]
        if self._sender is not None:
            self._part_tasks[p].append(
                loop.create_task(self._deliver_when(p, ready), name=f"deliver-{p}"))

    async def _run_partition(self, p: int, checked: bool,
                             previous: list[asyncio.Task[None]]) -> None:
        for task in previous:  # a revoked tail of the same partition must be gone first
            with contextlib.suppress(BaseException):
                await task
        if not checked:
            try:
                await prepare(self._store, self._log, p, self._snapshot_store)
                self._applied[p] = await check_position(self._store, self._log, p)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("partition %d: cannot take over", p)
                raise
        if self._snap is not None:
            self._snap.reset(self._store, p)
            with contextlib.suppress(Exception):  # only for reporting: never stops a tail
                await self._snap.recall(p)
        target = await self._log.end_offset(p) - 1
        if self._applied[p] >= target:
            self._mark_ready(p)
        await self._tail(p, catch_up=target)

    def _mark_ready(self, p: int) -> None:
        if p in self._owned and not self._caught_up[p].is_set():
            self._caught_up[p].set()  # the rules duty switches rules first, then calls again
            if self._rules_version is not None and versions.in_force(
                    queries.partition_state(self._store, p)) < self._rules_version:
                return
        if p in self._owned:
            self._ready.add(p)
            self._ready_events[p].set()
            logger.debug("partition %d: caught up at offset %d", p, self._applied[p])

    async def _deliver_when(self, p: int, ready: asyncio.Event) -> None:
        await ready.wait()  # like the outbox: only a caught-up owner sends (§9)
        assert self._sender is not None
        duty = DeliveryDuty(self._log, self._store, p, self._sender,
                            applied=self._duty_applied, ids=self._ids, clock=self._clock,
                            overall=self._delivery_overall,
                            per_subscription=self._delivery_per_sub,
                            on_result=self._delivered, busy=self.serving)
        self._duties[p] = duty
        try:
            await duty.run()
        finally:
            if self._duties.get(p) is duty:
                del self._duties[p]

    async def _duty_applied(self, partition: int, offset: int) -> None:
        await self.applied(partition, offset, request=False)

    SERVING_WINDOW = 0.05  # s: requests seen this recently mean the API is busy

    def serving(self) -> bool:
        """Whether requests are being served (waiting for apply now or a moment ago): the
        delivery duty then keeps out of their way."""
        return self._request_waits > 0 or (
            asyncio.get_running_loop().time() - self._last_request < self.SERVING_WINDOW)

    def _delivered(self, item: object, result: dict) -> None:
        if self.on_delivery is not None:
            self.on_delivery(item, result)

    async def _send_outbox_when(self, p: int, ready: asyncio.Event) -> None:
        await ready.wait()  # an owner sends its outbox only once caught up (§7)
        await self._send_outbox(p)

    async def until_ready(self, partition: int, timeout: float | None = None) -> None:
        """Wait until ``partition`` is ready: caught up and folding under the configured
        rules. A command appended before the owner's ``SetRules`` would be applied under the
        older rules, and a read before catch-up would miss acknowledged writes."""
        if self.ready(partition):
            return
        event = self._ready_events.get(partition)
        if event is None or partition not in self._owned or not self._started:
            raise RuntimeError(f"partition {partition} is not served here")
        async with asyncio.timeout(timeout):
            await event.wait()
        if self._failed is not None:
            raise RuntimeError(f"projection runner failed: {self._failed!r}")

    async def settled(self, timeout: float | None = 30) -> None:
        """Wait until every owned partition is ready (caught up, on its rules): tests and
        tools that count records start from here."""
        await asyncio.wait_for(asyncio.gather(
            *(self._ready_events[p].wait() for p in list(self._owned))), timeout)

    # -- barrier -------------------------------------------------------------------------

    async def applied(self, partition: int, offset: int, timeout: float | None = None, *,
                      request: bool = True) -> None:
        """Wait until ``partition`` has applied ``offset``. ``request``: a request waits (not
        one of the runner's own duties), so the delivery duty yields meanwhile."""
        if partition not in self._waiters or partition not in self._owned:
            raise RuntimeError(f"partition {partition} is not owned here")
        loop = asyncio.get_running_loop()
        if request:
            self._last_request = loop.time()
        if self._applied[partition] >= offset:
            return
        if self._failed is not None:
            raise RuntimeError(f"projection runner failed: {self._failed!r}")
        fut = loop.create_future()
        self._waiters[partition].append((offset, fut))
        if request:
            self._request_waits += 1
        try:
            async with asyncio.timeout(timeout):  # not wait_for: 3.11's can swallow a cancel
                await fut
        finally:
            if request:
                self._request_waits -= 1

    async def barrier(self, partition: int, timeout: float | None = None) -> None:
        """Wait until everything in the log now is applied (a linearizable read, §2.6)."""
        end = await self._log.end_offset(partition)
        await self.applied(partition, end - 1, timeout)

    def _advance(self, partition: int, offset: int) -> None:
        self._applied[partition] = offset
        waiters = self._waiters[partition]
        if not waiters:
            return
        keep = []
        for target, fut in waiters:
            if fut.done():
                continue
            if target <= offset:
                fut.set_result(None)
            else:
                keep.append((target, fut))
        self._waiters[partition] = keep

    # -- tailing -------------------------------------------------------------------------

    async def _tail(self, partition: int, catch_up: int = -1) -> None:
        loop = asyncio.get_running_loop()
        try:
            backoff = 0.0
            while True:
                nxt = self._applied[partition] + 1
                try:
                    records = await self._log.read(partition, nxt, self._batch)
                    if not records:
                        await self._log.wait(partition, nxt, timeout=1.0)
                    backoff = 0.0
                except Exception as exc:  # the log is unreachable for now (broker restart...)
                    backoff = min(max(backoff * 2, 0.05), 2.0)
                    logger.warning("partition %d: log read failed (%r); retrying in %.2f s",
                                   partition, exc, backoff)
                    await asyncio.sleep(backoff)
                    continue
                if not records:
                    continue
                i = 0
                while i < len(records):
                    # Apply for one time slice, commit, then yield to requests (§7).
                    deadline = loop.time() + self._slice
                    tx = Overlay(self._store)
                    start = i
                    cut = False
                    while i < len(records) and (i == start or loop.time() < deadline):
                        rec = records[i]
                        now = apply_into(tx, partition, rec.offset, rec.value)
                        i += 1
                        if self._snap is not None and self._snap.crossed_at(partition, now):
                            cut = True  # snapshot right after this record (deterministic)
                            break
                    changes = tx.changes
                    kinds = changed_kinds(changes)
                    self._store.commit(changes)
                    duty = self._duties.get(partition)
                    if duty is not None:
                        first = (delivery.first_due_insert(partition, changes)
                                 if K.DELIVERY_DUE in kinds else None)
                        if first is not None:
                            duty.inserted(first)
                        if K.FANOUT in kinds and delivery.fanout_inserted(changes):
                            duty.fanout_added()
                    self._advance(partition, records[i - 1].offset)
                    if partition not in self._ready and records[i - 1].offset >= catch_up:
                        self._mark_ready(partition)
                    if K.OUTBOX in kinds:
                        self._outbox_wake[partition].set()
                    if cut and self._snap is not None:
                        await self._snap.take(self._store, partition)
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._failed = exc
            logger.exception("partition %d: runner stopped", partition)
            for _, fut in self._waiters[partition]:
                if not fut.done():
                    fut.set_exception(RuntimeError(f"projection runner failed: {exc!r}"))
            raise

    # -- owner duties ----------------------------------------------------------------------

    def _now(self, partition: int) -> int:
        return max(self._clock(), queries.partition_state(self._store, partition)["time"])

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            for p in [p for p in self._owned if p in self._ready]:
                try:
                    await self._sweep_backlog(p)
                except Exception:  # an append can fail transiently; try next round
                    logger.exception("partition %d: sweep failed", p)

    async def _sweep_backlog(self, partition: int) -> None:
        """Sweep again at once while a slice came back full (expiry catch-up, GC of a big
        queue): each Sweep is bounded, the backlog goes in many of them, not in one."""
        for _ in range(max(1, SWEEP_BACKLOG // self._sweep_max)):
            if not await self.sweep(partition):
                return
            out = queries.outcome(self._store, partition, self._last_sweep) or {}
            if max((v for v in out.values() if isinstance(v, int)), default=0) < self._sweep_max:
                return
            await asyncio.sleep(0)

    async def sweep(self, partition: int) -> bool:
        """Append a Sweep if something in the partition is due; returns whether it did."""
        now = self._now(partition)
        if not queries.sweep_due(self._store, partition, now):
            return False
        cmd = Sweep(id=self._ids(), time_ms=now, cutoff_ms=now, max_count=self._sweep_max)
        self._last_sweep = cmd.id
        (offset,) = await self._log.append(partition, [encode(cmd)])
        await self.applied(partition, offset, request=False)
        return True

    async def _upgrade_rules_when(self, p: int, caught_up: asyncio.Event) -> None:
        """Once caught up, switch to the configured rules, then take requests (ready)."""
        await caught_up.wait()  # only a caught-up owner knows the version in force
        try:
            await self.upgrade_rules(p)
        except Exception:  # serve under the rules in force; the next owner start tries again
            logger.exception("partition %d: cannot switch rules", p)
        self._mark_ready(p)

    async def upgrade_rules(self, partition: int) -> bool:
        """Append ``SetRules`` if the partition folds under older rules than configured.

        A second performer is harmless: the later record finds the version in force.
        """
        target = self._rules_version
        current = versions.in_force(queries.partition_state(self._store, partition))
        if target is None or current >= target:
            return False
        cmd = SetRules(id=self._ids(), time_ms=self._now(partition), version=target)
        # Shielded: this duty starts with the runner, and a stop right after start must not
        # cancel an append midway (a second SetRules later is harmless, a torn commit is not).
        (offset,) = await asyncio.shield(self._log.append(partition, [encode(cmd)]))
        await self.applied(partition, offset, request=False)
        logger.info("partition %d: rules version %d from offset %d", partition, target, offset)
        return True

    async def _send_outbox(self, partition: int) -> None:
        wake = self._outbox_wake[partition]
        while True:
            await wake.wait()
            wake.clear()
            try:
                await self._drain_outbox(partition)
            except Exception:
                logger.exception("partition %d: outbox delivery failed; retrying", partition)
                await asyncio.sleep(1.0)
                wake.set()

    async def _drain_outbox(self, partition: int) -> None:
        while entries := queries.outbox(self._store, partition):
            for origin, entry in entries:
                try:
                    target = partition_for(entry["project"], entry["queue"],
                                           self._log.partitions)
                except (TypeError, AttributeError, KeyError) as exc:
                    # Fails the same way every time: drop it loudly rather than jam the outbox.
                    logger.error("partition %d: undeliverable outbox entry at %d dropped: %r",
                                 partition, origin, exc)
                    await self._append_done(partition, origin)
                    continue
                move = ImportDeadLetters(
                    id=self._ids(), project=entry["project"], queue=entry["queue"],
                    time_ms=self._clock(), source_partition=partition, origin_offset=origin,
                    messages=entry["messages"])
                await self._log.append(target, [encode(move)])
                await self._append_done(partition, origin)

    async def _append_done(self, partition: int, origin: int) -> None:
        done = OutboxDone(id=self._ids(), time_ms=self._clock(), origin_offset=origin)
        (offset,) = await self._log.append(partition, [encode(done)])
        await self.applied(partition, offset, request=False)
