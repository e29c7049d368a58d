"""``marconi digest`` and ``marconi rebuild`` as real processes on an embedded data directory."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from log import partition_for
from log.filelog import FileLog
from ops.admin import log_dir, store_dir
from projections.commands import Sweep, encode
from projections.rocksstore import RocksStore
from projections.runner import Runner
from tests.projections.workload import Workload

ROOT = Path(__file__).resolve().parents[2]


def marconi(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "ops.cli", "--log-level", "WARNING", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()


async def _fill(data: Path, n: int) -> None:
    """A live store that has applied only part of its log (the rest arrives after it stops)."""
    work = Workload(seed=5)
    async with FileLog(log_dir(data), 4) as log:
        store = RocksStore(store_dir(data))
        async with Runner(log, store, range(4), sweep_interval=0) as runner:
            for cmd in work.commands(n):
                p = 0 if isinstance(cmd, Sweep) else partition_for(cmd.project, cmd.queue, 4)
                await log.append(p, [encode(cmd)])
            for p in range(4):
                await runner.barrier(p, timeout=30)
        store.close()
        for cmd in work.commands(200):
            p = 0 if isinstance(cmd, Sweep) else partition_for(cmd.project, cmd.queue, 4)
            await log.append(p, [encode(cmd)])


def test_digest_catches_up_and_rebuild_reproduces_it(tmp_path: Path) -> None:
    asyncio.run(_fill(tmp_path, 2000))
    first = marconi("digest", "--data", str(tmp_path))[-1]
    assert len(first) == 64 and int(first, 16) >= 0
    assert marconi("digest", "--data", str(tmp_path))[-1] == first  # stable
    out = marconi("rebuild", "--data", str(tmp_path))
    assert out[-1] == f"digest: {first}"
    assert "rebuilt 2204 records" in out[0]  # 2,200 commands and 4 SetRules
    assert marconi("digest", "--data", str(tmp_path))[-1] == first
    assert not (tmp_path / "store.rebuild").exists()
    assert not (tmp_path / "store.old").exists()
