"""Retention under a steady load (issue 11, "Done when"), on a stamped clock.

40 minutes of server time of post / claim / delete with ``log_retention=10m``,
``snapshot_interval=2m`` and ``log_segment_bytes=1 MiB`` (the log, the runner, the snapshots
and retention all read the one stamped clock, so it runs in seconds): the log on disk stays
within 1.5x what the last 14 minutes wrote plus two segments per partition, the start offsets
advance, a rebuild (from the oldest retained snapshots) digests equal to the live store, a
rebuild from 0 is refused in one line, a restart resumes, and every audit window before the
retained start fails with one line saying what is retained — on the CLI and over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import io
import shutil
import subprocess
import sys
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from log import partition_for
from log.filelog import FileLog
from log.framing import HEADER_SIZE
from ops import admin
from ops.admin import log_dir, snapshot_dir, store_dir
from ops.partitions import add_arguments as partitions_arguments
from ops.partitions import partitions_command, status_rows
from ops.replay import add_arguments, iso, replay
from projections import queries
from projections.commands import encode
from projections.rocksstore import RocksStore
from projections.rules import versions
from projections.rules.state import read_meta
from projections.runner import Runner, digest
from projections.snapshots import FileSnapshots, Snapshotter, retention_by
from service.metrics import parse_samples
from tests.ops.steady import Steady
from tests.ops.test_auto_snapshots import ReadCounter

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 2
SEGMENT = 1 << 20
RETENTION_MS = 10 * 60_000
INTERVAL_MS = 2 * 60_000
MINUTES = 40
WINDOW_S = 14 * 60  # the bound: what the last 14 minutes wrote
QUEUES = ("q0", "q1", "q5")  # q0, q1 on partition 0, q5 on partition 1


@dataclass
class Soak:
    """What a soak run saw, minute by minute."""

    data: Path
    load: Steady
    disk: list[tuple[int, int, int]] = field(default_factory=list)  # minute, bytes, bound
    starts: list[dict[int, int]] = field(default_factory=list)  # per minute
    appended: int = 0


def disk_bytes(path: Path) -> int:
    """Bytes of every file of the log directory (segments, indexes, meta)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def parts(load: Steady, seconds: int) -> list[dict[int, list[bytes]]]:
    out = []
    for _ in range(seconds):
        per: dict[int, list[bytes]] = {}
        for p, cmd in load.second():
            per.setdefault(p, []).append(encode(cmd))
        out.append(per)
    return out


def open_log(data: Path, load: Steady) -> FileLog:
    return FileLog(log_dir(data), PARTITIONS, segment_bytes=SEGMENT, durable=False,
                   clock=lambda: load.now)


def runner_for(log: Any, store: RocksStore, data: Path, load: Steady) -> tuple[Runner,
                                                                             Snapshotter]:
    snapper = Snapshotter(FileSnapshots(snapshot_dir(data), keep=3), INTERVAL_MS,
                          retention=retention_by(log, RETENTION_MS, lambda: load.now))
    return Runner(log, store, range(PARTITIONS), sweep_interval=0, clock=lambda: load.now,
                  snapshots=snapper), snapper


async def soak(data: Path, minutes: int) -> Soak:
    load = Steady(PARTITIONS, QUEUES, body_bytes=1000)
    out = Soak(data, load)
    written: deque[tuple[int, int]] = deque()  # (second, bytes) over the last 14 minutes
    async with open_log(data, load) as log:
        with RocksStore(store_dir(data)) as store:
            runner, snapper = runner_for(log, store, data, load)
            async with runner:
                for minute in range(1, minutes + 1):
                    for second, per in enumerate(parts(load, 60)):
                        now = (minute - 1) * 60 + second
                        size = 0
                        for p, records in per.items():
                            await log.append(p, records)
                            size += sum(len(r) + HEADER_SIZE for r in records)
                            out.appended += len(records)
                        written.append((now, size))
                        while written[0][0] <= now - WINDOW_S:
                            written.popleft()
                    for p in range(PARTITIONS):
                        await runner.barrier(p, timeout=120)
                    await snapper.drain()
                    bound = int(1.5 * sum(b for _, b in written)) + 2 * PARTITIONS * SEGMENT
                    out.disk.append((minute, disk_bytes(log_dir(data)), bound))
                    out.starts.append({p: await log.start_offset(p) for p in range(PARTITIONS)})
    return out


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory) -> Soak:
    data = tmp_path_factory.mktemp("soak")
    return asyncio.run(soak(data, MINUTES))


def test_the_log_on_disk_stays_within_the_window(soaked: Soak) -> None:
    for minute, size, bound in soaked.disk:
        if minute >= 14:  # before that the whole log is the last 14 minutes
            assert size <= bound, (minute, size, bound)
    # it did reach the bound's scale: without retention the log would have outgrown it
    written = soaked.appended * 1000  # > 1 KB per record on average (bodies, claims...)
    assert soaked.disk[-1][1] < written / 2
    assert soaked.disk[-1][1] > SEGMENT * PARTITIONS  # ...and it still holds the window


def test_start_offsets_advance(soaked: Soak) -> None:
    at = {minute: starts for minute, starts in enumerate(soaked.starts, start=1)}
    for p in range(PARTITIONS):
        assert at[10][p] == 0  # nothing is older than the retention window yet
        assert 0 < at[20][p] < at[30][p] < at[40][p]


async def test_rebuild_from_snapshots_digests_equal_and_a_restart_resumes(
        soaked: Soak, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "copy"
    shutil.copytree(soaked.data, data)
    with RocksStore(store_dir(data)) as store:
        live = digest(store)
    built = await admin.rebuild(str(data), progress=False)
    assert built.digest == live
    assert all(pl.snapshot is not None for pl in built.plans)  # the log is cut: no offset 0
    async with FileLog(log_dir(data), read_only=True) as log:
        ends = sum([await log.end_offset(p) for p in range(PARTITIONS)])
        starts = [await log.start_offset(p) for p in range(PARTITIONS)]
    assert built.records < ends - sum(starts)  # only what follows the oldest snapshots
    assert built.checked >= PARTITIONS  # and the newer snapshots matched on the way
    # the rules version came with the snapshots: its SetRules record is long gone from the log
    with RocksStore(store_dir(data)) as store:
        for p in range(PARTITIONS):
            assert versions.in_force(read_meta(store, p)) == versions.LATEST > 1

    # a rebuild from offset 0 is refused: one line, exit code != 0, no traceback
    proc = subprocess.run([sys.executable, "-m", "ops.cli", "rebuild", "--data", str(data),
                           "--from-zero"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "cannot rebuild from offset 0" in line and "retention" in line

    # a restart resumes: the stored offsets, the persisted starts, only the new records read
    load = copy.deepcopy(soaked.load)  # the copy continues the same clock and ids
    async with open_log(data, load) as log:
        assert [await log.start_offset(p) for p in range(PARTITIONS)] == starts
        counted = ReadCounter(log)
        with RocksStore(store_dir(data)) as store:
            before = {p: queries.partition_state(store, p)["offset"]
                      for p in range(PARTITIONS)}
            runner, snapper = runner_for(counted, store, data, load)
            async with runner:
                new = 0
                for per in parts(load, 120):
                    for p, records in per.items():
                        await log.append(p, records)
                        new += len(records)
                for p in range(PARTITIONS):
                    await runner.barrier(p, timeout=60)
                await snapper.drain()
                assert all(runner.applied_offset(p) > before[p] for p in range(PARTITIONS))
            resumed = digest(store)
    assert counted.records == new + PARTITIONS  # the tail, plus one position check each
    assert (await admin.rebuild(str(data), progress=False)).digest == resumed


def check_rows(data: Path, rows: list[dict[str, Any]]) -> None:
    """The retention and snapshot figures of each row against the log and the snapshots."""
    snaps = FileSnapshots(snapshot_dir(data))
    assert [row["partition"] for row in rows] == list(range(PARTITIONS))
    for row in rows:
        p = row["partition"]
        newest = snaps.list_sync(p)[-1]
        segments = sorted((log_dir(data) / f"p{p:04d}").glob("*.seg"))
        assert segments, p
        assert row["start_offset"] == int(segments[0].stem) > 0  # the first segment's base
        assert row["log_bytes"] == sum(s.stat().st_size for s in segments)
        assert row["snapshot_offset"] == newest.offset
        assert 0 <= row["snapshot_age_s"] < INTERVAL_MS / 1000  # log time since it was cut


def test_partitions_json_reports_start_bytes_and_snapshots(
        soaked: Soak, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.ArgumentParser()
    partitions_arguments(args)
    assert partitions_command(args.parse_args(["--data", str(soaked.data), "--json"])) == 0
    rows = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    check_rows(soaked.data, rows)
    assert partitions_command(args.parse_args(["--data", str(soaked.data)])) == 0
    table = capsys.readouterr().out
    assert "start offset" in table and "snapshot at" in table


def _args(data: Path, project: str, queue: str, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--data", str(data), "--project", project, "--queue", queue,
                              "--no-progress", *extra])


def _retained(data: Path, partition: int) -> tuple[int, int]:
    """(time_ms, offset) of the oldest retained snapshot of ``partition``."""
    first = FileSnapshots(snapshot_dir(data)).list_sync(partition)[0]
    return first.time_ms, first.offset


async def test_audit_windows_before_the_retained_start_fail_in_one_line(
        soaked: Soak, capsys: pytest.CaptureFixture[str]) -> None:
    data = soaked.data
    p = partition_for("p", "q0", PARTITIONS)
    first_ms, first_offset = _retained(data, p)
    early = iso(first_ms - 5 * 60_000)
    cases = [("--since", early), ("--until", early), ("--since", early, "--until",
                                                     iso(first_ms + 60_000)),
             ("--state", "--at", early), ("--state", "--at-offset", str(first_offset - 10))]
    for extra in cases:
        out = io.StringIO()
        assert await replay(_args(data, "p", "q0", *extra), out) == 1, extra
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("marconi replay: history of partition"), line
        assert f"(offset {first_offset + 1})" in line and "retained from" in line
        assert out.getvalue() == ""
        # the time it names is accepted as the start of a window
        named = line.split("retained from ")[1].split(" ")[0]
        if extra[0] == "--since":
            assert await replay(_args(data, "p", "q0", "--since", named, "--json"),
                                io.StringIO()) == 0
    # as a real process: exit code != 0, the one line, no traceback
    proc = subprocess.run([sys.executable, "-m", "ops.cli", "replay", "--data", str(data),
                           "--project", "p", "--queue", "q0", "--since", early],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "retained from" in line
    # a window inside what is retained works
    out = io.StringIO()
    assert await replay(_args(data, "p", "q0", "--since", iso(soaked.load.now - 180_000),
                              "--json"), out) == 0
    assert len(out.getvalue().splitlines()) > 100


async def test_history_endpoint_before_the_retained_start_is_a_400(
        soaked: Soak, tmp_path: Path) -> None:
    from ops.serve import run
    from ops.settings import Settings
    from tests.ops.test_live_rebuild import _until_up, free_port

    data = tmp_path / "served"
    shutil.copytree(soaked.data, data)
    p = partition_for("p", "q0", PARTITIONS)
    _, first_offset = _retained(data, p)
    settings = Settings(data=str(data), port=free_port(), request_timeout=5.0,
                        graceful_timeout=1.0, log_segment_bytes=SEGMENT,
                        workers=1)  # /metrics with node state is the single-process one
    stop = asyncio.Event()
    server = asyncio.create_task(run(settings, stop=stop))
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "p", "X-Roles": "admin"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.port}",
                                     headers=headers, timeout=60) as client:
            await _until_up(client)
            r = await client.get(f"/v2/queues/q0/history?marker={first_offset - 10}")
            assert r.status_code == 400, r.text
            body = r.json()
            assert set(body) == {"title", "description"}
            assert f"(offset {first_offset + 1})" in body["description"]
            assert "retained from" in body["description"]
            r = await client.get(f"/v2/queues/q0/history?marker={first_offset}&limit=5")
            assert r.status_code == 200, r.text
            assert [e["offset"] > first_offset for e in r.json()["history"]] == [True] * 5

            # the running server's rows (`marconi partitions --json`) and /metrics
            rows, source = await asyncio.to_thread(status_rows, data)
            assert source == "server"
            check_rows(data, rows)
            scraped = await client.get("/metrics")
            assert scraped.status_code == 200, scraped.text
            samples = list(parse_samples(scraped.text))
            for name, field in (("marconi_log_start_offset", "start_offset"),
                                ("marconi_log_bytes", "log_bytes"),
                                ("marconi_snapshot_offset", "snapshot_offset"),
                                ("marconi_snapshot_age_seconds", "snapshot_age_s")):
                found = {labels["partition"]: value for n, labels, value in samples
                         if n == name}
                assert all(set(labels) == {"partition"} for n, labels, _ in samples
                           if n == name)
                assert sorted(found) == [str(p) for p in range(PARTITIONS)], name
                for row in rows:
                    assert found[str(row["partition"])] == pytest.approx(row[field]), name
    finally:
        stop.set()
        assert await asyncio.wait_for(server, 60) == 0
