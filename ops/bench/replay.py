"""``marconi bench replay``: audit a queue with a long history; time and peak memory."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import BinaryIO

from log import partition_for
from log.filelog import FileLog
from ops.admin import log_dir
from projections.commands import CreateClaim, DeleteMessage, NewMessage, PostMessages, encode

ROOT = Path(__file__).resolve().parents[2]


async def _fill(data: Path, commands: int, partitions: int) -> None:
    """Posts, claims and deletes on one queue (plus as much noise on other queues)."""
    now = int(time.time() * 1000) - commands
    async with FileLog(log_dir(data), partitions, durable=False) as log:
        p = partition_for("audit", "orders", partitions)
        batch: list[bytes] = []
        posted: list[str] = []
        for i in range(commands):
            t = now + i
            kind = i % 4
            if kind < 2 or not posted:
                mid = uuid.uuid4().hex
                posted.append(mid)
                body = {"order": i, "pad": "x" * 200}
                cmd = PostMessages(id=uuid.uuid4().hex, project="audit", queue="orders",
                                   client_id=f"producer-{i % 7}", time_ms=t,
                                   messages=[NewMessage(id=mid, body=body)])
            elif kind == 2:
                cmd = CreateClaim(id=uuid.uuid4().hex, project="audit", queue="orders",
                                  client_id=f"worker-{i % 5}", time_ms=t,
                                  claim_id=uuid.uuid4().hex, limit=2)
            else:
                cmd = DeleteMessage(id=uuid.uuid4().hex, project="audit", queue="orders",
                                    client_id=f"worker-{i % 5}", time_ms=t,
                                    message_id=posted.pop(0))
            batch.append(encode(cmd))
            if len(batch) == 1000:
                await log.append(p, batch)
                batch = []
        if batch:
            await log.append(p, batch)


def _count_lines(fh: BinaryIO) -> int:
    lines = 0
    while chunk := fh.read(1 << 20):
        lines += chunk.count(b"\n")
    return lines


def main(commands: int = 100_000, partitions: int = 16) -> None:
    data = Path(tempfile.mkdtemp(prefix="marconi-bench-replay-"))
    asyncio.run(_fill(data, commands, partitions))
    print(f"bench replay: {commands:,} commands on audit/orders in {data}")
    for extra in ([], ["--json"]):
        started = time.perf_counter()
        out = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "replay", "--data", str(data), "--project", "audit",
             "--queue", "orders", "--no-progress", *extra],
            cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
        out.seek(0)
        lines = _count_lines(out)
        mode = "json" if extra else "table"
        print(f"  replay ({mode}): {elapsed:.1f} s, {commands / elapsed:,.0f} commands/s, "
              f"{lines:,} lines, peak RSS {usage.ru_maxrss / 1024:.0f} MB, exit {proc.returncode}")
    shutil.rmtree(data, ignore_errors=True)
