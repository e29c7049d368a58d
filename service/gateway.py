"""The embedded command gateway: every partition is local (DESIGN.md §4, embedded mode).

Writes: encode the command, append it to its partition, wait until the runner has applied
that offset, answer with the outcome apply recorded under the command id (§2.7). Reads: take
a barrier (the partition's end offset now), wait until it is applied, then query the store
(§2.6). Time: one clock per partition, never behind the partition's effective time (§7).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NamedTuple

import orjson

from log import Log, LogError, LogHealth, RecordTooLargeError, partition_for
from projections import queries
from projections.commands import (
    Command,
    CreateClaim,
    CreateQueue,
    CreateSubscription,
    DeleteMessage,
    DeleteMessages,
    DeleteQueue,
    DeleteSubscription,
    PopMessages,
    PostMessages,
    PurgeQueue,
    ReleaseClaim,
    UpdateClaim,
    UpdateQueue,
    UpdateSubscription,
    encode,
)
from projections.runner import Runner, wall_ms
from projections.store import View
from service.errors import HTTPError, Unavailable, bad_request
from service.types import Outcome

logger = logging.getLogger(__name__)

# The "<operation message>" of upstream's 503 texts, by command.
OPERATION_FAILED: dict[type[Command], str] = {
    CreateQueue: "Queue could not be created.",
    UpdateQueue: "Queue could not be updated.",
    DeleteQueue: "Queue could not be deleted.",
    PurgeQueue: "Queue could not be purged.",
    PostMessages: "Messages could not be enqueued.",
    DeleteMessage: "Unable to delete message.",
    DeleteMessages: "Messages could not be deleted.",
    PopMessages: "Messages could not be popped.",
    CreateClaim: "Claim could not be created.",
    UpdateClaim: "Claim could not be updated.",
    ReleaseClaim: "Claim could not be deleted.",
    CreateSubscription: "Subscription could not be created.",
    UpdateSubscription: "Subscription could not be updated.",
    DeleteSubscription: "Subscription could not be deleted.",
}
READ_FAILED = "The resource could not be read."
RECOVERED = -1  # ``_commit``: the append timed out, the barrier found it applied
TOO_LARGE = "The request is too large to be stored."


def _failed(kind: type[Command]) -> str:
    return OPERATION_FAILED.get(kind, "The command could not be completed.")


class Stamped(NamedTuple):
    """A command encoded and stamped (at ``time_ms``) by the core, ready to append."""

    kind: type[Command]
    command_id: str
    record: bytes
    time_ms: int | None = None


def _abandoned() -> bool:
    """Whether a CancelledError came from the runner dropping its waiters (shutdown), not
    from this request's own task being cancelled (which must propagate)."""
    task = asyncio.current_task()
    return task is None or task.cancelling() == 0


async def _shielded(append: Coroutine[Any, Any, list[int]], timeout: float) -> list[int]:
    """``append``'s offsets, or TimeoutError after ``timeout`` s; neither the timeout nor a
    cancel of the caller cancels the append (a log's shared commit round).

    ``asyncio.shield`` under ``asyncio.timeout`` does the same with a second future, two more
    callbacks and a timeout scope: a third of the gateway's own CPU per command.
    """
    loop = asyncio.get_running_loop()
    task = loop.create_task(append)
    waiter = loop.create_future()

    def done(_: object) -> None:
        if not waiter.done():
            waiter.set_result(None)

    task.add_done_callback(done)
    timer = loop.call_later(timeout, done, None)
    try:
        await waiter
    except BaseException:  # this request was cancelled: the append goes on without it
        task.add_done_callback(_retrieve)
        raise
    finally:
        timer.cancel()
    if not task.done():
        task.add_done_callback(_retrieve)
        raise TimeoutError
    return task.result()


def _unavailable(kinds: Sequence[type[Command]],
                 cause: BaseException | None = None) -> list[int | HTTPError]:
    """Each command's 503, for a failure of their whole append; ``cause`` is kept as each
    one's ``__cause__``, as ``raise ... from cause`` would."""
    failures: list[int | HTTPError] = []
    for kind in kinds:
        exc = Unavailable(_failed(kind))
        exc.__cause__ = cause
        failures.append(exc)
    return failures


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark the late result of an append no one waits for any more as seen (its error is
    the barrier's business then, not the loop's exception handler's)."""
    if not task.cancelled():
        task.exception()


class LocalGateway:
    """Gateway over a log, a runner tailing every partition, and the runner's store."""

    def __init__(self, log: Log, runner: Runner, store: View,
                 clock: Callable[[], int] = wall_ms, *, timeout: float = 10.0) -> None:
        self._log = log
        self._runner = runner
        self._store = store
        self._clock = clock
        self._timeout = timeout
        self._stamped: dict[int, int] = {}  # last time stamped per partition (monotone)

    @property
    def partitions(self) -> int:
        return self._log.partitions

    def partition_of(self, project: str, queue: str) -> int:
        return partition_for(project, queue, self._log.partitions)

    def _effective(self, partition: int) -> int:
        return int(queries.partition_state(self._store, partition)["time"])

    def now_ms(self, partition: int) -> int:
        """Stamp time: max(wall clock, partition time, last stamp) — never goes backwards."""
        now = max(self._clock(), self._effective(partition), self._stamped.get(partition, 0))
        self._stamped[partition] = now
        return now

    def queue_now_ms(self, project: str, queue: str) -> int:
        return self.now_ms(self.partition_of(project, queue))

    async def _ready(self, partition: int, failed: str) -> None:
        """Nothing is appended or read before the partition is ready (``Runner.until_ready``):
        a request that arrives while the node is still starting waits, then 503s."""
        if self._runner.ready(partition):
            return
        try:
            await self._runner.until_ready(partition, self._timeout)
        except (TimeoutError, RuntimeError):
            raise Unavailable(failed) from None

    async def execute(self, cmd: Command) -> Outcome:
        partition = self.partition_of(cmd.project, cmd.queue)
        offset = await self._commit(partition, type(cmd), cmd.id, encode(cmd))
        return orjson.loads(self._outcome_raw(partition, type(cmd), cmd.id, offset, cmd.time_ms))

    async def execute_record(self, partition: int, kind: type[Command], command_id: str,
                             record: bytes, time_ms: int | None = None) -> bytes:
        """``execute`` for a command already encoded and stamped (at ``time_ms``: the core of
        ``--workers N``): answers the outcome as apply stored it (JSON bytes), so the core
        builds no command object and re-encodes no outcome on the way to the front."""
        (answer,) = await self.execute_records(
            partition, [Stamped(kind, command_id, record, time_ms)])
        if isinstance(answer, HTTPError):
            raise answer
        return answer

    async def execute_records(self, partition: int,
                              commands: Sequence[Stamped]) -> list[bytes | HTTPError]:
        """``execute_record`` for many commands of one partition at once, in their order: one
        append, one wait for its commit round and one wait for apply cover them all (the core
        of ``--workers N`` under load: the per-command tasks, futures and timers of one call
        each were most of its CPU per command). Each answer is its command's own: the outcome
        bytes, or the error it alone answers."""
        offsets = await self._commit_many(partition, [c.kind for c in commands],
                                          [c.record for c in commands])
        answers: list[bytes | HTTPError] = []
        for cmd, offset in zip(commands, offsets, strict=True):
            if isinstance(offset, HTTPError):
                answers.append(offset)
                continue
            try:
                answers.append(self._outcome_raw(partition, cmd.kind, cmd.command_id, offset,
                                                 cmd.time_ms))
            except HTTPError as exc:
                answers.append(exc)
        return answers

    async def _commit(self, partition: int, kind: type[Command], command_id: str,
                      record: bytes) -> int:
        """Append ``record`` and wait until it is applied; its offset (``RECOVERED`` when an
        ambiguous append was found applied by the barrier instead)."""
        (offset,) = await self._commit_many(partition, [kind], [record])
        if isinstance(offset, HTTPError):
            raise offset
        return offset

    async def _commit_many(self, partition: int, kinds: Sequence[type[Command]],
                           records: Sequence[bytes]) -> list[int | HTTPError]:
        """Append ``records`` (in order, one ``append``) and wait until the last is applied:
        each one's offset (``RECOVERED`` when the append was ambiguous and the barrier took
        its place), or the error that command answers. A timeout, a failed round or a stopped
        runner concern the whole append, so every command of it answers the same way."""
        if not records:
            return []
        if not self._runner.ready(partition):
            try:
                await self._ready(partition, _failed(kinds[0]))
            except Unavailable:
                return _unavailable(kinds)
        try:
            appended = await _shielded(self._log.append(partition, records), self._timeout)
        except RecordTooLargeError:
            if len(records) == 1:
                return [bad_request(TOO_LARGE)]
            # The log takes all of an append or none of it: each alone, so only the record
            # too large is refused (rare: a front refuses bodies that large first).
            return [(await self._commit_many(partition, [k], [r]))[0]
                    for k, r in zip(kinds, records, strict=True)]
        except TimeoutError:
            try:
                await self._recover(partition, _failed(kinds[0]))
            except Unavailable:
                return _unavailable(kinds)
            return [RECOVERED] * len(records)
        except LogError as exc:
            logger.error("partition %d: append failed: %r", partition, exc)
            return _unavailable(kinds, exc)
        try:
            await self._runner.applied(partition, appended[-1], self._timeout)
        except TimeoutError:
            return _unavailable(kinds)
        except RuntimeError as exc:  # the runner stopped on an error
            return _unavailable(kinds, exc)
        except asyncio.CancelledError:
            if _abandoned():
                return _unavailable(kinds)
            raise
        return [*appended]

    async def _recover(self, partition: int, failed: str) -> int:
        """After an ambiguous append, wait until the log is applied before looking the
        outcome up (§7); an outcome missing then answers 503, not 500."""
        try:
            await self._runner.barrier(partition, self._timeout)
        except (TimeoutError, RuntimeError, LogError):
            raise Unavailable(failed) from None
        return RECOVERED

    def _outcome_raw(self, partition: int, kind: type[Command], command_id: str,
                     offset: int, time_ms: int | None) -> bytes:
        raw = queries.outcome_raw(self._store, partition, command_id, time_ms)
        if raw is not None:
            return raw
        if offset == RECOVERED:
            raise Unavailable(_failed(kind))
        # apply quarantined the record: a bug, not the client's fault
        logger.error("partition %d offset %d: %s %s left no outcome (quarantined?)",
                     partition, offset, kind.TAG, command_id)
        raise HTTPError(500, "Internal server error",
                        f"The command could not be applied (offset {offset}).")

    async def _barrier(self, partition: int) -> None:
        await self._ready(partition, READ_FAILED)
        try:
            await self._runner.barrier(partition, self._timeout)
        except (TimeoutError, RuntimeError, LogError):
            raise Unavailable(READ_FAILED) from None
        except asyncio.CancelledError:
            if _abandoned():
                raise Unavailable(READ_FAILED) from None
            raise

    async def view_for(self, project: str, queue: str) -> tuple[View, int, int]:
        partition = self.partition_of(project, queue)
        await self._barrier(partition)
        return self._store, partition, max(self._clock(), self._effective(partition))

    async def views_all(self) -> list[tuple[int, View]]:
        partitions = range(self._log.partitions)
        await asyncio.gather(*(self._barrier(p) for p in partitions))
        return [(p, self._store) for p in partitions]

    def log_health(self) -> LogHealth:
        return self._log.health()

    async def reachable(self) -> bool:
        if not all(self._runner.ready(p) for p in range(self._log.partitions)):
            return False  # still starting: answer the ping now, not after the timeout
        try:
            await self.views_all()
        except HTTPError:
            return False
        return True
