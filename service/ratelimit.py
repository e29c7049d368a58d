"""Per-project request rate limit: a token bucket per project, 429 with ``Retry-After``.

Admission, not state: it never reaches the log and answers nothing that depends on queue
state, so it runs in the pipeline on each node (a project that spreads over N nodes gets up
to N times the rate). Buckets live in memory, at most ``max_projects`` of them (least
recently used first out), so a caller inventing project ids cannot grow memory without
bound — an evicted project simply starts again with a full bucket.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response

from service.errors import error_response
from service.middleware import _Check, state
from service.types import ASGIApp, Scope

TOO_MANY = "Too Many Requests"


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; each request takes one."""

    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.level = burst
        self.stamp = now

    def take(self, now: float) -> float:
        """0 if a token was taken, else the seconds until one is available."""
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.rate


class RateLimit(_Check):
    """``rate`` requests a second per project (X-Project-ID after auth), bursts of ``burst``;
    ``rate=0`` turns it off. Runs after ``ProjectId``, so only well-formed requests count."""

    def __init__(self, app: ASGIApp, *, rate: float = 0.0, burst: int = 0,
                 max_projects: int = 100_000, clock: Callable[[], float] = time.monotonic,
                 **options: Any) -> None:
        super().__init__(app)
        self.rate = rate
        self.active = rate > 0
        self.burst = float(burst or max(1, math.ceil(2 * rate)))
        self.max_projects = max_projects
        self.clock = clock
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, scope: Scope, headers: Headers) -> Response | None:
        project = state(scope).get("project")
        if self.rate <= 0 or project is None:
            return None
        now = self.clock()
        bucket = self.buckets.get(project)
        if bucket is None:
            bucket = self.buckets[project] = TokenBucket(self.rate, self.burst, now)
            if len(self.buckets) > self.max_projects:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(project)
        wait = bucket.take(now)
        if wait == 0.0:
            return None
        retry = max(1, math.ceil(wait))
        return error_response(
            429, TOO_MANY,
            f"Project {project} is over its request rate of {self.rate:g} per second. "
            f"Please try again in {retry} seconds.", {"Retry-After": str(retry)})
