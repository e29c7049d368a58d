"""Deliveries survive ``kill -9``: a real ``marconi serve`` notifies a real HTTP receiver of
300 messages, is killed mid-delivery and restarted, and every message still arrives.

The receiver fails the first attempt of every 10th message (HTTP 500), so retries from the
log are part of the run. Duplicates are allowed (at-least-once) but must be few: the attempts
in flight at the kill, at most the concurrency.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.receivers import HttpReceiver

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "notify-crash"
QUEUE = "events"
MESSAGES = 300
PER_SUBSCRIPTION = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MARCONI_NOTIFICATION_PRIVATE_TARGETS": "true",
           "MARCONI_NOTIFICATION_PER_SUBSCRIPTION": str(PER_SUBSCRIPTION),
           "MARCONI_PARTITIONS": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "serve", "--data",
         str(data), "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start")


class Flaky:
    """Fails the first attempt of every 10th message; counts the successful ones."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: set[int] = set()
        self.ok: dict[int, int] = {}
        self.payloads: dict[int, dict] = {}

    def __call__(self, hit: int, path: str, body: bytes) -> int:
        doc = json.loads(body)
        n = doc["body"]["n"]
        first = n not in self.seen
        self.seen.add(n)
        if first and n % 10 == 0:
            return 500
        self.ok[n] = self.ok.get(n, 0) + 1
        self.payloads[n] = doc
        return 200


@pytest.mark.slow
def test_every_message_is_delivered_across_a_kill_9(tmp_path: Path) -> None:
    flaky = Flaky()
    receiver = HttpReceiver(decide=flaky, delay=0.02).start()
    data = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
    proc = start_server(data, port)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            r = client.post(f"/v2/queues/{QUEUE}/subscriptions",
                            json={"subscriber": receiver.url + "/hook", "ttl": 3600})
            assert r.status_code == 201, r.text
            sid = r.json()["subscription_id"]
            for start in range(0, MESSAGES, 10):
                r = client.post(f"/v2/queues/{QUEUE}/messages", json={"messages": [
                    {"body": {"n": n, "text": f"message {n}"}} for n in range(start, start + 10)]})
                assert r.status_code == 201, r.text
        deadline = time.monotonic() + 60
        while len(receiver.snapshot()) < MESSAGES // 3:
            assert time.monotonic() < deadline, "deliveries did not start"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # mid-delivery
        proc.wait()
        delivered_before = len(flaky.ok)
        assert delivered_before < MESSAGES
        proc = start_server(data, port)
        deadline = time.monotonic() + 120
        while len(flaky.ok) < MESSAGES:
            assert time.monotonic() < deadline, f"only {len(flaky.ok)} delivered"
            time.sleep(0.05)
        assert sorted(flaky.ok) == list(range(MESSAGES))
        duplicates = sum(flaky.ok.values()) - MESSAGES
        print(f"\nnotify crash: {delivered_before} delivered before the kill, "
              f"{duplicates} duplicate deliveries, {len(receiver.snapshot())} attempts")
        assert duplicates <= 2 * PER_SUBSCRIPTION  # only what was in flight at the kill
        sample = flaky.payloads[7]
        assert sample == {"body": {"n": 7, "text": "message 7"}, "ttl": 3600,
                          "queue_name": QUEUE, "Message_Type": "Notification"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:
                stats = client.get(f"/v2/queues/{QUEUE}/subscriptions/{sid}").json()["delivery"]
                if stats["pending"] == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert stats["pending"] == 0
            assert stats["delivered"] == MESSAGES  # each delivery is reported done once
    finally:
        proc.kill()
        proc.wait()
        receiver.stop()
