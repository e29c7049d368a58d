"""``/metrics`` label sets stay bounded whatever clients send (issue 9 item 4).

Before: the method label took any token, counted before authentication: 20,000 made-up
methods grew ``/metrics`` from 8 KB to 38 MB, a scrape took ~6 s and blocked every tenant.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

from service.metrics import KNOWN_METHODS, parse_samples
from tests.service.test_metrics import close, observed_app

JUNK = 2000


def _series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {(name, tuple(sorted(labels.items()))) for name, labels, _ in parse_samples(text)}


async def test_made_up_methods_and_paths_fold_into_bounded_labels(tmp_path: Path) -> None:
    o = await observed_app(tmp_path, auth="token")  # junk is unauthenticated: 401s
    try:
        rng = random.Random(9)
        for method in ("GET", "POST", "FOO"):  # every label combination junk can reach
            await o.client.request(method, "/v2/queues/q/messages")
            await o.client.request(method, f"/nowhere/{method}")
        first = (await o.client.get("/metrics")).text
        for i in range(JUNK):
            method = "".join(rng.choices(string.ascii_uppercase, k=10))
            path = f"/v2/queues/q{i}/messages" if i % 2 else f"/junk/{i}"
            r = await o.client.request(method, path)
            assert r.status_code in (401, 404, 405)
        text = (await o.client.get("/metrics")).text
        methods = {labels["method"] for name, labels, _ in parse_samples(text)
                   if name.startswith("marconi_http_requests")}
        assert methods <= KNOWN_METHODS | {"other"}
        routes = {labels["route"] for name, labels, _ in parse_samples(text) if "route" in labels}
        assert all(r == "unmatched" or r.startswith("/") for r in routes)
        assert not any("q1" in r or "junk" in r for r in routes)
        assert _series(text) == _series(first)  # 2,000 more junk requests: no new series
        assert len(text) < 3 * len(first)
        counted = sum(v for name, labels, v in parse_samples(text)
                      if name == "marconi_http_requests_total" and labels["method"] == "other")
        assert counted >= JUNK  # still counted, under one label
    finally:
        await close(o)


async def test_metrics_answers_get_and_head_only(tmp_path: Path) -> None:
    o = await observed_app(tmp_path)
    try:
        for method in ("POST", "DELETE", "CONNECT", "FOO", "PUT", "OPTIONS"):
            r = await o.client.request(method, "/metrics")
            assert r.status_code == 405, method
            assert r.headers["allow"] == "GET, HEAD"
            assert set(r.json()) == {"title", "description"}
        r = await o.client.head("/metrics")
        assert r.status_code == 200 and r.content == b""
    finally:
        await close(o)


async def test_scrape_token(tmp_path: Path) -> None:
    o = await observed_app(tmp_path, metrics_token="scrape-me")
    try:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "scrape-me"},
                        {"X-Auth-Token": "scrape-me"}):
            r = await o.client.get("/metrics", headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["title"] == "Unauthorized"
        r = await o.client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert r.status_code == 200
        assert "marconi_http_requests" in r.text
    finally:
        await close(o)


async def test_without_a_token_metrics_stay_open(tmp_path: Path) -> None:
    o = await observed_app(tmp_path)
    try:
        assert (await o.client.get("/metrics")).status_code == 200
    finally:
        await close(o)


