"""``marconi rebuild`` from the oldest retained snapshot on a log kept whole: the same digest
as a rebuild from offset 0 (and as the live store), from fewer records, with every newer
snapshot checked against the fold on the way — and a snapshot that disagrees stops it."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from ops import admin
from ops.admin import snapshot_dir, store_dir
from projections.rebuild import RebuildError
from projections.rocksstore import RocksStore
from projections.runner import digest
from projections.snapshots import FileSnapshots, export, pairs_of, read_info
from tests.ops.test_audit_snapshots import PARTITIONS, build


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("whole")
    asyncio.run(build(data, 600))  # 10 min of log time, a snapshot every 2 min, kept
    return data


async def test_rebuild_from_snapshots_equals_a_rebuild_from_zero(whole: Path,
                                                                  tmp_path: Path) -> None:
    with RocksStore(store_dir(whole)) as store:
        live = digest(store)
    results = {}
    for mode in ("zero", "snapshot", "auto"):
        data = tmp_path / mode
        shutil.copytree(whole, data)
        results[mode] = await admin.rebuild(str(data), progress=False, mode=mode)  # type: ignore[arg-type]
    zero, snap, auto = results["zero"], results["snapshot"], results["auto"]
    assert zero.digest == snap.digest == auto.digest == live
    assert all(pl.snapshot is None for pl in zero.plans + auto.plans)  # whole log: from 0
    assert auto.records == zero.records
    begun = [pl for pl in snap.plans if pl.snapshot is not None]
    assert begun, "no partition began at a snapshot"
    assert snap.records < zero.records - sum(pl.first for pl in begun) + 1
    assert snap.checked >= 2  # newer snapshots were compared with the fold


async def test_a_snapshot_that_disagrees_with_the_fold_stops_the_rebuild(
        whole: Path, tmp_path: Path) -> None:
    data = tmp_path / "tampered"
    shutil.copytree(whole, data)
    snaps = FileSnapshots(snapshot_dir(data))
    p = max(range(PARTITIONS), key=lambda q: len(snaps.list_sync(q)))
    infos = snaps.list_sync(p)
    assert len(infos) >= 3
    victim = infos[1]  # a newer snapshot the rebuild passes, rewritten with other contents
    pairs = list(pairs_of(snaps.load_sync(infos[0])))
    state = {"offset": victim.offset, "time": victim.time_ms, "crc": victim.crc}
    _, blob = export(pairs, p, state, (victim.log_id, victim.partitions))
    assert read_info(blob).digest != victim.digest
    (snapshot_dir(data) / f"p{p:05d}" / f"{victim.offset:020d}.snap").write_bytes(blob)
    with pytest.raises(RebuildError, match=f"snapshot at offset {victim.offset} disagrees"):
        await admin.rebuild(str(data), progress=False, mode="snapshot")
    # the store in charge is untouched: the failed generation was removed
    assert sorted(x.name for x in data.iterdir() if x.name.startswith("store")) == ["store"]

