"""One ``/metrics`` for ``marconi serve --workers N``: the fronts' request counters and the
core's log, projection and delivery figures in a single scrape.

Each front counts the requests it serves; the core owns the log, the runner and the store.
A scrape lands on one front (the kernel picks it), so that front asks the core over the wire
(``corewire.METRICS``), sending its own samples; the core keeps the latest samples of every
front (each also sends them every ``PUSH_INTERVAL_S``) and answers the sum: counters and
histogram buckets of the fronts added up, plus the core's own families. The core's own HTTP
request families are left out: in this shape the core only serves requests a front forwarded
to it, and that front has counted them already.

The figures of another front are at most ``PUSH_INTERVAL_S`` old; a front that restarts
starts its counters from zero (Prometheus reads that as a counter reset, as for a restarted
process).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

PUSH_INTERVAL_S = 1.0
FRONT_ONLY_PREFIX = "marconi_http_"  # counted by the fronts; the core's copy is left out

Family = dict[str, Any]  # {"name", "doc", "type", "samples": [[name, labels, value], ...]}


def families_of(registry: CollectorRegistry, *, skip_prefix: str | None = None) -> list[Family]:
    """A registry's families as plain data (``_created`` samples dropped: they do not add)."""
    out = []
    for metric in registry.collect():
        if skip_prefix is not None and metric.name.startswith(skip_prefix):
            continue
        out.append({"name": metric.name, "doc": metric.documentation, "type": metric.type,
                    "samples": [[s.name, s.labels, s.value] for s in metric.samples
                                if not s.name.endswith("_created")]})
    return out


def encode(families: list[Family]) -> bytes:
    return orjson.dumps(families)


def decode(payload: bytes) -> list[Family]:
    families: list[Family] = orjson.loads(payload)
    return families


def merge(sources: Iterable[Sequence[Family]]) -> list[Metric]:
    """Families with the same name merged, samples with the same name and labels summed."""
    merged: dict[str, tuple[Family, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
    for families in sources:
        for fam in families:
            _, sums = merged.setdefault(fam["name"], (fam, {}))
            for name, labels, value in fam["samples"]:
                key = (name, tuple(sorted(labels.items())))
                sums[key] = sums.get(key, 0.0) + float(value)
    out = []
    for fam, sums in merged.values():
        metric = Metric(fam["name"], fam["doc"], fam["type"])
        for (name, labels), value in sums.items():
            metric.add_sample(name, dict(labels), value)
        out.append(metric)
    return out


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def render(metrics: list[Metric]) -> bytes:
    """Prometheus' text format of already merged families."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(metrics))
    return generate_latest(registry)
