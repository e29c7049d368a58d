"""The framework floor of ``bench compare`` serves what the wrk phases send it, from as many
processes as asked, and stops with them (``ops/bench/floor.py``)."""

from __future__ import annotations

import signal
import subprocess

import httpx

from ops.bench import wrk_scripts
from ops.bench.compare import start_floor, wait_http
from ops.testbroker import free_port

HEADERS = {"Client-ID": wrk_scripts.CLIENT_ID, "X-Project-ID": wrk_scripts.PROJECT}


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(line) for line in out.split()]


def test_floor_answers_posts_and_gets_from_two_processes() -> None:
    port = free_port()
    proc = start_floor(port, processes=2)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base, timeout=30)
        posted = httpx.post(f"{base}/v2/queues/q/messages", headers=HEADERS,
                            content=b'{"messages": [{"ttl": 300, "body": 1}]}')
        assert posted.status_code == 201
        assert posted.json()["resources"]
        assert httpx.get(f"{base}/v2/queues/q/stats", headers=HEADERS).status_code == 200
        assert httpx.post(f"{base}/x", content=b"not json").status_code == 500
        assert len(_children(proc.pid)) == 1  # the sibling on the same port
    finally:
        siblings = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    for pid in siblings:
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0
