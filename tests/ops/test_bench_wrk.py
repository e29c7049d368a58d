"""The claim+delete wrk script counts what the server did, not what it sent: against a real
``marconi serve`` whose rate limit refuses some requests (429), ``deleted`` is exactly the
number of messages that left the queue, and the refusals are counted as ``failed``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ops.bench import wrk_scripts
from ops.bench.compare import claim_counts
from ops.testbroker import free_port

ROOT = Path(__file__).resolve().parents[2]
HEADERS = {"Client-ID": wrk_scripts.CLIENT_ID, "X-Project-ID": wrk_scripts.PROJECT}
QUEUE = "wrk-counts"
POSTS = 30  # of 10 messages each


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("wrk")
    port = free_port()
    env = {**os.environ, "MARCONI_RATE_LIMIT": "20"}  # requests/s per project: many 429s
    with open(root / "server.log", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "serve", "--data", str(root / "data"),
             "--host", "127.0.0.1", "--port", str(port), "--partitions", "2",
             "--workers", "1"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, (root / "server.log").read_text()
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def total(url: str) -> int:
    r = httpx.get(f"{url}/v2/queues/{QUEUE}/stats", headers=HEADERS)
    assert r.status_code == 200, r.text
    return int(r.json()["messages"]["total"])


def test_claim_delete_counts_deletes_answered_204_and_refusals(url: str,
                                                              tmp_path: Path) -> None:
    body = {"messages": [{"ttl": 3600, "body": {"n": i}} for i in range(10)]}
    for _ in range(POSTS):
        while (r := httpx.post(f"{url}/v2/queues/{QUEUE}/messages", json=body,
                               headers=HEADERS)).status_code == 429:
            time.sleep(0.05)
        assert r.status_code == 201, r.text
    before = total(url)
    script = tmp_path / "claim.lua"
    script.write_text(wrk_scripts.CLAIM_DELETE)
    out = subprocess.run(["wrk", "-t4", "-c4", "-d3s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "WRK_QUEUE": QUEUE}).stdout
    counts = claim_counts(out)
    time.sleep(1.1)  # the bucket refills: the stats read is not refused
    assert counts["overlaps"] == 0, out
    assert counts["failed"] > 0, out  # the rate limit refused some claims and deletes
    assert counts["deleted"] == before - total(url), out
    assert counts["deletes"] > counts["deleted"], out  # sent is not done
    assert counts["claimed"] >= counts["deleted"] > 0, out
