"""``bench compare --before CHECKOUT`` serves that checkout, not this one: before/after figures
of one run come from two trees; every server is warmed up first, into a queue of its own
(``ops/bench/compare.py``)."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import httpx
import pytest

from ops.bench import compare, wrk_scripts
from ops.testbroker import free_port

ROOT = Path(__file__).resolve().parents[2]
HEADERS = {"Client-ID": wrk_scripts.CLIENT_ID, "X-Project-ID": wrk_scripts.PROJECT}


def _checkout(dest: Path) -> Path:
    """A copy of this tree's packages whose ``ops`` leaves a mark when it is imported."""
    for package in ("log", "projections", "service", "ops"):
        shutil.copytree(ROOT / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    with open(dest / "ops" / "__init__.py", "a") as init:
        init.write("\nfrom pathlib import Path as _P\n"
                   "(_P(__file__).parent.parent / 'imported-here').touch()\n")
    return dest


def test_the_before_server_runs_the_other_checkout(tmp_path: Path) -> None:
    tree = _checkout(tmp_path / "before")
    port = free_port()
    proc, data = compare.start_marconi(port, workers=1, root=tree)
    base = f"http://127.0.0.1:{port}"
    try:
        compare.wait_http(base)
        posted = httpx.post(f"{base}/v2/queues/q/messages", headers=HEADERS,
                            content=b'{"messages": [{"ttl": 300, "body": 1}]}')
        assert posted.status_code == 201, posted.text
        assert (tree / "imported-here").exists()  # its ops package, not this tree's
        assert not (ROOT / "imported-here").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def test_warm_up_posts_into_its_own_queue(tmp_path: Path) -> None:
    port = free_port()
    proc, data = compare.start_marconi(port, workers=1)
    base = f"http://127.0.0.1:{port}"
    try:
        compare.wait_http(base)
        assert compare.warm_up(base, 0) == 0.0  # none asked: nothing sent
        rate = compare.warm_up(base, 1.0)
        queues = httpx.get(f"{base}/v2/queues", headers=HEADERS).json()["queues"]
        assert [q["name"] for q in queues] == [compare.WARMUP_QUEUE]
        stats = httpx.get(f"{base}/v2/queues/{compare.WARMUP_QUEUE}/stats",
                          headers=HEADERS).json()
        assert stats["messages"]["total"] >= rate * 0.5 > 0  # wrk's count, roughly
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def test_server_before_needs_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--before"):
        compare.main(servers=("marconi", "before"))
    with pytest.raises(SystemExit, match="--before"):
        compare.main(servers=("marconi",), before=tmp_path)  # no marconi there
