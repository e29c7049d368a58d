"""A pure harness: commands folded into an in-memory store, no log, no clock, no I/O."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from projections import queries
from projections.apply import apply_record
from projections.commands import Command, encode
from projections.memstore import MemoryStore

P = 0  # every queue of the harness lives in partition 0


class Harness:
    def __init__(self, project: str = "proj", queue: str = "q", client: str = "c1") -> None:
        self.store = MemoryStore()
        self.offset = 0
        self.now = 1_000_000
        self.project = project
        self.queue = queue
        self.client = client
        self._ids = itertools.count()
        self.records: list[bytes] = []

    def id(self, prefix: str = "x") -> str:
        return f"{prefix}{next(self._ids):06d}"

    def run(self, cmd: Command) -> dict[str, Any]:
        defaults: dict[str, Any] = {}
        if not cmd.project and cmd.queue == "":
            defaults.update(project=self.project, queue=self.queue)
        if not cmd.client_id:
            defaults["client_id"] = self.client
        if not cmd.time_ms:
            defaults["time_ms"] = self.now
        cmd = replace(cmd, **defaults)
        record = encode(cmd)
        self.records.append(record)
        self.store.commit(apply_record(self.store, P, self.offset, record))
        self.offset += 1
        out = queries.outcome(self.store, P, cmd.id)
        assert out is not None
        return out

    def tick(self, seconds: float) -> None:
        self.now += int(seconds * 1000)
