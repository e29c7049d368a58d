"""Kill -9 a real ``marconi serve`` under concurrent posts and claims, again and again.

Every acknowledged post must be there exactly once (unless a delete of it was sent), and every
acknowledged delete must stay deleted, across ``KILLS`` kills and restarts on one data
directory, each one landing on a server with posts and claims in flight. The suite runs 10
(each restart costs ~2 s of process start); ``CRASH_KILLS=50 CRASH_SEED=... pytest
tests/e2e/test_crash.py`` runs a longer one.
"""

from __future__ import annotations

import os
import random
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

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "crash"
QUEUE = "work"
KILLS = int(os.environ.get("CRASH_KILLS", "10"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "serve", "--data",
         str(data), "--port", str(port), *extra],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


class Ledger:
    """What the clients were told: only acknowledged facts go in."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posted: dict[str, str] = {}  # message id -> body key
        self.delete_sent: set[str] = set()
        self.deleted: set[str] = set()


def producer(base: str, stop: threading.Event, ledger: Ledger, tag: str,
             survive: bool = False) -> None:
    """Posts until ``stop``; a dead connection ends it, or with ``survive`` is retried (a
    killed front: another one answers)."""
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
    n = 0
    with httpx.Client(base_url=base, headers=headers, timeout=5) as client:
        while not stop.is_set():
            keys = [f"{tag}-{n}-{j}" for j in range(1 + n % 3)]
            n += 1
            try:
                r = client.post(f"/v2/queues/{QUEUE}/messages",
                                json={"messages": [{"body": {"k": k}} for k in keys]})
            except httpx.HTTPError:
                if survive:
                    time.sleep(0.02)
                    continue
                return  # the server died
            if r.status_code == 201:
                ids = [href.rsplit("/", 1)[-1] for href in r.json()["resources"]]
                with ledger.lock:
                    ledger.posted.update(zip(ids, keys, strict=True))


def consumer(base: str, stop: threading.Event, ledger: Ledger, survive: bool = False) -> None:
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
    with httpx.Client(base_url=base, headers=headers, timeout=5) as client:
        while not stop.is_set():
            try:
                r = client.post(f"/v2/queues/{QUEUE}/claims?limit=5",
                                json={"ttl": 60, "grace": 60})
                if r.status_code != 201:
                    time.sleep(0.01)
                    continue
                for msg in r.json()["messages"]:
                    mid = msg["id"]
                    with ledger.lock:
                        ledger.delete_sent.add(mid)
                    d = client.delete(msg["href"])
                    if d.status_code == 204:
                        with ledger.lock:
                            ledger.deleted.add(mid)
            except httpx.HTTPError:
                if survive:
                    time.sleep(0.02)
                    continue
                return


def everything(base: str) -> list[dict]:
    """Every message in the queue, claimed or not, through the public API."""
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
    out: list[dict] = []
    url = f"/v2/queues/{QUEUE}/messages?limit=20&echo=true&include_claimed=true"
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        while True:
            page = client.get(url).json()
            if not page["messages"]:
                return out
            out.extend(page["messages"])
            url = page["links"][0]["href"]


@pytest.mark.slow
def test_kill_9_under_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20261123")))
    data = tmp_path / "data"
    ledger = Ledger()
    for round_no in range(KILLS):
        port = free_port()
        proc = start_server(data, port)
        base = f"http://127.0.0.1:{port}"
        stop = threading.Event()
        threads = [threading.Thread(target=producer, args=(base, stop, ledger, f"r{round_no}p{i}"))
                   for i in range(4)]
        threads += [threading.Thread(target=consumer, args=(base, stop, ledger))
                    for _ in range(2)]
        for t in threads:
            t.start()
        before = len(ledger.posted)
        time.sleep(rng.uniform(0.3, 1.2))
        # the kill lands on a server under load: it has been acknowledging posts
        assert len(ledger.posted) > before, f"round {round_no}: no post acknowledged"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    port = free_port()
    proc = start_server(data, port)
    try:
        present = everything(f"http://127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    ids = [m["id"] for m in present]
    keys = [m["body"]["k"] for m in present]
    assert len(ids) == len(set(ids)), "a message id is listed twice"
    assert len(keys) == len(set(keys)), "a posted body is stored twice"
    assert len(ledger.posted) > 200, "the load generated too little to prove anything"
    lost = [mid for mid in ledger.posted if mid not in set(ids) and mid not in ledger.delete_sent]
    assert lost == [], f"{len(lost)} acknowledged messages lost"
    resurrected = ledger.deleted & set(ids)
    assert not resurrected, f"{len(resurrected)} acknowledged deletes came back"
    for m in present:  # and each surviving message has the body it was posted with
        if m["id"] in ledger.posted:
            assert m["body"]["k"] == ledger.posted[m["id"]]
    print(f"crash test: {KILLS} kills, {len(ledger.posted)} acknowledged posts, "
          f"{len(ledger.deleted)} acknowledged deletes, {len(present)} messages left, 0 lost, "
          "0 duplicated")


def children(pid: int) -> list[int]:
    """The front processes (``ops.front``) whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/stat").read_text()
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if int(raw[raw.rindex(")") + 2:].split()[1]) == pid and b"ops.front" in command:
                out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def wait_for(condition: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_of_a_front_then_of_the_core_loses_nothing(tmp_path: Path) -> None:
    """``serve --workers 2``: kill -9 one front under load (the other keeps serving, the core
    starts a new one), then kill -9 the core (the fronts stop); again and again: 4 rounds in
    the suite (each ~4 s of starts and waits), ``CRASH_ROUNDS=N`` for more."""
    rng = random.Random(int(os.environ.get("CRASH_SEED", "20261201")))
    data = tmp_path / "data"
    ledger = Ledger()
    for round_no in range(int(os.environ.get("CRASH_ROUNDS", "4"))):
        port = free_port()
        proc = start_server(data, port, "--workers", "2")
        stop = threading.Event()
        try:
            core = proc.pid
            wait_for(lambda c=core: len(children(c)) == 2, 30, "two fronts")
            base = f"http://127.0.0.1:{port}"
            threads = [threading.Thread(target=producer,
                                        args=(base, stop, ledger, f"f{round_no}p{i}", True))
                       for i in range(4)]
            threads += [threading.Thread(target=consumer, args=(base, stop, ledger, True))
                        for _ in range(2)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.3, 0.8))
            victim = rng.choice(children(core))
            os.kill(victim, signal.SIGKILL)
            before = len(ledger.posted)
            wait_for(lambda n=before: len(ledger.posted) > n + 20, 30,
                     "posts did not go on after a front was killed")
            wait_for(lambda c=core, v=victim: len([p for p in children(c)
                                                   if p != v and alive(p)]) == 2, 30,
                     "the killed front was not started again")
            time.sleep(rng.uniform(0.2, 0.6))
            fronts = children(core)
            os.kill(core, signal.SIGKILL)
            proc.wait(timeout=30)
            stop.set()
            for t in threads:
                t.join(timeout=30)
            wait_for(lambda fs=fronts: not any(alive(p) for p in fs), 30,
                     "fronts outlived their core")
        finally:
            stop.set()
            if proc.poll() is None:  # a failed round must not leave its server running
                proc.kill()
                proc.wait(timeout=30)
    port = free_port()
    proc = start_server(data, port, "--workers", "1")
    try:
        present = everything(f"http://127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    ids = [m["id"] for m in present]
    keys = [m["body"]["k"] for m in present]
    assert len(ids) == len(set(ids)), "a message id is listed twice"
    assert len(keys) == len(set(keys)), "a posted body is stored twice"
    assert len(ledger.posted) > 200, "the load generated too little to prove anything"
    lost = [mid for mid in ledger.posted if mid not in set(ids) and mid not in ledger.delete_sent]
    assert lost == [], f"{len(lost)} acknowledged messages lost"
    resurrected = ledger.deleted & set(ids)
    assert not resurrected, f"{len(resurrected)} acknowledged deletes came back"
    for m in present:
        if m["id"] in ledger.posted:
            assert m["body"]["k"] == ledger.posted[m["id"]]
