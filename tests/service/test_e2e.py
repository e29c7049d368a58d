"""End to end: a real ``marconi serve`` process driven by python-zaqarclient, then SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from zaqarclient.queues.v2 import client as zclient
from zaqarclient.transport import errors as zerrors

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "e2e-project"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data: Path, port: int, env_extra: dict[str, str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_extra}
    return subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "serve", "--data", str(data), "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"server exited early: {output}")
        try:
            if httpx.get(f"{url}/", timeout=0.5).status_code == 300:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("server did not become ready")


def stop_server(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"server did not stop on SIGTERM:\n{out}") from None
    return proc.returncode, out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    port = free_port()
    data = tmp_path / "data"
    proc = start_server(data, port, {"MARCONI_SECRET_KEY": "e2e-secret",
                                     "MARCONI_PARTITIONS": "4",
                                     # the subscriber below is a loopback URL
                                     "MARCONI_NOTIFICATION_PRIVATE_TARGETS": "true"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url, proc, data
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def make_client(url: str, **auth: str) -> zclient.Client:
    conf = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": PROJECT}},
            "client_uuid": str(uuid.uuid4())}
    if auth:
        conf["auth_opts"] = {"backend": "signed-url", "options": {**auth,
                                                                  "os_project_id": PROJECT}}
    return zclient.Client(url, version=2, conf=conf)


def test_producer_consumer_observer_cycle(server: tuple[str, subprocess.Popen[str], Path]) -> None:
    url, proc, _ = server
    producer = make_client(url)
    consumer = make_client(url)
    observer = make_client(url)
    assert producer.ping() is True
    assert "rel/queues" in producer.homedoc()["resources"]

    queue = producer.queue("e2e-q", force_create=True)
    assert queue.exists() is True  # HEAD answers 405, which the client counts as existing

    # producer
    queue.post([{"body": {"n": i}, "ttl": 600} for i in range(5)])
    names = [q.name for q in observer.queues(limit=20)[0]]
    assert "e2e-q" in names

    # observer lists (echo off hides nothing: another client id posted them)
    listed = [m.body for m in observer.queue("e2e-q").messages(echo=False)]
    assert listed == [{"n": i} for i in range(5)]

    # consumer: claim with ttl and grace, then delete one message with its claim id
    cqueue = consumer.queue("e2e-q")
    claim = cqueue.claim(ttl=120, grace=60, limit=2)
    claimed = list(claim)
    assert [m.body for m in claimed] == [{"n": 0}, {"n": 1}]
    assert all(m.claim_id == claim.id for m in claimed)
    claimed[0].delete()
    again = list(cqueue.claim(id=claim.id))
    assert [m.body for m in again] == [{"n": 1}]
    claim.update(ttl=300, grace=60)
    assert cqueue.claim(id=claim.id).ttl == 300

    stats = observer.queue("e2e-q").stats["messages"]
    assert (stats["total"], stats["claimed"], stats["free"]) == (4, 1, 3)
    assert set(stats["oldest"]) == {"age", "created", "href"}

    # metadata get / set (the client PATCHes with replace/add/remove)
    queue.metadata(new_meta={"owner": "e2e", "_default_message_ttl": 900})
    meta = queue.metadata(force_reload=True)
    assert meta["owner"] == "e2e" and meta["_default_message_ttl"] == 900

    # subscriptions
    sub = producer.subscription("e2e-q", subscriber="http://127.0.0.1:9/hook", ttl=3600,
                                options={"name": "x"})
    subs = list(producer.subscriptions("e2e-q"))
    assert [s.id for s in subs] == [sub.id]
    assert subs[0].subscriber == "http://127.0.0.1:9/hook"
    sub.delete()
    assert list(producer.subscriptions("e2e-q")) == []

    # signed URL: a holder can list but not delete
    signed = queue.signed_url(paths=["messages"], methods=["GET"])
    assert signed["project"] == PROJECT
    holder = make_client(url, **{k: signed[k] for k in ("paths", "methods", "expires",
                                                      "signature")})
    visible = [m.body for m in holder.queue("e2e-q").messages(echo=True)]
    assert {"n": 2} in visible
    with pytest.raises(zerrors.ResourceNotFound):
        holder.queue("e2e-q").delete()

    # pop the free messages, then delete the queue
    popped = queue.pop(count=3)
    assert sorted(m.body["n"] for m in popped) == [2, 3, 4]
    queue.delete()
    assert "e2e-q" not in [q.name for q in observer.queues()[0]]

    code, out = stop_server(proc)
    assert code == 0, out
    assert "stopped cleanly" in out
    assert "Traceback" not in out


def test_restart_resumes_on_the_same_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(data, port, {"MARCONI_PARTITIONS": "2"})
    try:
        wait_ready(url, proc)
        make_client(url).queue("kept", force_create=True).post([{"body": "persisted"}])
        assert stop_server(proc)[0] == 0
        proc = start_server(data, port, {})  # the log keeps its 2 partitions
        wait_ready(url, proc)
        bodies = [m.body for m in make_client(url).queue("kept").messages(echo=True)]
        assert bodies == ["persisted"]
        assert stop_server(proc)[0] == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_serve_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = start_server(data, free_port(), {"MARCONI_AUTH": "kerberos"})
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "auth must be one of" in out
    port = free_port()
    proc = start_server(data, port, {"MARCONI_PARTITIONS": "2"})
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
    finally:
        assert stop_server(proc)[0] == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "serve", "--data", str(data), "--port",
         str(free_port()), "--partitions", "3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "cannot serve" in result.stderr and "partitions" in result.stderr
