"""A cluster of real ``marconi node`` processes on loopback, and its benchmark.

``LocalCluster`` starts the tansu test broker (or uses a given bootstrap) and N node
processes, kills and restarts them, and waits for the group to settle; the multi-process
tests (tests/cluster) and ``main()`` (figures: failover time, throughput with 1/2/3 nodes,
the extra latency of a forwarded request) both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ops.testbroker import BrokerHandle, free_port, start_tansu

ROOT = Path(__file__).resolve().parents[2]


def _die_with_parent() -> None:
    """Child side: SIGKILL the node when the process that started it dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


@dataclass
class NodeProcess:
    """One ``marconi node`` process: its name, port, data directory and Popen."""

    name: str
    port: int
    data: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, max_bytes: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-max_bytes:].decode(errors="replace")


@dataclass
class LocalCluster:
    """A broker and node processes on 127.0.0.1 (see the module docstring)."""

    root: Path
    partitions: int = 8
    session_timeout_ms: int | None = None  # None: the node's default (log/membership.py)
    bootstrap: str | None = None
    topic: str = field(default_factory=lambda: f"marconi-{uuid.uuid4().hex[:8]}")
    group: str = field(default_factory=lambda: f"marconi-{uuid.uuid4().hex[:8]}")
    log_level: str = "INFO"
    env: dict[str, str] = field(default_factory=dict)  # extra environment of every node
    # The shared node-to-node secret every node gets (``env`` may override it); a node does
    # not start without one unless ``insecure`` passes ``--insecure-cluster``.
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    insecure: bool = False
    broker: BrokerHandle | None = None
    nodes: dict[str, NodeProcess] = field(default_factory=dict)

    def start_broker(self) -> str:
        if self.bootstrap is None:
            self.broker = start_tansu(log_dir=self.root)
            self.bootstrap = self.broker.bootstrap
        return self.bootstrap

    def start_node(self, name: str) -> NodeProcess:
        """Start (or restart, same port and data) the node called ``name``."""
        assert self.bootstrap is not None, "start the broker first"
        node = self.nodes.get(name)
        if node is None:
            node = NodeProcess(name, free_port(), self.root / name, self.root / f"{name}.log")
            self.nodes[name] = node
        assert not node.alive(), f"{name} is running"
        env = dict(os.environ)
        env.pop("MARCONI_SESSION_TIMEOUT_MS", None)
        if self.session_timeout_ms is not None:
            env["MARCONI_SESSION_TIMEOUT_MS"] = str(self.session_timeout_ms)
        env.pop("MARCONI_CLUSTER_SECRET", None)
        if not self.insecure:
            env["MARCONI_CLUSTER_SECRET"] = self.secret
        env.update(self.env)
        insecure = ["--insecure-cluster"] if self.insecure else []
        with open(node.log_path, "ab") as out:
            node.process = subprocess.Popen(
                [sys.executable, "-m", "ops.cli", "--log-level", self.log_level, "node",
                 "--kafka", self.bootstrap, "--topic", self.topic,
                 "--partitions", str(self.partitions), "--group", self.group,
                 "--data", str(node.data), "--host", "127.0.0.1", "--port", str(node.port),
                 *insecure],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        return node

    def wait_listening(self, node: NodeProcess, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not node.alive():
                raise RuntimeError(f"{node.name} exited:\n{node.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{node.url}/_marconi/status", timeout=1.0)
                return
            time.sleep(0.1)
        raise TimeoutError(f"{node.name} is not listening:\n{node.log_tail()}")

    def kill(self, name: str) -> None:
        """SIGKILL: no leave-group, no flush — a crash."""
        node = self.nodes[name]
        assert node.process is not None
        node.process.kill()
        node.process.wait(timeout=10)

    def stop(self, name: str, timeout: float = 30.0) -> int:
        """SIGTERM: the node leaves the group and drains; returns its exit code."""
        node = self.nodes[name]
        assert node.process is not None
        node.process.terminate()
        try:
            return node.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait(timeout=10)
            raise

    def close(self) -> None:
        for node in self.nodes.values():
            if node.alive():
                assert node.process is not None
                node.process.kill()
                node.process.wait(timeout=10)
        if self.broker is not None:
            self.broker.kill()

    def running(self) -> list[NodeProcess]:
        return [n for n in self.nodes.values() if n.alive()]

    @staticmethod
    def status(node: NodeProcess, timeout: float = 2.0) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"{node.url}/_marconi/status", timeout=timeout)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def settled(self, names: Iterable[str] | None = None) -> bool:
        """Every running node (or those named) agrees on one map over exactly themselves,
        covering every partition, and serves (ready) what the map gives it."""
        nodes = [self.nodes[n] for n in names] if names is not None else self.running()
        statuses = [self.status(n) for n in nodes]
        if not nodes or any(s is None for s in statuses):
            return False
        maps = [s["owners"] for s in statuses if s is not None]
        if any(m != maps[0] for m in maps) or len(maps[0]) != self.partitions:
            return False
        urls = {n.url for n in nodes}
        if set(maps[0].values()) != urls:
            return False
        for node, st in zip(nodes, statuses, strict=True):
            assert st is not None
            mine = sorted(int(p) for p, a in maps[0].items() if a == node.url)
            if st["ready"] != mine or st["owned"] != mine:
                return False
        return True

    def wait_settled(self, names: Iterable[str] | None = None, timeout: float = 60.0) -> float:
        """Seconds until ``settled``; TimeoutError (with node logs) after ``timeout``."""
        wanted = list(names) if names is not None else None
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.settled(wanted):
                return time.monotonic() - start
            time.sleep(0.1)
        detail = "\n".join(f"--- {n.name}: {self.status(n)}\n{n.log_tail(1500)}"
                           for n in self.nodes.values())
        raise TimeoutError(f"cluster did not settle in {timeout:.0f} s\n{detail}")

    def owners(self, via: NodeProcess) -> dict[int, str]:
        st = self.status(via)
        assert st is not None
        return {int(p): a for p, a in st["owners"].items()}


def queue_on(partition: int, partitions: int, project: str, prefix: str = "q") -> str:
    """A queue name of ``project`` that lands on ``partition``."""
    from log import partition_for

    n = 0
    while True:
        name = f"{prefix}{n}"
        if partition_for(project, name, partitions) == partition:
            return name
        n += 1


def headers(project: str) -> dict[str, str]:
    return {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project}


# -- the benchmark ------------------------------------------------------------------------


async def _post_load(urls: Sequence[str], queues: Sequence[str], project: str,
                     seconds: float, workers: int) -> tuple[int, list[float]]:
    """Single-message posts from ``workers`` connections spread over ``urls``."""
    done = 0
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def worker(i: int) -> None:
        nonlocal done
        url = urls[i % len(urls)]
        hdrs = headers(project)
        async with httpx.AsyncClient(base_url=url, headers=hdrs, timeout=30) as client:
            n = 0
            while time.monotonic() < stop_at:
                queue = queues[(i + n) % len(queues)]
                n += 1
                t0 = time.perf_counter()
                r = await client.post(f"/v2/queues/{queue}/messages",
                                      json={"messages": [{"body": {"i": n}, "ttl": 3600}]})
                if r.status_code == 201:
                    done += 1
                    latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker(i) for i in range(workers)))
    return done, latencies


async def _latency(url: str, path: str, hdrs: dict[str, str], n: int) -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=url, headers=hdrs, timeout=30) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            r = await client.get(path)
            r.raise_for_status()
            out.append(time.perf_counter() - t0)
    return out


async def _post_latency(url: str, queue: str, hdrs: dict[str, str], n: int) -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=url, headers=hdrs, timeout=30) as client:
        for i in range(n):
            t0 = time.perf_counter()
            r = await client.post(f"/v2/queues/{queue}/messages",
                                  json={"messages": [{"body": i}]})
            r.raise_for_status()
            out.append(time.perf_counter() - t0)
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(cluster: LocalCluster, project: str, routing: str, seconds: float,
             workers: int) -> tuple[float, float, float, float, float, float]:
    """One load run: (msg/s, p50 ms, p99 ms, CPU s of nodes, of the broker, of the client)."""
    nodes = cluster.running()
    owners = cluster.owners(nodes[0])
    all_queues = [queue_on(p, cluster.partitions, project) for p in range(cluster.partitions)]

    async def load() -> list[tuple[int, list[float]]]:
        share = max(1, workers // len(nodes))
        runs = []
        for node in nodes:
            queues = all_queues if routing == "any" else [
                queue_on(p, cluster.partitions, project) for p, a in owners.items()
                if a == node.url]
            runs.append(_post_load([node.url], queues, project, seconds, share))
        return list(await asyncio.gather(*runs))

    pids = [n.process.pid for n in nodes if n.process is not None]
    broker = cluster.broker.process.pid if cluster.broker and cluster.broker.process else 0
    before = [_cpu_seconds(p) for p in pids], _cpu_seconds(broker), time.process_time()
    results = asyncio.run(load())
    cpu_nodes = sum(_cpu_seconds(p) for p in pids) - sum(before[0])
    cpu_broker = _cpu_seconds(broker) - before[1] if broker else 0.0
    cpu_client = time.process_time() - before[2]
    done = sum(r[0] for r in results)
    latencies = [x for r in results for x in r[1]]
    return (done / seconds, _ms(latencies, 0.5), _ms(latencies, 0.99), cpu_nodes, cpu_broker,
            cpu_client)


def _ms(values: list[float], q: float) -> float:
    values = sorted(values)
    return 1000 * values[min(len(values) - 1, int(q * len(values)))]


def failover_seconds(cluster: LocalCluster, victim: str, project: str) -> float:
    """Kill ``victim``; seconds until a read of each of its partitions succeeds elsewhere."""
    survivor = next(n for n in cluster.running() if n.name != victim)
    owned = [p for p, a in cluster.owners(survivor).items() if a == cluster.nodes[victim].url]
    queues = [queue_on(p, cluster.partitions, project) for p in owned]
    hdrs = headers(project)
    start = time.monotonic()
    cluster.kill(victim)
    pending = set(queues)
    with httpx.Client(base_url=survivor.url, headers=hdrs, timeout=15) as client:
        while pending:
            for q in list(pending):
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"/v2/queues/{q}/stats").status_code == 200:
                        pending.discard(q)
            if time.monotonic() - start > 120:
                raise TimeoutError(f"partitions of {victim} not served after 120 s")
            time.sleep(0.05)
    return time.monotonic() - start


def main(seconds: float = 6.0, workers: int = 24, partitions: int = 8,
         session_timeout_ms: int | None = None, kills: int = 3,
         failover_only: bool = False) -> None:
    """Print throughput with 1/2/3 nodes, the forwarding overhead and failover time (median
    of ``kills`` kill -9s; at the nodes' default group timing unless one is given)."""
    root = Path(tempfile.mkdtemp(prefix="marconi-cluster-bench-"))
    cluster = LocalCluster(root, partitions=partitions, session_timeout_ms=session_timeout_ms,
                           log_level="WARNING")
    project = "bench"
    try:
        cluster.start_broker()
        print(f"broker {cluster.bootstrap}; {partitions} partitions; {os.cpu_count()} cores")
        rows = []
        for count in (1, 2, 3):
            name = f"n{count}"
            cluster.wait_listening(cluster.start_node(name))
            cluster.wait_settled(timeout=90)
            if failover_only:
                continue
            for routing in ("any", "owner") if count > 1 else ("any",):
                rows.append((count, routing, *_measure(cluster, project, routing, seconds,
                                                       workers)))
        if not failover_only:
            _print_load(cluster, rows, project, seconds, workers, partitions)
        _print_failover(cluster, project, session_timeout_ms, kills)
    finally:
        cluster.close()


def _print_load(cluster: LocalCluster, rows: list[tuple[Any, ...]], project: str,
                seconds: float, workers: int, partitions: int) -> None:
    print("\nthroughput: single-message POST (acks=all, applied before 201), "
          f"{workers} connections, {seconds:.0f} s each.\n"
          "routing 'any': each connection sticks to one node whatever the queue (a load "
          "balancer; (N-1)/N of posts are forwarded); 'owner': each node gets only the "
          "queues it owns (a partition-aware client). CPU columns: seconds of CPU used "
          "during the run by all nodes, by the broker and by this load generator.")
    print(f"{'nodes':>5} {'routing':>7} {'msg/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'cpu nodes':>9} {'cpu tansu':>9} {'cpu client':>10}")
    for count, routing, rate, p50, p99, cpu_nodes, cpu_broker, cpu_client in rows:
        print(f"{count:>5} {routing:>7} {rate:>7.0f} {p50:>7.1f} {p99:>7.1f} "
              f"{cpu_nodes:>9.1f} {cpu_broker:>9.1f} {cpu_client:>10.1f}")

    node = cluster.nodes["n1"]
    owners = cluster.owners(node)
    local_p = next(p for p, a in owners.items() if a == node.url)
    remote_p = next(p for p, a in owners.items() if a != node.url)
    local_q = queue_on(local_p, partitions, project)
    remote_q = queue_on(remote_p, partitions, project)
    hdrs = headers(project)
    n = 300
    for q in (local_q, remote_q):
        asyncio.run(_latency(node.url, f"/v2/queues/{q}/stats", hdrs, 30))  # warm up
    local_r = asyncio.run(_latency(node.url, f"/v2/queues/{local_q}/stats", hdrs, n))
    remote_r = asyncio.run(_latency(node.url, f"/v2/queues/{remote_q}/stats", hdrs, n))
    local_w = asyncio.run(_post_latency(node.url, local_q, hdrs, n))
    remote_w = asyncio.run(_post_latency(node.url, remote_q, hdrs, n))
    print(f"\nforwarding overhead (one client, sequential, {n} requests, via {node.name}):")
    print(f"{'':<22} {'local p50':>10} {'fwd p50':>10} {'extra p50':>10} {'extra p99':>10}")
    for label, a, b in (("GET stats (read)", local_r, remote_r),
                        ("POST message (write)", local_w, remote_w)):
        print(f"{label:<22} {_ms(a, .5):>10.2f} {_ms(b, .5):>10.2f} "
              f"{_ms(b, .5) - _ms(a, .5):>10.2f} {_ms(b, .99) - _ms(a, .99):>10.2f}")


def _print_failover(cluster: LocalCluster, project: str, session_timeout_ms: int | None,
                    kills: int) -> None:
    from log.membership import SESSION_TIMEOUT_MS

    times = []
    for i in range(kills):
        victim = ("n3", "n2")[i % 2]
        times.append(failover_seconds(cluster, victim, project))
        cluster.wait_listening(cluster.start_node(victim))
        cluster.wait_settled(timeout=90)
    timing = (f"session timeout {session_timeout_ms} ms" if session_timeout_ms is not None
              else f"default settings (session timeout {SESSION_TIMEOUT_MS} ms)")
    print(f"\nfailover (kill -9 -> every partition of the victim served again), {timing}: "
          + ", ".join(f"{t:.1f} s" for t in times)
          + f"; median {statistics.median(times):.1f} s over {len(times)} kills")


if __name__ == "__main__":
    main()
