"""An operator's first hour (issue 14), each item as a new user meets it: real processes.

``bash ops/cluster.sh``, ``bash ops/dev``, ``marconi serve`` / ``node`` / ``replay`` /
``digest`` / ``rebuild`` / ``partitions`` are run as the commands a user types, and what
they print is checked: one line for an error (exit code 2, no traceback), "listening" only
once bound, one caught-up line, warnings (not failures) for stray ``MARCONI_*`` variables.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from log import partition_for
from log.filelog import FileLog
from ops.admin import log_dir
from ops.cli import build_parser
from ops.node import advertised
from ops.settings import load_settings
from ops.testbroker import free_port
from projections.commands import CreateQueue, NewMessage, PostMessages, encode

ROOT = Path(__file__).resolve().parents[2]
K8S_ENV = {
    "MARCONI_PORT": "tcp://10.0.0.1:8888", "MARCONI_SERVICE_HOST": "10.0.0.1",
    "MARCONI_SERVICE_PORT": "8888", "MARCONI_PORT_8888_TCP": "tcp://10.0.0.1:8888",
    "MARCONI_PORT_8888_TCP_PROTO": "tcp", "MARCONI_PORT_8888_TCP_PORT": "8888",
    "MARCONI_PORT_8888_TCP_ADDR": "10.0.0.1",
}


def marconi(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(done: subprocess.CompletedProcess[str], command: str,
                          *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith(f"marconi {command}: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]


class Server:
    """A ``marconi serve`` process; stdout and stderr go to files the test reads."""

    def __init__(self, data: Path, port: int, env: dict[str, str] | None = None,
                 *args: str) -> None:
        self.port = port
        self.out = data.parent / f"serve-{port}.out"
        self.err = data.parent / f"serve-{port}.err"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", *args, "serve", "--data", str(data),
             "--port", str(port)], cwd=ROOT, env={**os.environ, **(env or {})},
            stdout=open(self.out, "w"), stderr=open(self.err, "w"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(self.err.read_text())
            if "listening on" in self.out.read_text():
                return
            time.sleep(0.02)
        raise AssertionError("no 'listening on' line")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "data", free_port())
    s.wait_listening()
    yield s
    s.stop()


# -- ops/cluster.sh -----------------------------------------------------------------------


def _cluster_sh(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    # A PATH without any ``python``: the script must use the project's .venv.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"
    return subprocess.Popen(
        ["bash", "ops/cluster.sh", "-n", "1", "-p", str(free_port()), "-k", str(free_port()),
         "-d", str(tmp_path / "cluster"), "-P", "2", *args], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.slow
def test_cluster_sh_runs_from_the_venv_and_reports_ready(tmp_path: Path) -> None:
    if shutil.which("python", path="/usr/bin:/bin") is not None:
        pytest.fail("this machine has a system `python`; the test needs a PATH without one")
    proc = _cluster_sh(tmp_path, "-t", "90")
    try:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "cluster ready" in line:
                break
        assert any("cluster ready" in line for line in seen), (seen, proc.stderr.read()
                                                               if proc.poll() is not None
                                                               else "")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    assert "stopping nodes" in rest


@pytest.mark.slow
def test_cluster_sh_readiness_wait_has_a_timeout(tmp_path: Path) -> None:
    proc = _cluster_sh(tmp_path, "-t", "0")
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    assert "not ready after 0 s" in err
    assert "stopping nodes" in out  # and it cleaned up after itself


def test_cluster_data_is_ignored_by_git() -> None:
    done = subprocess.run(["git", "check-ignore", "-q", "cluster-data/node1/x"], cwd=ROOT)
    assert done.returncode == 0


# -- ops/dev ------------------------------------------------------------------------------


def test_dev_says_what_it_is_doing_while_installing(tmp_path: Path) -> None:
    """A fresh checkout (here: ops/dev beside a project pip cannot install, so the install
    fails fast) hears that a venv is being made and dependencies installed."""
    (tmp_path / "ops").mkdir()
    shutil.copy(ROOT / "ops" / "dev", tmp_path / "ops" / "dev")
    (tmp_path / "ops" / "constraints.txt").write_text("")
    (tmp_path / "pyproject.toml").write_text("this is not a project\n")
    done = subprocess.run(["bash", "ops/dev", "marconi", "--version"], cwd=tmp_path,
                          env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "ops/dev: creating" in done.stderr
    assert "installing Marconi and its pinned dependencies" in done.stderr
    assert done.stderr.index("creating") < done.stderr.index("installing")


# -- marconi serve ------------------------------------------------------------------------


def test_listening_is_printed_once_bound_and_one_caught_up_line(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass  # bound the moment it says so
    assert httpx.get(f"{server.url}/", timeout=5).status_code in (200, 300)
    deadline = time.monotonic() + 10
    while "partitions caught up" not in server.err.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.err.read_text()
    assert log.count("partitions caught up") == 1
    assert "partition 0: caught up" not in log


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = marconi("serve", "--data", str(tmp_path / "data"), "--port", str(port))
    assert done.returncode != 0
    assert "listening" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "already in use" in lines[0] and str(port) in lines[0]


def test_kubernetes_service_links_warn_and_the_server_starts(tmp_path: Path) -> None:
    s = Server(tmp_path / "data", free_port(), K8S_ENV)
    try:
        s.wait_listening()
        assert httpx.get(f"{s.url}/", timeout=5).status_code in (200, 300)
        warnings = [line for line in s.err.read_text().splitlines() if "ignoring" in line]
        assert len(warnings) == 1
        assert "MARCONI_SERVICE_HOST" in warnings[0] and "MARCONI_PORT" in warnings[0]
    finally:
        s.stop()


def test_a_tcp_url_is_never_a_port_and_unknown_names_are_not_fatal() -> None:
    settings = load_settings(env={**K8S_ENV, "MARCONI_NOT_A_SETTING": "1"})
    assert settings.port == 8888
    assert load_settings(env={"MARCONI_PORT": "9100"}).port == 9100


# -- marconi node --advertise --------------------------------------------------------------


def test_advertise_accepts_host_port_and_refuses_nonsense() -> None:
    assert advertised("127.0.0.1:9001", "0.0.0.0", 1) == "http://127.0.0.1:9001"
    assert advertised("https://node-2.example:443/", "h", 1) == "https://node-2.example:443"
    assert advertised(None, "127.0.0.1", 8888) == "http://127.0.0.1:8888"
    for bad in ("node-2", "ftp://node:1", "http://node:port", "http://node:1/path", ":80"):
        with pytest.raises(ValueError, match="--advertise"):
            advertised(bad, "h", 1)


def test_a_bad_advertise_is_refused_at_start() -> None:
    done = marconi("node", "--kafka", "127.0.0.1:1", "--advertise", "node-2")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--advertise" in lines[0] and "host:port" in lines[0]


@pytest.mark.kafka
@pytest.mark.slow
def test_a_bare_host_port_advertise_is_what_other_nodes_see(kafka_bootstrap: str,
                                                            tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "--log-level", "WARNING", "node", "--kafka",
         kafka_bootstrap, "--topic", f"adv-{uuid.uuid4().hex[:8]}", "--partitions", "2",
         "--group", f"adv-{uuid.uuid4().hex[:8]}", "--data", str(tmp_path / "n"), "--port",
         str(port), "--advertise", f"127.0.0.1:{port}", "--insecure-cluster"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        owners: dict[str, str] = {}
        while time.monotonic() < deadline and len(owners) < 2:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                owners = httpx.get(f"http://127.0.0.1:{port}/_marconi/status",
                                   timeout=2).json()["owners"]
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        assert set(owners.values()) == {f"http://127.0.0.1:{port}"}
    finally:
        proc.terminate()
        proc.wait(30)


# -- --version and help -------------------------------------------------------------------


def test_version() -> None:
    done = marconi("--version")
    assert done.returncode == 0 and done.stdout.startswith("marconi ")


def _parsers(parser: argparse.ArgumentParser, name: str = "marconi"
             ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                yield from _parsers(child, f"{name} {child_name}")


def test_every_option_has_help_and_shows_its_default() -> None:
    for name, parser in _parsers(build_parser()):
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction
                          | argparse._SubParsersAction):
                continue
            flag = action.option_strings[-1] if action.option_strings else action.dest
            assert action.help, f"{name} {flag} has no help"
            if action.option_strings and action.default not in (None, False):
                assert "default" in parser._get_formatter()._expand_help(action) or \
                    "default" in (action.help or ""), f"{name} {flag}: default not shown"
        assert text


def test_help_names_choices_and_the_environment() -> None:
    top = marconi("--help").stdout
    for level in ("DEBUG", "INFO", "WARNING", "ERROR"):
        assert level in top
    serve = marconi("serve", "--help").stdout
    for variable in ("MARCONI_PORT", "MARCONI_HOST", "MARCONI_DATA", "MARCONI_AUTH",
                     "MARCONI_KEYSTONE_AUTH_URL"):
        assert variable in serve
    bench_http = marconi("bench", "http", "--help").stdout
    assert "--producers" in bench_http and "default: 20" in bench_http


# -- one-line errors ------------------------------------------------------------------------


def _tiny_log(data: Path, partitions: int = 2) -> None:
    async def write() -> None:
        async with FileLog(log_dir(data), partitions) as log:
            t = 1_800_000_000_000
            for cmd in (CreateQueue(id="c1", project="p", queue="q", client_id="a", time_ms=t),
                        PostMessages(id="c2", project="p", queue="q", client_id="a",
                                     time_ms=t + 1, messages=[NewMessage(id="m1", body=1)])):
                await log.append(partition_for("p", "q", partitions), [encode(cmd)])

    asyncio.run(write())


def test_replay_of_a_missing_data_directory(tmp_path: Path) -> None:
    done = marconi("replay", "--data", "./missing", "--queue", "q", "--project", "p",
                   cwd=tmp_path)
    assert_one_line_error(done, "replay", "missing")


def test_replay_with_a_bad_since(tmp_path: Path) -> None:
    _tiny_log(tmp_path)
    done = marconi("replay", "--data", str(tmp_path), "--queue", "q", "--project", "p",
                   "--since", "yesterday", "--no-progress")
    assert_one_line_error(done, "replay", "yesterday")


def test_digest_partitions_of_a_missing_directory(tmp_path: Path) -> None:
    for command in ("digest", "rebuild"):
        done = marconi(command, "--data", str(tmp_path / "missing"))
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_digest_while_the_server_holds_the_lock(server: Server, tmp_path: Path) -> None:
    done = marconi("digest", "--data", str(tmp_path / "data"))
    assert_one_line_error(done, "digest", "in use")


def test_digest_of_a_foreign_store(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _tiny_log(first)
    _tiny_log(second)
    assert marconi("digest", "--data", str(first)).returncode == 0
    assert marconi("digest", "--data", str(second)).returncode == 0
    for item in second.iterdir():  # b's store replaced by a's: a store of another log
        if item.name != "log":
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    for item in first.iterdir():
        if item.name != "log":
            (shutil.copytree if item.is_dir() else shutil.copy)(item, second / item.name)
    done = marconi("digest", "--data", str(second))
    assert_one_line_error(done, "digest", "store belongs to log")


def test_offline_rebuild_labels_its_digest(tmp_path: Path) -> None:
    _tiny_log(tmp_path)
    digest = marconi("digest", "--data", str(tmp_path)).stdout.strip().splitlines()[-1]
    out = marconi("rebuild", "--data", str(tmp_path)).stdout.strip().splitlines()
    assert out[-1] == f"digest: {digest}"


# -- replay --kafka: output only on stdout, quiet logs --------------------------------------


@pytest.mark.kafka
def test_replay_kafka_prints_only_its_output(kafka_bootstrap: str, kafka_topic: str) -> None:
    from log.kafkalog import KafkaLog

    async def write() -> None:
        log = KafkaLog(kafka_bootstrap, kafka_topic, 2)
        await log.start()
        try:
            t = 1_800_000_000_000
            for cmd in (CreateQueue(id="k1", project="p", queue="q", client_id="a", time_ms=t),
                        PostMessages(id="k2", project="p", queue="q", client_id="a",
                                     time_ms=t + 1, messages=[NewMessage(id="m", body=1)])):
                await log.append(partition_for("p", "q", 2), [encode(cmd)])
        finally:
            await log.stop()

    asyncio.run(write())
    done = marconi("replay", "--kafka", kafka_bootstrap, "--topic", kafka_topic, "--queue",
                   "q", "--project", "p", "--json", "--no-progress", timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [orjson.loads(line)["command"] for line in lines] == ["queue.create",
                                                                 "messages.post"]
    assert "INFO" not in done.stderr and "aiokafka" not in done.stdout


# -- marconi partitions --url ---------------------------------------------------------------


def test_partitions_url_of_an_embedded_server(tmp_path: Path) -> None:
    s = Server(tmp_path / "data", free_port(), {"MARCONI_ADMIN_MODE": "true"})
    try:
        s.wait_listening()
        done = marconi("partitions", "--url", s.url, "--json")
        assert done.returncode == 0, done.stderr
        rows = [orjson.loads(line) for line in done.stdout.splitlines()]
        assert [r["partition"] for r in rows] == list(range(16))
        assert all(isinstance(r["applied_offset"], int) for r in rows)
    finally:
        s.stop()


def test_partitions_url_unreachable_is_one_line() -> None:
    done = marconi("partitions", "--url", f"http://127.0.0.1:{free_port()}")
    assert_one_line_error(done, "partitions", "cannot reach")


@pytest.mark.kafka
@pytest.mark.slow
def test_partitions_url_shows_the_whole_cluster(kafka_bootstrap: str, tmp_path: Path) -> None:
    from ops.bench.cluster import LocalCluster, headers, queue_on

    cluster = LocalCluster(tmp_path, partitions=4, bootstrap=kafka_bootstrap,
                           log_level="WARNING")
    try:
        for name in ("n1", "n2"):
            cluster.wait_listening(cluster.start_node(name))
        cluster.wait_settled(timeout=90)
        n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
        q = queue_on(3, 4, "p")
        assert httpx.put(f"{n1.url}/v2/queues/{q}", headers=headers("p")).status_code == 201
        done = marconi("partitions", "--url", n1.url, "--json")
        assert done.returncode == 0, done.stderr
        rows = {r["partition"]: r for r in map(orjson.loads, done.stdout.splitlines())}
        assert sorted(rows) == [0, 1, 2, 3]
        assert {r["owner"] for r in rows.values()} == {n1.url, n2.url}
        assert rows[3]["applied_offset"] >= 0 and rows[3]["lag"] == 0
        assert all(isinstance(r["end_offset"], int) for r in rows.values())
        table = marconi("partitions", "--url", n2.url)
        assert table.returncode == 0 and n1.url in table.stdout and n2.url in table.stdout
    finally:
        cluster.close()
