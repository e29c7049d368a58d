"""A child process for crash tests: appends to a FileLog forever, printing every acknowledgement.

Usage: python -m tests.support.filelog_writer DIR PARTITIONS WRITERS TAG

Each acknowledged record is printed as ``partition offset value`` after its append returned,
so the parent knows a superset-free list of records that must survive a ``kill -9``.
"""

from __future__ import annotations

import asyncio
import sys

from log.filelog import FileLog


async def main(directory: str, partitions: int, writers: int, tag: str) -> None:
    async with FileLog(directory, partitions, segment_bytes=256 * 1024) as log:
        out = sys.stdout

        async def writer(w: int) -> None:
            seq = 0
            while True:
                partition = (w * 7 + seq) % partitions
                batch = [f"{tag}-{w}-{seq}-{j}-".encode() + b"x" * (seq % 300) for j in range(
                    1 + seq % 3)]
                offsets = await log.append(partition, batch)
                for off, value in zip(offsets, batch, strict=True):
                    out.write(f"{partition} {off} {value.decode()}\n")
                out.flush()
                seq += 1

        print("ready", flush=True)
        await asyncio.gather(*(writer(w) for w in range(writers)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
