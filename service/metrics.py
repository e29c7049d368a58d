"""Observability: Prometheus metrics and the per-partition state ``/v2/health`` reports.

Nothing here edits the log or the runner. Appends are counted by ``CountingLog``, a thin
wrapper the wiring hands to the runner and the gateway in place of the log (so Sweeps and
outbox moves are counted too). Projection state (applied offsets, quarantine, outbox) is read
at scrape time through the runner's public ``applied_offset`` and the store's queries, so a
scrape costs a few point reads and never waits on the log.

Each app gets its own ``CollectorRegistry``: two apps in one process (tests) never collide.
"""

from __future__ import annotations

import hmac
import logging
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from log import Log
from projections import queries
from projections.snapshots import SnapshotInfo
from projections.store import View
from service.middleware import RESPONSE_STATUS
from service.types import Receive, Scope, Send

access_logger = logging.getLogger("marconi.access")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SWEEP_TAG = b'"t":"sweep"'
OUTBOX_COUNT_CAP = 10_000  # a scrape reads at most this many outbox entries per partition


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """One partition as this node sees it: log end, projection position and leftovers."""

    partition: int
    owner: str
    applied_offset: int
    end_offset: int
    quarantined: int
    outbox: int
    # retention and snapshots (DESIGN.md §8): the first offset the log still holds, its bytes
    # on disk (None where the log cannot tell: Kafka), the newest snapshot's offset and its
    # age in log time (the partition's effective time minus the snapshot's), None: no snapshot
    start_offset: int = 0
    log_bytes: int | None = None
    snapshot_offset: int | None = None
    snapshot_age_s: float | None = None

    @property
    def lag(self) -> int:
        """Records in the log not yet applied (end - applied - 1, never negative)."""
        return max(0, self.end_offset - self.applied_offset - 1)

    def as_json(self) -> dict[str, Any]:
        return {"partition": self.partition, "owner": self.owner,
                "applied_offset": self.applied_offset, "end_offset": self.end_offset,
                "lag": self.lag, "quarantined": self.quarantined, "outbox": self.outbox,
                "start_offset": self.start_offset, "log_bytes": self.log_bytes,
                "snapshot_offset": self.snapshot_offset, "snapshot_age_s": self.snapshot_age_s}


class NodeStatus(Protocol):
    """What the node reports about its partitions (health detail, metrics, ``partitions``)."""

    def partition_status(self) -> list[PartitionStatus]:
        ...

    def applied_total(self) -> dict[int, int]:
        """Records applied per partition since this process started (the apply rate)."""
        ...


class CountingLog:
    """A ``Log`` that counts appends and remembers each partition's end offset.

    The end offsets let a scrape compute lag without awaiting the log: every append and every
    ``end_offset`` call passes through here, and ``refresh`` seeds them at start. In embedded
    mode this node is the only writer, so they are exact.
    """

    def __init__(self, log: Log) -> None:
        self._log = log
        self.appends = 0  # append calls
        self.records = 0  # records appended
        self.sweeps = 0  # Sweep commands appended
        self.ends: dict[int, int] = {}
        self.starts: dict[int, int] = {}  # log start per partition, as last seen
        self.sizes: dict[int, int] = {}  # bytes on disk per partition (logs that can tell)
        self._figures_at = float("-inf")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)

    @property
    def inner(self) -> Log:
        return self._log

    @property
    def partitions(self) -> int:
        return self._log.partitions

    @property
    def log_id(self) -> str:
        return self._log.log_id

    async def refresh(self) -> None:
        for p in range(self._log.partitions):
            await self.end_offset(p)
        await self.refresh_figures(min_interval=0.0)

    async def refresh_figures(self, *, min_interval: float = 1.0,
                              partitions: Iterable[int] | None = None) -> None:
        """Read the log start and size of each partition (at most every ``min_interval``
        seconds: a scrape must stay a few reads; KafkaLog's start is a broker request)."""
        now = time.monotonic()
        if now - self._figures_at < min_interval:
            return
        self._figures_at = now
        sizes = getattr(self._log, "log_bytes", None)
        for p in range(self._log.partitions) if partitions is None else partitions:
            await self.start_offset(p)
            if sizes is not None:
                self.sizes[p] = int(await sizes(p))

    async def start_offset(self, partition: int) -> int:
        start = int(await self._log.start_offset(partition))
        self.starts[partition] = start
        return start

    async def retain(self, partition: int, keep_from: int, older_than_ms: int) -> Any:
        result = await self._log.retain(partition, keep_from, older_than_ms)
        self.starts[partition] = int(result.start_offset)
        return result

    async def append(self, partition: int, records: Sequence[bytes]) -> list[int]:
        offsets = await self._log.append(partition, records)
        self.appends += 1
        self.records += len(records)
        self.sweeps += sum(1 for r in records if SWEEP_TAG in r[:32])
        if offsets:
            self._note_end(partition, offsets[-1] + 1)
        return offsets

    async def end_offset(self, partition: int) -> int:
        end = await self._log.end_offset(partition)
        self._note_end(partition, end)
        return end

    def _note_end(self, partition: int, end: int) -> None:
        if end > self.ends.get(partition, 0):
            self.ends[partition] = end

    async def read(self, partition: int, offset: int, max_records: int = 1000) -> Any:
        return await self._log.read(partition, offset, max_records)

    async def wait(self, partition: int, offset: int, timeout: float | None = None) -> int:
        end = await self._log.wait(partition, offset, timeout)
        self._note_end(partition, end)
        return end


class AppliedOffsets(Protocol):
    """The runner's public reading API (``projections.runner.Runner`` has it)."""

    @property
    def partitions(self) -> list[int]:
        ...

    def applied_offset(self, partition: int) -> int:
        ...


class LocalStatus:
    """``NodeStatus`` of an embedded node: every partition is owned here.

    ``runner`` and ``store`` are plain attributes so a live store swap (``ops/serve.py``)
    can point them at the new pair; ``applied_total`` keeps counting across the swap because
    offsets are positions in the one log.
    """

    def __init__(self, log: CountingLog, runner: AppliedOffsets, store: View, *,
                 owner: str = "local",
                 snapshot_of: Callable[[int], SnapshotInfo | None] | None = None) -> None:
        """``snapshot_of(p)``: the newest snapshot of ``p``; default: the one the runner's
        snapshot duty last took or found (``Runner.snapshotter.last``)."""
        self.log = log
        self.runner = runner
        self.store = store
        self.owner = owner
        self._snapshot_of = snapshot_of
        self._base = {p: runner.applied_offset(p) for p in runner.partitions}

    def _snapshot(self, partition: int) -> SnapshotInfo | None:
        if self._snapshot_of is not None:
            return self._snapshot_of(partition)
        duty = getattr(self.runner, "snapshotter", None)
        return duty.last.get(partition) if duty is not None else None

    async def refresh(self) -> None:
        """Fresh log starts and sizes for the next ``partition_status`` (scrapes, tools)."""
        await self.log.refresh_figures(partitions=self.runner.partitions)

    def partition_status(self) -> list[PartitionStatus]:
        out = []
        for p in self.runner.partitions:
            applied = self.runner.applied_offset(p)
            snap = self._snapshot(p)
            age = None
            if snap is not None:
                now = int(queries.partition_state(self.store, p)["time"])
                age = round(max(0, now - snap.time_ms) / 1000, 3)
            out.append(PartitionStatus(
                partition=p, owner=self.owner, applied_offset=applied,
                end_offset=max(self.log.ends.get(p, 0), applied + 1),
                quarantined=len(queries.quarantined(self.store, p)),
                outbox=len(queries.outbox(self.store, p, limit=OUTBOX_COUNT_CAP)),
                start_offset=self.log.starts.get(p, 0), log_bytes=self.log.sizes.get(p),
                snapshot_offset=None if snap is None else snap.offset, snapshot_age_s=age))
        return out

    def applied_total(self) -> dict[int, int]:
        return {p: self.runner.applied_offset(p) - self._base.get(p, -1)
                for p in self.runner.partitions}


class _StateCollector(Collector):
    """Reads log counters and partition state when Prometheus scrapes."""

    def __init__(self, log: CountingLog | None, status: NodeStatus | None) -> None:
        self.log = log
        self.status = status

    def collect(self) -> Iterable[Metric]:
        if self.log is not None:
            yield _counter("marconi_log_appends", "Append calls to the log", self.log.appends)
            yield _counter("marconi_log_appended_records", "Records appended to the log",
                           self.log.records)
            yield _counter("marconi_sweeps", "Sweep commands appended by this node",
                           self.log.sweeps)
        if self.status is None:
            return
        rows = self.status.partition_status()
        applied = self.status.applied_total()
        families = {
            "applied": GaugeMetricFamily("marconi_projection_applied_offset",
                                         "Last log offset the projection applied",
                                         labels=["partition"]),
            "end": GaugeMetricFamily("marconi_log_end_offset", "Offset after the last record",
                                     labels=["partition"]),
            "lag": GaugeMetricFamily("marconi_projection_lag",
                                     "Records in the log not yet applied (end - applied - 1)",
                                     labels=["partition"]),
            "quarantined": GaugeMetricFamily("marconi_quarantined_records",
                                             "Records that failed to decode or apply",
                                             labels=["partition"]),
            "outbox": GaugeMetricFamily("marconi_outbox_entries",
                                        "Dead-letter moves waiting to be sent",
                                        labels=["partition"]),
            "start": GaugeMetricFamily("marconi_log_start_offset",
                                       "First offset the log still holds (retention)",
                                       labels=["partition"]),
            "bytes": GaugeMetricFamily("marconi_log_bytes",
                                       "Bytes of the partition's log on disk",
                                       labels=["partition"]),
            "snapshot": GaugeMetricFamily("marconi_snapshot_offset",
                                          "Applied offset of the newest snapshot",
                                          labels=["partition"]),
            "snapshot_age": GaugeMetricFamily(
                "marconi_snapshot_age_seconds",
                "Log time between the newest snapshot and the partition's state",
                labels=["partition"]),
        }
        total = CounterMetricFamily("marconi_projection_records_applied",
                                    "Records applied since the process started",
                                    labels=["partition"])
        for row in rows:
            label = [str(row.partition)]
            families["applied"].add_metric(label, row.applied_offset)
            families["end"].add_metric(label, row.end_offset)
            families["lag"].add_metric(label, row.lag)
            families["quarantined"].add_metric(label, row.quarantined)
            families["outbox"].add_metric(label, row.outbox)
            families["start"].add_metric(label, row.start_offset)
            if row.log_bytes is not None:
                families["bytes"].add_metric(label, row.log_bytes)
            if row.snapshot_offset is not None:
                families["snapshot"].add_metric(label, row.snapshot_offset)
            if row.snapshot_age_s is not None:
                families["snapshot_age"].add_metric(label, row.snapshot_age_s)
            total.add_metric(label, applied.get(row.partition, 0))
        yield from families.values()
        yield total


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


# The method label takes these values and ``other``: a client can send any token as a
# method, and counting each one was a label set any unauthenticated caller could grow
# without bound (issue 9: 20,000 made-up methods grew /metrics to 38 MB and a scrape to 6 s).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
SCRAPE_METHODS = ("GET", "HEAD")


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


REQUESTS = "marconi_http_requests"
REQUESTS_DOC = "HTTP requests by method, route template and status"
LATENCY = "marconi_http_request_duration_seconds"
LATENCY_DOC = "HTTP request latency by route template"
_BOUNDS = (*LATENCY_BUCKETS, float("inf"))
_LE = tuple(floatToGoString(b) for b in _BOUNDS)


class RequestTallies(Collector):
    """The request counter and latency histogram (``REQUESTS``, ``LATENCY``), tallied in
    plain lists and exposed as prometheus_client's ``Counter`` and ``Histogram`` with these
    labels expose themselves: the same families, samples, order and values.

    Why not those classes: every request counted through them cost eleven Python calls
    and three lock round trips (``inc``, ``observe``, their observability checks, each
    value's mutex) — a request is counted on the event loop's thread, and so is every
    scrape (``Metrics.endpoint``), so nothing here needs a lock."""

    def __init__(self) -> None:
        # (method label, route, status label) -> [count, created]; (method label, route) ->
        # [created, sum, one count per bucket of ``_BOUNDS``]; what a (method, route, status)
        # counts into. Labels are bounded (methods, templates, statuses): so are these.
        self._counts: dict[tuple[str, str, str], list[Any]] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}
        self._by_request: dict[tuple[str, str, int], tuple[list[Any], list[float]]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        cells = self._by_request.get((method, route, status))
        if cells is None:
            cells = self._cells(method, route, status)
        cells[0][0] += 1
        latency = cells[1]
        latency[1] += seconds
        latency[2 + bisect_left(_BOUNDS, seconds)] += 1  # the first bound >= seconds

    def _cells(self, method: str, route: str, status: int) -> tuple[list[Any], list[float]]:
        label = method_label(method)
        now = time.time()  # a series is created when first counted, as a labels() child
        count = self._counts.setdefault((label, route, status_label(status)), [0, now])
        latency = self._latency.setdefault((label, route), [now, 0.0, *(0 for _ in _BOUNDS)])
        if method in KNOWN_METHODS:  # made-up methods are not kept one by one
            self._by_request[(method, route, status)] = (count, latency)
        return count, latency

    def collect(self) -> Iterable[Metric]:
        created = prometheus_metrics._use_created  # (read as the library's own metrics do)
        requests = Metric(REQUESTS, REQUESTS_DOC, "counter")
        for (method, route, status), (count, born) in self._counts.items():
            labels = {"method": method, "route": route, "status": status}
            requests.add_sample(REQUESTS + "_total", labels, float(count))
            if created:
                requests.add_sample(REQUESTS + "_created", dict(labels), born)
        latency = Metric(LATENCY, LATENCY_DOC, "histogram")
        for (method, route), (born, total, *buckets) in self._latency.items():
            acc = 0.0
            for le, n in zip(_LE, buckets, strict=True):
                acc += n
                latency.add_sample(LATENCY + "_bucket", {"method": method, "route": route,
                                                         "le": le}, acc)
            latency.add_sample(LATENCY + "_count", {"method": method, "route": route}, acc)
            latency.add_sample(LATENCY + "_sum", {"method": method, "route": route}, total)
            if created:
                latency.add_sample(LATENCY + "_created", {"method": method, "route": route},
                                   born)
        return [requests, latency]


class Metrics:
    """One app's metrics: request counters and latency, plus the node-state collector.

    Every label is bounded: methods fold into ``KNOWN_METHODS`` + ``other``, routes are
    route templates (``Routing``) or ``unmatched``, statuses are three digits. ``token``, when
    set, is required on scrapes (``Authorization: Bearer <token>``).
    """

    def __init__(self, *, log: CountingLog | None = None,
                 status: NodeStatus | None = None, token: str | None = None) -> None:
        self.token = token.encode() if token else None
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = RequestTallies()
        self.registry.register(self.requests)
        self.state = _StateCollector(log, status)
        self.registry.register(self.state)
        self.deliveries = Counter(
            "marconi_notification_attempts", "Notification delivery attempts by subscriber "
            "scheme, kind (notification, confirmation) and outcome",
            ["scheme", "kind", "outcome"], registry=self.registry)
        # A front of ``serve --workers N`` answers scrapes with the core's sum of every
        # process (``service.metricsfanin``); None: this registry alone.
        self.fan_in: Callable[[Metrics], Awaitable[bytes]] | None = None

    def delivery(self, item: Any, result: dict[str, Any]) -> None:
        """Count one delivery attempt (the runner's ``on_delivery`` hook)."""
        sub = getattr(item, "subscription", None) or {}
        scheme = str(sub.get("subscriber", "")).split(":", 1)[0].lower() or "none"
        if scheme not in ("http", "https", "mailto"):
            scheme = "other"
        kind = {"n": "notification", "c": "confirmation", "u": "unsubscribe"}.get(
            getattr(item, "kind", ""), "other")
        self.deliveries.labels(scheme, kind, str(result.get("r", "failed"))).inc()

    def attach(self, *, log: CountingLog | None = None,
               status: NodeStatus | None = None) -> None:
        """Point the node-state collector at the wiring's log and status (after start)."""
        if log is not None:
            self.state.log = log
        if status is not None:
            self.state.status = status

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.observe(method, route, status, seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def exposition(self) -> bytes:
        """What a scrape gets: this registry, or the sum over the processes (fan-in)."""
        if self.fan_in is not None:
            return await self.fan_in(self)
        return self.render()

    def require_token(self, token: str | None) -> None:
        """Scrapes need ``Authorization: Bearer <token>`` from now on (None: open)."""
        self.token = token.encode() if token else None

    def authorized(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
        return hmac.compare_digest(given, self.token)

    async def endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET``/``HEAD /metrics`` in Prometheus' text format (served through ``Mount``);
        405 for any other method (``CONNECT`` included), 401 without the scrape token."""
        json = b"application/json"
        headers: list[tuple[bytes, bytes]] = []
        if scope["path"] != "/metrics":
            body, status, ctype = b'{"title": "404 Not Found"}', 404, json
        elif scope["method"] not in SCRAPE_METHODS:
            body, status, ctype = (b'{"title": "Method not allowed", "description": '
                                   b'"/metrics answers GET and HEAD."}', 405, json)
            headers.append((b"allow", ", ".join(SCRAPE_METHODS).encode()))
        elif not self.authorized(scope):
            body, status, ctype = (b'{"title": "Unauthorized", "description": '
                                   b'"The request you have made requires authentication."}',
                                   401, json)
            headers.append((b"www-authenticate", b"Bearer"))
        else:
            refresh = getattr(self.state.status, "refresh", None)
            if refresh is not None:  # log starts and sizes are read here, not in collect()
                await refresh()
            body, status, ctype = await self.exposition(), 200, CONTENT_TYPE_LATEST.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype),
                                (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})


UNMATCHED = "unmatched"


class RequestMetrics:
    """Times every HTTP request and counts it by route template and status; writes the
    access log line when ``access_log`` is on (off by default: a line per request costs
    throughput and fills undrained pipes). Outermost in the stack, so it sees the final
    status (500s included).

    The route template comes from ``scope["state"]["route"]`` (set by ``Routing``): labels
    stay bounded whatever paths clients send. The status is the one ``RequestId`` saw start
    (``service.middleware.RESPONSE_STATUS``); none started counts as 500.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Any], *, metrics: Metrics,
                 access_log: bool = False, **options: Any) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        st = scope.setdefault("state", {})
        try:
            await self.app(scope, receive, send)
        finally:
            elapsed = time.perf_counter() - started
            status = st.get(RESPONSE_STATUS, 500)  # RequestId, inside, records it
            route = st.get("route", UNMATCHED)
            self.metrics.observe(scope["method"], route, status, elapsed)  # labels bounded
            if self.access_log:
                access_logger.info(
                    "%s %s %d %.1fms", scope["method"], scope["path"], status,
                    elapsed * 1000,
                    extra={"request_id": st.get("request_id"), "method": scope["method"],
                           "path": scope["path"], "route": route, "status": status,
                           "duration_ms": round(elapsed * 1000, 3)})


def parse_samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of each sample in a text exposition (for tests and tools)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            yield sample.name, dict(sample.labels), float(sample.value)
