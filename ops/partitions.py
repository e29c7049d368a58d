"""``marconi partitions``: owner, applied offset, end offset and lag of every partition.

With the server stopped, it opens the log read-only and the store directly. With the server
running, RocksDB is locked by it, so the tool asks the server (a control request, see
``ops.admin``) and prints the server's own view — the same rows ``/v2/health`` reports.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from log.filelog import FileLog
from ops.admin import ControlError, log_dir, open_store_or_none, request
from projections import queries
from projections.rocksstore import RocksStore
from service.metrics import CountingLog, LocalStatus, PartitionStatus


class _StoreOffsets:
    """The applied offsets a (stopped) store recorded, shaped like the runner's API."""

    def __init__(self, store: RocksStore, partitions: int) -> None:
        self.store = store
        self._partitions = partitions

    @property
    def partitions(self) -> list[int]:
        return list(range(self._partitions))

    def applied_offset(self, partition: int) -> int:
        return int(queries.partition_state(self.store, partition)["offset"])


async def offline_status(data: str | Path, store: RocksStore) -> list[PartitionStatus]:
    """Rows from the log (read-only) and a store this process opened."""
    log = FileLog(log_dir(data), read_only=True)
    await log.start()
    try:
        counted = CountingLog(log)
        await counted.refresh()
        status = LocalStatus(counted, _StoreOffsets(store, log.partitions), store,
                             owner=f"{socket.gethostname()} (stopped)")
        return status.partition_status()
    finally:
        await log.stop()


def status_rows(data: str | Path, *, timeout: float = 10.0) -> tuple[list[dict], str]:
    """Each partition as a dict, and where the figures came from ("server" or "store")."""
    store = open_store_or_none(data)
    if store is None:
        answer = request(data, {"op": "status"}, timeout=timeout)
        return list(answer["partitions"]), "server"
    with store:
        rows = asyncio.run(offline_status(data, store))
    return [row.as_json() for row in rows], "store"


def partitions_command(args: argparse.Namespace) -> int:
    try:
        rows, source = status_rows(args.data, timeout=args.timeout)
    except (ControlError, OSError) as exc:
        print(f"marconi partitions: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for row in rows:
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        return 0
    title = ("as reported by the running server" if source == "server"
             else "from the log and the stopped store")
    table = Table(title=f"partitions of {args.data} ({title})")
    for column in ("partition", "owner", "applied offset", "end offset", "lag",
                   "quarantined", "outbox"):
        table.add_column(column, justify="left" if column == "owner" else "right")
    for row in rows:
        table.add_row(str(row["partition"]), row["owner"], str(row["applied_offset"]),
                      str(row["end_offset"]), str(row["lag"]), str(row["quarantined"]),
                      str(row["outbox"]))
    Console(width=120).print(table)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="./data", help="data directory (log + store)")
    parser.add_argument("--json", action="store_true", help="one JSON object per partition")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for a running server's answer")
