"""The ``marconi`` command: one sub-command per operator task; each lives in its own module.

Errors an operator can fix (a missing data directory, a store another server holds, a bad
time, a port in use, a bad setting) end the command with one line on stderr and exit code 2,
never a traceback: ``main`` turns the project's known error types into that line
(``--log-level DEBUG`` shows the traceback too).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Commands that serve: their log lines are the operator's view, INFO by default. The tools
# print results on stdout and stay quiet (WARNING) unless asked, so library chatter
# (aiokafka's INFO lines under ``replay --kafka``) never mixes into their output.
SERVING = frozenset({"serve", "node"})
USAGE_ERROR = 2


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

    return rebuild_command(args.data, timeout=args.timeout, mode=args.mode)


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

    main(seconds=args.seconds, rounds=args.rounds, workers=args.workers,
         load=not args.no_load, servers=tuple(args.servers.split(",")),
         marconi_port=args.marconi_port, zaqar_port=args.zaqar_port,
         floor_port=args.floor_port, floor_processes=args.floor_processes,
         before=args.before, before_port=args.before_port, warmup=args.warmup)
    return 0


def _bench_replay(args: argparse.Namespace) -> int:
    from ops.bench.replay import main

    main(commands=args.commands)
    return 0


def _bench_cluster(args: argparse.Namespace) -> int:
    from ops.bench.cluster import main

    main(seconds=args.seconds, workers=args.workers, partitions=args.partitions,
         session_timeout_ms=args.session_timeout_ms, kills=args.kills,
         failover_only=args.failover_only)
    return 0


def _bench_takeover(args: argparse.Namespace) -> int:
    from ops.bench.takeover import main

    main(records=args.records, partitions=args.partitions, interval=args.interval,
         session_timeout_ms=args.session_timeout_ms)
    return 0


def _bench_retention(args: argparse.Namespace) -> int:
    from ops.bench.retention import main

    main(minutes=args.minutes, retention=args.retention, interval=args.interval,
         segment_bytes=args.segment_bytes, scale=args.scale, partitions=args.partitions,
         queues=args.queues, rate=args.rate, body_bytes=args.body_bytes)
    return 0


def _bench_core(args: argparse.Namespace) -> int:
    from ops.bench.core import main

    main(commands=args.commands, partitions=args.partitions)
    return 0


def _bench_command(args: argparse.Namespace) -> int:
    from ops.bench.command import main

    main(commands=args.commands, partitions=args.partitions, fronts=args.fronts,
         concurrency=args.concurrency, queues=args.queues)
    return 0


def _bench_front(args: argparse.Namespace) -> int:
    if args.server:
        from ops.bench.front_server import main as server_main

        here = Path(__file__).resolve().parent.parent
        trees = [Path(t).resolve() for t in args.tree] or [here]
        server_main(trees, port=args.port, workers=args.workers, seconds=args.seconds,
                    runs=args.rounds, messages=args.messages,
                    scenario=args.scenario)
        return 0
    from ops.bench.front import main

    main(requests=args.requests, rounds=args.rounds, profile=args.profile,
         only=args.only or None)
    return 0


def _bench_pipeline(args: argparse.Namespace) -> int:
    from ops.bench.pipeline import main

    return main(concurrency=tuple(args.concurrency), seconds=args.seconds,
                partitions=args.partitions, queues=args.queues)


def _bench_stats(args: argparse.Namespace) -> int:
    from ops.bench.statsq import main

    main(claims=args.claims, seconds=args.seconds, queries_n=args.queries, rounds=args.rounds,
         expired=args.expired)
    return 0


def _bench_notify(args: argparse.Namespace) -> int:
    from ops.bench.notify import main

    main(subs=args.subs, messages=args.messages, fanout=args.fanout, producers=args.producers,
         seconds=args.seconds, rounds=args.rounds)
    return 0


def _bench_history(args: argparse.Namespace) -> int:
    from ops.bench.history import main
    from projections.rules.versions import LATEST

    main(commands=args.commands, rules=args.rules or LATEST, stepped=not args.no_work_count,
         rounds=args.rounds)
    return 0


def _bench_bounded(args: argparse.Namespace) -> int:
    from ops.bench.bounded import main

    env = dict(item.split("=", 1) for item in args.env)
    main(tree=args.tree, purge_n=args.purge, delayed_n=args.delayed, cycle_n=args.cycle,
         cycles=args.cycles, modes=tuple(m for m in args.modes.split(",") if m),
         idle=args.idle, rate=args.rate, server_minutes=args.server_minutes,
         expired_n=args.expired, list_n=args.listed, env=env)
    return 0


def _bench_fuzz(args: argparse.Namespace) -> int:
    from ops.bench.fuzz import main

    report = main(args.url, cases=args.cases, seed=args.seed, token=args.token)
    return 1 if report.server_error_count or report.bad_4xx_count else 0


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default after its help, unless the help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default not in (None, False, argparse.SUPPRESS) and "default" not in text
                and action.option_strings):
            text += " (default: %(default)s)"
        return text


def _settings_epilog() -> str:
    from ops.settings import Settings

    names = [f"MARCONI_{f.upper()}" for f in Settings.__dataclass_fields__]
    lines, line = [], " "
    for name in names:
        if len(line) + len(name) > 90:
            lines.append(line)
            line = " "
        line += f" {name}"
    lines.append(line)
    return ("Every setting can also come from a settings file (--config, TOML, same names in "
            "lower case)\nor from the environment; flags win over the environment, which "
            "wins over the file:\n" + "\n".join(lines) + "\n\nUnknown MARCONI_* variables "
            "(e.g. Kubernetes' MARCONI_SERVICE_HOST, MARCONI_PORT=tcp://...) are ignored "
            "with a warning.")


# Help for options defined in other modules' ``add_arguments`` that came without any.
_FALLBACK_HELP = {
    "--queue": "queue name", "--project": "project id (the X-Project-ID the queue lives in)",
    "--topic": "command topic (with --kafka)",
    "--no-progress": "no progress bar on stderr", "--data": "data directory (log + store)",
    "--kafka": "Kafka bootstrap servers", "--json": "JSON output",
    "--timeout": "seconds to wait",
}


def _fill_help(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.help is None and action.option_strings:
            action.help = _FALLBACK_HELP.get(action.option_strings[-1], "")
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _fill_help(child)


def _version() -> str:
    try:
        return metadata.version("marconi")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marconi", description=__doc__,
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"marconi {_version()}")
    parser.add_argument("--log-level", default=None, type=str.upper, choices=LOG_LEVELS,
                        help="log lines at this level and above go to stderr (default: INFO "
                             "for serve and node, WARNING for the other commands)")
    parser.add_argument("--log-format", choices=("text", "json"), default=None,
                        help="text (default) or json: one object per line, with request ids "
                             "(also MARCONI_LOG_FORMAT / log_format in the settings file)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, **kw: object) -> argparse.ArgumentParser:
        return sub.add_parser(name, formatter_class=_HelpFormatter, **kw)  # type: ignore[arg-type]

    serve = add("serve", help="serve the Zaqar v2 API on the embedded log",
                description="Serve the Zaqar v2 API from one process: FileLog + RocksDB "
                            "under one data directory.", epilog=_settings_epilog())
    serve.add_argument("--data", default=None,
                       help="data directory (log + store); default MARCONI_DATA or ./data")
    serve.add_argument("--host", default=None,
                       help="address to listen on; default MARCONI_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None,
                       help="TCP port to listen on; default MARCONI_PORT or 8888")
    serve.add_argument("--config", default=None, help="settings file (TOML)")
    serve.add_argument("--partitions", type=int, default=None,
                       help="partitions of a new log (default 16; an existing log keeps its "
                            "own count)")
    serve.add_argument("--workers", type=int, default=None,
                       help="HTTP front processes beside the one process that owns the log "
                            "and the store (default MARCONI_WORKERS or 0: one per core; 1: "
                            "everything in one process)")
    serve.add_argument("--front-nice", type=int, default=None, metavar="STEPS",
                       help="with --workers N > 1: the front processes run STEPS steps nicer "
                            "than the core, so the core's apply and fsync, which every "
                            "request waits for, keep their CPU (default MARCONI_FRONT_NICE "
                            "or 10; 0: the same priority)")
    serve.set_defaults(func=_serve)

    node = add("node", help="serve the API as one node of a Kafka-backed cluster",
               description="One node of a cluster: KafkaLog, a local store, partitions "
                           "shared with the other nodes of --group.",
               epilog=_settings_epilog() + "\n\nCluster timing: MARCONI_SESSION_TIMEOUT_MS, "
                      "MARCONI_HEARTBEAT_INTERVAL_MS, MARCONI_REBALANCE_TIMEOUT_MS, "
                      "MARCONI_FORWARD_CONNECT_TIMEOUT; MARCONI_CLUSTER_SECRET.")
    node.add_argument("--kafka", required=True, help="Kafka bootstrap servers (host:port,...)")
    node.add_argument("--topic", default="marconi-commands",
                      help="the command topic every node of the cluster uses")
    node.add_argument("--partitions", type=int, default=None,
                      help="partitions of the topic when it is created (default 16)")
    node.add_argument("--group", default="marconi",
                      help="consumer group of the cluster's nodes (one group per cluster)")
    node.add_argument("--data", default=None,
                      help="this node's local store directory; default MARCONI_DATA or ./data")
    node.add_argument("--host", default=None,
                      help="address to listen on; default MARCONI_HOST or 127.0.0.1")
    node.add_argument("--port", type=int, default=None,
                      help="TCP port to listen on; default MARCONI_PORT or 8888")
    node.add_argument("--advertise", default=None,
                      help="the address other nodes reach this node at: http://host:port or "
                           "host:port (default: http://HOST:PORT)")
    node.add_argument("--config", default=None, help="settings file (TOML)")
    node.add_argument("--insecure-cluster", action="store_true",
                      help="start without MARCONI_CLUSTER_SECRET: node-to-node paths "
                           "(/_marconi/) are then open to anyone who reaches the port — "
                           "for tests on loopback only")
    node.set_defaults(func=_node)

    digest = add("digest", help="hash of the whole projected state")
    digest.add_argument("--data", default="./data", help="data directory (log + store)")
    digest.set_defaults(func=_digest)

    rebuild = add(
        "rebuild", help="recompute every projection from the log (live-safe: a running "
                        "server swaps the new store in when it has caught up)",
        description="Recompute every projection into a new store from offset 0 while the "
                    "log is whole, or from each partition's oldest retained snapshot plus the "
                    "log after it once retention has cut the log; every newer snapshot passed "
                    "on the way must match the fold. `marconi digest` then compares it with "
                    "the live store.")
    rebuild.add_argument("--data", default="./data", help="data directory (log + store)")
    rebuild.add_argument("--timeout", type=float, default=120.0,
                         help="seconds a running server may take to catch up and swap")
    begin = rebuild.add_mutually_exclusive_group()
    begin.add_argument("--from-zero", dest="mode", action="store_const", const="zero",
                       help="fold from offset 0 only (refused once retention has cut the log)")
    begin.add_argument("--from-snapshot", dest="mode", action="store_const",
                       const="snapshot",
                       help="begin at the oldest retained snapshot even on a whole log "
                            "(quicker; partitions without a snapshot fold from 0)")
    rebuild.set_defaults(mode="auto")
    rebuild.set_defaults(func=_rebuild)

    parts = add("partitions",
                           help="owner, applied offset, end offset and lag per partition")
    from ops.partitions import add_arguments as partitions_arguments

    partitions_arguments(parts)
    parts.set_defaults(func=_partitions)

    snap = add("snapshot", help="RocksDB checkpoint + offsets (backup, seeding)")
    from ops.snapshot import add_arguments as snapshot_arguments

    snapshot_arguments(snap)
    snap.set_defaults(func=_snapshot)

    replay = add("replay", help="a queue's audited history, or its state at a time")
    from ops.replay import add_arguments

    add_arguments(replay)
    replay.set_defaults(func=_replay)

    bench = add("bench", help="benchmarks (print figures)")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")

    def bench_add(name: str, **kw: object) -> argparse.ArgumentParser:
        return bench_sub.add_parser(name, formatter_class=_HelpFormatter, **kw)  # type: ignore[arg-type]

    blog = bench_add("log", help="appends/s and latency of each log")
    blog.add_argument("--partitions", type=int, default=16, help="partitions of each log")
    blog.add_argument("--appenders", type=int, nargs="+", default=[1, 100, 1000],
                      help="concurrent appenders, one run per number")
    blog.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    blog.add_argument("--record-bytes", type=int, default=1024, help="size of each record")
    blog.add_argument("--kafka", default=None,
                      help="bootstrap servers; default: start the tansu test broker; '' to skip")
    blog.add_argument("--nondurable", action="store_true", help="also FileLog without fsync")
    blog.set_defaults(func=_bench_log)
    bopen = bench_add("log-open", help="FileLog restart time and memory by log size")
    bopen.add_argument("--gb", type=float, default=1.6, help="size of the log to build")
    bopen.add_argument("--repeat", type=int, default=3, help="opens per figure (median)")
    bopen.add_argument("--crash-mb", type=int, default=64,
                       help="size of the active segment no recovery point covers (kill -9)")
    bopen.add_argument("--keep", default=None,
                       help="build in (and keep) this directory, reusing a log built there")
    bopen.set_defaults(func=_bench_log_open)
    bhttp = bench_add("http", help="Zaqar v2 load: producers, consumers, observers")
    bhttp.add_argument("url", help="base URL of a running server, e.g. http://127.0.0.1:8888")
    bhttp.add_argument("--producers", type=int, default=20,
                       help="concurrent clients posting messages")
    bhttp.add_argument("--consumers", type=int, default=20,
                       help="concurrent clients claiming and deleting messages")
    bhttp.add_argument("--observers", type=int, default=2,
                       help="concurrent clients listing messages")
    bhttp.add_argument("--seconds", type=float, default=10.0, help="length of the run")
    bhttp.set_defaults(func=_bench_http)
    bcmp = bench_add("compare", help="marconi serve vs upstream Zaqar, same load")
    bcmp.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    bcmp.add_argument("--rounds", type=int, default=1,
                      help="alternate the servers this many times; medians are printed")
    bcmp.add_argument("--workers", type=int, default=None,
                      help="marconi serve --workers (default: serve's own default)")
    bcmp.add_argument("--no-load", action="store_true",
                      help="skip the Python load generator (client-bound) phase")
    bcmp.add_argument("--servers", default="marconi,zaqar",
                      help="which servers, comma-separated: marconi, zaqar, and floor "
                           "(a bare Starlette route on the same Hypercorn: POST and GET "
                           "phases only; the ceiling of the stack on this machine)")
    bcmp.add_argument("--marconi-port", type=int, default=8890, help="port for marconi serve")
    bcmp.add_argument("--zaqar-port", type=int, default=8889, help="port for Zaqar (gunicorn)")
    bcmp.add_argument("--floor-port", type=int, default=8887, help="port for the floor")
    bcmp.add_argument("--floor-processes", type=int, default=None,
                      help="processes of the floor (default: as many as marconi's fronts)")
    bcmp.add_argument("--before", type=Path, default=None, metavar="CHECKOUT",
                      help="also measure the marconi serve of this checkout of an earlier "
                           "commit (`git worktree add /tmp/before COMMIT`), as server "
                           "'before', run by this interpreter: before/after in one run")
    bcmp.add_argument("--before-port", type=int, default=8891,
                      help="port for the --before server")
    bcmp.add_argument("--warmup", type=float, default=3.0, metavar="SECONDS",
                      help="POSTs sent to each server, into a queue of their own, before the "
                           "first round; not measured (0: none)")
    bcmp.set_defaults(func=_bench_compare)
    brep = bench_add("replay", help="audit a long queue history: time, memory")
    brep.add_argument("--commands", type=int, default=100_000,
                      help="commands in the generated history")
    brep.set_defaults(func=_bench_replay)
    bclu = bench_add("cluster", help="failover time, 1-3 node throughput, forwarding")
    bclu.add_argument("--seconds", type=float, default=6.0, help="length of each load run")
    bclu.add_argument("--workers", type=int, default=24, help="concurrent load clients")
    bclu.add_argument("--partitions", type=int, default=8, help="partitions of the topic")
    bclu.add_argument("--kills", type=int, default=3,
                      help="kill -9s measured for failover (the median is reported)")
    bclu.add_argument("--session-timeout-ms", type=int, default=None,
                      help="group session timeout of the nodes (default: the nodes' own)")
    bclu.add_argument("--failover-only", action="store_true",
                      help="skip the throughput and forwarding runs")
    bclu.set_defaults(func=_bench_cluster)
    btake = bench_add("takeover",
                      help="a fresh node taking over a long partition: from 0 vs a snapshot")
    btake.add_argument("--records", type=int, default=100_000,
                       help="records of history on the partition taken over")
    btake.add_argument("--partitions", type=int, default=4, help="partitions of the topic")
    btake.add_argument("--interval", default="2m",
                       help="snapshot_interval of the nodes that take snapshots")
    btake.add_argument("--session-timeout-ms", type=int, default=6000,
                       help="group session timeout of the nodes")
    btake.set_defaults(func=_bench_takeover)
    bret = bench_add("retention",
                     help="retention soak on the real clock: disk, start offsets, digest")
    bret.add_argument("--minutes", type=float, default=40.0, help="length of the load")
    bret.add_argument("--retention", default="10m", help="log_retention of the server")
    bret.add_argument("--interval", default="2m", help="snapshot_interval of the server")
    bret.add_argument("--segment-bytes", type=int, default=1 << 20,
                      help="log_segment_bytes of the server")
    bret.add_argument("--scale", type=float, default=1.0,
                      help="multiply minutes, retention and interval (0.1: a 4-minute run)")
    bret.add_argument("--partitions", type=int, default=2, help="partitions of the log")
    bret.add_argument("--queues", type=int, default=3, help="queues under load")
    bret.add_argument("--rate", type=float, default=4.0,
                      help="post+claim+delete rounds per second per queue")
    bret.add_argument("--body-bytes", type=int, default=1000, help="bytes of each body")
    bret.set_defaults(func=_bench_retention)
    bcore = bench_add("core", help="apply and rebuild throughput")
    bcore.add_argument("--commands", type=int, default=50_000, help="commands folded")
    bcore.add_argument("--partitions", type=int, default=4, help="partitions of the log")
    bcore.set_defaults(func=_bench_core)
    bcmd = bench_add("command", help="the core's CPU per command (post, claim, delete), over "
                                     "its socket and in-process, with records and keys written")
    bcmd.add_argument("--commands", type=int, default=4000, help="commands a phase")
    bcmd.add_argument("--partitions", type=int, default=16, help="partitions of the log")
    bcmd.add_argument("--fronts", type=int, default=2, help="links to the core (fronts)")
    bcmd.add_argument("--concurrency", type=int, default=16,
                      help="commands in flight over all links")
    bcmd.add_argument("--queues", type=int, default=4, help="queues posted to")
    bcmd.set_defaults(func=_bench_command)
    bfront = bench_add("front", help="CPU µs per request of a front's own layers, in-process")
    bfront.add_argument("--requests", type=int, default=5000, help="requests per round")
    bfront.add_argument("--rounds", type=int, default=5, help="rounds (the median is shown)")
    bfront.add_argument("--profile", choices=("tottime", "cumtime"),
                        help="also print a cProfile of one round")
    bfront.add_argument("only", nargs="*", help="scenarios: post claim delete stats")
    bfront.add_argument("--server", action="store_true",
                        help="instead: a real serve --workers N under wrk, CPU per process")
    bfront.add_argument("--tree", action="append", default=[],
                        help="--server: a checkout to run (repeat for an A/B; default: this)")
    bfront.add_argument("--port", type=int, default=8910, help="--server: first port")
    bfront.add_argument("--workers", type=int, default=2, help="--server: front processes")
    bfront.add_argument("--seconds", type=int, default=8, help="--server: seconds per run")
    bfront.add_argument("--messages", type=int, default=1, help="--server: messages per POST")
    bfront.add_argument("--scenario", default="post", choices=("post", "claim", "delete", "stats"),
                        help="--server: the request repeated (default: a POST)")
    bfront.set_defaults(func=_bench_front)
    bpipe = bench_add("pipeline", help="where a durable POST's time goes in the core: per-stage "
                                       "p50/p99, records per commit round and per batch")
    bpipe.add_argument("--concurrency", type=int, nargs="+", default=[1, 16],
                       help="commands in flight (one run each)")
    bpipe.add_argument("--seconds", type=float, default=5.0, help="measured time per run")
    bpipe.add_argument("--partitions", type=int, default=16, help="partitions of the log")
    bpipe.add_argument("--queues", type=int, default=1, help="queues the commands spread over")
    bpipe.set_defaults(func=_bench_pipeline)
    bstats = bench_add("stats", help="CPU and keys stepped per stats query after 20k claims, "
                                     "rules 5 vs latest")
    bstats.add_argument("--claims", type=int, default=20_000, help="claims in the history")
    bstats.add_argument("--seconds", type=float, default=10.0, help="log time they span")
    bstats.add_argument("--queries", type=int, default=200, help="stats queries per round")
    bstats.add_argument("--rounds", type=int, default=7, help="rounds (median printed)")
    bstats.add_argument("--expired", type=int, default=50_000,
                        help="expired, unswept messages in the backlog history")
    bstats.set_defaults(func=_bench_stats)
    bnot = bench_add(
        "notify", help="notification deliveries/s; POST p99 with and without subscriptions")
    bnot.add_argument("--subs", type=int, default=10, help="subscriptions for deliveries/s")
    bnot.add_argument("--messages", type=int, default=2000, help="messages for deliveries/s")
    bnot.add_argument("--fanout", type=int, default=100,
                      help="subscriptions on the queue of the latency comparison")
    bnot.add_argument("--producers", type=int, default=4,
                      help="concurrent clients posting in the latency comparison")
    bnot.add_argument("--seconds", type=float, default=8.0, help="length of each round")
    bnot.add_argument("--rounds", type=int, default=3,
                      help="alternating rounds with and without subscriptions (medians)")
    bnot.set_defaults(func=_bench_notify)
    bhist = bench_add(
        "history", help="apply/rebuild rate when the same history spans 1 min, 1 h, 24 h")
    bhist.add_argument("--commands", type=int, default=30_000,
                       help="commands in each history (the same workload in every row)")
    bhist.add_argument("--rules", type=int, default=None,
                       help="rules version to fold under (default: the latest; 1: original)")
    bhist.add_argument("--no-work-count", action="store_true",
                       help="skip counting keys stepped per record (a slower in-memory fold)")
    bhist.add_argument("--rounds", type=int, default=3,
                       help="rounds, each folding every span (alternating order); medians")
    bhist.set_defaults(func=_bench_history)
    bbnd = bench_add(
        "bounded", help="HTTP: read during a big purge, claim on a delayed queue, RSS cycles")
    bbnd.add_argument("--tree", default=None,
                      help="run the server from this checkout (to measure a 'before')")
    bbnd.add_argument("--purge", type=int, default=100_000, help="messages to purge")
    bbnd.add_argument("--delayed", type=int, default=50_000, help="delayed messages")
    bbnd.add_argument("--cycle", type=int, default=30_000, help="messages per post/purge cycle")
    bbnd.add_argument("--cycles", type=int, default=6, help="post/purge cycles for the RSS")
    bbnd.add_argument("--idle", type=float, default=0.0,
                      help="rss: seconds to idle after the cycles, then the RSS again")
    bbnd.add_argument("--modes", default="purge,delayed,listing,rss",
                      help="comma-separated: purge, delayed, listing, rss, post-clock, expired")
    bbnd.add_argument("--rate", type=float, default=10.0,
                      help="post-clock, expired: server seconds per second of the bench")
    bbnd.add_argument("--server-minutes", type=float, default=20.0,
                      help="post-clock: minutes of server time to post for")
    bbnd.add_argument("--expired", type=int, default=99_000,
                      help="expired: messages that expire at once")
    bbnd.add_argument("--listed", type=int, default=50_000,
                      help="listing: messages in the emptied and the own-messages queue")
    bbnd.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                      help="environment of the server (e.g. MALLOC_ARENA_MAX=2)")
    bbnd.set_defaults(func=_bench_bounded)
    bfuzz = bench_add(
        "fuzz", help="schemathesis from /v2/openapi.json: counts of requests, 5xx, bad 4xx")
    bfuzz.add_argument("url", nargs="?", default=None,
                       help="server to fuzz; default: start marconi serve on a free port")
    bfuzz.add_argument("--cases", type=int, default=10_000, help="about this many requests")
    bfuzz.add_argument("--seed", type=int, default=0,
                       help="random seed (the same seed replays the same requests)")
    bfuzz.add_argument("--token", default=None,
                       help="X-Auth-Token to send, for a server with auth = token")
    bfuzz.set_defaults(func=_bench_fuzz)
    _fill_help(parser)
    return parser


def known_errors() -> tuple[type[BaseException], ...]:
    """The project's error types that mean "the operator can fix this" (one line, exit 2)."""
    from log import LogError
    from ops.admin import ControlError
    from ops.settings import SettingsError
    from projections.rocksstore import StoreLockedError
    from projections.runner import StoreMismatchError

    found: list[type[BaseException]] = [LogError, ControlError, SettingsError,
                                         StoreLockedError, StoreMismatchError, OSError,
                                         ValueError]
    try:
        from ops.snapshot import SnapshotError

        found.append(SnapshotError)
    except ImportError:  # pragma: no cover - optional module
        pass
    return tuple(found)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ops.logs import configure

    fmt = args.log_format or os.environ.get("MARCONI_LOG_FORMAT", "").strip().lower() or "text"
    args.log_level = args.log_level or ("INFO" if args.command in SERVING else "WARNING")
    configure(args.log_level, fmt if fmt in ("text", "json") else "text")
    try:
        return int(args.func(args) or 0)
    except known_errors() as exc:
        logging.getLogger("marconi").debug("%s failed", args.command, exc_info=True)
        print(f"marconi {args.command}: {_one_line(exc)}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


if __name__ == "__main__":
    sys.exit(main())
