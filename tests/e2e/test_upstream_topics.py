"""Upstream Zaqar 23's own v2 topic tests, run unchanged over HTTP against ``marconi serve``.

``zaqar/tests/unit/transport/wsgi/v2_0/test_topic_lifecycle.py`` drives upstream's falcon app
in process: ``self.simulate_put(path, headers=..., body=...)`` then
``self.assertEqual(falcon.HTTP_201, self.srmock.status)``. Here that file's code runs as
published — read from the zaqar 23.0.1 wheel, which a session fixture installs with
``pip install --no-deps --target`` into pytest's cache (like the v1 client of
``test_v1_client.py``), beside ``ddt`` which the file uses — on a base class whose
``simulate_*`` send real HTTP requests to a real ``marconi serve`` process and record the
answer where upstream's ``StartResponseMock`` would. The few names the file imports from
upstream's server (``falcon``'s status strings, ``zaqar.tests.requires_mongodb``, the storage
error type) are small stand-ins; nothing of the file's test logic is replaced.

Upstream's ``tearDown`` drops its MongoDB databases; ours deletes, through the API, every
topic of every project the test used, so each test starts as upstream's do: empty.
``conf.set_override('client_id_uuid_safe', 'off', 'transport')`` sends that test's requests
to a second server started with ``MARCONI_CLIENT_ID_UUID_SAFE=off``.

Not run (they are not HTTP behaviour): ``test_list_returns_503_on_nopoolfound_exception``
patches upstream's storage controller with ``mock``, and ``TestTopicLifecycleFaultyDriver``
needs upstream's deliberately failing storage driver.
"""

from __future__ import annotations

import subprocess
import sys
import types
import unittest
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from ops.settings import Settings
from tests.service.test_e2e import free_port, start_server, stop_server, wait_ready

ZAQAR_VERSION = "23.0.1"
DDT_VERSION = "1.7.2"
UPSTREAM_FILE = "zaqar/tests/unit/transport/wsgi/v2_0/test_topic_lifecycle.py"
NOT_RUN = {"test_list_returns_503_on_nopoolfound_exception"}
EXPECTED_RUN = 20  # 13 methods, ddt expands three of them into 2 + 2 + 4 cases


@pytest.fixture(scope="session")
def upstream(request: pytest.FixtureRequest) -> Path:
    """A directory holding zaqar 23.0.1 and ddt (installed once, kept in the cache)."""
    target = Path(request.config.cache.mkdir(f"zaqar-{ZAQAR_VERSION}-tests"))
    if not (target / UPSTREAM_FILE).exists() or not (target / "ddt.py").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--upgrade", "--target", str(target), f"zaqar=={ZAQAR_VERSION}",
             f"ddt=={DDT_VERSION}"], check=True, timeout=300)
    return target


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``strict``: the defaults; ``off``: ``client_id_uuid_safe = off``."""
    procs: list[subprocess.Popen[str]] = []
    urls: dict[str, str] = {}
    try:
        for mode in ("strict", "off"):
            port = free_port()
            data = tmp_path_factory.mktemp(f"upstream-topics-{mode}") / "data"
            proc = start_server(data, port, {"MARCONI_CLIENT_ID_UUID_SAFE": mode})
            procs.append(proc)
            urls[mode] = f"http://127.0.0.1:{port}"
            wait_ready(urls[mode], proc)
        yield urls
        for proc in procs:
            code, out = stop_server(proc)
            assert code == 0, out
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


class StartResponse:
    """Where upstream's ``StartResponseMock`` keeps the last answer."""

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.headers_dict: httpx.Headers = httpx.Headers()


class Conf:
    """``self.conf.set_override``: picks the server that runs with that setting."""

    def __init__(self, case: HttpBase) -> None:
        self._case = case

    def set_override(self, name: str, value: Any, group: str | None = None) -> None:
        if (name, value, group) != ("client_id_uuid_safe", "off", "transport"):
            raise AssertionError(f"no server runs with {group}.{name} = {value!r}")
        self._case.base_url = HttpBase.urls["off"]


class HttpBase(unittest.TestCase):
    """Upstream's ``V2Base`` over HTTP (zaqar/tests/unit/transport/wsgi/base.py)."""

    url_prefix = "/v2"
    urls: ClassVar[dict[str, str]] = {}

    def setUp(self) -> None:
        super().setUp()
        self.base_url = self.urls["strict"]
        self.conf = Conf(self)
        self.transport_cfg = types.SimpleNamespace(
            max_queue_metadata=Settings().max_queue_metadata)
        self.srmock = StartResponse()
        self.headers = {"Client-ID": "3381af92-2b9e-11e3-b191-71861300734c",
                        "X-ROLES": "admin"}
        self.projects: set[tuple[str, str]] = set()

    def tearDown(self) -> None:
        for url, project in sorted(self.projects):  # what upstream's dropped databases did
            with httpx.Client(base_url=url, timeout=30, headers={
                    "X-Project-ID": project,
                    "Client-ID": "3381af92-2b9e-11e3-b191-71861300734c"}) as client:
                while True:
                    r = client.get("/v2/topics", params={"limit": 20})
                    names = [t["name"] for t in r.json()["topics"]] if r.status_code == 200 \
                        else []
                    if not names:
                        break
                    for name in names:
                        assert client.delete(f"/v2/topics/{name}").status_code == 204
        super().tearDown()

    def simulate_request(self, path: str, project_id: str | None = None,
                         **kwargs: Any) -> list[bytes] | None:
        # Upstream's header handling, line for line.
        headers = kwargs.get("headers", self.headers).copy()
        project_id = ("518b51ea133c4facadae42c328d6b77b" if project_id is None
                      else project_id)
        if kwargs.get("need_project_id", True):
            headers["X-Project-ID"] = headers.get("X-Project-ID", project_id)
        try:  # upstream answers this one itself, before its app
            path.encode("latin1").decode("utf-8", "replace")
        except UnicodeEncodeError:
            self.srmock.status = "400 Bad Request"
            return None
        if "X-Project-ID" in headers:
            self.projects.add((self.base_url, headers["X-Project-ID"]))
        body = kwargs.get("body")
        query = kwargs.get("query_string")
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            r = client.request(kwargs["method"], path + (f"?{query}" if query else ""),
                               headers={k: str(v) for k, v in headers.items()},
                               content=body.encode() if isinstance(body, str) else body)
        self.srmock.status = f"{r.status_code} {HTTPStatus(r.status_code).phrase}"
        self.srmock.headers = [(k.title(), v) for k, v in r.headers.items()]
        self.srmock.headers_dict = r.headers
        return [r.content] if r.content else []

    def simulate_get(self, *args: Any, **kwargs: Any) -> list[bytes] | None:
        return self.simulate_request(*args, method="GET", **kwargs)

    def simulate_head(self, *args: Any, **kwargs: Any) -> list[bytes] | None:
        return self.simulate_request(*args, method="HEAD", **kwargs)

    def simulate_put(self, *args: Any, **kwargs: Any) -> list[bytes] | None:
        return self.simulate_request(*args, method="PUT", **kwargs)

    def simulate_post(self, *args: Any, **kwargs: Any) -> list[bytes] | None:
        return self.simulate_request(*args, method="POST", **kwargs)

    def simulate_delete(self, *args: Any, **kwargs: Any) -> list[bytes] | None:
        return self.simulate_request(*args, method="DELETE", **kwargs)

    def simulate_patch(self, *args: Any, **kwargs: Any) -> list[bytes] | None:
        return self.simulate_request(*args, method="PATCH", **kwargs)


def _stand_ins() -> dict[str, types.ModuleType]:
    """The modules the upstream file imports from upstream's server, as small stand-ins."""
    falcon = types.ModuleType("falcon")
    for status in HTTPStatus:  # falcon.HTTP_201 == "201 Created"
        setattr(falcon, f"HTTP_{status.value}", f"{status.value} {status.phrase}")
    zaqar = types.ModuleType("zaqar")
    storage = types.ModuleType("zaqar.storage")
    errors = types.ModuleType("zaqar.storage.errors")
    errors.NoPoolFound = type("NoPoolFound", (Exception,), {})  # type: ignore[attr-defined]
    storage.errors = errors  # type: ignore[attr-defined]
    testing = types.ModuleType("zaqar.tests")
    testing.requires_mongodb = lambda f: f  # type: ignore[attr-defined]  # we need none
    unit = types.ModuleType("zaqar.tests.unit")
    transport = types.ModuleType("zaqar.tests.unit.transport")
    wsgi = types.ModuleType("zaqar.tests.unit.transport.wsgi")
    base = types.ModuleType("zaqar.tests.unit.transport.wsgi.base")
    base.V2Base = HttpBase  # type: ignore[attr-defined]
    base.V2BaseFaulty = HttpBase  # type: ignore[attr-defined]
    zaqar.storage, zaqar.tests = storage, testing  # type: ignore[attr-defined]
    testing.unit, unit.transport = unit, transport  # type: ignore[attr-defined]
    transport.wsgi, wsgi.base = wsgi, base  # type: ignore[attr-defined]
    return {m.__name__: m for m in (falcon, zaqar, storage, errors, testing, unit, transport,
                                    wsgi, base)}


def load_upstream(root: Path) -> types.ModuleType:
    """Execute the upstream test file with the stand-ins importable, then put
    ``sys.modules`` back as it was."""
    source = (root / UPSTREAM_FILE).read_text()
    assert "class TestTopicLifecycleMongoDB(base.V2Base)" in source
    saved = {name: sys.modules.get(name) for name in [*_stand_ins(), "ddt"]}
    sys.path.insert(0, str(root))
    try:
        sys.modules.update(_stand_ins())
        sys.modules.pop("ddt", None)
        module = types.ModuleType("upstream_test_topic_lifecycle")
        module.__file__ = str(root / UPSTREAM_FILE)
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        return module
    finally:
        sys.path.remove(str(root))
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def test_upstream_v2_topic_lifecycle_passes_over_http(upstream: Path,
                                                      servers: dict[str, str]) -> None:
    module = load_upstream(upstream)
    HttpBase.urls = servers

    class Lifecycle(module.TestTopicLifecycleMongoDB):  # type: ignore[name-defined,misc]
        def tearDown(self) -> None:  # upstream's drops MongoDB databases
            HttpBase.tearDown(self)

    names = [n for n in unittest.TestLoader().getTestCaseNames(Lifecycle)
             if not any(n.startswith(skip) for skip in NOT_RUN)]
    suite = unittest.TestSuite(Lifecycle(n) for n in names)
    result = unittest.TestResult()
    suite.run(result)
    problems = [f"{case.id()}:\n{trace}" for case, trace in result.failures + result.errors]
    print(f"\nupstream zaqar {ZAQAR_VERSION} v2 topic tests over HTTP: {result.testsRun} run, "
          f"{len(result.failures)} failed, {len(result.errors)} errors, "
          f"{len(result.skipped)} skipped")
    assert not problems, "\n".join(problems)
    assert not result.skipped, result.skipped
    assert result.testsRun == EXPECTED_RUN, names


def test_the_stand_in_base_notices_a_wrong_answer(servers: dict[str, str]) -> None:
    """The HTTP base really asserts what the server said (a test that could not fail would
    prove nothing)."""
    HttpBase.urls = servers

    class Wrong(HttpBase):
        def test_a_bad_name_is_created(self) -> None:
            self.simulate_put(self.url_prefix + "/topics/bad@name", headers=self.headers)
            self.assertEqual("201 Created", self.srmock.status)

    result = unittest.TestResult()
    Wrong("test_a_bad_name_is_created").run(result)
    assert len(result.failures) == 1
    assert "'400 Bad Request'" in result.failures[0][1]
