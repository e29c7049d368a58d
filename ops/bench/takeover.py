"""``marconi bench takeover``: a fresh node (empty data directory) taking over a partition with
a long history, with and without snapshots on the broker (DESIGN.md §8), against tansu.

1. ``records`` stamped commands (post / claim / delete on one queue, one second of log time
   apart, ending now) are appended to one partition of a new command topic.
2. Before: a node with no usable snapshot (``snapshot_interval`` of ten years, so it takes
   none) starts on an empty directory: it folds the partition from offset 0.
3. A seeding node folds the history with ``snapshot_interval`` (default ``2m``), publishing a
   snapshot every interval of log time to ``<topic>-snapshots``; it then leaves the group
   (SIGTERM), so the figure below is the takeover, not the broker's session timeout.
4. After: a node with an empty directory takes the partition over: it restores the newest
   snapshot from the broker and replays only the records after it.

For each of 2 and 4 the figures are: records replayed (from the node's own log line, or the
whole partition when it restored nothing), seconds from process start until the partition is
ready (caught up and serving), and of those the seconds before the node was listening.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from log.kafkalog import KafkaLog
from ops.bench.cluster import LocalCluster, NodeProcess, queue_on
from projections.commands import CreateClaim, DeleteMessage, NewMessage, PostMessages, encode
from projections.snapshots import LogSnapshots

PROJECT = "bench"
WEEK_MS = 7 * 24 * 3600 * 1000  # the nodes' default log_retention, checked on the topic
RESTORED = re.compile(r"partition (\d+): restored the snapshot at offset (\d+)")


def history(records: int, queue: str, *, end_ms: int) -> list[bytes]:
    """``records`` commands: each second a post of two messages, a claim and two deletes."""
    out: list[bytes] = []
    per_second = 4
    t = end_ms - (records // per_second + 1) * 1000
    n = 0
    posted: list[str] = []
    while len(out) < records:
        t += 1000
        base = {"project": PROJECT, "queue": queue, "client_id": "bench-takeover",
                "time_ms": t}
        n += 1
        msgs = [NewMessage(id=f"m{n}a", body={"n": n}, ttl=3600),
                NewMessage(id=f"m{n}b", body={"n": n}, ttl=3600)]
        posted.extend(m.id for m in msgs)
        out.append(encode(PostMessages(id=f"c{n}p", messages=msgs, size=40, **base)))
        out.append(encode(CreateClaim(id=f"c{n}c", claim_id=f"k{n}", ttl=60, grace=30,
                                      limit=2, **base)))
        for i, mid in enumerate(posted[:2]):
            out.append(encode(DeleteMessage(id=f"c{n}d{i}", message_id=mid,
                                            claim_id=f"k{n}", **base)))
        del posted[:2]
    return out[:records]


async def _fill(bootstrap: str, topic: str, partitions: int, partition: int,
                records: list[bytes]) -> int:
    log = KafkaLog(bootstrap, topic, partitions, retention_ms=WEEK_MS)
    await log.start()
    try:
        for i in range(0, len(records), 500):
            await log.append(partition, records[i:i + 500])
        return await log.end_offset(partition)
    finally:
        await log.stop()


async def _newest_snapshot(bootstrap: str, topic: str, partitions: int,
                           partition: int) -> int | None:
    snaplog = KafkaLog(bootstrap, f"{topic}-snapshots", partitions)
    await snaplog.start()
    try:
        infos = await LogSnapshots(snaplog).list(partition)
        return infos[-1].offset if infos else None
    finally:
        await snaplog.stop()


def _until_ready(cluster: LocalCluster, node: NodeProcess, partition: int, started: float,
                 timeout: float = 900.0) -> tuple[float, float]:
    """(seconds until listening, seconds until ``partition`` is ready) since ``started``."""
    listening = None
    while time.monotonic() - started < timeout:
        if not node.alive():
            raise RuntimeError(f"{node.name} exited:\n{node.log_tail()}")
        st = cluster.status(node)
        if st is not None:
            if listening is None:
                listening = time.monotonic() - started
            if partition in st["ready"]:
                return listening, time.monotonic() - started
        time.sleep(0.05)
    raise TimeoutError(f"{node.name} did not serve partition {partition}:\n{node.log_tail()}")


def _take_over(cluster: LocalCluster, name: str, partition: int, end: int,
               interval: str) -> tuple[int, float, float, int | None]:
    """Start ``name`` on an empty directory; (replayed, to ready, to listening, snapshot)."""
    cluster.env["MARCONI_SNAPSHOT_INTERVAL"] = interval
    started = time.monotonic()
    node = cluster.start_node(name)
    listening, ready = _until_ready(cluster, node, partition, started)
    restored = None
    for match in RESTORED.finditer(node.log_tail(1 << 20)):
        if int(match.group(1)) == partition:
            restored = int(match.group(2))
    replayed = end - (restored + 1 if restored is not None else 0)
    return replayed, ready, listening, restored


def main(records: int = 100_000, partitions: int = 4, interval: str = "2m",
         session_timeout_ms: int = 6000) -> None:
    root = Path(tempfile.mkdtemp(prefix="marconi-takeover-bench-"))
    cluster = LocalCluster(root, partitions=partitions, session_timeout_ms=session_timeout_ms,
                           topic=f"takeover-{uuid.uuid4().hex[:8]}", log_level="INFO")
    try:
        bootstrap = cluster.start_broker()
        partition = 1
        queue = queue_on(partition, partitions, PROJECT)
        t0 = time.monotonic()
        end = asyncio.run(_fill(bootstrap, cluster.topic, partitions, partition,
                                history(records, queue, end_ms=time.time_ns() // 1_000_000)))
        print(f"history: {end:,} records on partition {partition} "
              f"({records // 4 / 3600:.1f} h of log time), appended in "
              f"{time.monotonic() - t0:.1f} s")

        before = _take_over(cluster, "zero", partition, end, "3650d")
        cluster.stop("zero")

        seeding = _take_over(cluster, "seed", partition, end, interval)
        deadline = time.monotonic() + 300
        newest = None
        while time.monotonic() < deadline:  # the exports run beside the tail: wait for them
            newest = asyncio.run(_newest_snapshot(bootstrap, cluster.topic, partitions,
                                                  partition))
            if newest is not None and end - newest < records // 50:
                break
            time.sleep(0.5)
        cluster.stop("seed")  # leaves the group: the figures below are the takeover alone
        print(f"seeding node folded {seeding[0]:,} records in {seeding[1]:.1f} s; newest "
              f"snapshot at offset {newest}")

        after = _take_over(cluster, "fresh", partition, end, interval)
        with httpx.Client(base_url=cluster.nodes["fresh"].url, timeout=10,
                          headers={"Client-ID": str(uuid.uuid4()),
                                   "X-Project-ID": PROJECT}) as client:
            r = client.get(f"/v2/queues/{queue}/stats")
            print(f"fresh node serves {queue}: {r.status_code} {r.json()['messages']}")
        print()
        print(f"{'takeover by a fresh node':<34} {'replayed':>10} {'to ready s':>11} "
              f"{'listening s':>12} {'snapshot at':>12}")
        for label, (replayed, ready, listening, snap) in (
                ("before: no snapshot (from 0)", before), (f"after: snapshots every {interval}",
                                                           after)):
            print(f"{label:<34} {replayed:>10,} {ready:>11.2f} {listening:>12.2f} "
                  f"{snap if snap is not None else '-':>12}")
        catch_before = before[1] - before[2]
        catch_after = after[1] - after[2]
        print(f"catch-up after listening: {catch_before:.2f} s -> {catch_after:.2f} s "
              f"({catch_before / max(catch_after, 1e-3):.1f}x)")
    finally:
        cluster.close()
