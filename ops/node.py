"""``marconi node --kafka BOOTSTRAP``: one peer of a scaled-out cluster (DESIGN.md §4).

Each node serves the whole Zaqar v2 API and is a projection worker in one consumer group over
the command topic: KafkaLog for appends and tails, a local RocksDB store under ``--data``, a
Runner whose owned partitions follow the group assignment, and a ClusterGateway that serves
what this node has caught up and forwards the rest once to its owner.

Group timing is not a Marconi setting (``ops/settings.py`` stays the node-independent
settings); these environment variables tune it and are removed before settings are read:

* ``MARCONI_SESSION_TIMEOUT_MS`` (5000): how long a silent node keeps its partitions;
  failover after ``kill -9`` takes about this plus one heartbeat and one rebalance
  (``log/membership.py`` says why 5 s; ``marconi bench cluster`` measures it).
* ``MARCONI_HEARTBEAT_INTERVAL_MS`` (session / 5, at least 300).
* ``MARCONI_REBALANCE_TIMEOUT_MS`` (max(session, 10000)).
* ``MARCONI_FORWARD_CONNECT_TIMEOUT`` (1.0 s): an owner that does not accept a connection
  in this time is treated as gone (503 with Retry-After).
* ``MARCONI_CLUSTER_SECRET`` (required): the same on every node; node-to-node calls under
  ``/_marconi/`` carry it and a node refuses those without it (403). ``marconi node`` does
  not start without it unless ``--insecure-cluster`` is given (tests on loopback only):
  those paths read any tenant's queue and append commands.

Shutdown (SIGTERM/SIGINT): leave the group first (the others take over in one rebalance, not
after a session timeout), let in-flight requests finish, then stop the runner, the log and
the store. Local stores of every partition stay on disk, so a restart only catches up.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve

from log import LogError, LogMismatchError
from log.kafkalog import KEEP_FOREVER, KafkaLog
from log.membership import SESSION_TIMEOUT_MS, Membership
from ops import memory
from ops.notify import NotifierWiring
from ops.serve import hypercorn_config, snapshotter
from ops.settings import Settings, SettingsError, load_settings
from projections.rocksstore import RocksStore, StoreLockedError
from projections.runner import Runner, StoreMismatchError
from projections.snapshots import LogSnapshots, SnapshotError
from service.app import create_app
from service.cluster import ClusterGateway, cluster_app, internal_app
from service.metrics import CountingLog, LocalStatus, Metrics

logger = logging.getLogger("marconi.node")

CLUSTER_ENV = ("MARCONI_SESSION_TIMEOUT_MS", "MARCONI_HEARTBEAT_INTERVAL_MS",
               "MARCONI_REBALANCE_TIMEOUT_MS",
               "MARCONI_FORWARD_CONNECT_TIMEOUT", "MARCONI_CLUSTER_SECRET")


@dataclass(frozen=True)
class ClusterOptions:
    """Where the cluster lives and how this node takes part in it."""

    kafka: str
    topic: str = "marconi-commands"
    partitions: int | None = None  # for creating the topic; None: the topic's own count
    group: str = "marconi"
    advertise: str | None = None
    session_timeout_ms: int = SESSION_TIMEOUT_MS
    heartbeat_interval_ms: int | None = None
    rebalance_timeout_ms: int | None = None
    connect_timeout: float = 1.0
    secret: str | None = None


def split_env(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(settings environment, cluster knobs): the knobs are not settings."""
    settings_env = {k: v for k, v in env.items() if k not in CLUSTER_ENV}
    knobs = {k: v for k, v in env.items() if k in CLUSTER_ENV}
    return settings_env, knobs


def prepare_data(path: str) -> Path:
    """The node's data directory, created if missing (its store lives in ``store/``)."""
    data = Path(path).resolve()
    data.mkdir(parents=True, exist_ok=True)
    return data


async def open_log(options: ClusterOptions, default_partitions: int, client_id: str,
                   retention_ms: int | None = None) -> KafkaLog:
    """The command topic: its existing partition count, or created with the one asked for
    (and ``retention.ms`` = ``log_retention``; None keeps records forever)."""
    if options.partitions is not None:
        log = KafkaLog(options.kafka, options.topic, options.partitions, client_id=client_id,
                       retention_ms=retention_ms)
        await log.start()
        return log
    try:
        log = KafkaLog(options.kafka, options.topic, None, client_id=client_id,
                       retention_ms=retention_ms)
        await log.start()
    except LogMismatchError as exc:  # the topic does not exist yet
        if "does not exist" not in str(exc):
            raise
        log = KafkaLog(options.kafka, options.topic, default_partitions, client_id=client_id,
                       retention_ms=retention_ms)
        await log.start()
    return log


async def run_node(settings: Settings, options: ClusterOptions,
                   stop: asyncio.Event | None = None) -> int:
    """Serve as a cluster node until ``stop`` is set (or SIGTERM/SIGINT)."""
    stop = stop or asyncio.Event()
    memory.tune_malloc(os.environ)  # before the store allocates its first memtable
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per forward is noise
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    address = options.advertise or f"http://{settings.host}:{settings.port}"
    data = prepare_data(settings.data)
    retention = settings.log_retention_ms
    kafka = await open_log(options, settings.partitions, f"marconi-{settings.port}",
                           KEEP_FOREVER if retention is None else retention)
    try:
        store = RocksStore(str(data / "store"), memory_mb=settings.store_memory_mb)
    except StoreLockedError:
        await kafka.stop()
        raise
    # Counts appends and remembers the end offsets every barrier and tail sees, for /metrics
    # and the health detail (other nodes append too, so a lag shown is a lower bound).
    log = CountingLog(kafka)
    # Snapshots go to a second topic beside the command topic (DESIGN.md §8), so a node that
    # takes over a partition without a local store restores the newest and replays the tail.
    snaplog = KafkaLog(options.kafka, f"{kafka.topic}-snapshots", kafka.partitions,
                       client_id=f"marconi-{settings.port}-snapshots")
    try:
        await snaplog.start()
    except BaseException:
        await kafka.stop()
        store.close()
        raise
    snaps = LogSnapshots(snaplog, keep=settings.snapshot_keep)
    notify = NotifierWiring(settings)  # the owner of a partition sends its deliveries (§9)
    runner = Runner(log, store, [], snapshots=snapshotter(settings, log, data, snaps),
                    **notify.runner_options(settings))  # type: ignore[arg-type]
    membership: Membership | None = None
    gateway: ClusterGateway | None = None
    try:
        await runner.start()

        def on_change(owners: Mapping[int, str], owned: frozenset[int]) -> None:
            revoked = runner.revoke(set(runner.partitions) - owned)
            added = runner.assign(owned - set(runner.partitions))
            if revoked or added:
                logger.info("partitions revoked %s, assigned %s", revoked, added)

        membership = Membership(
            options.kafka, kafka.topic, options.group, address, on_change=on_change,
            session_timeout_ms=options.session_timeout_ms,
            heartbeat_interval_ms=options.heartbeat_interval_ms,
            rebalance_timeout_ms=options.rebalance_timeout_ms,
            client_id=f"marconi-member-{settings.port}")
        member = membership

        def status() -> dict[str, Any]:
            return {
                "address": address,
                "partitions": log.partitions,
                "owned": runner.partitions,
                "ready": runner.ready_partitions,
                "owners": {str(p): a for p, a in sorted(member.state.owners.items())},
                "generation": member.state.generation,
                "rebalancing": member.state.rebalancing,
                "applied": {str(p): runner.applied_offset(p) for p in runner.partitions},
                # owned partitions' rows as /v2/health shows them (``marconi partitions --url``)
                "rows": [row.as_json() for row in node_status.partition_status()],
            }

        gateway = ClusterGateway(log, runner, store, owners=lambda: member.state.owners,
                                 address=address, timeout=settings.request_timeout,
                                 connect_timeout=options.connect_timeout,
                                 secret=options.secret)
        node_status = LocalStatus(log, runner, store, owner=address)
        metrics = Metrics(log=log, status=node_status)
        runner.on_delivery = metrics.delivery
        zaqar = create_app(settings, gateway, status=node_status, metrics=metrics)
        app = cluster_app(zaqar, internal_app(gateway, runner, store, status,
                                              settings=settings, secret=options.secret))
        await membership.start()
        url = f"http://{settings.host}:{settings.port}"
        logger.info("node %s serving on %s (topic %s, %d partitions, group %s, data %s)",
                    address, url, kafka.topic, log.partitions, options.group, data)
        print(f"marconi: node listening on {url} as {address}", flush=True)

        async def shutdown_trigger() -> None:
            await stop.wait()
            logger.info("leaving the group")
            await member.stop()  # others take over while in-flight requests finish here

        await hypercorn_serve(app, hypercorn_config(settings),  # type: ignore[arg-type]
                              shutdown_trigger=shutdown_trigger)
        logger.info("shutting down: in-flight requests done")
    finally:
        if membership is not None:
            await membership.stop()
        await runner.stop()
        await notify.aclose()
        if gateway is not None:
            await gateway.aclose()
        await kafka.stop()
        await snaplog.stop()
        store.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    logger.info("stopped cleanly")
    return 0


def advertised(value: str | None, host: str, port: int) -> str:
    """The URL other nodes forward to: ``http(s)://host:port``; a bare ``host:port`` gets
    ``http://``. Anything else is refused at start (a wrong address would make every
    forward to this node fail for as long as it runs)."""
    from urllib.parse import urlsplit

    if value is None:
        return f"http://{host}:{port}"
    raw = value.strip()
    if "://" not in raw:
        raw = f"http://{raw}"
    parts = urlsplit(raw)
    try:
        has_port = parts.port is not None
    except ValueError:
        has_port = False
    if (parts.scheme not in ("http", "https") or not parts.hostname or not has_port
            or parts.path not in ("", "/") or parts.query or parts.fragment):
        raise ValueError(f"--advertise {value!r}: expected http://host:port or host:port "
                         "(the address other nodes reach this node at)")
    return f"{parts.scheme}://{parts.netloc}"


def _int_knob(knobs: Mapping[str, str], name: str) -> int | None:
    raw = knobs.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}: {raw!r} is not a whole number of milliseconds") from None


def options_from(args: argparse.Namespace, knobs: Mapping[str, str]) -> ClusterOptions:
    session = _int_knob(knobs, "MARCONI_SESSION_TIMEOUT_MS")
    return ClusterOptions(
        kafka=args.kafka, topic=args.topic, partitions=args.partitions, group=args.group,
        advertise=args.advertise,
        session_timeout_ms=session if session is not None else SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=_int_knob(knobs, "MARCONI_HEARTBEAT_INTERVAL_MS"),
        rebalance_timeout_ms=_int_knob(knobs, "MARCONI_REBALANCE_TIMEOUT_MS"),
        connect_timeout=float(knobs.get("MARCONI_FORWARD_CONNECT_TIMEOUT", "1.0")),
        secret=knobs.get("MARCONI_CLUSTER_SECRET") or None,
    )


MIN_SECRET_LENGTH = 16


def secret_refusal(options: ClusterOptions, *, insecure: bool) -> str | None:
    """Why this node must not start with its cluster secret, or None.

    ``/_marconi/`` reads every tenant's queues and appends commands: it is closed unless the
    operator explicitly opens it (``--insecure-cluster``, for tests on loopback)."""
    if options.secret is None:
        if insecure:
            logger.warning("--insecure-cluster: /_marconi/ node-to-node paths are open to "
                           "anyone who can reach this node")
            return None
        return ("MARCONI_CLUSTER_SECRET is not set: node-to-node paths (/_marconi/) would be "
                "open to anyone who can reach this node. Set the same secret on every node "
                "(e.g. python -c 'import secrets; print(secrets.token_hex(16))'), or pass "
                "--insecure-cluster for a test on loopback.")
    if len(options.secret) < MIN_SECRET_LENGTH:
        return (f"MARCONI_CLUSTER_SECRET is too short: use at least {MIN_SECRET_LENGTH} "
                "characters.")
    return None


def node(args: argparse.Namespace) -> int:
    """Entry point of ``marconi node`` (flags override the file and the environment)."""
    settings_env, knobs = split_env(os.environ)
    try:
        settings = load_settings(args.config, env=settings_env, data=args.data,
                                 host=args.host, port=args.port)
        options = options_from(args, knobs)
        options = dataclasses.replace(
            options, advertise=advertised(options.advertise, settings.host, settings.port))
    except (SettingsError, ValueError) as exc:
        print(f"marconi: {exc}", file=sys.stderr)
        return 2
    refusal = secret_refusal(options, insecure=getattr(args, "insecure_cluster", False))
    if refusal:
        print(f"marconi: {refusal}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run_node(settings, options))
    except (LogError, StoreLockedError, StoreMismatchError, SnapshotError, OSError) as exc:
        print(f"marconi: cannot run node: {exc}", file=sys.stderr)
        return 1
