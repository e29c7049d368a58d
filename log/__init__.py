"""Partitioned append-only logs: the only source of truth (DESIGN.md §1-§3)."""

from log.partitioner import partition_for
from log.types import (
    Log,
    LogCorruptError,
    LogError,
    LogHealth,
    LogLockedError,
    LogMismatchError,
    OffsetBelowStartError,
    Record,
    RecordTooLargeError,
    Retention,
    UnknownPartitionError,
)

__all__ = [
    "Log",
    "LogCorruptError",
    "LogError",
    "LogHealth",
    "LogLockedError",
    "LogMismatchError",
    "OffsetBelowStartError",
    "Record",
    "RecordTooLargeError",
    "Retention",
    "UnknownPartitionError",
    "partition_for",
]
