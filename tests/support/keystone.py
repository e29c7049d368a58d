"""A real Keystone for tests: installed from PyPI into its own venv, run on sqlite + fernet.

``keystone`` pins much of oslo.* and SQLAlchemy, so it lives in a venv of its own, beside
python-openstackclient and python-zaqarclient (the ``openstack messaging`` CLI is a real
process from that venv too). The venv is cached per requirement set under
``$XDG_CACHE_HOME/marconi`` (default ``~/.cache/marconi``) and built by the first test run
on a fresh machine (about 2 minutes; measured in /work/shared/keystone-notes.md).

Keystone's WSGI app parses ``sys.argv`` with oslo.config at import, so it is served by a
tiny launcher (a threaded ``wsgiref`` server) that sets ``sys.argv`` first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REQUIREMENTS = ("keystone==30.0.0", "python-openstackclient==10.5.0",
                "python-zaqarclient==4.7.0")
ADMIN_PASSWORD = "marconi-admin-pw"  # a throwaway Keystone on loopback
INSTALL_TIMEOUT = 1200.0
READY_TIMEOUT = 120.0

LAUNCHER = '''\
import os, sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

sys.argv = ["keystone"]  # oslo.config parses argv at import
from keystone.wsgi.api import application


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


make_server("127.0.0.1", int(os.environ["KEYSTONE_PORT"]), application,
            server_class=Server, handler_class=Quiet).serve_forever()
'''


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "marconi"


def openstack_venv() -> Path:
    """The cached venv holding keystone and the OpenStack clients, built if missing.

    A lock file serialises two test runs installing at once; ``.installed`` marks a venv
    whose install finished (a half-built one is removed and built again).
    """
    key = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()[:12]
    venv = cache_root() / f"openstack-{key}"
    marker = venv / ".installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"openstack-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return venv
        if venv.exists():
            subprocess.run(["rm", "-rf", str(venv)], check=True)
        python = os.environ.get("MARCONI_KEYSTONE_PYTHON") or sys.executable
        print(f"\ninstalling {', '.join(REQUIREMENTS)} into {venv} (once per machine)...",
              file=sys.stderr, flush=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
             "--disable-pip-version-check", *REQUIREMENTS],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"pip install failed:\n{done.stderr[-3000:]}")
        marker.touch()
    return venv


@dataclass
class Keystone:
    """One running Keystone: its URL, the admin credentials, the process and its venv."""

    venv: Path
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def conf(self) -> Path:
        return self.root / "keystone.conf"

    def write_config(self, expiration: int) -> None:
        for name in ("fernet", "cred"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            f"[DEFAULT]\nlog_file = {self.root}/keystone.log\n"
            f"[database]\nconnection = sqlite:///{self.root}/keystone.db\n"
            f"[fernet_tokens]\nkey_repository = {self.root}/fernet\n"
            f"[credential]\nkey_repository = {self.root}/cred\n"
            f"[token]\nprovider = fernet\nexpiration = {expiration}\n"
            "allow_expired_window = 0\n"
            # bcrypt's cheapest cost (default 12: ~0.3 s of CPU per password check, and
            # every password login checks one); the hash is still real bcrypt
            "[identity]\npassword_hash_rounds = 4\n")

    def manage(self, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin / "keystone-manage"), "--config-file", str(self.conf), *args],
            capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"keystone-manage {args[0]} failed:\n{done.stderr[-3000:]}")

    def setup(self) -> None:
        user = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
        self.manage("db_sync")
        self.manage("fernet_setup", *user)
        self.manage("credential_setup", *user)
        self.manage("bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
                    "--bootstrap-admin-url", self.url, "--bootstrap-public-url", self.url,
                    "--bootstrap-internal-url", self.url, "--bootstrap-region-id", "RegionOne")

    def start(self) -> None:
        launcher = self.root / "launch_keystone.py"
        launcher.write_text(LAUNCHER)
        env = {**os.environ, "KEYSTONE_PORT": str(self.port),
               "OS_KEYSTONE_CONFIG_DIR": str(self.root),
               "OS_KEYSTONE_CONFIG_FILES": "keystone.conf"}
        self.process = subprocess.Popen(
            [str(self.bin / "python"), str(launcher)], cwd=self.root, env=env,
            stdout=open(self.root / "launcher.log", "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("keystone exited:\n" + self.log_tail())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("keystone did not answer in time:\n" + self.log_tail())

    def log_tail(self) -> str:
        parts = []
        for name in ("launcher.log", "keystone.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def running_keystone(root: Path, port: int, *, expiration: int = 3600) -> Iterator[Keystone]:
    """Install (cached), set up and start a Keystone under ``root``; stopped on exit."""
    keystone = Keystone(openstack_venv(), root, port)
    keystone.write_config(expiration)
    keystone.setup()
    keystone.start()
    try:
        yield keystone
    finally:
        keystone.stop()
