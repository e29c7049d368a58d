"""``marconi digest`` and ``marconi rebuild`` on an embedded data directory, and the control
requests the operator tools send to a running ``marconi serve``.

Layout of a data directory: ``log/`` (the FileLog, the source of truth), the projection store
(RocksDB, always rebuildable from the log) and ``control/`` (requests to the running server).
The store lives in ``store/`` until the first rebuild; after that in a generation directory
``store-<ns>`` named by the file ``STORE`` (replaced atomically). A generation becomes current
only when complete, so a crash mid-rebuild leaves the old store in charge.

Why a control directory: RocksDB allows one process per store, so while the server runs only
the server can read or swap its store. Tools drop a request file into ``control/``, the
server (which polls it every 0.2 s) does the work and writes the answer beside it. It needs
no HTTP credentials — access to the data directory already is the operator's privilege.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from log import Log, LogError
from log.filelog import FileLog
from projections.rebuild import Mode, Plan, fold_checked, plan, seed
from projections.rocksstore import RocksStore, StoreLockedError
from projections.runner import check_identity, check_position, digest
from projections.snapshots import (
    FileSnapshots,
    SnapshotError,
    SnapshotInfo,
    SnapshotStore,
    write_atomic,
)

POINTER = "STORE"
DEFAULT_STORE = "store"
CONTROL = "control"
POLL = 0.05


class ControlError(Exception):
    """A control request the server refused, or that nobody answered."""


class NoAnswerError(ControlError):
    """Nobody answered in time: the server may be down — or still working on it."""


def log_dir(data: str | Path) -> Path:
    return Path(data) / "log"


def snapshot_dir(data: str | Path) -> Path:
    """Where the runner keeps its automatic per-partition snapshots (DESIGN.md §8)."""
    return Path(data) / "snapshots"


def store_dir(data: str | Path) -> Path:
    """The current store of a data directory (``STORE`` names it; default ``store/``)."""
    pointer = Path(data) / POINTER
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        return Path(data) / DEFAULT_STORE
    return Path(data) / (name or DEFAULT_STORE)


def new_store_name() -> str:
    return f"store-{time.time_ns()}"


def set_store(data: str | Path, name: str) -> None:
    """Make ``data/name`` the current store (atomic, durable)."""
    write_atomic(Path(data) / POINTER, name.encode() + b"\n")


def require_log(data: str | Path) -> None:
    if not (log_dir(data) / "meta.json").exists():
        raise ControlError(f"no log at {log_dir(data)}: is {data} a marconi data directory?")


def open_store_or_none(data: str | Path) -> RocksStore | None:
    """The current store, or None when a running server holds it (RocksDB's lock)."""
    require_log(data)
    try:
        return RocksStore(store_dir(data))
    except StoreLockedError:
        return None


# -- control requests ----------------------------------------------------------------------


def control_dir(data: str | Path) -> Path:
    return Path(data) / CONTROL


def request(data: str | Path, body: dict[str, Any], *, timeout: float = 60.0) -> dict[str, Any]:
    """Send a control request to the server on ``data`` and wait for its answer."""
    cdir = control_dir(data)
    cdir.mkdir(parents=True, exist_ok=True)
    rid = uuid.uuid4().hex
    req, resp = cdir / f"{rid}.request", cdir / f"{rid}.response"
    write_atomic(req, orjson.dumps(body))
    deadline = time.monotonic() + timeout
    while not resp.exists():
        if time.monotonic() > deadline:
            req.unlink(missing_ok=True)
            raise NoAnswerError(
                f"the server on {data} did not answer a {body.get('op')!r} request within "
                f"{timeout:.0f} s (is `marconi serve --data {data}` running?)")
        time.sleep(POLL)
    answer: dict[str, Any] = orjson.loads(resp.read_bytes())
    resp.unlink(missing_ok=True)
    if not answer.get("ok"):
        raise ControlError(f"the server refused {body.get('op')!r}: {answer.get('error')}")
    return answer


def pending(data: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """Requests waiting for the server (oldest first); unreadable ones are answered as errors."""
    cdir = control_dir(data)
    if not cdir.is_dir():
        return []
    found = []
    for path in cdir.glob("*.request"):
        try:
            found.append((path.stat().st_mtime_ns, path))
        except FileNotFoundError:  # withdrawn by a tool that gave up
            continue
    out = []
    for _, path in sorted(found):
        rid = path.name.removesuffix(".request")
        try:
            body = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            continue
        except (OSError, orjson.JSONDecodeError) as exc:
            answer(data, rid, {"ok": False, "error": f"unreadable request: {exc}"})
            continue
        out.append((rid, body))
    return out


def answer(data: str | Path, rid: str, body: dict[str, Any]) -> None:
    """Write the answer to request ``rid`` and remove the request."""
    cdir = control_dir(data)
    write_atomic(cdir / f"{rid}.response", orjson.dumps(body, default=str))
    (cdir / f"{rid}.request").unlink(missing_ok=True)


# -- digest and rebuild --------------------------------------------------------------------


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed:,}/{task.total:,} records"),
                    TimeRemainingColumn(), transient=True, disable=not enabled)


async def catch_up(log: Log, store: RocksStore, *, progress: bool = False,
                   checkpoints: dict[int, tuple[SnapshotInfo, ...]] | None = None) -> int:
    """Fold every partition to the end of the log; returns how many records were applied.

    ``checkpoints``: snapshots per partition whose digests the fold must match on its way
    (a rebuild from a snapshot, ``projections.rebuild``)."""
    check_identity(store, log)
    starts = {p: await check_position(store, log, p) + 1 for p in range(log.partitions)}
    ends = {p: await log.end_offset(p) for p in range(log.partitions)}
    total = sum(max(0, ends[p] - starts[p]) for p in starts)
    applied = 0
    with _progress(progress and sys.stderr.isatty()) as bar:
        task = bar.add_task("applying", total=total)
        for p in range(log.partitions):
            bar.update(task, description=f"partition {p}")
            base = applied

            def advance(last: int, p: int = p, base: int = base) -> None:
                bar.update(task, completed=base + last - starts[p] + 1)

            last, _ = await fold_checked(log, store, p, starts[p], until=ends[p],
                                         checkpoints=(checkpoints or {}).get(p, ()),
                                         on_commit=advance)
            applied += max(0, last - starts[p] + 1)
    return applied


async def _digest(data: str) -> str:
    async with FileLog(log_dir(data)) as log:
        store = RocksStore(store_dir(data))
        try:
            await catch_up(log, store)
            return digest(store)
        finally:
            store.close()


def digest_command(data: str) -> int:
    """Print a hash of the whole projected state (caught up to the end of the log)."""
    try:
        require_log(data)
        print(asyncio.run(_digest(data)))
    except StoreLockedError:
        print(f"marconi digest: the store of {data} is in use by a running server; stop it, "
              "or digest a copy: `marconi snapshot --out SNAP` then digest that", file=sys.stderr)
        return 1
    except ControlError as exc:
        print(f"marconi digest: {exc}", file=sys.stderr)
        return 1
    return 0


class Built(NamedTuple):
    """What a rebuild did: the new store's digest, records folded, seconds, and per partition
    the snapshot it began at (None: offset 0) and how many newer snapshots it matched."""

    digest: str
    records: int
    seconds: float
    plans: list[Plan]
    checked: int = 0

    def origin(self) -> str:
        """One line: where the rebuild began."""
        begun = [pl for pl in self.plans if pl.snapshot is not None]
        if not begun:
            return "from offset 0"
        where = ", ".join(f"p{pl.partition}@{pl.first}" for pl in begun)
        zero = len(self.plans) - len(begun)
        tail = f"; {zero} partitions from offset 0" if zero else ""
        return (f"from the oldest retained snapshots ({where}{tail}; {self.checked} newer "
                "snapshots matched on the way)")


async def build_store(log: Log, path: Path, *, progress: bool,
                      snapshots: SnapshotStore | None = None, mode: Mode = "auto") -> Built:
    """A new store at ``path`` folded to the log's end: from offset 0 while the log is whole,
    else from the oldest retained snapshot of each partition (``projections.rebuild``)."""
    plans = [await plan(log, p, snapshots, mode) for p in range(log.partitions)]
    store = RocksStore(path)
    try:
        started = time.perf_counter()
        check_identity(store, log)
        for pl in plans:
            await seed(store, log, pl, snapshots)
        checkpoints = {pl.partition: pl.checkpoints for pl in plans}
        records = await catch_up(log, store, progress=progress, checkpoints=checkpoints)
        elapsed = time.perf_counter() - started
        ends = {p: await log.end_offset(p) for p in range(log.partitions)}
        checked = sum(1 for pl in plans for i in pl.checkpoints if i.offset < ends[pl.partition])
        return Built(digest(store), records, elapsed, plans, checked)
    finally:
        store.close()


def snapshots_of(data: str | Path) -> FileSnapshots:
    return FileSnapshots(snapshot_dir(data))


async def rebuild(data: str, *, progress: bool = True, mode: Mode = "auto") -> Built:
    """Offline: recompute every projection into a new generation, then make it current.
    Holds the log's writer lock, so no server can start meanwhile."""
    name = new_store_name()
    fresh = Path(data) / name
    async with FileLog(log_dir(data)) as log:
        old = store_dir(data)
        try:
            built = await build_store(log, fresh, progress=progress,
                                      snapshots=snapshots_of(data), mode=mode)
        except BaseException:
            shutil.rmtree(fresh, ignore_errors=True)
            raise
        set_store(data, name)
        if old.exists():
            shutil.rmtree(old)
    return built


async def rebuild_live(data: str, *, timeout: float = 120.0, progress: bool = True,
                       mode: Mode = "auto") -> tuple[Built, dict[str, Any]]:
    """Beside a running server: fold the read-only log into a new generation, then ask the
    server to catch it up and swap it in. The server keeps answering throughout."""
    name = new_store_name()
    fresh = Path(data) / name
    log = FileLog(log_dir(data), read_only=True)
    await log.start()
    try:
        built = await build_store(log, fresh, progress=progress,
                                  snapshots=snapshots_of(data), mode=mode)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    finally:
        await log.stop()
    try:
        swapped = await asyncio.to_thread(request, data, {"op": "swap", "store": name},
                                          timeout=timeout)
    except NoAnswerError as exc:
        # The server may still be catching the new store up (it holds it open): keep it.
        raise NoAnswerError(f"{exc}; the new store {fresh} was kept, since the server may "
                            "still swap it in — delete it only if it never becomes "
                            f"current (see {Path(data) / POINTER})") from None
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)  # refused: the server never opened it
        raise
    return built, swapped


def rebuild_command(data: str, *, timeout: float = 120.0, mode: Mode = "auto") -> int:
    """Offline rebuild when no server runs on ``data``, live rebuild + swap when one does."""
    swapped: dict[str, Any] | None = None
    try:
        store = open_store_or_none(data)
        if store is not None:
            store.close()
            built = asyncio.run(rebuild(data, mode=mode))
        else:
            built, swapped = asyncio.run(rebuild_live(data, timeout=timeout, mode=mode))
    except (ControlError, StoreLockedError, SnapshotError, LogError, OSError) as exc:
        print(f"marconi rebuild: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    result, records, elapsed = built.digest, built.records, built.seconds
    rate = records / elapsed if elapsed > 0 else float("inf")
    print(f"rebuilt {records} records in {elapsed:.2f} s ({rate:,.0f} records/s) "
          f"{built.origin()}")
    if swapped is not None:
        print(f"the running server caught up {swapped['caught_up']} more records and swapped "
              f"to {swapped['store']} in {swapped['seconds']} s; digest at build time:")
        print(result)
    else:
        print(f"digest: {result}")
    return 0
