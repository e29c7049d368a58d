"""The request counter and latency histogram of ``/metrics`` are tallied by ``RequestTallies``
without prometheus_client's metric classes: the exposition is exactly what a ``Counter`` and
a ``Histogram`` fed the same requests expose (text, and the samples the fan-in sends)."""

from __future__ import annotations

import random
import re

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from service import metricsfanin
from service.metrics import (
    LATENCY,
    LATENCY_BUCKETS,
    LATENCY_DOC,
    REQUESTS,
    REQUESTS_DOC,
    RequestTallies,
    method_label,
    status_label,
)

CREATED = re.compile(rb"^(\w+_created\{.*\}) \S+$", re.M)


def reference() -> tuple[CollectorRegistry, Counter, Histogram]:
    """The two metrics as they were: prometheus_client's own classes."""
    registry = CollectorRegistry(auto_describe=False)
    requests = Counter(REQUESTS, REQUESTS_DOC, ["method", "route", "status"],
                       registry=registry)
    latency = Histogram(LATENCY, LATENCY_DOC, ["method", "route"], buckets=LATENCY_BUCKETS,
                        registry=registry)
    return registry, requests, latency


def test_the_exposition_is_prometheus_clients() -> None:
    old, requests, latency = reference()
    new = CollectorRegistry(auto_describe=False)
    tallies = RequestTallies()
    new.register(tallies)
    rng = random.Random(15)
    durations = [0.0, *LATENCY_BUCKETS, 1e-9, 0.0009999, 10.000001, 3600.0]
    for _ in range(3000):
        method = rng.choice(["GET", "POST", "DELETE", "BREW", "OPTIONS", "X" * 9])
        route = rng.choice(["/v2/queues/{queue_name}/messages", "unmatched", "/"])
        status = rng.choice([200, 201, 204, 400, 404, 503, 999, 42])
        seconds = rng.choice(durations) if rng.random() < 0.3 else rng.random() * 0.05
        tallies.observe(method, route, status, seconds)
        label = method_label(method)
        requests.labels(label, route, status_label(status)).inc()
        latency.labels(label, route).observe(seconds)
    ours, theirs = generate_latest(new), generate_latest(old)
    assert len(CREATED.findall(ours)) == len(CREATED.findall(theirs)) > 0
    assert CREATED.sub(rb"\1 T", ours) == CREATED.sub(rb"\1 T", theirs)
    assert metricsfanin.families_of(new) == metricsfanin.families_of(old)


def test_nothing_counted_exposes_no_series() -> None:
    old, _, _ = reference()
    new = CollectorRegistry(auto_describe=False)
    new.register(RequestTallies())
    assert generate_latest(new) == generate_latest(old)
