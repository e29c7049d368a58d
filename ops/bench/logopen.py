"""``marconi bench log-open``: how long FileLog takes to open, and its memory, by log size.

Builds a log of ``--gb`` gigabytes of 1 KB records (16 partitions, 64 MiB segments), stops it
cleanly and opens it again in fresh processes (the median of ``--repeat``), beside an empty log
opened the same way; then simulates a kill -9 with a ``--crash-mb`` active segment that no
recovery point covers and opens that. Each open runs in its own process so RSS is that of a
process that opened only this log.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ops.bench.stats import table

RECORD = 1024
BATCH = 256


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def probe(directory: str) -> None:
    """Child process: open the log, print seconds, RSS and the open's work as JSON."""
    from log.filelog import FileLog

    async def run() -> dict:
        log = FileLog(directory)
        started = time.perf_counter()
        await log.start()
        seconds = time.perf_counter() - started
        rss = _rss_kb()
        ends = sum([await log.end_offset(p) for p in range(log.partitions)])
        stats = log.open_stats
        await log.stop()
        return {"seconds": seconds, "rss_mb": rss / 1024, "records": ends,
                "bytes_scanned": stats.bytes_scanned, "records_scanned": stats.records_scanned}

    print(json.dumps(asyncio.run(run())))


def _uncover(directory: Path) -> None:
    """Put a crashed log back as the crash left it: a clean stop of the probe wrote a recovery
    point (the active segment's index) that a kill -9 never writes."""
    for part in directory.glob("p*"):
        segments = sorted(part.glob("*.seg"))
        if segments:
            segments[-1].with_suffix(".idx").unlink(missing_ok=True)


def _open(directory: Path, repeat: int, crashed: bool = False) -> dict:
    runs = []
    for _ in range(repeat):
        if crashed:
            _uncover(directory)
        out = subprocess.run([sys.executable, "-m", "ops.bench.logopen", "--probe",
                              str(directory)], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout))
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


async def _build(directory: Path, gb: float, partitions: int, segment_bytes: int) -> int:
    from log.filelog import FileLog

    payload = os.urandom(RECORD)
    total = int(gb * 1024**3) // (RECORD + 8)
    async with FileLog(directory, partitions, durable=False, segment_bytes=segment_bytes) as log:
        written = 0
        p = 0
        while written < total:
            n = min(BATCH, total - written)
            await log.append(p, [payload] * n)
            written += n
            p = (p + 1) % partitions
    return written


def _crash_child(directory: str, mb: int) -> None:
    """Child process: append ``mb`` MiB to partition 0 and die without a clean stop."""
    from log.filelog import FileLog

    async def run() -> None:
        log = FileLog(directory, 1, segment_bytes=(mb + 1) * 1024 * 1024)
        await log.start()
        payload = os.urandom(RECORD)
        for _ in range(mb * 1024 * 1024 // (RECORD + 8) // BATCH):
            await log.append(0, [payload] * BATCH)
        os._exit(0)  # like kill -9 once everything was acknowledged

    asyncio.run(run())


def main(gb: float = 1.6, repeat: int = 3, crash_mb: int = 64, partitions: int = 16,
         keep: str | None = None) -> None:
    root = Path(keep or tempfile.mkdtemp(prefix="marconi-bench-logopen-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        empty, big, crashed = root / "empty", root / "big", root / "crashed"
        asyncio.run(_build(empty, 0, partitions, 64 * 1024 * 1024))
        if not (big / "meta.json").exists():
            print(f"building a {gb:g} GB log ({partitions} partitions, 1 KB records)...",
                  flush=True)
            started = time.perf_counter()
            count = asyncio.run(_build(big, gb, partitions, 64 * 1024 * 1024))
            print(f"  {count:,} records in {time.perf_counter() - started:.1f} s", flush=True)
        size = sum(f.stat().st_size for f in big.rglob("*.seg"))
        shutil.rmtree(crashed, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "ops.bench.logopen", "--crash", str(crashed),
                        str(crash_mb)], check=True)
        rows = []
        base = _open(empty, repeat)
        for name, directory in (("empty", empty), (f"{size / 1024**3:.2f} GB, clean stop", big),
                                (f"{crash_mb} MB active segment, kill -9", crashed)):
            got = base if directory is empty else _open(directory, repeat,
                                                        crashed=directory is crashed)
            rows.append([name, f"{got['records']:,}", f"{got['seconds'] * 1000:.1f}",
                         f"{(got['seconds'] - base['seconds']) * 1000:+.1f}",
                         f"{got['rss_mb']:.1f}", f"{got['rss_mb'] - base['rss_mb']:+.1f}",
                         f"{got['bytes_scanned'] / 1024**2:.1f}",
                         f"{got['records_scanned']:,}"])
        print()
        print(f"bench log-open: FileLog.start() in a fresh process, median of {repeat}")
        print(table(["log", "records", "open ms", "vs empty ms", "RSS MB", "vs empty MB",
                     "MB scanned", "records scanned"], rows))
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1] == "--probe":
        probe(sys.argv[2])
    elif sys.argv[1] == "--crash":
        _crash_child(sys.argv[2], int(sys.argv[3]))
