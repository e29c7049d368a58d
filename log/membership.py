"""Group membership over the command topic: who owns which partition, and at what address.

Every node joins one Kafka consumer group subscribed to the command topic, but only to take
part in the group protocol: the consumer never hands records to anyone (its partitions are
paused the moment they are assigned; tailing is ``KafkaLog.read``'s job, DESIGN.md §7 "where
the runner starts"). What the group gives us is the assignment:

* ``StickyAddressAssignor`` puts each member's advertised HTTP address and the partitions it
  holds now in its subscription user data; the group leader keeps every partition where it
  is (up to a fair share), spreads the rest over the least loaded members, and sends the full
  partition → address map back to every member in the assignment user data. A membership
  change so moves only the partitions it has to.
* ``Membership`` runs the consumer and tells its owner about every new assignment through a
  plain (non-async) callback: rebalance callbacks never await apply (DESIGN.md §7). Between a
  revoke and the next assignment the last map stays in place (stale routing is harmless:
  ownership routes, it does not fence).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

logger = logging.getLogger(__name__)

OnChange = Callable[[Mapping[int, str], frozenset[int]], None]

# Failover timing (kill -9 of a node -> its partitions served elsewhere) is: the session
# timeout (the coordinator notices the silence) + up to one heartbeat interval (survivors
# learn a rebalance is on) + the join/sync round (tansu holds the join phase ~3 s; Kafka
# ends it when the live members have rejoined) + catch-up of the moved partitions.
# Measured on tansu, 2 busy cores: 10 s sessions / 2.5 s heartbeats ~14 s; 6 s / 1 s
# 9-11 s (median 10.0 s); 5 s / 1 s see ``marconi bench cluster``. A live member still
# sends five heartbeats per session, so only an event loop stalled for 5 s gets it
# evicted (no flapping under ordinary load); going lower buys little, since the join
# round stays. A clean shutdown (SIGTERM) leaves the group at once and needs no timeout.
SESSION_TIMEOUT_MS = 5_000


@dataclass(frozen=True)
class _Member:
    member_id: str
    address: str
    owned: tuple[int, ...]


def sticky_assignment(partitions: Iterable[int],
                      members: Mapping[str, tuple[str, Iterable[int]]]) -> dict[str, list[int]]:
    """Partitions per member id, moving as few as possible from what members hold now.

    ``members`` maps member id → (address, partitions held now). Each member keeps what it
    holds up to ``ceil(P / N)`` (first claim wins on a conflict, members in address order);
    every other partition goes to the member holding the fewest. Deterministic: any leader
    computes the same result from the same input.
    """
    parts = sorted(set(partitions))
    order = sorted(members, key=lambda m: (members[m][0], m))
    if not order:
        return {}
    cap = -(-len(parts) // len(order))
    valid = set(parts)
    taken: set[int] = set()
    result: dict[str, list[int]] = {m: [] for m in order}
    for member in order:
        for p in sorted(set(members[member][1])):
            if p in valid and p not in taken and len(result[member]) < cap:
                taken.add(p)
                result[member].append(p)
    for p in parts:
        if p in taken:
            continue
        member = min(order, key=lambda m: (len(result[m]), order.index(m)))
        result[member].append(p)
        taken.add(p)
    return {m: sorted(ps) for m, ps in result.items()}


class StickyAddressAssignor(AbstractPartitionAssignor):
    """A partition assignor instance that carries HTTP addresses and sticks to holdings.

    aiokafka accepts an instance in ``partition_assignment_strategy``; it calls
    ``metadata()`` to join, ``assign()`` on the leader and ``on_assignment()`` on everyone.
    """

    name = "marconi-sticky-v1"
    version = 0

    def __init__(self, address: str) -> None:
        self.address = address
        self.owned: tuple[int, ...] = ()
        self.owners: dict[int, str] = {}

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:  # type: ignore[override]
        data = orjson.dumps({"address": self.address, "owned": list(self.owned)})
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), data)

    def assign(  # type: ignore[override]
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics = sorted({t for meta in members.values() for t in meta.subscription})
        decoded: dict[str, _Member] = {}
        for member_id, meta in members.items():
            try:
                info = orjson.loads(meta.user_data or b"{}")
                decoded[member_id] = _Member(member_id, str(info.get("address", "")),
                                             tuple(int(p) for p in info.get("owned", ())))
            except (orjson.JSONDecodeError, TypeError, ValueError):
                decoded[member_id] = _Member(member_id, "", ())
        out: dict[str, list[tuple[str, list[int]]]] = {m: [] for m in members}
        owner_map: dict[str, dict[int, str]] = {}
        for topic in topics:
            parts = cluster.partitions_for_topic(topic) or set()
            subscribed = {m: (d.address, d.owned) for m, d in decoded.items()
                          if topic in members[m].subscription}
            plan = sticky_assignment(parts, subscribed)
            owner_map[topic] = {p: decoded[m].address for m, ps in plan.items() for p in ps}
            for member, ps in plan.items():
                out[member].append((topic, ps))
        logger.info("assigned %s", {decoded[m].address or m: ps for m, ps in out.items()})
        user_data = orjson.dumps({t: {str(p): a for p, a in sorted(m.items())}
                                  for t, m in owner_map.items()})
        return {m: ConsumerProtocolMemberAssignment(self.version, a, user_data)
                for m, a in out.items()}

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:  # type: ignore[override]
        self.owned = tuple(sorted(tp.partition for tp in assignment.partitions()))
        owners: dict[int, str] = {}
        with contextlib.suppress(orjson.JSONDecodeError, TypeError, ValueError):
            for topic_map in orjson.loads(assignment.user_data or b"{}").values():
                owners.update({int(p): str(a) for p, a in topic_map.items()})
        self.owners = owners


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Pauses what the group assigns (records are never read here) and reports the change."""

    def __init__(self, membership: Membership) -> None:
        self._m = membership

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._m._rebalancing()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._m._assigned(assigned)


@dataclass
class MembershipState:
    """What the last assignment said (kept through a rebalance until the next one lands)."""

    owners: dict[int, str] = field(default_factory=dict)
    owned: frozenset[int] = frozenset()
    generation: int = 0
    rebalancing: bool = True


class Membership:
    """This node's membership in the projection-worker group of one command topic."""

    def __init__(self, bootstrap_servers: str, topic: str, group: str, address: str, *,
                 on_change: OnChange, session_timeout_ms: int = SESSION_TIMEOUT_MS,
                 heartbeat_interval_ms: int | None = None,
                 rebalance_timeout_ms: int | None = None,
                 client_id: str = "marconi-member") -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._group = group
        self._assignor = StickyAddressAssignor(address)
        self._on_change = on_change
        self._session_ms = session_timeout_ms
        self._heartbeat_ms = heartbeat_interval_ms or max(300, session_timeout_ms // 5)
        self._rebalance_ms = rebalance_timeout_ms or max(session_timeout_ms, 10_000)
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self.state = MembershipState()

    @property
    def address(self) -> str:
        return self._assignor.address

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=self._session_ms,
            heartbeat_interval_ms=self._heartbeat_ms,
            rebalance_timeout_ms=self._rebalance_ms,
            max_poll_interval_ms=max(self._rebalance_ms, 30_000),
            partition_assignment_strategy=(self._assignor,),
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=1024,
        )
        await consumer.start()
        consumer.subscribe([self._topic], listener=_Listener(self))
        self._consumer = consumer
        self._poll_task = asyncio.get_running_loop().create_task(self._poll(), name="membership")

    async def stop(self) -> None:
        """Leave the group (so the others take over at once, not after a session timeout)."""
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None

    async def _poll(self) -> None:
        """Keep the member alive (aiokafka leaves the group when nobody polls for too long).

        Every partition is paused, so a poll returns nothing; anything that slips through
        between an assignment and its pause is dropped unread.
        """
        consumer = self._consumer
        assert consumer is not None
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await consumer.getmany(timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("membership poll failed; retrying")
            if loop.time() - started < 0.2:
                await asyncio.sleep(0.5)

    def _rebalancing(self) -> None:
        self.state.rebalancing = True

    def _assigned(self, assigned: list[TopicPartition]) -> None:
        if self._consumer is not None and assigned:
            self._consumer.pause(*assigned)
        owned = frozenset(tp.partition for tp in assigned if tp.topic == self._topic)
        owners = dict(self._assignor.owners)
        self.state = MembershipState(owners, owned, self.state.generation + 1, False)
        logger.info("assignment %d: own %s; map %s", self.state.generation, sorted(owned),
                    owners)
        try:
            self._on_change(owners, owned)
        except Exception:
            logger.exception("assignment callback failed")


__all__ = ["Membership", "MembershipState", "StickyAddressAssignor", "sticky_assignment"]
