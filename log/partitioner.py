"""The stable partitioner: the same ``(project, queue)`` maps to the same partition everywhere."""

from __future__ import annotations

import functools
import hashlib


def partition_key(project: str, queue: str) -> bytes:
    """Length-prefixed key, so ``("a", "b/c")`` and ``("a/b", "c")`` never collide."""
    p = project.encode()
    q = queue.encode()
    return len(p).to_bytes(4, "big") + p + len(q).to_bytes(4, "big") + q


@functools.lru_cache(maxsize=4096)  # a request asks up to three times: front, core, log
def partition_for(project: str, queue: str, partitions: int) -> int:
    """Partition of a queue: blake2b of its key, modulo the partition count.

    Not Python's ``hash()``, which is salted per process.
    """
    if partitions <= 0:
        raise ValueError("partitions must be positive")
    digest = hashlib.blake2b(partition_key(project, queue), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions
