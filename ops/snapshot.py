"""``marconi snapshot``: a RocksDB checkpoint of the projection plus the offsets it holds.

Layout of a snapshot directory ``DEST``::

    DEST/store/         a RocksDB checkpoint (hard links where possible: cheap and fast)
    DEST/offsets.json   {"log_id", "partitions", "offsets": {"<p>": applied}, "created"}

The offsets are read back from the checkpoint itself, so they are exactly the ones its state
reflects. A runner on a store seeded from ``DEST/store`` resumes at offset + 1 of each
partition instead of replaying from 0 (``--restore`` seeds a data directory).

With the server running, RocksDB is locked by it, so the CLI asks the server to take the
checkpoint (a control request, see ``ops.admin``); with the server stopped it opens the store.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from projections import queries
from projections.rocksstore import RocksStore
from projections.runner import IDENTITY_KEY

OFFSETS = "offsets.json"
STORE = "store"


class SnapshotError(Exception):
    """A snapshot that cannot be taken or used; the message says why."""


def store_offsets(store: RocksStore) -> dict[str, Any]:
    """The log identity and per-partition applied offsets recorded in a store."""
    raw = store.get(IDENTITY_KEY)
    if raw is None:
        raise SnapshotError(f"store {store.path} has no log identity (never started?)")
    identity = orjson.loads(raw)
    offsets = {str(p): queries.partition_state(store, p)["offset"]
               for p in range(identity["partitions"])}
    return {"log_id": identity["log_id"], "partitions": identity["partitions"],
            "offsets": offsets}


def write_snapshot(store: RocksStore, dest: str | Path) -> dict[str, Any]:
    """Checkpoint ``store`` into ``dest/store`` and write ``dest/offsets.json``."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise SnapshotError(f"snapshot destination {dest} exists and is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    store.checkpoint(dest / STORE)
    with RocksStore(dest / STORE, memory_mb=8) as copy:
        info = store_offsets(copy)
    info["created"] = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    info["seconds"] = round(time.perf_counter() - started, 3)
    tmp = dest / (OFFSETS + ".tmp")
    tmp.write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    tmp.rename(dest / OFFSETS)
    return info


def read_snapshot(src: str | Path) -> dict[str, Any]:
    """The offsets file of a snapshot, checked against the checkpoint beside it."""
    src = Path(src)
    try:
        info: dict[str, Any] = orjson.loads((src / OFFSETS).read_bytes())
    except FileNotFoundError:
        raise SnapshotError(f"{src} is not a snapshot: no {OFFSETS}") from None
    if not (src / STORE).is_dir():
        raise SnapshotError(f"{src} is not a snapshot: no {STORE}/ directory")
    return info


def seed(src: str | Path, data: str | Path) -> dict[str, Any]:
    """Make a snapshot the store of a data directory (the server must be stopped).

    The copy goes into a new store generation, which becomes current only once complete; the
    runner then checks it against the log (identity, offsets, last record) when it starts.
    """
    from ops.admin import new_store_name, set_store, store_dir

    info = read_snapshot(src)
    data = Path(data)
    data.mkdir(parents=True, exist_ok=True)
    name = new_store_name()
    shutil.copytree(Path(src) / STORE, data / name)
    old = store_dir(data)
    set_store(data, name)
    if old.exists() and old != data / name:
        shutil.rmtree(old)
    return info


def snapshot_command(args: argparse.Namespace) -> int:
    """``marconi snapshot --data DIR --out DEST`` or ``--restore SNAP``."""
    from ops.admin import ControlError, open_store_or_none, request

    try:
        if args.restore:
            info = seed(args.restore, args.data)
            print(f"seeded {args.data} from {args.restore}: offsets {info['offsets']}")
            return 0
        if not args.out:
            print("marconi snapshot: --out DEST (or --restore SNAP) is required",
                  file=sys.stderr)
            return 2
        store = open_store_or_none(args.data)
        if store is None:  # the server holds it: ask the server
            answer = request(args.data, {"op": "snapshot",
                                         "dest": str(Path(args.out).resolve())},
                             timeout=args.timeout)
            info = answer["snapshot"]
        else:
            with store:
                info = write_snapshot(store, args.out)
    except (SnapshotError, ControlError, OSError) as exc:
        print(f"marconi snapshot: {exc}", file=sys.stderr)
        return 1
    print(f"snapshot written to {args.out} in {info['seconds']} s")
    print(orjson.dumps(info["offsets"]).decode())
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="./data", help="data directory (log + store)")
    parser.add_argument("--out", default=None, help="snapshot directory to create")
    parser.add_argument("--restore", default=None, metavar="SNAP",
                        help="seed --data's store from this snapshot (server stopped)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for a running server to take the snapshot")
