"""Partitioned append-only logs: the only source of truth (DESIGN.md §1-§3)."""

from log.partitioner import partition_for
from log.types import (
    Log,
    LogCorruptError,
    LogError,
    LogLockedError,
    LogMismatchError,
    Record,
    RecordTooLargeError,
    UnknownPartitionError,
)

__all__ = [
    "Log",
    "LogCorruptError",
    "LogError",
    "LogLockedError",
    "LogMismatchError",
    "Record",
    "RecordTooLargeError",
    "UnknownPartitionError",
    "partition_for",
]
