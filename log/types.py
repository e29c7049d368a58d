"""The seam every log implementation fulfils: a partitioned, append-only sequence of bytes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, Self, runtime_checkable


class Record(NamedTuple):
    """One durable record: its offset in the partition and its bytes."""

    offset: int
    value: bytes


class LogError(Exception):
    """Base class for log failures a caller can act on."""


class LogLockedError(LogError):
    """Another process holds the log open for writing."""


class LogCorruptError(LogError):
    """The log on disk is damaged somewhere other than a torn tail."""


class LogMismatchError(LogError):
    """The log exists with another shape (partition count) than the one asked for."""


class RecordTooLargeError(LogError, ValueError):
    """A record exceeds the configured maximum size."""


class UnknownPartitionError(LogError, ValueError):
    """A partition number outside ``range(partitions)``."""


class OffsetBelowStartError(LogError):
    """A read below the partition's log start: those records were removed by retention.

    Never a silent skip: the caller restores a snapshot at or above ``start_offset`` (or tells
    the operator what is retained) instead of folding a log with a hole in it.
    """

    def __init__(self, partition: int, offset: int, start_offset: int) -> None:
        super().__init__(
            f"partition {partition}: offset {offset} is below the log start {start_offset} "
            "(older records were removed by retention; restore a snapshot at or after "
            f"offset {start_offset})"
        )
        self.partition = partition
        self.offset = offset
        self.start_offset = start_offset


class Retention(NamedTuple):
    """What one ``Log.retain`` call removed, and where the partition starts now."""

    start_offset: int  # the partition's log start after the call
    removed_records: int = 0
    removed_bytes: int = 0
    removed_segments: int = 0
    archived: bool = False  # True if the removed segments went to the archive directory


class LogHealth(NamedTuple):
    """Whether the log accepts writes now, and the last write error if it does not.

    ``ok`` turns False when a commit round fails (disk full, I/O error) and True again as soon
    as a later round (or the log's own retry) writes and syncs successfully.
    """

    ok: bool
    error: str | None = None
    since: float | None = None  # time.time() of the first failure of the current outage


def checked_records(records: Sequence[bytes], max_record_bytes: int) -> list[bytes]:
    """Every record as bytes, or an exception before anything is written: all or nothing."""
    values: list[bytes] = []
    for rec in records:
        if not isinstance(rec, bytes | bytearray | memoryview):
            raise TypeError(f"records must be bytes, not {type(rec).__name__}")
        value = bytes(rec)
        if len(value) > max_record_bytes:
            raise RecordTooLargeError(
                f"record of {len(value)} bytes exceeds the limit of {max_record_bytes}")
        values.append(value)
    return values


@runtime_checkable
class Log(Protocol):
    """A partitioned append-only log.

    Offsets are per partition, start at 0 and are never reused. Only durable records are
    visible: ``read``, ``end_offset`` and ``wait`` never expose a record a crash could take back.
    """

    @property
    def partitions(self) -> int:
        """How many partitions the log has; fixed for its lifetime."""
        ...

    @property
    def log_id(self) -> str:
        """A stable identity of this log, so a store can refuse a log it was not built from."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def append(self, partition: int, records: Sequence[bytes]) -> list[int]:
        """Append ``records`` in order; return their offsets once all of them are durable."""
        ...

    async def read(self, partition: int, offset: int, max_records: int = 1000) -> list[Record]:
        """Up to ``max_records`` durable records starting at ``offset`` (empty at the end)."""
        ...

    async def end_offset(self, partition: int) -> int:
        """The offset the next durable record will get."""
        ...

    async def start_offset(self, partition: int) -> int:
        """The log start: the lowest offset still readable (0 until retention removes any).

        Persisted: it never moves backwards across restarts. ``read`` below it raises
        ``OffsetBelowStartError``.
        """
        ...

    async def retain(self, partition: int, keep_from: int, older_than_ms: int) -> Retention:
        """Remove (or archive) the oldest records, whole segments at a time, but only those
        below ``keep_from`` (the offset the oldest retained snapshot resumes at) AND appended
        before ``older_than_ms`` (ms since the epoch, by the log's own clock: the caller passes
        ``now - log_retention``). Never removes a record at or above ``keep_from``; removing
        nothing is a normal answer. KafkaLog leaves removal to the broker's ``retention.ms``
        and only reports the start.
        """
        ...

    def health(self) -> LogHealth:
        """The log's write health, cheap and synchronous (for ping and health endpoints)."""
        ...

    async def wait(self, partition: int, offset: int, timeout: float | None = None) -> int:
        """Wait until a durable record exists at ``offset`` (end offset > offset) or timeout.

        Returns the end offset seen; the caller compares it with ``offset``.
        """
        ...
