"""Scaled-out mode with real processes: the tansu broker and ``marconi node`` processes.

One cluster (broker + nodes a, b, c on loopback; 8 partitions; 6 s session timeout) serves
the whole module, in order: routing and forwarding, kill -9 under load with a restart,
graceful scale-up and scale-down, a notification failover, every node's partitions against a
rebuild from the log, and last the drain of the kill -9 load: messages held by claims whose
answer a kill lost come back only after the claim's 60 s TTL, so that wait runs after the
tests in between instead of idling inside the kill test.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from zaqarclient.queues.v2 import client as zclient

from log.kafkalog import KafkaLog
from ops.bench.cluster import LocalCluster, NodeProcess, headers, queue_on
from projections.memstore import MemoryStore
from projections.runner import digest_partition, fold
from tests.support.receivers import HttpReceiver

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

PARTITIONS = 8
SESSION_MS = 6000
CLAIM_TTL = 60  # Zaqar's minimum; longer than any delete retry below
VICTIMS = ("c", "a")
SECRET = uuid.uuid4().hex


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("cluster"), partitions=PARTITIONS,
                     session_timeout_ms=SESSION_MS,
                     env={"MARCONI_ADMIN_MODE": "true", "MARCONI_CLUSTER_SECRET": SECRET,
                          "MARCONI_NOTIFICATION_PRIVATE_TARGETS": "true"})  # 127.0.0.1 hooks
    try:
        c.start_broker()
        for name in ("a", "b", "c"):
            c.start_node(name)
        for node in list(c.nodes.values()):
            c.wait_listening(node)
        print(f"\n3 nodes settled in {c.wait_settled(timeout=60):.1f} s")
        yield c
    finally:
        c.close()


def post_when_served(url: str, timeout: float = 30, **kwargs: object) -> httpx.Response:
    """POST, retrying the 503 "try again in a few seconds" a partition answers while the
    group still hands it over (right after a membership change), as a client would."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.post(url, **kwargs)  # type: ignore[arg-type]
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(0.5)


def owned_by(cluster: LocalCluster, node: NodeProcess) -> list[int]:
    return sorted(p for p, a in cluster.owners(node).items() if a == node.url)


def test_any_node_answers_for_any_queue(cluster: LocalCluster) -> None:
    a, b, c = (cluster.nodes[n] for n in ("a", "b", "c"))
    nodes = [a, b, c]
    project = "routing"
    h = headers(project)
    queues = [queue_on(p, PARTITIONS, project) for p in range(PARTITIONS)]
    owners = cluster.owners(a)
    assert set(owners.values()) == {a.url, b.url, c.url}
    for i, q in enumerate(queues):
        assert httpx.put(f"{nodes[i % 3].url}/v2/queues/{q}", headers=h).status_code == 201
        r = httpx.post(f"{nodes[(i + 1) % 3].url}/v2/queues/{q}/messages", headers=h,
                       json={"messages": [{"body": {"q": q, "n": n}} for n in range(3)]})
        assert r.status_code == 201, r.text
        r = httpx.get(f"{nodes[(i + 2) % 3].url}/v2/queues/{q}/stats", headers=h)
        assert r.status_code == 200 and r.json()["messages"]["total"] == 3, r.text
        r = httpx.get(f"{nodes[(i + 1) % 3].url}/v2/queues/{q}/messages",
                      headers={**h, "Client-ID": str(uuid.uuid4())})
        assert [m["body"]["n"] for m in r.json()["messages"]] == [0, 1, 2]
    # a forwarded read keeps its query string and headers (echo, paging, Client-ID)
    poster = {**h, "Client-ID": str(uuid.uuid4())}
    remote_q = next(q for i, q in enumerate(queues) if owners[i] != a.url)
    httpx.post(f"{a.url}/v2/queues/{remote_q}/messages", headers=poster,
               json={"messages": [{"body": "mine"}]}).raise_for_status()
    r = httpx.get(f"{a.url}/v2/queues/{remote_q}/messages", headers=poster,
                  params={"echo": "true", "limit": 2})
    assert r.status_code == 200 and len(r.json()["messages"]) == 2
    assert "marker=" in r.json()["links"][0]["href"]
    r = httpx.get(f"{a.url}/v2/queues/{remote_q}/messages", headers=poster)
    assert "mine" not in [m["body"] for m in r.json()["messages"]]  # echo off: not mine

    # list queues gathers every partition, whichever node is asked
    for node in nodes:
        r = httpx.get(f"{node.url}/v2/queues", headers=h,
                      params={"limit": 20, "with_count": "true"})
        assert r.status_code == 200, r.text
        assert [q["name"] for q in r.json()["queues"]] == sorted(queues)
        assert r.json()["count"] == PARTITIONS

    # a forwarded request is never forwarded again: 503 with Retry-After and Zaqar's body
    remote = next(p for p, owner in owners.items() if owner != a.url)
    r = httpx.get(f"{a.url}/v2/queues/{queues[remote]}/stats",
                  headers={**h, "x-marconi-forwarded": "test"})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert set(r.json()) == {"title", "description"}

    # node-to-node paths need the cluster secret
    for wrong in ({}, {"x-marconi-cluster-secret": "guess"}):
        r = httpx.post(f"{a.url}/_marconi/execute", content=b"{}", headers=wrong)
        assert r.status_code == 403
        r = httpx.get(f"{a.url}/_marconi/queues", params={"partition": "0"}, headers=wrong)
        assert r.status_code == 403

    # python-zaqarclient through c on a queue owned elsewhere
    foreign = next(p for p, owner in owners.items() if owner != c.url)
    name = queue_on(foreign, PARTITIONS, project, prefix="zc")
    conf = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": project}},
            "client_uuid": str(uuid.uuid4())}
    client = zclient.Client(c.url, version=2, conf=conf)
    queue = client.queue(name, force_create=True)
    queue.post([{"body": {"n": i}, "ttl": 600} for i in range(4)])
    claim = queue.claim(ttl=120, grace=60, limit=3)
    got = list(claim)
    assert [m.body for m in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
    for m in got:
        m.delete()
    stats = queue.stats["messages"]
    assert (stats["total"], stats["claimed"], stats["free"]) == (1, 0, 1)
    assert name in [q.name for q in client.queues(limit=20)[0]]


def test_admin_health_probe_passes_on_every_node(cluster: LocalCluster) -> None:
    """The probe's scratch queue lands on any partition: remote ones are read from the owner
    (the probe is not a per-queue request that could be replayed there)."""
    for node in ("a", "b", "c"):
        for _ in range(4):
            r = httpx.get(f"{cluster.nodes[node].url}/v2/health", timeout=15,
                          headers={**headers("health"), "X-Roles": "admin"})
            assert r.status_code == 200, r.text
            ops = r.json()["operation_status"]
            assert all(op["succeeded"] for op in ops.values()), (node, ops)
        # the health detail lists the partitions this node serves, owned by its address
        url = cluster.nodes[node].url
        rows = r.json()["partitions"]
        assert sorted(int(p) for p in rows) == owned_by(cluster, cluster.nodes[node])
        assert all(row["owner"] == url for row in rows.values())
        metrics = httpx.get(f"{url}/metrics", timeout=15)
        assert metrics.status_code == 200 and "marconi_projection_applied_offset" in metrics.text


def test_dead_letters_move_between_owners(cluster: LocalCluster) -> None:
    """A dead-letter move from a partition owned by one node into one owned by another."""
    a = cluster.nodes["a"]
    owners = cluster.owners(a)
    project = "dlq"
    h = headers(project)
    src_p = next(p for p, o in owners.items() if o == a.url)
    dst_p = next(p for p, o in owners.items() if o != a.url)
    src = queue_on(src_p, PARTITIONS, project, prefix="src")
    dst = queue_on(dst_p, PARTITIONS, project, prefix="dst")
    via = cluster.nodes["b"].url
    assert httpx.put(f"{via}/v2/queues/{dst}", headers=h).status_code == 201
    r = httpx.put(f"{via}/v2/queues/{src}", headers=h,
                  json={"_max_claim_count": 1, "_dead_letter_queue": dst})
    assert r.status_code == 201
    httpx.post(f"{via}/v2/queues/{src}/messages", headers=h,
               json={"messages": [{"body": "doomed"}]}).raise_for_status()
    r = httpx.post(f"{via}/v2/queues/{src}/claims", headers=h, json={"ttl": 60})
    claim_id = r.json()["messages"][0]["href"].split("claim_id=")[1]
    assert httpx.delete(f"{via}/v2/queues/{src}/claims/{claim_id}",
                        headers=h).status_code == 204
    r = httpx.post(f"{via}/v2/queues/{src}/claims", headers=h, json={"ttl": 60})
    assert r.status_code == 204  # claimed once already: moved instead of delivered
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = httpx.get(f"{cluster.nodes['c'].url}/v2/queues/{dst}/messages",
                      headers={**h, "Client-ID": str(uuid.uuid4())})
        if r.status_code == 200 and r.json().get("messages"):
            assert [m["body"] for m in r.json()["messages"]] == ["doomed"]
            return
        time.sleep(0.1)
    pytest.fail("the dead letter never arrived in the other owner's queue")


# -- kill -9 under load ------------------------------------------------------------------


@dataclass
class Ledger:
    """What the clients were told. Only acknowledged facts count as promises."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, str] = field(default_factory=dict)  # message id -> key
    # message id -> [(claim id, sent, received)] for claims the client was told about
    claims: dict[str, list[tuple[str, float, float]]] = field(
        default_factory=lambda: defaultdict(list))
    deleted: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)

    def saw(self, what: str, r: httpx.Response) -> None:
        with self.lock:
            self.statuses[r.status_code] += 1
            if r.status_code == 503:
                body = r.json()
                if r.headers.get("retry-after") is None or set(body) != {"title",
                                                                          "description"}:
                    self.bad.append(f"{what}: 503 without Retry-After/body: {r.text}")
            elif r.status_code not in (200, 201, 204):
                self.bad.append(f"{what}: {r.status_code} {r.text[:200]}")


class Client:
    """A sync client that moves to its next node when one stops answering (like an LB)."""

    def __init__(self, urls: list[str], project: str, ledger: Ledger) -> None:
        self.urls = urls
        self.i = 0
        self.ledger = ledger
        # a node answers within its request timeout (10 s) plus one forward
        self.http = httpx.Client(headers=headers(project), timeout=15)

    def request(self, method: str, path: str, **kw: object) -> httpx.Response | None:
        url = self.urls[self.i % len(self.urls)]
        try:
            r = self.http.request(method, url + path, **kw)  # type: ignore[arg-type]
        except httpx.TimeoutException as exc:  # a hang past the bounded timeout
            with self.ledger.lock:
                self.ledger.bad.append(f"{method} {path} via {url}: no answer in time: {exc!r}")
            self.i += 1
            return None
        except httpx.TransportError:  # the node is gone (killed): try the next one
            with self.ledger.lock:
                self.ledger.transport_errors[url] += 1
            self.i += 1
            time.sleep(0.05)
            return None
        self.ledger.saw(f"{method} {path}", r)
        if r.status_code == 503:
            time.sleep(0.1)
        return r

    def close(self) -> None:
        self.http.close()


def produce(client: Client, queues: list[str], stop: threading.Event, tag: str) -> None:
    n = 0
    while not stop.is_set():
        q = queues[n % len(queues)]
        key = f"{tag}-{n}"
        n += 1
        r = client.request("POST", f"/v2/queues/{q}/messages",
                           json={"messages": [{"body": {"key": key}, "ttl": 3600}]})
        if r is not None and r.status_code == 201:
            mid = r.json()["resources"][0].rsplit("/", 1)[1]
            with client.ledger.lock:
                client.ledger.acked[mid] = key


def consume(client: Client, queues: list[str], stop: threading.Event, offset: int) -> None:
    n = offset
    while not stop.is_set():
        q = queues[n % len(queues)]
        n += 1
        sent = time.monotonic()
        r = client.request("POST", f"/v2/queues/{q}/claims", params={"limit": 10},
                           json={"ttl": CLAIM_TTL, "grace": 60})
        received = time.monotonic()
        if r is None or r.status_code != 201:
            if r is not None and r.status_code == 204:
                time.sleep(0.02)
            continue
        for m in r.json()["messages"]:
            claim_id = m["href"].split("claim_id=")[1]
            with client.ledger.lock:
                client.ledger.claims[m["id"]].append((claim_id, sent, received))
            while True:  # retry the delete through the move: the claim outlives it
                d = client.request("DELETE", m["href"])
                if d is not None and d.status_code == 204:
                    with client.ledger.lock:
                        client.ledger.deleted[m["id"]] += 1
                    break
                if d is not None and d.status_code not in (503,):
                    break


def totals(node: NodeProcess, project: str, queues: list[str]) -> int | None:
    h = headers(project)
    total = 0
    for q in queues:
        try:
            r = httpx.get(f"{node.url}/v2/queues/{q}/stats", headers=h, timeout=15)
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        total += r.json()["messages"]["total"]
    return total


def present(node: NodeProcess, project: str, queues: list[str]) -> list[str] | None:
    """Ids of every message still in ``queues``, claimed or not (None: not answered)."""
    h = {**headers(project), "Client-ID": str(uuid.uuid4())}
    ids: list[str] = []
    with httpx.Client(base_url=node.url, headers=h, timeout=15) as client:
        for q in queues:
            url = f"/v2/queues/{q}/messages?limit=20&echo=true&include_claimed=true"
            while True:
                try:
                    r = client.get(url)
                except httpx.HTTPError:
                    return None
                if r.status_code != 200:
                    return None
                page = r.json()["messages"]
                if not page:
                    break
                ids.extend(m["id"] for m in page)
                url = r.json()["links"][0]["href"]
    return ids


@dataclass
class KilledLoad:
    """The kill -9 load, handed from its test to the drain at the end of the module."""

    project: str
    queues: list[str]
    ledger: Ledger
    last_move: float  # monotonic time of the last membership change under load


@pytest.fixture(scope="module")
def killed_load() -> dict[str, KilledLoad]:
    return {}


def test_kill_under_load_loses_nothing_and_the_node_rejoins(
        cluster: LocalCluster, killed_load: dict[str, KilledLoad]) -> None:
    """Two kill -9s (c, then a) under posts and claims, each node restarted and rejoined.
    Here: no acknowledged message is gone (each is deleted or still listed), none was in two
    claims. The drain (every message delivered once the lost claims expire) is
    ``test_the_killed_load_drains_once_lost_claims_expire``, the last test of the module."""
    a, b, c = (cluster.nodes[n] for n in ("a", "b", "c"))
    project = "load"
    queues = [queue_on(p, PARTITIONS, project) for p in range(PARTITIONS)]
    ledger = Ledger()
    stop_producers, stop_consumers = threading.Event(), threading.Event()
    producers = [Client([a.url, b.url], project, ledger), Client([c.url, a.url], project, ledger),
                 Client([b.url, c.url], project, ledger)]
    consumers = [Client([b.url, a.url], project, ledger), Client([c.url, b.url], project, ledger),
                 Client([a.url, c.url], project, ledger)]
    threads = [threading.Thread(target=produce, args=(cl, queues, stop_producers, f"p{i}"))
               for i, cl in enumerate(producers)]
    threads += [threading.Thread(target=consume, args=(cl, queues, stop_consumers, i * 3))
                for i, cl in enumerate(consumers)]
    for t in threads:
        t.start()
    failovers: list[float] = []
    rejoins: list[float] = []
    acked_before = 0
    try:
        time.sleep(3)
        for victim in VICTIMS:  # repeated kills: a different node each time
            node = cluster.nodes[victim]
            survivors = [n for n in ("a", "b", "c") if n != victim]
            victim_parts = owned_by(cluster, node)
            assert victim_parts
            acked_before = acked_before or len(ledger.acked)
            killed = time.monotonic()
            cluster.kill(victim)
            # the victim's partitions move to the survivors, who serve them
            cluster.wait_settled(survivors, timeout=60)
            failovers.append(time.monotonic() - killed)
            moved = cluster.owners(cluster.nodes[survivors[0]])
            urls = {cluster.nodes[n].url for n in survivors}
            assert all(moved[p] in urls for p in victim_parts)
            time.sleep(1.5)
            cluster.start_node(victim)
            cluster.wait_listening(node)
            rejoins.append(cluster.wait_settled(timeout=60))
            assert owned_by(cluster, node), f"the restarted {victim} got no partitions"
            time.sleep(1.5)
    finally:
        last_move = time.monotonic()
        stop_producers.set()
        stop_consumers.set()
        for t in threads:
            t.join(timeout=60)
        for cl in producers + consumers:
            cl.close()
    killed_load["load"] = KilledLoad(project, queues, ledger, last_move)
    print(f"\nfailover (kill -9 -> map over the survivors, all served) "
          f"{', '.join(f'{t:.1f}' for t in failovers)} s; rejoin "
          f"{', '.join(f'{t:.1f}' for t in rejoins)} s; acked {len(ledger.acked)} "
          f"({acked_before} before the first kill); statuses {dict(ledger.statuses)}; "
          f"transport errors {dict(ledger.transport_errors)}")
    assert not ledger.bad, ledger.bad[:10]
    assert len(ledger.acked) > acked_before > 0
    assert sum(ledger.deleted.values()) > 0, "the consumers got nothing through"
    listed = present(a, project, queues)
    assert listed is not None, "the cluster does not list the load's queues"
    assert len(listed) == len(set(listed)), "a message is listed twice"
    lost = [m for m in ledger.acked if ledger.deleted[m] < 1 and m not in set(listed)]
    assert not lost, f"{len(lost)} acknowledged messages neither delivered nor kept: {lost[:5]}"
    check_claims(ledger)


def check_claims(ledger: Ledger) -> None:
    """No acknowledged message in two claims the clients were told about, and no message in
    two live claims at once."""
    twice = {m: cs for m, cs in ledger.claims.items() if len(cs) > 1 and m in ledger.acked}
    assert not twice, f"acknowledged messages delivered in two claims: {list(twice.items())[:3]}"
    # a later claim must start after the earlier one surely expired: received2 < sent1 + ttl
    # would be an overlap
    for mid, cs in ledger.claims.items():
        ordered = sorted(cs, key=lambda x: x[1])
        for (_, sent1, _), (_, _, received2) in itertools.pairwise(ordered):
            assert received2 >= sent1 + CLAIM_TTL, f"{mid} in two live claims"


# -- scale up and down -------------------------------------------------------------------


def roundtrip(url: str, project: str, queues: list[str]) -> None:
    """Post, claim and delete one message on every queue through ``url``."""
    h = headers(project)
    with httpx.Client(base_url=url, headers=h, timeout=15) as client:
        for q in queues:
            r = client.post(f"/v2/queues/{q}/messages", json={"messages": [{"body": q}]})
            assert r.status_code == 201, r.text
            r = client.post(f"/v2/queues/{q}/claims", json={"ttl": 60})
            assert r.status_code == 201, r.text
            (m,) = r.json()["messages"]
            assert m["body"] == q
            assert client.delete(m["href"]).status_code == 204


def test_graceful_scale_up_and_down(cluster: LocalCluster) -> None:
    a = cluster.nodes["a"]
    project = "scale"
    queues = [queue_on(p, PARTITIONS, project) for p in range(PARTITIONS)]
    cluster.wait_settled(timeout=60)
    before = cluster.owners(a)
    d = cluster.start_node("d")
    cluster.wait_listening(d)
    up = cluster.wait_settled(timeout=60)
    after = cluster.owners(a)
    d_parts = owned_by(cluster, d)
    moved = [p for p in range(PARTITIONS) if before[p] != after[p]]
    assert d_parts and sorted(moved) == d_parts, (before, after)  # sticky: only d's moved
    roundtrip(d.url, project, queues)
    roundtrip(a.url, project, queues)

    assert d.process is not None
    d.process.terminate()  # SIGTERM: d leaves the group first, then drains
    down = cluster.wait_settled(["a", "b", "c"], timeout=60)
    assert d.process.wait(timeout=30) == 0
    final = cluster.owners(a)
    moved_back = [p for p in range(PARTITIONS) if after[p] != final[p]]
    assert sorted(moved_back) == d_parts, (after, final)
    roundtrip(cluster.nodes["b"].url, project, queues)
    print(f"\nscale-up to 4 nodes settled in {up:.1f} s ({len(d_parts)} partitions moved); "
          f"scale-down settled in {down:.1f} s")


# -- notifications: the next owner resumes a dead owner's deliveries --------------------------


def test_a_failover_resumes_the_dead_owners_deliveries(cluster: LocalCluster) -> None:
    """Deliveries pending on b (its receiver failing) when b is kill -9ed are sent by the
    node that takes the partition over, from the state the log rebuilt (DESIGN §9)."""
    cluster.wait_settled(timeout=60)
    a, b, c = (cluster.nodes[n] for n in ("a", "b", "c"))
    project = "notify"
    h = headers(project)
    victim_part = owned_by(cluster, b)[0]
    q = queue_on(victim_part, PARTITIONS, project, prefix="hook")
    up = threading.Event()  # the receiver answers 503 until b is dead
    receiver = HttpReceiver(decide=lambda n, path, body: 200 if up.is_set() else 503).start()
    try:
        policy = {"retries_with_no_delay": 0, "minimum_delay_retries": 1000,
                  "minimum_delay": 1, "maximum_delay": 11, "maximum_delay_retries": 0}
        r = post_when_served(f"{a.url}/v2/queues/{q}/subscriptions", headers=h, json={
            "subscriber": f"{receiver.url}/hook", "ttl": 3600,
            "options": {"_retry_policy": policy}})
        assert r.status_code == 201, r.text
        sub_id = r.json()["subscription_id"]
        n = 10
        r = post_when_served(f"{c.url}/v2/queues/{q}/messages", headers=h,
                             json={"messages": [{"body": {"n": i}} for i in range(n)]})
        assert r.status_code == 201, r.text
        ids = [href.rsplit("/", 1)[1] for href in r.json()["resources"]]

        def seen(status: int | None = None) -> set[int]:
            return {hit.json()["body"]["n"] for hit in receiver.snapshot()
                    if status is None or hit.status == status}

        deadline = time.monotonic() + 30
        while seen() != set(range(n)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert seen() == set(range(n)), "b never tried every message"
        assert seen(200) == set()
        # b appends its delivery reports every 0.25 s: wait until its failed attempts are in
        # the log, so the count after the failover says what the log kept, not what b sent
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = httpx.get(f"{a.url}/v2/queues/{q}/subscriptions/{sub_id}", headers=h)
            if got.status_code == 200 and got.json()["delivery"]["failed"] >= n:
                break
            time.sleep(0.1)
        cluster.kill("b")
        up.set()
        failed_before = len(receiver.snapshot())
        cluster.wait_settled(["a", "c"], timeout=60)
        deadline = time.monotonic() + 60
        while seen(200) != set(range(n)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert seen(200) == set(range(n)), f"delivered after the failover: {sorted(seen(200))}"
        delivered = [hit for hit in receiver.snapshot()[failed_before:] if hit.status == 200]
        assert all(hit.json()["queue_name"] == q for hit in delivered)
        keys = {next(v for k, v in hit.headers.items() if k.lower() == "idempotency-key")
                for hit in delivered}
        assert keys == {f"{mid}:{sub_id}" for mid in ids}  # one per (message, subscription)
        stats: dict[str, int] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = httpx.get(f"{a.url}/v2/queues/{q}/subscriptions/{sub_id}", headers=h)
            assert got.status_code == 200, got.text
            stats = got.json()["delivery"]
            if stats["delivered"] == n and stats["pending"] == 0:
                break
            time.sleep(0.2)
        assert (stats["delivered"], stats["pending"]) == (n, 0), stats
        assert stats["failed"] >= n  # b's attempts are in the log, the new owner's answers too
        print(f"\nfailover resumed {n} deliveries: {len(delivered)} delivered after the kill "
              f"({len(delivered) - n} duplicates), {stats['failed']} failed attempts before")
    finally:
        receiver.stop()
        if not b.alive():
            cluster.start_node("b")
            cluster.wait_listening(b)
        cluster.wait_settled(timeout=60)


# -- every node's partitions against a rebuild from the log --------------------------------


async def test_each_node_matches_a_rebuild_from_the_log(cluster: LocalCluster) -> None:
    cluster.wait_settled(timeout=60)
    assert cluster.bootstrap is not None
    seen: set[int] = set()
    async with KafkaLog(cluster.bootstrap, cluster.topic, PARTITIONS) as log:
        for node in cluster.running():
            async with httpx.AsyncClient(timeout=30) as client:
                r = await client.get(f"{node.url}/_marconi/digest",
                                     headers={"x-marconi-cluster-secret": SECRET})
            assert r.status_code == 200
            for p_text, live in r.json().items():
                p = int(p_text)
                scratch = MemoryStore()
                applied = await fold(log, scratch, p, 0, until=live["offset"] + 1)
                assert applied == live["offset"]
                assert digest_partition(scratch, p) == live["digest"], (node.name, p)
                seen.add(p)
    assert seen == set(range(PARTITIONS))


# -- last: the kill -9 load drains (after the tests above, while its lost claims expire) ------


def test_the_killed_load_drains_once_lost_claims_expire(
        cluster: LocalCluster, killed_load: dict[str, KilledLoad]) -> None:
    """Claims applied but never answered (the kill, or a move, cut the answer) hold their
    messages until the claim's TTL: then consumers get them, and every acknowledged message
    is delivered, none in two claims."""
    load = killed_load.get("load")
    if load is None:
        pytest.fail("runs after test_kill_under_load_loses_nothing_and_the_node_rejoins "
                    "(run the whole module)")
    cluster.wait_settled(timeout=60)
    nodes = [cluster.nodes[n] for n in ("a", "b", "c")]
    ledger, project, queues = load.ledger, load.project, load.queues
    stop = threading.Event()
    consumers = [Client([n.url], project, ledger) for n in nodes]
    threads = [threading.Thread(target=consume, args=(cl, queues, stop, i * 3))
               for i, cl in enumerate(consumers)]
    waited = time.monotonic() - load.last_move
    for t in threads:
        t.start()
    drain_start = time.monotonic()
    try:
        deadline = load.last_move + CLAIM_TTL + 40
        while time.monotonic() < deadline:
            if totals(nodes[0], project, queues) == 0:
                break
            time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        for cl in consumers:
            cl.close()
    print(f"\ndrained {time.monotonic() - drain_start:.0f} s after the tests in between "
          f"({waited:.0f} s; claims lost to a kill expire after {CLAIM_TTL} s)")
    assert not ledger.bad, ledger.bad[:10]
    assert totals(nodes[0], project, queues) == 0, "messages left undelivered"
    lost = [m for m in ledger.acked if ledger.deleted[m] < 1]
    assert not lost, f"{len(lost)} acknowledged messages never delivered: {lost[:5]}"
    check_claims(ledger)
