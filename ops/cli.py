"""The ``marconi`` command: one sub-command per operator task; each lives in its own module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _serve(args: argparse.Namespace) -> int:
    from ops.serve import serve

    return serve(args)


def _node(args: argparse.Namespace) -> int:
    from ops.node import node

    return node(args)


def _digest(args: argparse.Namespace) -> int:
    from ops.admin import digest_command

    return digest_command(args.data)


def _rebuild(args: argparse.Namespace) -> int:
    from ops.admin import rebuild_command

    return rebuild_command(args.data, timeout=args.timeout)


def _partitions(args: argparse.Namespace) -> int:
    from ops.partitions import partitions_command

    return partitions_command(args)


def _snapshot(args: argparse.Namespace) -> int:
    from ops.snapshot import snapshot_command

    return snapshot_command(args)


def _replay(args: argparse.Namespace) -> int:
    from ops.replay import replay_command

    return replay_command(args)


def _bench_log(args: argparse.Namespace) -> int:
    from ops.bench.log import main

    main(partitions=args.partitions, appenders=tuple(args.appenders), seconds=args.seconds,
         record_bytes=args.record_bytes, kafka=args.kafka, include_nondurable=args.nondurable)
    return 0


def _bench_log_open(args: argparse.Namespace) -> int:
    from ops.bench.logopen import main

    main(gb=args.gb, repeat=args.repeat, crash_mb=args.crash_mb, keep=args.keep)
    return 0


def _bench_http(args: argparse.Namespace) -> int:
    from ops.bench.http import main

    main(args.url, producers=args.producers, consumers=args.consumers,
         observers=args.observers, seconds=args.seconds)
    return 0


def _bench_compare(args: argparse.Namespace) -> int:
    from ops.bench.compare import main

    main(seconds=args.seconds)
    return 0


def _bench_replay(args: argparse.Namespace) -> int:
    from ops.bench.replay import main

    main(commands=args.commands)
    return 0


def _bench_cluster(args: argparse.Namespace) -> int:
    from ops.bench.cluster import main

    main(seconds=args.seconds, workers=args.workers, partitions=args.partitions)
    return 0


def _bench_core(args: argparse.Namespace) -> int:
    from ops.bench.core import main

    main(commands=args.commands, partitions=args.partitions)
    return 0


def _bench_fuzz(args: argparse.Namespace) -> int:
    from ops.bench.fuzz import main

    report = main(args.url, cases=args.cases, seed=args.seed, token=args.token)
    return 1 if report.server_error_count or report.bad_4xx_count else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marconi", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=("text", "json"), default=None,
                        help="text (default) or json: one object per line, with request ids "
                             "(also MARCONI_LOG_FORMAT / log_format in the settings file)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the Zaqar v2 API on the embedded log")
    serve.add_argument("--data", default=None,
                       help="data directory (log + store); default MARCONI_DATA or ./data")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--config", default=None, help="settings file (TOML)")
    serve.add_argument("--partitions", type=int, default=None,
                       help="partitions of a new log (default 16)")
    serve.set_defaults(func=_serve)

    node = sub.add_parser("node", help="serve the API as one node of a Kafka-backed cluster")
    node.add_argument("--kafka", required=True, help="bootstrap servers")
    node.add_argument("--topic", default="marconi-commands")
    node.add_argument("--partitions", type=int, default=None,
                      help="partitions of the topic when it is created (default 16)")
    node.add_argument("--group", default="marconi")
    node.add_argument("--data", default=None, help="this node's local store directory")
    node.add_argument("--host", default=None)
    node.add_argument("--port", type=int, default=None)
    node.add_argument("--advertise", default=None,
                      help="the http://host:port other nodes reach this node at")
    node.add_argument("--config", default=None, help="settings file (TOML)")
    node.add_argument("--insecure-cluster", action="store_true",
                      help="start without MARCONI_CLUSTER_SECRET: node-to-node paths "
                           "(/_marconi/) are then open to anyone who reaches the port — "
                           "for tests on loopback only")
    node.set_defaults(func=_node)

    digest = sub.add_parser("digest", help="hash of the whole projected state")
    digest.add_argument("--data", default="./data")
    digest.set_defaults(func=_digest)

    rebuild = sub.add_parser(
        "rebuild", help="recompute every projection from offset 0 (live-safe: a running "
                        "server swaps the new store in when it has caught up)")
    rebuild.add_argument("--data", default="./data")
    rebuild.add_argument("--timeout", type=float, default=120.0,
                         help="seconds a running server may take to catch up and swap")
    rebuild.set_defaults(func=_rebuild)

    parts = sub.add_parser("partitions",
                           help="owner, applied offset, end offset and lag per partition")
    from ops.partitions import add_arguments as partitions_arguments

    partitions_arguments(parts)
    parts.set_defaults(func=_partitions)

    snap = sub.add_parser("snapshot", help="RocksDB checkpoint + offsets (backup, seeding)")
    from ops.snapshot import add_arguments as snapshot_arguments

    snapshot_arguments(snap)
    snap.set_defaults(func=_snapshot)

    replay = sub.add_parser("replay", help="a queue's audited history, or its state at a time")
    from ops.replay import add_arguments

    add_arguments(replay)
    replay.set_defaults(func=_replay)

    bench = sub.add_parser("bench", help="benchmarks (print figures)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    blog = bench_sub.add_parser("log", help="appends/s and latency of each log")
    blog.add_argument("--partitions", type=int, default=16)
    blog.add_argument("--appenders", type=int, nargs="+", default=[1, 100, 1000])
    blog.add_argument("--seconds", type=float, default=3.0)
    blog.add_argument("--record-bytes", type=int, default=1024)
    blog.add_argument("--kafka", default=None,
                      help="bootstrap servers; default: start the tansu test broker; '' to skip")
    blog.add_argument("--nondurable", action="store_true", help="also FileLog without fsync")
    blog.set_defaults(func=_bench_log)
    bopen = bench_sub.add_parser("log-open", help="FileLog restart time and memory by log size")
    bopen.add_argument("--gb", type=float, default=1.6, help="size of the log to build")
    bopen.add_argument("--repeat", type=int, default=3, help="opens per figure (median)")
    bopen.add_argument("--crash-mb", type=int, default=64,
                       help="size of the active segment no recovery point covers (kill -9)")
    bopen.add_argument("--keep", default=None,
                       help="build in (and keep) this directory, reusing a log built there")
    bopen.set_defaults(func=_bench_log_open)
    bhttp = bench_sub.add_parser("http", help="Zaqar v2 load: producers, consumers, observers")
    bhttp.add_argument("url")
    bhttp.add_argument("--producers", type=int, default=20)
    bhttp.add_argument("--consumers", type=int, default=20)
    bhttp.add_argument("--observers", type=int, default=2)
    bhttp.add_argument("--seconds", type=float, default=10.0)
    bhttp.set_defaults(func=_bench_http)
    bcmp = bench_sub.add_parser("compare", help="marconi serve vs upstream Zaqar, same load")
    bcmp.add_argument("--seconds", type=float, default=10.0)
    bcmp.set_defaults(func=_bench_compare)
    brep = bench_sub.add_parser("replay", help="audit a long queue history: time, memory")
    brep.add_argument("--commands", type=int, default=100_000)
    brep.set_defaults(func=_bench_replay)
    bclu = bench_sub.add_parser("cluster", help="failover time, 1-3 node throughput, forwarding")
    bclu.add_argument("--seconds", type=float, default=6.0)
    bclu.add_argument("--workers", type=int, default=24)
    bclu.add_argument("--partitions", type=int, default=8)
    bclu.set_defaults(func=_bench_cluster)
    bcore = bench_sub.add_parser("core", help="apply and rebuild throughput")
    bcore.add_argument("--commands", type=int, default=50_000)
    bcore.add_argument("--partitions", type=int, default=4)
    bcore.set_defaults(func=_bench_core)
    bfuzz = bench_sub.add_parser(
        "fuzz", help="schemathesis from /v2/openapi.json: counts of requests, 5xx, bad 4xx")
    bfuzz.add_argument("url", nargs="?", default=None,
                       help="server to fuzz; default: start marconi serve on a free port")
    bfuzz.add_argument("--cases", type=int, default=10_000, help="about this many requests")
    bfuzz.add_argument("--seed", type=int, default=0)
    bfuzz.add_argument("--token", default=None,
                       help="X-Auth-Token to send, for a server with auth = token")
    bfuzz.set_defaults(func=_bench_fuzz)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ops.logs import configure

    fmt = args.log_format or os.environ.get("MARCONI_LOG_FORMAT", "").strip().lower() or "text"
    configure(args.log_level, fmt if fmt in ("text", "json") else "text")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
