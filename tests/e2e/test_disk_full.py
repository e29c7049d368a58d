"""A real ``marconi serve`` whose log disk fills up and frees again (issue 9, item 5).

The log directory is a small tmpfs mounted by the test. While it is full, posts answer 503 with
Retry-After and ping says 503; once space is back, writes resume within seconds with no
restart, SIGTERM exits 0, nothing acknowledged is lost and the live digest equals a rebuild's.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_crash import ROOT, everything, free_port, start_server
from tests.support.tmpfs import fill, small_filesystem

PROJECT = "crash"  # everything() lists this project's queue
QUEUE = "work"


def _marconi(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ops.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_disk_full_then_freed_resumes_without_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with small_filesystem(data / "log", "24m") as disk:
        port = free_port()
        proc = start_server(data, port)
        base = f"http://127.0.0.1:{port}"
        headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
        acked: dict[str, str] = {}
        refused = 0
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=15) as client:
                def post(n: int) -> httpx.Response:
                    r = client.post(f"/v2/queues/{QUEUE}/messages", json={"messages": [
                        {"body": {"k": f"m{n}", "pad": "x" * 3000}}]})
                    if r.status_code == 201:
                        acked[r.json()["resources"][0].rsplit("/", 1)[-1]] = f"m{n}"
                    return r

                for n in range(50):
                    assert post(n).status_code == 201
                assert client.get("/v2/ping").status_code == 204
                fillers = [fill(disk, 256 * 1024)]
                n = 50
                while refused < 5:
                    r = post(n)
                    n += 1
                    if r.status_code == 503:
                        refused += 1
                        assert "Retry-After" in r.headers
                        assert set(r.json()) == {"title", "description"}
                        fillers.append(fill(disk, 0, f"filler{n}"))  # what a repair freed
                    else:
                        assert r.status_code == 201, r.text
                    assert n < 2000, "the disk never filled"
                assert client.get("/v2/ping").status_code == 503
                assert post(n).status_code == 503
                for f in fillers:
                    f.unlink()
                started = time.monotonic()
                while client.get("/v2/ping").status_code != 204:
                    assert time.monotonic() - started < 10, "ping never recovered"
                    time.sleep(0.1)
                while post(n).status_code != 201:
                    assert time.monotonic() - started < 10, "writes never resumed"
                    time.sleep(0.1)
                resumed = time.monotonic() - started
                for m in range(n + 1, n + 20):
                    assert post(m).status_code == 201
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        assert code == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        print(f"disk full: {refused} refused (503), writes resumed {resumed:.2f} s after space "
              f"came back, {len(acked)} acknowledged")

        port = free_port()
        proc = start_server(data, port)
        try:
            present = {m["id"]: m["body"]["k"] for m in everything(f"http://127.0.0.1:{port}")}
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        lost = [mid for mid in acked if present.get(mid) != acked[mid]]
        assert lost == [], f"{len(lost)} acknowledged messages lost"
        live = _marconi("digest", "--data", str(data)).strip()
        rebuilt = _marconi("rebuild", "--data", str(data)).strip().splitlines()[-1].split()[-1]
        assert live == rebuilt
