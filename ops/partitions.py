"""``marconi partitions``: owner, applied offset, end offset and lag of every partition.

With ``--data``: with the server stopped, it opens the log read-only and the store directly.
With the server running, RocksDB is locked by it, so the tool asks the server (a control
request, see ``ops.admin``) and prints the server's own view — the same rows ``/v2/health``
reports.

With ``--url http://node:port``: the whole cluster over HTTP. The node named gives the
partition map (``/_marconi/status``); every owner in it is asked for the rows of the
partitions it owns, so one command shows owners, applied and end offsets and lag of every
partition. An embedded ``marconi serve`` has no map: its ``/v2/health`` detail (admin role,
``admin_mode``) is shown instead. The cluster secret (``MARCONI_CLUSTER_SECRET``) and a
token (``--token``) are sent when given.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from log.filelog import FileLog
from ops.admin import ControlError, log_dir, open_store_or_none, request, snapshot_dir
from projections import queries
from projections.rocksstore import RocksStore
from projections.snapshots import FileSnapshots, SnapshotInfo
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
        snaps = FileSnapshots(snapshot_dir(data))

        def newest(p: int) -> SnapshotInfo | None:
            infos = snaps.list_sync(p)
            return infos[-1] if infos else None

        status = LocalStatus(counted, _StoreOffsets(store, log.partitions), store,
                             owner=f"{socket.gethostname()} (stopped)", snapshot_of=newest)
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


class ClusterViewError(Exception):
    """The node named by ``--url`` could not give a partition map or rows."""


def _headers(token: str | None, secret: str | None) -> dict[str, str]:
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "marconi-admin",
               "X-Roles": "admin"}
    if token:
        headers["X-Auth-Token"] = token
    if secret:
        headers["x-marconi-cluster-secret"] = secret
    return headers


def _get(client: httpx.Client, url: str) -> httpx.Response:
    try:
        return client.get(url)
    except httpx.HTTPError as exc:
        raise ClusterViewError(f"cannot reach {url}: {exc or type(exc).__name__}") from exc


def cluster_rows(url: str, *, token: str | None = None, secret: str | None = None,
                 timeout: float = 10.0) -> tuple[list[dict[str, Any]], str]:
    """Every partition's row, asking each owner the map of ``url`` names (see module doc)."""
    base = url.rstrip("/")
    with httpx.Client(timeout=timeout, headers=_headers(token, secret)) as client:
        r = _get(client, f"{base}/_marconi/status")
        if r.status_code == 404:  # an embedded server: its health detail
            health = _get(client, f"{base}/v2/health")
            if health.status_code != 200:
                raise ClusterViewError(
                    f"{base}/v2/health answered {health.status_code} (the server needs "
                    "admin_mode, and an admin token with --token when auth is on)")
            detail = health.json().get("partitions", {})
            return [detail[k] for k in sorted(detail, key=int)], f"{base} (embedded)"
        if r.status_code != 200:
            raise ClusterViewError(f"{base}/_marconi/status answered {r.status_code} "
                                   "(set MARCONI_CLUSTER_SECRET to the cluster's secret)")
        first = r.json()
        owners = {int(p): a for p, a in first.get("owners", {}).items()}
        statuses = {first.get("address", base): first}
        for address in sorted(set(owners.values()) - set(statuses)):
            with_status = _get(client, f"{address}/_marconi/status")
            if with_status.status_code == 200:
                statuses[address] = with_status.json()
        rows: list[dict[str, Any]] = []
        for p in range(int(first.get("partitions", len(owners)))):
            owner = owners.get(p, "(unassigned)")
            found = next((row for row in statuses.get(owner, {}).get("rows", [])
                          if row.get("partition") == p), None)
            if found is None:
                found = {"partition": p, "owner": owner, "applied_offset": "?",
                         "end_offset": "?", "lag": "?", "quarantined": "?", "outbox": "?"}
                if owner not in statuses:
                    found["owner"] = f"{owner} (unreachable)"
            rows.append(found)
        generation = first.get("generation")
        return rows, f"cluster of {base} (assignment {generation})"


def partitions_command(args: argparse.Namespace) -> int:
    if args.url:
        try:
            rows, where = cluster_rows(
                args.url, token=args.token, timeout=args.timeout,
                secret=os.environ.get("MARCONI_CLUSTER_SECRET") or None)
        except ClusterViewError as exc:
            print(f"marconi partitions: {exc}", file=sys.stderr)
            return 2
        return _print(rows, f"partitions of the {where}", args.json)
    try:
        rows, source = status_rows(args.data, timeout=args.timeout)
    except (ControlError, OSError) as exc:
        print(f"marconi partitions: {exc}", file=sys.stderr)
        return 1
    title = ("as reported by the running server" if source == "server"
             else "from the log and the stopped store")
    return _print(rows, f"partitions of {args.data} ({title})", args.json)


def _print(rows: list[dict[str, Any]], title: str, as_json: bool) -> int:
    if as_json:
        for row in rows:
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        return 0
    table = Table(title=title)
    for column in ("partition", "owner", "applied offset", "end offset", "lag",
                   "quarantined", "outbox", "start offset", "log MB", "snapshot at",
                   "snapshot age s"):
        table.add_column(column, justify="left" if column == "owner" else "right")
    for row in rows:
        size = row.get("log_bytes")
        table.add_row(str(row["partition"]), row["owner"], str(row["applied_offset"]),
                      str(row["end_offset"]), str(row["lag"]), str(row["quarantined"]),
                      str(row["outbox"]), _cell(row.get("start_offset")),
                      f"{size / 1e6:.1f}" if isinstance(size, int) else _cell(size),
                      _cell(row.get("snapshot_offset")), _cell(row.get("snapshot_age_s")))
    Console(width=160).print(table)
    return 0


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="./data", help="data directory (log + store)")
    parser.add_argument("--url", default=None,
                        help="a running node (http://host:port): show the whole cluster's "
                             "map instead of a local data directory")
    parser.add_argument("--token", default=os.environ.get("OS_AUTH_TOKEN"),
                        help="X-Auth-Token with the admin role, for --url when auth is on "
                             "(default: $OS_AUTH_TOKEN)")
    parser.add_argument("--json", action="store_true", help="one JSON object per partition")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for a running server's answer")
