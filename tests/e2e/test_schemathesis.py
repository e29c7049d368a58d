"""Schemathesis against a real ``marconi serve`` (free loopback port), from the document the
server itself publishes: no 5xx, and every 4xx in Zaqar's ``{"title", "description"}`` shape.

Bounded: ``CASES`` requests over every operation, positive and negative (about ten per
operation: all 48 are reached, with 2xx and 4xx answers). The longer runs are the same code
(``ops/bench/fuzz.py``): ``MARCONI_FUZZ_CASES=2000 pytest tests/e2e/test_schemathesis.py``
(the suite's size before it had to fit CI's budget), or ``marconi bench fuzz --cases 10000``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ops.bench import fuzz

CASES = int(os.environ.get("MARCONI_FUZZ_CASES", "500"))


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_malformed_4xx(tmp_path: Path) -> None:
    with fuzz.live_server(tmp_path) as base:
        report = fuzz.run(base, cases=CASES, seed=7)
    print(report.summary())
    assert report.server_error_count == 0, report.summary()
    assert report.bad_4xx_count == 0, report.summary()
    # the run reached the handlers, not only the first checks
    assert report.requests >= CASES * 0.8
    assert report.operations >= 30 and len(report.by_operation) == report.operations
    for status in (200, 201, 204, 400, 404):
        assert report.statuses[status] > 0, report.summary()


def test_error_shape_rule_can_fail() -> None:
    """The 4xx rule the run applies rejects what is not Zaqar's shape."""
    json_type = {"content-type": ["application/json"]}
    ok = fuzz.error_body_problem
    assert ok(400, "GET", json_type, b'{"title": "t", "description": "d"}') is None
    assert ok(404, "GET", json_type, b'{"title": "404 Not Found"}') is None
    assert ok(406, "GET", {}, b"") is None
    assert ok(400, "HEAD", {}, b"") is None
    assert ok(400, "GET", json_type, b'{"title": "t"}') == "no description"
    assert ok(400, "GET", json_type, b'{"detail": "x"}') == "no string title"
    assert ok(400, "GET", json_type, b'{"title": "t", "description": "d", "x": 1}')
    assert ok(400, "GET", {"content-type": ["text/plain"]}, b"oops")
    assert ok(406, "GET", {}, b"{}") == "body should be empty"
