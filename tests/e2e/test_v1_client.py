"""End to end: python-zaqarclient 3.0.1 — the last release with the API 1 and 1.1 clients —
drives the producer / consumer / observer cycle against a real ``marconi serve``.

The project pins python-zaqarclient 4.7.0 (v2 only: ``Client(version=1)`` raises "Unknown
client version"), and one environment cannot hold two versions of a package. So a session
fixture installs 3.0.1 itself — ``pip install --no-deps --target`` into pytest's cache, the
same wheel from the same registry the rest of the test command uses — and each cycle runs in
a child interpreter whose ``PYTHONPATH`` puts 3.0.1 first; its dependencies (requests,
keystoneauth1, oslo.*) are the venv's, which 3.0.1's requirements accept. The client code
runs unchanged; the child checks it really is 3.0.1 before it starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.test_e2e import free_port, start_server, stop_server, wait_ready

ROOT = Path(__file__).resolve().parents[2]
CLIENT_VERSION = "3.0.1"
PROJECT = "e2e-v1-project"


@pytest.fixture(scope="session")
def old_client(request: pytest.FixtureRequest) -> Path:
    """A directory holding python-zaqarclient 3.0.1 (installed once, kept in the cache)."""
    target = Path(request.config.cache.mkdir(f"python-zaqarclient-{CLIENT_VERSION}"))
    if not (target / "zaqarclient" / "queues" / "v1" / "client.py").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--upgrade", "--target", str(target),
             f"python-zaqarclient=={CLIENT_VERSION}"], check=True, timeout=300)
    return target


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One ``marconi serve`` for both versions (admin_mode: v1.1's /health is routed)."""
    port = free_port()
    data = tmp_path_factory.mktemp("v1-client") / "data"
    proc = start_server(data, port, {"MARCONI_PARTITIONS": "4", "MARCONI_ADMIN_MODE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        yield url
        code, out = stop_server(proc)
        assert code == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def run_in_child(old_client: Path, url: str, version: str, name: str | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(old_client), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c",
         f"from tests.e2e.test_v1_client import cycle; cycle({url!r}, {version!r}, {name!r})"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(f"cycle {version} ok"), done.stdout


def test_api_v1_0_cycle(old_client: Path, server: str) -> None:
    run_in_child(old_client, server, "1")


def test_api_v1_1_cycle(old_client: Path, server: str) -> None:
    run_in_child(old_client, server, "1.1")


@pytest.mark.slow
@pytest.mark.kafka
def test_cycles_through_a_two_node_cluster(old_client: Path,
                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    """Both cycles against node ``a`` of a ``marconi node`` pair on the tansu broker, with
    the queues of each cycle on partitions ``b`` owns: every v1.x read is forwarded, every
    command admitted by the owner (v1.0's global project and client-less commands too)."""
    import httpx

    from log import partition_for
    from ops.bench.cluster import LocalCluster, queue_on

    partitions = 4
    cluster = LocalCluster(tmp_path_factory.mktemp("v1-cluster"), partitions=partitions,
                           env={"MARCONI_ADMIN_MODE": "1"})
    try:
        cluster.start_broker()
        a, b = cluster.start_node("a"), cluster.start_node("b")
        for node in (a, b):
            cluster.wait_listening(node)
        cluster.wait_settled(timeout=60)
        owners = cluster.owners(a)
        assert set(owners.values()) == {a.url, b.url}
        remote = {p for p, url in owners.items() if url == b.url}
        for version in ("1", "1.1"):
            name = queue_on(min(remote), partitions, PROJECT,
                            prefix=f"jobs-{version.replace('.', '-')}-")
            run_in_child(old_client, a.url, version, name)
        # v1.0's global namespace (no X-Project-ID, no Client-ID) on a queue b owns
        name = next(f"g{i}" for i in range(1000) if partition_for("", f"g{i}", partitions)
                    in remote)
        assert httpx.put(f"{a.url}/v1/queues/{name}").status_code == 201
        assert httpx.put(f"{a.url}/v1/queues/{name}/metadata", json={"k": 1}).status_code == 204
        assert httpx.get(f"{a.url}/v1/queues/{name}/metadata").json() == {"k": 1}
        assert httpx.head(f"{b.url}/v1/queues/{name}").status_code == 204
    finally:
        cluster.close()


# -- the cycle, run by the child interpreter with python-zaqarclient 3.0.1 ------------------


def _client(url: str, version: float) -> Any:
    from zaqarclient.queues import client

    conf = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": PROJECT}},
            "client_uuid": str(uuid.uuid4())}
    return client.Client(url, version=version, conf=conf)


def cycle(url: str, version_id: str, name: str | None = None) -> None:
    """Queues, metadata, stats, post, list, get, get many, delete, delete many, claim, query,
    renew, release, delete with claim id (and pop on 1.1), as three clients."""
    from importlib.metadata import version as dist_version

    import zaqarclient
    from zaqarclient.queues.v1 import core
    from zaqarclient.transport import errors

    assert dist_version("python-zaqarclient") == CLIENT_VERSION, zaqarclient.__file__
    v = 1 if version_id == "1" else 1.1
    producer, consumer, observer = _client(url, v), _client(url, v), _client(url, v)
    name = name or f"jobs-{version_id.replace('.', '-')}"

    # queues: create, existence, metadata
    queue = producer.queue(name, force_create=True)
    if v == 1:
        assert queue.exists() is True
        assert producer.queue("never-made", auto_create=False).exists() is False
        queue.metadata(new_meta={"owner": "e2e", "n": 1})
        assert observer.queue(name).metadata(force_reload=True) == {"owner": "e2e", "n": 1}
        queue.metadata(new_meta={"owner": "e2e-2"})  # PUT replaces the whole document
        assert queue.metadata(force_reload=True) == {"owner": "e2e-2"}
    else:
        req, trans = producer._request_and_transport()
        core.queue_create(trans, req, f"{name}-meta", metadata={"owner": "e2e"})
        assert observer.queue(f"{name}-meta").metadata(force_reload=True) == {"owner": "e2e"}
        assert queue.metadata(force_reload=True) == {}
    assert name in [q.name for q in observer.queues()]
    assert queue.stats["messages"] == {"claimed": 0, "free": 0, "total": 0}

    # producer: one batch of six
    posted = queue.post([{"body": {"n": i}, "ttl": 600} for i in range(6)])
    assert len(posted["resources"]) == 6
    assert ("partial" in posted) == (v == 1)
    ids = [href.rsplit("/", 1)[-1] for href in posted["resources"]]

    # observer: list (pages of two, following links), get, get many
    oqueue = observer.queue(name, auto_create=False)
    assert [m.body for m in oqueue.messages(limit=2).stream()] == [{"n": i} for i in range(6)]
    assert [m.body for m in queue.messages(echo=False)] == []  # the producer's own
    one = oqueue.message(ids[0])
    assert (one.body, one.ttl) == ({"n": 0}, 600)
    assert sorted(m.body["n"] for m in oqueue.messages(ids[1], ids[2])) == [1, 2]

    # delete one, delete many
    one.delete()
    oqueue.delete_messages(ids[1], ids[2])
    try:
        oqueue.message(ids[0])
        raise AssertionError("deleted message still readable")
    except errors.ResourceNotFound:
        pass
    stats = oqueue.stats["messages"]
    assert (stats["total"], stats["claimed"], stats["free"]) == (3, 0, 3)

    # consumer: claim, query, renew, delete with the claim id, release
    cqueue = consumer.queue(name, auto_create=False)
    claim = cqueue.claim(ttl=120, grace=60, limit=2)
    claimed = list(claim)
    assert [m.body for m in claimed] == [{"n": 3}, {"n": 4}]
    assert all(m.claim_id == claim.id for m in claimed)
    same = cqueue.claim(id=claim.id)
    assert (same.ttl, sorted(m.body["n"] for m in same)) == (120, [3, 4])
    claim.update(ttl=300, grace=60)
    assert cqueue.claim(id=claim.id).ttl == 300
    stats = oqueue.stats["messages"]
    assert (stats["total"], stats["claimed"], stats["free"]) == (3, 2, 1)
    try:
        req, trans = observer._request_and_transport()  # no claim id: refused
        core.message_delete(trans, req, name, ids[3])
        raise AssertionError("claimed message deleted without its claim")
    except errors.ForbiddenError:
        pass
    claimed[0].delete()
    claim.delete()
    assert [m.body for m in oqueue.messages(include_claimed=True)] == [{"n": 4}, {"n": 5}]
    second = cqueue.claim(ttl=60, grace=60, limit=5)
    assert [m.body for m in second] == [{"n": 4}, {"n": 5}]
    assert list(cqueue.claim(ttl=60, grace=60)) == []  # nothing left: 204
    second.delete()

    if v == 1.1:  # pop: removed and returned at once
        popped = list(cqueue.pop(count=2))
        assert sorted(m.body["n"] for m in popped) == [4, 5]
        assert oqueue.stats["messages"]["total"] == 0
        assert producer.health() is True
    else:
        assert producer.health() is True

    queue.delete()
    if v == 1:
        assert queue.exists() is False
    print(f"cycle {version_id} ok")
