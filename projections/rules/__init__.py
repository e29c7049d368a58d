"""Apply's rules, one module per resource group; ``projections.apply`` dispatches to them.

``state`` (codec, context, queue records, keys) and ``index`` (message and claim indexes) are
shared; ``messages``, ``claims``, ``queues``, ``subscriptions`` and ``upkeep`` (Sweep, GC, dead
letters) each hold the handlers of one group.
"""
