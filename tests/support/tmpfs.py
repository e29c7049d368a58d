"""A small real filesystem that can fill up: a tmpfs mounted by the test (needs root, as
CI and the dev machines run), unmounted in teardown."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (e.g. ``"4m"``) at ``path`` for the duration."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cannot mount a tmpfs at {path} (the disk-full tests need root): "
                           f"{done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave_bytes: int, name: str = "filler") -> Path:
    """Write a filler file until only about ``leave_bytes`` stay free; returns it."""
    import os

    filler = path / name
    stat = os.statvfs(path)
    free = stat.f_bavail * stat.f_frsize
    try:
        with open(filler, "wb") as fh:
            fh.write(b"\0" * max(0, free - leave_bytes))
    except OSError:  # the last blocks: the disk is as full as it gets
        pass
    return filler
