"""``auth = "keystone"`` against a real Keystone (keystone 30.0.0 from PyPI, sqlite, fernet).

The session fixture installs Keystone into a cached venv of its own (tests/support/keystone.py),
bootstraps it on a free loopback port, creates two projects with a user each, a service
account for Marconi and a ``messaging`` service whose endpoint is the test's ``marconi serve``.
Then real clients — python-zaqarclient with Keystone auth and the ``openstack messaging`` CLI
(python-openstackclient + the zaqarclient plugin, password auth through the catalog) — run
the queue / message / claim / subscription cycle, and tokens of the wrong project, revoked
or expired tokens are refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from ops.testbroker import free_port
from service.keystone import KeystoneOptions, TokenValidator
from tests.support.keystone import ADMIN_PASSWORD, Keystone, running_keystone

pytestmark = pytest.mark.keystone

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-" + uuid.uuid4().hex[:8]
SERVICE_PASSWORD = "svc-" + uuid.uuid4().hex[:8]
CACHE_SECONDS = 1  # the server's keystone_token_cache_time (revocation takes effect after it)


@dataclass
class Cloud:
    """A Keystone with projects alpha/beta, users alice/bob/root, and a Marconi behind it."""

    keystone: Keystone
    admin: ks_session.Session
    marconi: str
    projects: dict[str, str]  # name -> id
    server: subprocess.Popen[bytes]

    def session(self, user: str, project: str) -> ks_session.Session:
        return ks_session.Session(auth=v3.Password(
            auth_url=self.keystone.url, username=user, password=PASSWORD,
            project_name=project, user_domain_name="Default",
            project_domain_name="Default"))

    def token(self, user: str, project: str) -> str:
        token = self.session(user, project).get_token()
        assert token
        return token

    def openstack_env(self, user: str, project: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(OS_AUTH_URL=self.keystone.url, OS_USERNAME=user, OS_PASSWORD=PASSWORD,
                   OS_PROJECT_NAME=project, OS_USER_DOMAIN_NAME="Default",
                   OS_PROJECT_DOMAIN_NAME="Default", OS_IDENTITY_API_VERSION="3",
                   OS_INTERFACE="public", OS_MESSAGE_CLIENT_ID=str(uuid.uuid4()))
        return env


def _post(admin: ks_session.Session, path: str, body: dict) -> dict:
    return admin.post(path, json=body, endpoint_filter={"service_type": "identity",
                                                         "interface": "public"}).json()


def _id_of(admin: ks_session.Session, path: str, key: str, name: str) -> str:
    found = admin.get(f"{path}?name={name}", endpoint_filter={
        "service_type": "identity", "interface": "public"}).json()[key]
    return found[0]["id"]


def _grant(admin: ks_session.Session, project: str, user: str, role: str) -> None:
    admin.put(f"/projects/{project}/users/{user}/roles/{role}",
              endpoint_filter={"service_type": "identity", "interface": "public"})


def _populate(admin: ks_session.Session, marconi: str) -> dict[str, str]:
    """Projects, users, roles, the service account and the messaging catalog entry."""
    roles = {name: _id_of(admin, "/roles", "roles", name)  # bootstrap made these
             for name in ("admin", "member", "service")}
    projects = {}
    for name in ("alpha", "beta", "service"):
        projects[name] = _post(admin, "/projects", {"project": {
            "name": name, "domain_id": "default"}})["project"]["id"]
    for user, project, role, password in (
            ("alice", "alpha", "member", PASSWORD), ("bob", "beta", "member", PASSWORD),
            ("root", "alpha", "admin", PASSWORD),
            ("marconi", "service", "service", SERVICE_PASSWORD)):
        uid = _post(admin, "/users", {"user": {"name": user, "password": password,
                                               "domain_id": "default"}})["user"]["id"]
        _grant(admin, projects[project], uid, roles[role])
    service = _post(admin, "/services", {"service": {"type": "messaging",
                                                     "name": "marconi"}})["service"]["id"]
    for interface in ("public", "internal", "admin"):
        _post(admin, "/endpoints", {"endpoint": {"service_id": service, "url": marconi,
                                                 "interface": interface,
                                                 "region_id": "RegionOne"}})
    return projects


def _start_marconi(keystone: Keystone, data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MARCONI_AUTH": "keystone", "MARCONI_ADMIN_MODE": "true",
           "MARCONI_SECRET_KEY": "share-secret",
           "MARCONI_KEYSTONE_AUTH_URL": keystone.url, "MARCONI_KEYSTONE_USERNAME": "marconi",
           "MARCONI_KEYSTONE_PASSWORD": SERVICE_PASSWORD,
           "MARCONI_KEYSTONE_PROJECT_NAME": "service",
           "MARCONI_KEYSTONE_TOKEN_CACHE_TIME": str(CACHE_SECONDS),
           "MARCONI_NOTIFICATION_PRIVATE_TARGETS": "true"}  # the cycles subscribe loopback
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "serve", "--data",
         str(data), "--port", str(port)], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=open(data.parent / "marconi.log", "wb"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError((data.parent / "marconi.log").read_text()[-2000:])
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("marconi did not start")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    root = tmp_path_factory.mktemp("keystone")
    try:
        ks_context = running_keystone(root, free_port())
        keystone = ks_context.__enter__()
    except Exception as exc:  # never a silent skip: a missing Keystone fails the run
        pytest.fail(f"could not install or start Keystone: {exc}", pytrace=False)
    try:
        admin = ks_session.Session(auth=v3.Password(
            auth_url=keystone.url, username="admin", password=ADMIN_PASSWORD,
            project_name="admin", user_domain_id="default", project_domain_id="default"))
        port = free_port()
        marconi = f"http://127.0.0.1:{port}"
        projects = _populate(admin, marconi)
        server = _start_marconi(keystone, root / "data", port)
        try:
            yield Cloud(keystone, admin, marconi, projects, server)
        finally:
            server.terminate()
            server.wait(20)
    finally:
        ks_context.__exit__(None, None, None)


def _headers(token: str | None, project: str | None = None) -> dict[str, str]:
    headers = {"Client-ID": str(uuid.uuid4())}
    if token is not None:
        headers["X-Auth-Token"] = token
    if project is not None:
        headers["X-Project-ID"] = project
    return headers


# -- python-zaqarclient with Keystone auth ------------------------------------------------


def test_zaqarclient_cycle_through_the_catalog(cloud: Cloud) -> None:
    from zaqarclient.queues import client

    conf = {"auth_opts": {"backend": "keystone", "options": {
        "os_auth_url": cloud.keystone.url, "os_username": "alice", "os_password": PASSWORD,
        "os_project_name": "alpha", "os_user_domain_name": "Default",
        "os_project_domain_name": "Default"}}}
    cli = client.Client(url=None, version=2, conf=conf)  # endpoint from the catalog
    queue = cli.queue("zq-cycle")
    queue.post([{"body": {"n": 1}, "ttl": 300}, {"body": {"n": 2}, "ttl": 300}])
    assert "zq-cycle" in [q.name for q in cli.queues()[0]]
    assert sorted(m.body["n"] for m in queue.messages(echo=True)) == [1, 2]
    claim = queue.claim(ttl=60, grace=60, limit=1)
    held = list(claim)
    assert len(held) == 1
    claim.update(ttl=120)
    held[0].delete()
    claim.delete()
    sub = cli.subscription("zq-cycle", subscriber="http://127.0.0.1:9/hook", ttl=600)
    assert [s.id for s in cli.subscriptions("zq-cycle")] == [sub.id]
    sub.delete()
    assert queue.stats["messages"]["total"] == 1
    queue.delete()
    assert "zq-cycle" not in [q.name for q in cli.queues()[0]]


# -- the openstack messaging CLI -----------------------------------------------------------


def _openstack(cloud: Cloud, *args: str, user: str = "alice", project: str = "alpha",
               client_id: str | None = None) -> str:
    env = cloud.openstack_env(user, project)
    if client_id:
        env["OS_MESSAGE_CLIENT_ID"] = client_id
    done = subprocess.run([str(cloud.keystone.bin / "openstack"), "messaging", *args],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"openstack messaging {' '.join(args)}:\n{done.stderr}"
    return done.stdout


def test_openstack_cli_cycle(cloud: Cloud) -> None:
    client_id = str(uuid.uuid4())
    _openstack(cloud, "queue", "create", "osc-cycle")
    listed = json.loads(_openstack(cloud, "queue", "list", "-f", "json"))
    assert "osc-cycle" in [q["Name"] for q in listed]
    _openstack(cloud, "message", "post", "osc-cycle",
               json.dumps([{"body": {"k": "v"}, "ttl": 300}]), client_id=client_id)
    messages = json.loads(_openstack(cloud, "message", "list", "osc-cycle", "--echo",
                                     "-f", "json", client_id=client_id))
    assert [m["Body"] for m in messages] == [{"k": "v"}]
    claimed = json.loads(_openstack(cloud, "claim", "create", "osc-cycle", "--ttl", "60",
                                    "--grace", "60", "--limit", "5", "-f", "json"))
    assert [c["Messages"] for c in claimed] == [{"k": "v"}]
    claim_id = claimed[0]["Claim_ID"]
    queried = json.loads(_openstack(cloud, "claim", "query", "osc-cycle", claim_id,
                                    "-f", "json"))
    assert [q["Message"] for q in queried] == [{"k": "v"}]
    _openstack(cloud, "claim", "release", "osc-cycle", claim_id)
    sub = json.loads(_openstack(cloud, "subscription", "create", "osc-cycle",
                                "http://127.0.0.1:9/hook", "600", "-f", "json"))
    subs = json.loads(_openstack(cloud, "subscription", "list", "osc-cycle", "-f", "json"))
    assert [s["ID"] for s in subs] == [sub["ID"]]
    _openstack(cloud, "subscription", "delete", "osc-cycle", sub["ID"])
    _openstack(cloud, "queue", "delete", "osc-cycle")
    listed = json.loads(_openstack(cloud, "queue", "list", "-f", "json"))
    assert "osc-cycle" not in [q["Name"] for q in listed]


# -- tenancy, roles, refusals --------------------------------------------------------------


def test_a_token_of_project_a_cannot_touch_project_b(cloud: Cloud) -> None:
    alice = cloud.token("alice", "alpha")
    bob = cloud.token("bob", "beta")
    url = f"{cloud.marconi}/v2/queues/private"
    assert httpx.put(url, headers=_headers(bob)).status_code == 201
    post = httpx.post(f"{url}/messages", headers=_headers(bob),
                      json={"messages": [{"body": "b's", "ttl": 300}]})
    assert post.status_code == 201
    # alice naming beta's project explicitly is refused
    r = httpx.get(f"{url}/messages", headers=_headers(alice, cloud.projects["beta"]))
    assert r.status_code == 403
    assert set(r.json()) == {"title", "description"}
    # without a project header she is in her own project, where the queue is not
    r = httpx.get(f"{cloud.marconi}/v2/queues", headers=_headers(alice))
    assert "private" not in [q["name"] for q in r.json()["queues"]]
    r = httpx.get(f"{url}/stats", headers=_headers(alice))
    assert r.status_code == 200 and r.json()["messages"]["total"] == 0
    r = httpx.delete(url, headers=_headers(alice, cloud.projects["beta"]))
    assert r.status_code == 403
    # and bob, with his own project named, still has his message
    r = httpx.get(f"{url}/stats", headers=_headers(bob, cloud.projects["beta"]))
    assert r.json()["messages"]["total"] == 1


def test_roles_decide_admin_routes(cloud: Cloud) -> None:
    health = f"{cloud.marconi}/v2/health"
    member = httpx.get(health, headers={**_headers(cloud.token("alice", "alpha")),
                                        "X-Roles": "admin"})  # a client's X-Roles is ignored
    assert member.status_code == 403
    admin = httpx.get(health, headers=_headers(cloud.token("root", "alpha")))
    assert admin.status_code == 200


def test_missing_garbage_revoked_tokens_get_401_with_keystone_uri(cloud: Cloud) -> None:
    url = f"{cloud.marconi}/v2/queues"
    for token in (None, "not-a-token", "gAAAAAB" + "x" * 180):
        r = httpx.get(url, headers=_headers(token))
        assert r.status_code == 401, token
        assert r.headers["www-authenticate"] == f'Keystone uri="{cloud.keystone.url}"'
        assert set(r.json()) == {"title", "description"}
    token = cloud.token("alice", "alpha")
    assert httpx.get(url, headers=_headers(token)).status_code == 200
    cloud.admin.delete("/auth/tokens", headers={"X-Subject-Token": token},
                       endpoint_filter={"service_type": "identity", "interface": "public"})
    deadline = time.monotonic() + CACHE_SECONDS + 10
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = httpx.get(url, headers=_headers(token)).status_code
        time.sleep(0.2)
    assert status == 401


def test_expired_token_gets_401(cloud: Cloud, tmp_path: Path) -> None:
    """A second Keystone on the same database and keys issues tokens living 3 seconds."""
    short = Keystone(cloud.keystone.venv, tmp_path, free_port())
    short.write_config(expiration=3)
    conf = short.conf.read_text().replace(
        f"sqlite:///{tmp_path}/keystone.db", f"sqlite:///{cloud.keystone.root}/keystone.db")
    for name in ("fernet", "cred"):
        conf = conf.replace(f"{tmp_path}/{name}", f"{cloud.keystone.root}/{name}")
    short.conf.write_text(conf)
    short.start()
    try:
        token = ks_session.Session(auth=v3.Password(
            auth_url=short.url, username="alice", password=PASSWORD, project_name="alpha",
            user_domain_name="Default", project_domain_name="Default")).get_token()
    finally:
        short.stop()
    assert token
    url = f"{cloud.marconi}/v2/queues"
    first = httpx.get(url, headers=_headers(token)).status_code
    assert first in (200, 401)  # valid if asked within its 3 seconds
    # refused once it has expired (3 s after issue, plus the server's 1 s cache at most)
    deadline = time.monotonic() + 4 + 10
    status = first
    while status != 401 and time.monotonic() < deadline:
        time.sleep(0.2)
        status = httpx.get(url, headers=_headers(token)).status_code
    assert status == 401


def test_pre_signed_urls_work_without_a_token(cloud: Cloud) -> None:
    token = cloud.token("alice", "alpha")
    q = f"{cloud.marconi}/v2/queues/shared"
    assert httpx.put(q, headers=_headers(token)).status_code == 201
    signed = httpx.post(f"{q}/share", headers=_headers(token),
                        json={"methods": ["GET", "POST"], "paths": ["messages"]})
    assert signed.status_code == 200, signed.text
    body = signed.json()
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": body["project"],
               "URL-Signature": body["signature"], "URL-Expires": body["expires"],
               "URL-Methods": ",".join(body["methods"]), "URL-Paths": ",".join(body["paths"])}
    r = httpx.post(f"{q}/messages", headers=headers,
                   json={"messages": [{"body": "signed", "ttl": 300}]})
    assert r.status_code == 201, r.text
    r = httpx.get(f"{q}/messages?echo=true", headers=headers)
    assert [m["body"] for m in r.json()["messages"]] == ["signed"]


# -- the validator itself, in process -------------------------------------------------------


def _options(cloud: Cloud, **kw: object) -> KeystoneOptions:
    return KeystoneOptions(auth_url=cloud.keystone.url, username="marconi",
                           password=SERVICE_PASSWORD, project_name="service", **kw)  # type: ignore[arg-type]


def test_validations_are_cached_and_shared(cloud: Cloud) -> None:
    validator = TokenValidator(_options(cloud, token_cache_time=300))
    token = cloud.token("alice", "alpha")

    async def many() -> list:
        return await asyncio.gather(*(validator.identity(token) for _ in range(20)))

    try:
        found = asyncio.run(many())
        assert {f.project for f in found} == {cloud.projects["alpha"]}
        assert found[0].roles == ("member",) or "member" in found[0].roles
        assert validator.validations == 1
        asyncio.run(validator.identity(token))
        assert validator.validations == 1
        assert asyncio.run(validator.identity("nonsense")) is None
        assert validator.validations == 2
    finally:
        validator.close()


def test_keystone_unreachable_is_503_not_401(cloud: Cloud) -> None:
    from starlette.datastructures import Headers
    from starlette.responses import Response

    dead = KeystoneOptions(auth_url=f"http://127.0.0.1:{free_port()}/v3", username="x",
                           password="y", project_name="z", timeout=2.0)
    validator = TokenValidator(dead)
    try:
        answer = asyncio.run(validator.authenticate(Headers({"x-auth-token": "t"})))
        assert isinstance(answer, Response) and answer.status_code == 503
    finally:
        validator.close()


# -- the openstack CLI with a static token (README) ------------------------------------------


def test_openstack_cli_with_a_static_token(tmp_path: Path) -> None:
    from tests.support.keystone import openstack_venv

    venv = openstack_venv()
    config = tmp_path / "marconi.toml"
    config.write_text('auth = "token"\n[tokens.s3cr3t-token]\nproject = "demo"\n'
                      'roles = ["member"]\n')
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "serve", "--data",
         str(data), "--port", str(port), "--config", str(config)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(OS_AUTH_TYPE="token_endpoint", OS_ENDPOINT=f"http://127.0.0.1:{port}",
                   OS_TOKEN="s3cr3t-token", OS_MESSAGE_CLIENT_ID=str(uuid.uuid4()))

        def osc(*args: str) -> str:
            done = subprocess.run([str(venv / "bin" / "openstack"), "messaging", *args],
                                  env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            return done.stdout

        osc("queue", "create", "jobs")
        osc("message", "post", "jobs", '[{"body": "hello", "ttl": 300}]')
        listed = json.loads(osc("message", "list", "jobs", "--echo", "-f", "json"))
        assert [m["Body"] for m in listed] == ["hello"]
        # the token's project is where it went
        r = httpx.get(f"http://127.0.0.1:{port}/v2/queues/jobs/stats",
                      headers={**_headers("s3cr3t-token"), "X-Project-ID": "demo"})
        assert r.json()["messages"]["total"] == 1
        env["OS_TOKEN"] = "wrong"
        done = subprocess.run([str(venv / "bin" / "openstack"), "messaging", "queue", "list"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0
    finally:
        proc.terminate()
        proc.wait(20)
