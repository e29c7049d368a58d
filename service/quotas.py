"""What a queue-creating command must carry for the per-project queue quota (issue 9).

The decision is apply's (``projections.rules.quotas``); this stamps its inputs: the limit
from the settings and the project's queues on the *other* partitions as seen now. Reading
them costs a barrier on every partition and a scan of at most ``max_queues_per_project``
keys on each (remote partitions: their queue index), so it runs only when the quota is on,
and only for requests that may create a queue (PUT, post, subscribe).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from projections import keys as K
from service.context import gateway, project, queue_name, settings


async def queue_quota(request: Request) -> dict[str, Any]:
    """``{"max_queues", "queues_elsewhere"}`` for the command, or ``{}`` when the quota is off."""
    limit = settings(request).max_queues_per_project
    if not limit:
        return {}
    gw = gateway(request)
    proj = project(request)
    own = gw.partition_of(proj, queue_name(request))
    elsewhere = 0
    for partition, view in await gw.views_all():
        if partition == own:
            continue
        prefix = K.queues_of(partition, proj)
        for _ in view.scan(prefix, K.prefix_end(prefix)):
            elsewhere += 1
            if elsewhere >= limit:
                return {"max_queues": limit, "queues_elsewhere": elsewhere}
    return {"max_queues": limit, "queues_elsewhere": elsewhere}
