"""Where a rebuild of one partition begins, and the checks on its way (DESIGN.md §5, §8).

A rebuild from offset 0 proves that the whole log folds to the live state. Once retention has
cut the log (its start is above 0) offset 0 is gone, so the rebuild begins at the **oldest**
retained snapshot instead (the one that proves the most of what the log still holds):

* the snapshot's contents are checked against its own digest as it is restored, and its last
  record against the log (the crc the store's meta keeps, while that record is retained);
* every newer snapshot the fold passes is checked against the state the fold reached at its
  offset (``digest_partition``), so each snapshot vouches for the next and a damaged or
  diverging one stops the rebuild, loudly;
* the tail after the newest is folded from the log as ever, and ``marconi digest`` still
  compares the result with the live store.

``mode``: ``auto`` (from 0 while the log is whole, else from the oldest snapshot), ``zero``
(refused once the log is cut: the records are gone), ``snapshot`` (from the oldest snapshot
even on a whole log, falling back to 0 where a partition has none — quicker, and what the
tests compare with a rebuild from 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from log import Log
from projections.runner import digest_partition, fold
from projections.snapshots import SnapshotError, SnapshotInfo, SnapshotStore, log_start, restore
from projections.store import ViewStore

Mode = Literal["auto", "zero", "snapshot"]
MODES: tuple[Mode, ...] = ("auto", "zero", "snapshot")


class RebuildError(SnapshotError):
    """A rebuild that cannot begin, or a snapshot that disagrees with the fold; says why."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How one partition is rebuilt: from ``snapshot`` (None: offset 0), checking
    ``checkpoints`` (the newer snapshots) on the way."""

    partition: int
    log_start: int
    snapshot: SnapshotInfo | None = None
    checkpoints: tuple[SnapshotInfo, ...] = field(default_factory=tuple)

    @property
    def first(self) -> int:
        """The first offset the rebuild folds from the log."""
        return 0 if self.snapshot is None else self.snapshot.offset + 1


async def plan(log: Log, partition: int, snapshots: SnapshotStore | None,
               mode: Mode = "auto") -> Plan:
    """Where ``partition``'s rebuild begins (RebuildError when it cannot)."""
    if mode not in MODES:
        raise ValueError(f"rebuild mode must be one of {MODES}, not {mode!r}")
    start = await log_start(log, partition)
    if mode == "zero" or (mode == "auto" and start == 0):
        if start > 0:
            raise RebuildError(
                f"cannot rebuild from offset 0: retention removed partition {partition}'s "
                f"records below offset {start}; rebuild from the retained snapshots instead "
                "(without --from-zero)")
        return Plan(partition, start)
    infos = await snapshots.list(partition) if snapshots is not None else []
    usable = [i for i in infos if i.offset + 1 >= start]  # the log continues each of them
    if not usable:
        if start == 0:
            return Plan(partition, start)  # whole log, no snapshot: from 0 is the only way
        raise RebuildError(
            f"cannot rebuild partition {partition}: its log starts at offset {start} and no "
            "retained snapshot continues at or after it, so nothing can be rebuilt from "
            "(restore the snapshots directory, or a store backup with `marconi snapshot "
            "--restore`)")
    return Plan(partition, start, usable[0], tuple(usable[1:]))


async def seed(store: ViewStore, log: Log, plan: Plan, snapshots: SnapshotStore | None) -> None:
    """Restore the plan's snapshot into ``store`` (nothing for a rebuild from 0)."""
    if plan.snapshot is None:
        return
    assert snapshots is not None
    blob = await snapshots.load(plan.snapshot)
    await restore(store, blob, identity=(log.log_id, log.partitions))


async def fold_checked(log: Log, store: ViewStore, partition: int, start: int, *,
                       until: int, checkpoints: tuple[SnapshotInfo, ...] = (),
                       on_commit: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Fold ``start..until`` stopping at each checkpoint to compare digests; returns the last
    offset applied and how many checkpoints matched."""
    last = start - 1
    checked = 0
    for info in checkpoints:
        if not last < info.offset < until:
            continue
        last = await fold(log, store, partition, last + 1, until=info.offset + 1,
                          on_commit=on_commit)
        found = digest_partition(store, partition)
        if last != info.offset or found != info.digest:
            raise RebuildError(
                f"partition {partition}: the snapshot at offset {info.offset} disagrees with "
                f"the fold of the log up to it (digest {info.digest[:12]}… vs "
                f"{found[:12]}…): the snapshot is damaged or the rules changed without a "
                "rules version")
        checked += 1
    if last + 1 < until:
        last = await fold(log, store, partition, last + 1, until=until, on_commit=on_commit)
    return last, checked
