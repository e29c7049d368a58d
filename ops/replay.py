"""``marconi replay``: who posted, claimed and deleted what on a queue, straight from the log.

Works against an embedded data directory (opened read-only, so beside a running server) or a
Kafka topic. A table by default, JSON lines with ``--json``; ``--at`` / ``--at-offset`` with
``--state`` prints the queue as it was at that moment instead.

Replays start from the newest snapshot at or before the window (``data/snapshots`` or the
``<topic>-snapshots`` topic), so the last few minutes of a long history cost a few minutes of
replay. A window before what is retained fails with one line saying what is (exit code 1);
``--archive DIR`` reads the segments retention moved to ``log_archive_dir`` back in first, so
such a window replays from what was archived.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from log import Log, LogError
from log.archive import ArchivedLog
from log.filelog import FileLog
from ops.admin import log_dir, snapshot_dir
from projections.audit import Entry, History, NotRetainedError
from projections.snapshots import FileSnapshots, LogSnapshots, SnapshotError, SnapshotStore


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from ISO-8601 (naive = UTC) or epoch seconds."""
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def open_log(args: argparse.Namespace) -> Log:
    if args.kafka:
        from log.kafkalog import KafkaLog

        return KafkaLog(args.kafka, args.topic)
    log = FileLog(log_dir(args.data), read_only=True)
    if args.archive:
        return ArchivedLog(log, args.archive)
    return log


def _summary(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def write_entry(entry: Entry, out: TextIO, as_json: bool) -> None:
    if as_json:
        out.write(orjson.dumps(entry.as_json()).decode() + "\n")
        return
    out.write(f"{entry.offset:>9}  {iso(entry.time_ms)}  {entry.client_id[:36]:<36}  "
              f"{entry.command:<20}  {_summary(entry.args)}  -> {_summary(entry.outcome)}\n")


async def open_snapshots(args: argparse.Namespace, log: Log) -> tuple[SnapshotStore,
                                                                      Log | None]:
    """The snapshots beside the log (and the snapshot log to stop, in Kafka mode)."""
    if args.kafka:
        from log.kafkalog import KafkaLog

        snaplog = KafkaLog(args.kafka, f"{args.topic}-snapshots", log.partitions)
        await snaplog.start()
        return LogSnapshots(snaplog), snaplog
    return FileSnapshots(snapshot_dir(args.data)), None


async def replay(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    log = open_log(args)
    await log.start()
    snaplog: Log | None = None
    try:
        snapshots, snaplog = await open_snapshots(args, log)
        async with History(log, args.project, args.queue,
                           snapshots=snapshots) as history:
            show_progress = not args.no_progress and sys.stderr.isatty()
            progress = Progress(TextColumn("replaying partition {task.fields[p]}"), BarColumn(),
                                TextColumn("{task.completed}/{task.total} records"),
                                TimeRemainingColumn(), transient=True, disable=not show_progress,
                                console=None)
            at_ms = parse_time(args.at) if args.at else None
            at_offset = args.at_offset

            def stop(offset: int, time_ms: int) -> bool:
                if at_offset is not None:
                    return offset > at_offset
                return at_ms is not None and time_ms > at_ms

            with progress:
                task = progress.add_task("replay", total=None, p=history.partition)
                count = 0
                table = not args.state and not args.json
                header = (f"{'offset':>9}  {'time (UTC)':<24}  {'client id':<36}  "
                          f"{'command':<20}  arguments  -> outcome\n")
                async for entry in history.entries(
                    since_ms=parse_time(args.since) if args.since else None,
                    until_ms=parse_time(args.until) if args.until else None,
                    stop=stop if args.state else None,
                    progress=lambda done, total: progress.update(task, completed=done,
                                                                 total=total),
                    at_offset=at_offset if args.state else None,
                    at_ms=at_ms if args.state else None,
                ):
                    count += 1
                    if table and count == 1:  # only once the window is known to replay
                        out.write(header)
                    if not args.state:
                        write_entry(entry, out, args.json)
            if args.state:
                now = at_ms if at_ms is not None else _last_time(history)
                out.write(orjson.dumps(history.state(now), option=orjson.OPT_INDENT_2).decode()
                          + "\n")
            elif not args.json:
                if count == 0:
                    out.write(header)
                out.write(f"{count} commands on {args.project}/{args.queue}\n")
            if args.stats:
                start = history.started_from
                where = (f"the snapshot at offset {start.offset}" if start is not None
                         else "offset 0")
                print(f"replayed {history.replayed} records from {where}", file=sys.stderr)
    except NotRetainedError as exc:
        hint = ("" if args.archive or args.kafka else
                "; if the server sets log_archive_dir, --archive DIR replays what it archived")
        print(f"marconi replay: {exc}{hint}", file=sys.stderr)
        return 1
    except (SnapshotError, LogError) as exc:
        print(f"marconi replay: {exc}", file=sys.stderr)
        return 1
    finally:
        if snaplog is not None:
            await snaplog.stop()
        await log.stop()
    return 0


def _last_time(history: History) -> int:
    from projections import queries

    return queries.partition_state(history.store, history.partition)["time"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--since", help="ISO-8601 time or epoch seconds (effective time)")
    parser.add_argument("--until", help="ISO-8601 time or epoch seconds (effective time)")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.add_argument("--at", help="point in time (with --state)")
    parser.add_argument("--at-offset", type=int, help="point in the log (with --state)")
    parser.add_argument("--state", action="store_true",
                        help="print the queue's state at --at / --at-offset (default: the end)")
    parser.add_argument("--data", default="./data", help="embedded data directory")
    parser.add_argument("--kafka", help="bootstrap servers (instead of --data)")
    parser.add_argument("--archive", metavar="DIR",
                        help="also read the segments retention moved to DIR (the server's "
                             "log_archive_dir), so windows older than the log start replay")
    parser.add_argument("--topic", default="marconi-commands")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--stats", action="store_true",
                        help="print how many records were replayed, and from where, to stderr")


def replay_command(args: argparse.Namespace) -> int:
    if args.archive and args.kafka:
        print("marconi replay: --archive reads an embedded log's archive; it cannot be used "
              "with --kafka (Kafka keeps or deletes records on the broker)", file=sys.stderr)
        return 2
    return asyncio.run(replay(args))
