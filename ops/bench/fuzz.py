"""``marconi bench fuzz``: schemathesis against a live server, from its own OpenAPI document.

Every operation of ``/v2/openapi.json`` gets the same share of the cases, half generated to
fit the document (positive) and half to break it (negative). Most cases carry a valid
Client-ID and X-Project-ID, so they get past the first checks, and many aim at resources
that exist (a seeded queue, its messages, a live claim, a subscription), so handlers past
the lookups are reached. Every response is checked:

* no 5xx, ever;
* every 4xx carries Zaqar's error body: a JSON object with a string ``title``, a string
  ``description`` (only the routing errors and the client-id length error go without one,
  zaqar-api.md §1.4) and no other key — except 406 and HEAD responses, which are empty.

Without a URL it starts ``marconi serve`` itself (temporary data directory, free loopback
port, a secret key and admin mode so /share and /v2/health are served). The test suite runs
the same ``run`` with a few thousand cases (tests/e2e/test_schemathesis.py).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "fuzz"
SEED_QUEUE = "fuzz-seed"
MAX_ROUNDS = 10
REFRESH_EVERY = 100  # cases between re-seeding (claims and pops use the seeded messages up)
NO_DESCRIPTION_TITLES = ("404 Not Found", "405 Method Not Allowed", "Length of client id")
MAX_EXAMPLES_KEPT = 20
# First-check failures (zaqar-api.md §1.2), one per case that asks for a bad header.
BAD_HEADERS: tuple[tuple[str, str | None], ...] = (
    ("Client-ID", None), ("Client-ID", "not-a-uuid"), ("X-Project-ID", None),
    ("X-Project-ID", ""), ("X-Project-ID", "p" * 257), ("Accept", "text/html"),
    ("Content-Type", "application/x-www-form-urlencoded"), ("URL-Signature", "0" * 64),
)
PATCH_MEDIA_TYPE = "application/openstack-messaging-v2.0-json-patch"


@dataclass
class Finding:
    """One response that broke a rule, with what is needed to replay it."""

    rule: str
    method: str
    url: str
    status: int
    body: str
    request_body: str

    def describe(self) -> str:
        return (f"[{self.rule}] {self.method} {self.url} -> {self.status} {self.body[:300]!r}"
                f" (request body {self.request_body[:300]!r})")


@dataclass
class Report:
    requests: int = 0
    operations: int = 0  # in the document
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    server_errors: list[Finding] = field(default_factory=list)
    bad_4xx: list[Finding] = field(default_factory=list)
    undocumented: Counter[str] = field(default_factory=Counter)  # "METHOD path status"
    unsendable: int = 0  # cases the HTTP client refused to send (e.g. non-latin-1 headers)
    seconds: float = 0.0
    server_error_count: int = 0
    bad_4xx_count: int = 0

    def record(self, finding: Finding, server: bool) -> None:
        """Count it; keep it as an example unless one with the same answer is kept."""
        kept = self.server_errors if server else self.bad_4xx
        if server:
            self.server_error_count += 1
        else:
            self.bad_4xx_count += 1
        seen = {(f.rule, f.status, f.body) for f in kept}
        if len(kept) < MAX_EXAMPLES_KEPT and (finding.rule, finding.status,
                                               finding.body) not in seen:
            kept.append(finding)

    def summary(self) -> str:
        classes = Counter(f"{s // 100}xx" for s in self.statuses.elements())
        lines = [
            f"requests:          {self.requests} in {self.seconds:.1f} s "
            f"({self.requests / max(self.seconds, 1e-9):.0f}/s)",
            f"operations:        {len(self.by_operation)} of {self.operations} fuzzed",
            f"status classes:    {dict(sorted(classes.items()))}",
            f"statuses:          {dict(sorted(self.statuses.items()))}",
            f"5xx:               {self.server_error_count}",
            f"non-Zaqar 4xx:     {self.bad_4xx_count}",
            f"not sendable:      {self.unsendable}",
            f"undocumented:      {dict(self.undocumented.most_common(8))}",
        ]
        lines += [f"  {f.describe()}" for f in self.server_errors + self.bad_4xx]
        return "\n".join(lines)


def error_body_problem(status: int, method: str, headers: Any, body: bytes) -> str | None:
    """Why a 4xx response is not Zaqar-shaped (None: it is)."""
    if status == 406 or method == "HEAD":
        return None if not body else "body should be empty"
    content_type = _header(headers, "content-type")
    if not content_type.startswith("application/json"):
        return f"content-type {content_type!r}"
    try:
        doc = json.loads(body)
    except ValueError:
        return "not JSON"
    if not isinstance(doc, dict) or not isinstance(doc.get("title"), str):
        return "no string title"
    if set(doc) - {"title", "description"}:
        return f"extra keys {sorted(set(doc) - {'title', 'description'})}"
    if "description" in doc and not isinstance(doc["description"], str):
        return "description is not a string"
    if "description" not in doc and not doc["title"].startswith(NO_DESCRIPTION_TITLES):
        return "no description"
    return None


def _header(headers: Any, name: str) -> str:
    """A header of a schemathesis response (values are lists) or of any mapping."""
    for key, value in headers.items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list) and value else value)
    return ""


class Seeds:
    """Real ids in the fuzz project, refreshed as the fuzzer consumes them."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.message_ids: list[str] = ["none"]
        self.claim_ids: list[str] = ["none"]
        self.subscription_ids: list[str] = ["none"]
        self.used = 0

    def refresh(self) -> None:
        c, q = self.client, f"/v2/queues/{SEED_QUEUE}"
        c.put(q)
        posted = c.post(f"{q}/messages",
                        json={"messages": [{"body": {"n": i}} for i in range(6)]})
        if posted.status_code == 201:
            self.message_ids = [h.rsplit("/", 1)[-1] for h in posted.json()["resources"]]
        claimed = c.post(f"{q}/claims?limit=2", json={"ttl": 300, "grace": 60})
        if claimed.status_code == 201:
            self.claim_ids = [claimed.headers["location"].rsplit("/", 1)[-1]]
        sub = c.post(f"{q}/subscriptions",
                     json={"subscriber": f"http://127.0.0.1:9/{uuid.uuid4().hex}", "ttl": 3600})
        if sub.status_code == 201:
            self.subscription_ids = [sub.json()["subscription_id"]]
        self.used = 0

    def aim(self, case: Any, choice: int) -> None:
        """Point a generated case at seeded resources (choice 1: the queue; 2: ids too)."""
        self.used += 1
        if self.used >= REFRESH_EVERY:
            self.refresh()
        params = case.path_parameters
        if params is None or choice == 0 or "queue_name" not in params:
            return
        params["queue_name"] = SEED_QUEUE
        if choice < 2:
            return
        pick = choice % 6
        for name, pool in (("message_id", self.message_ids), ("claim_id", self.claim_ids),
                           ("subscription_id", self.subscription_ids)):
            if name in params:
                params[name] = pool[pick % len(pool)]
        if case.query is not None and "claim_id" in case.query:
            case.query["claim_id"] = self.claim_ids[0]


# Values that broke parsers before (or break them elsewhere): planted into one leaf of a
# generated body or query in a quarter of the cases, because schema-driven generation
# rarely hits them (an offset pushing a date past year 9999, an IPv6 URL missing "]").
NASTY: tuple[Any, ...] = (
    "http://[x", "https://x]/", "mailto:[", "trust+http://[::1", "http://", "http:", ":",
    "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999Z",
    "2016-01-01T00:00:00", "1", "-1", "0", "", " ", "\u0000", "\x7f", "\u2028", "\ufeff",
    "%00", "../..", "/", ",", "~0~1", "\\", "'", '"', "9" * 30, "x" * 5000,
    0, -1, 1, 59, 60, 61, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**64, -(2**64),
    0.5, -0.0, 1e308, True, False, None, [], {}, [None], {"": None}, [[[[[]]]]],
)


def _leaves(node: Any, trail: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths (keys and indexes) to every value in a JSON document, the root excluded."""
    out: list[tuple[Any, ...]] = []
    items = (node.items() if isinstance(node, dict) else
             enumerate(node) if isinstance(node, list) else ())
    for key, value in items:
        out.append((*trail, key))
        out.extend(_leaves(value, (*trail, key)))
    return out


def plant(case: Any, gate: int, pick: int, value: Any) -> None:
    """One case in four: put ``value`` at one place of the body, or in one query value."""
    if gate != 0:
        return
    body = case.body
    spots = _leaves(body) if isinstance(body, dict | list) else []
    if spots:
        *parents, last = spots[pick % len(spots)]
        node = body
        for key in parents:
            node = node[key]
        node[last] = copy.deepcopy(value)
    elif case.query:
        name = sorted(case.query)[pick % len(case.query)]
        case.query[name] = value if isinstance(value, str | int) else str(value)


def run(base_url: str, *, cases: int, seed: int = 0, project: str = PROJECT,
        token: str | None = None) -> Report:
    """Fuzz every operation of the server's document with about ``cases`` requests."""
    import hypothesis
    import requests
    import schemathesis
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    with contextlib.suppress(ValueError):  # already registered by an earlier run
        schemathesis.serializer.alias(PATCH_MEDIA_TYPE, "application/json")
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project, "X-Roles": "admin"}
    if token is not None:  # auth = token: a token whose grant includes the admin role
        headers["X-Auth-Token"] = token
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        doc = client.get("/v2/openapi.json")
        doc.raise_for_status()
        seeds = Seeds(client)
        seeds.refresh()
        schema = schemathesis.openapi.from_dict(doc.json())
        operations = [result.ok() for result in schema.get_all_operations()]
        report = Report(operations=len(operations))
        session = requests.Session()
        started = time.perf_counter()
        strategies = [operation.as_strategy(generation_mode=mode, headers=dict(headers))
                      for operation in operations
                      for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
        nasty_draw = st.tuples(st.integers(0, 3), st.integers(0, 10_000),
                               st.sampled_from(NASTY))
        # Some operations have little to vary (GET /, nothing to negate), so rounds repeat,
        # with new seeds, until the requests reach ``cases`` (or a round adds nothing).
        for round_ in range(MAX_ROUNDS):
            remaining = cases - report.requests
            if remaining <= 0:
                break
            per_strategy = max(1, -(-remaining // len(strategies)))
            before = report.requests
            for index, strategy in enumerate(strategies):
                @hypothesis.settings(
                    max_examples=per_strategy, deadline=None, database=None,
                    derandomize=False, phases=[hypothesis.Phase.generate],
                    suppress_health_check=list(hypothesis.HealthCheck))
                @hypothesis.seed(seed * 1_000_000 + round_ * 1000 + index)
                @hypothesis.given(st.tuples(strategy, st.integers(0, 11), nasty_draw))
                def one(drawn: tuple[Any, int, tuple[int, int, Any]]) -> None:
                    case, choice, nasty = drawn
                    seeds.aim(case, choice % 3)
                    plant(case, *nasty)
                    _send(case, choice, headers, base_url, session, report)

                try:
                    one()
                except hypothesis.errors.Unsatisfiable:
                    pass  # nothing to negate (e.g. GET / takes no input)
            if report.requests == before:
                break
        report.seconds = time.perf_counter() - started
        session.close()
    return report


def _send(case: Any, choice: int, headers: dict[str, str], base_url: str, session: Any,
          report: Report) -> None:
    """One request: valid first-check headers, except one case in twelve gets a bad one."""
    import requests

    case.headers = {**(case.headers or {}), **headers}
    if choice == 11:
        name, value = BAD_HEADERS[report.requests % len(BAD_HEADERS)]
        if value is None:
            case.headers.pop(name, None)
        else:
            case.headers[name] = value
    try:
        response = case.call(base_url=base_url, session=session, timeout=30)
    except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
            UnicodeError, ValueError):
        report.unsendable += 1
        return
    report.requests += 1
    report.by_operation[case.operation.label] += 1
    status = response.status_code
    report.statuses[status] += 1
    if str(status) not in case.operation.definition.raw.get("responses", {}):
        report.undocumented[f"{case.operation.label} {status}"] += 1
    request = response.request
    if status >= 500:
        report.record(_finding("5xx", request, response), server=True)
    elif status >= 400:
        problem = error_body_problem(status, request.method, response.headers,
                                     response.content)
        if problem is not None:
            report.record(_finding(problem, request, response), server=False)


def _finding(rule: str, request: Any, response: Any) -> Finding:
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return Finding(rule, request.method, request.url, response.status_code,
                   response.content.decode("utf-8", "replace"), str(body or ""))


# -- a server of its own -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def live_server(data: Path, *, env: dict[str, str] | None = None) -> Iterator[str]:
    """``marconi serve`` on a free loopback port with a secret key and admin mode."""
    port = free_port()
    environ = {**os.environ, "MARCONI_SECRET_KEY": "fuzz-secret", "MARCONI_ADMIN_MODE": "true",
               **(env or {})}
    log = open(data / "server.log", "wb")  # closed in the finally below
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "serve", "--data",
         str(data / "data"), "--port", str(port), "--partitions", "4"],
        cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(data / 'server.log').read_text()[-2000:]}")
            try:
                httpx.get(f"{base}/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main(url: str | None = None, *, cases: int = 10_000, seed: int = 0,
         token: str | None = None) -> Report:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if url is not None:
        report = run(url, cases=cases, seed=seed, token=token)
    else:
        env = None if token is None else {  # a server of its own takes this token
            "MARCONI_AUTH": "token", "MARCONI_TOKENS": json.dumps({token: {"roles": ["admin"]}})}
        with tempfile.TemporaryDirectory(prefix="marconi-fuzz-") as tmp, \
                live_server(Path(tmp), env=env) as base:
            report = run(base, cases=cases, seed=seed, token=token)
    print(report.summary())
    return report
