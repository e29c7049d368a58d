"""Per-project quotas, decided in apply from what the command carries (DESIGN §2.8).

* Messages per queue: a queue lives in one partition, so its ``count`` decides exactly.
* Queues per project: a project's queues spread over every partition. The node building the
  command stamps ``queues_elsewhere`` (the project's queues on the *other* partitions, as it
  saw them) and the limit; apply adds this partition's own count. The answer comes from apply
  and replays identically; concurrent creations on different partitions may overshoot the
  limit by the number of creations in flight at once — a quota, not a consistency rule.

Refusals are recorded outcomes (``"quota"``: 400 Invalid API request, like Zaqar's limits).
"""

from __future__ import annotations

from typing import Any

from projections import keys as K
from projections.overlay import Overlay
from projections.rules.state import Context, Rejected, get_queue


def check_new_queue(tx: Overlay, ctx: Context, cmd: Any) -> None:
    """Refuse creating ``cmd.queue`` if its project already holds ``cmd.max_queues``.

    Reads at most ``max_queues`` keys: the scan stops at the limit."""
    limit = getattr(cmd, "max_queues", 0)
    if not limit or get_queue(tx, ctx.partition, cmd.project, cmd.queue) is not None:
        return
    held = max(0, int(getattr(cmd, "queues_elsewhere", 0)))
    prefix = K.queues_of(ctx.partition, cmd.project)
    if held < limit:
        for _ in tx.scan(prefix, K.prefix_end(prefix)):
            held += 1
            if held >= limit:
                break
    if held >= limit:
        raise Rejected("quota", f"Queue quota exceeded: project {cmd.project} may hold at "
                                f"most {limit} queues.")


def check_messages(q: dict[str, Any] | None, cmd: Any) -> None:
    """Refuse a post that would take its queue past ``cmd.max_messages`` stored messages
    (counted as stored: expired messages count until a sweep removes them)."""
    limit = getattr(cmd, "max_messages", 0)
    held = q["count"] if q else 0
    if limit and held + len(cmd.messages) > limit:
        raise Rejected("quota", f"Message quota exceeded: queue {cmd.queue} may hold at most "
                                f"{limit} messages.")
