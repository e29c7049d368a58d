"""Where outcomes are kept from rules 7 on (``versions.OUTCOME_GENERATIONS``): by generation.

A command's outcome is stored under the generation of its effective time (one outcome window
of log time each) and found by its id in this generation or the one before. A generation two
old is dropped in one range delete, so a record pays no delete per outcome it outlives (with
an expiry index it paid two, once a history spanned the window). Kept: at least one window,
at most two. Outcomes stored before the switch are looked up for one more window, then
dropped with their expiry index in one range delete. State in the meta record: ``og`` the
oldest generation that may still hold outcomes, ``ol`` until when the old keys are looked up.
"""

from __future__ import annotations

from typing import Any

from projections import keys as K
from projections.overlay import Overlay
from projections.store import View

OUTCOME_GENERATION_MS = 10 * 60 * 1000  # the outcome window (``apply.OUTCOME_WINDOW_MS``)


def generation(now: int) -> int:
    return now // OUTCOME_GENERATION_MS


def begin(meta: dict[str, Any], now: int) -> None:
    """On the first record under these rules: outcomes start at this generation; the old
    keys stay readable for one window (everything in them is older than ``now``)."""
    if "og" not in meta:
        meta["og"] = generation(now)
        meta["ol"] = now + OUTCOME_GENERATION_MS


def find(view: View, partition: int, meta: dict[str, Any], now: int,
         command_id: str) -> bytes | None:
    """The stored outcome of ``command_id`` as of ``now`` (a point read or three)."""
    gen = generation(now)
    raw = view.get(K.outcome_in(partition, gen, command_id))
    if raw is None and meta["og"] < gen:
        raw = view.get(K.outcome_in(partition, gen - 1, command_id))
    if raw is None and "ol" in meta:
        raw = view.get(K.outcome(partition, command_id))
    return raw


def prune(tx: Overlay, partition: int, now: int, meta: dict[str, Any]) -> None:
    """Drop the generations before the previous one, and the old keys once their window is
    over: one range delete each, at most once a generation."""
    gen = generation(now)
    if meta["og"] < gen - 1:
        tx.delete_range(K.outcome_generation(partition, meta["og"]),
                        K.outcome_generation(partition, gen - 1))
        meta["og"] = gen - 1
    if "ol" in meta and now >= meta["ol"]:
        # The old outcomes and their expiry index: kinds OUTCOME and OUTEXP, adjacent.
        tx.delete_range(K.kind_prefix(partition, K.OUTCOME), K.kind_prefix(partition, K.OUTGEN))
        for field in ("ol", "prune", "po"):
            meta.pop(field, None)
