"""Commands: one frozen type per state-changing operation, and their versioned encoding.

Everything non-deterministic (ids, time, client id, the settings apply uses) is stamped on the
command before it is appended, so ``apply`` can stay a pure function (DESIGN.md §2.2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

VERSION = 1


class CommandDecodeError(ValueError):
    """A record that is not a command this code understands."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Fields every command carries."""

    TAG: ClassVar[str] = ""

    id: str
    project: str = ""
    queue: str = ""
    client_id: str = ""
    time_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateQueue(Command):
    TAG: ClassVar[str] = "queue.create"
    metadata: dict[str, Any] = field(default_factory=dict)
    # Quota (0 = off): the project's queue limit and its queues on other partitions, seen
    # when the command was built; apply adds this partition's own (projections.rules.quotas).
    max_queues: int = 0
    queues_elsewhere: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateQueue(Command):
    """JSON-patch operations, as the client sent them; validated against state in apply."""

    TAG: ClassVar[str] = "queue.update"
    ops: list[dict[str, Any]] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteQueue(Command):
    TAG: ClassVar[str] = "queue.delete"


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeQueue(Command):
    TAG: ClassVar[str] = "queue.purge"
    resource_types: list[str] = field(default_factory=lambda: ["messages", "subscriptions"])


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    """One message of a post: ``ttl``/``delay`` are None when the client left them out."""

    id: str
    body: Any
    ttl: int | None = None
    delay: Any = None  # validated in apply: only delayed queues honour it


@dataclass(frozen=True, slots=True, kw_only=True)
class PostMessages(Command):
    TAG: ClassVar[str] = "messages.post"
    messages: list[NewMessage] = field(default_factory=list)
    size: int = 0  # request body bytes, checked against the queue's own cap
    default_ttl: int = 3600
    max_post_size: int = 262144
    max_delay: int = 900
    # Stamped settings of notification delivery (apply honours them from rules version 3):
    # record a pending delivery per live subscription, and skip unconfirmed subscriptions
    # when confirmation is required.
    deliver: bool = False
    require_confirmation: bool = False
    max_messages: int = 0  # quota: messages one queue may hold (0 = off)
    max_queues: int = 0  # quota, as on CreateQueue (a post creates its queue lazily)
    queues_elsewhere: int = 0
    create_queue: bool = True  # False (v1.0): a missing queue is refused, not created


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteMessage(Command):
    TAG: ClassVar[str] = "message.delete"
    message_id: str
    claim_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteMessages(Command):
    TAG: ClassVar[str] = "messages.delete"
    message_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class PopMessages(Command):
    TAG: ClassVar[str] = "messages.pop"
    count: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateClaim(Command):
    TAG: ClassVar[str] = "claim.create"
    claim_id: str
    ttl: int = 300
    grace: int = 60
    limit: int = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateClaim(Command):
    TAG: ClassVar[str] = "claim.update"
    claim_id: str
    ttl: int = 300
    grace: int = 60


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseClaim(Command):
    TAG: ClassVar[str] = "claim.release"
    claim_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSubscription(Command):
    TAG: ClassVar[str] = "subscription.create"
    subscription_id: str
    subscriber: str
    ttl: int = 3600
    options: dict[str, Any] = field(default_factory=dict)
    require_confirmation: bool = False  # stamped: queue a SubscriptionConfirmation to send
    max_queues: int = 0  # quota, as on CreateQueue (a subscription creates its queue lazily)
    max_subscriptions: int = 0  # stamped max_subscriptions_per_queue (rules >= 5; 0 = off)
    queues_elsewhere: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateSubscription(Command):
    """Only the fields the client sent (``subscriber``, ``ttl``, ``options``)."""

    TAG: ClassVar[str] = "subscription.update"
    subscription_id: str
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteSubscription(Command):
    TAG: ClassVar[str] = "subscription.delete"
    subscription_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfirmSubscription(Command):
    TAG: ClassVar[str] = "subscription.confirm"
    subscription_id: str
    confirmed: bool = True
    require_confirmation: bool = False  # stamped: ``false`` queues an UnsubscribeConfirmation


@dataclass(frozen=True, slots=True, kw_only=True)
class Sweep(Command):
    """Remove what expired at or before ``cutoff_ms``, at most ``max_count`` items a kind."""

    TAG: ClassVar[str] = "sweep"
    cutoff_ms: int = 0
    max_count: int = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportDeadLetters(Command):
    """Messages moved from another queue (maybe another partition) by the dead-letter rule.

    Applied only if ``origin_offset`` is past the high-water mark kept for
    ``source_partition``, so a re-send after a crash is a no-op (exactly-once).
    """

    TAG: ClassVar[str] = "deadletter.import"
    source_partition: int
    origin_offset: int
    messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxDone(Command):
    """The outbox entry written at ``origin_offset`` was delivered; clear it."""

    TAG: ClassVar[str] = "outbox.done"
    origin_offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReport(Command):
    """What the owner's attempts to notify subscribers of one queue answered.

    ``results``: ``{"s": subscription id, "i": item (message id, or ``~confirm`` /
    ``~unsubscribe``), "r": "delivered" | "failed" | "refused" | "cancelled", "status": HTTP or
    SMTP code or None, "error": text}``. Apply turns a failure into the next attempt time from
    the retry policy at this command's log time, or gives the delivery up. ``floor_ms``: no
    unreported delivery of the partition is due before it (where the next owner scans from).
    """

    TAG: ClassVar[str] = "delivery.report"
    results: list[dict[str, Any]] = field(default_factory=list)
    floor_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FanOut(Command):
    """Expand pending fan-out entries of this partition into at most ``max_count`` pending
    deliveries (rules >= 5). Appended by the owner's delivery duty while entries wait, at the
    pace it sends, so no post and no single command does work that grows with the number of
    subscriptions. ``project``/``queue`` are unused (the oldest entries go first)."""

    TAG: ClassVar[str] = "delivery.fanout"
    max_count: int = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class SetRules(Command):
    """From this record on, the partition folds under rules ``version`` (DESIGN §7).

    Appended by the partition's owner; see ``projections.rules.versions``.
    """

    TAG: ClassVar[str] = "rules.set"
    version: int


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.TAG: cls
    for cls in (
        CreateQueue, UpdateQueue, DeleteQueue, PurgeQueue, PostMessages, DeleteMessage,
        DeleteMessages, PopMessages, CreateClaim, UpdateClaim, ReleaseClaim,
        CreateSubscription, UpdateSubscription, DeleteSubscription, ConfirmSubscription,
        Sweep, ImportDeadLetters, OutboxDone, DeliveryReport, FanOut, SetRules,
    )
}


_FIELDS: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _plain(cmd: Command) -> dict[str, Any]:
    """The command as a dict (field names cached per class: ``dataclasses.asdict`` deep-copies
    every value, which was the larger part of encoding a post)."""
    out: dict[str, Any] = {"v": VERSION, "t": cmd.TAG}
    for name in _names(type(cmd)):
        out[name] = getattr(cmd, name)
    if isinstance(cmd, PostMessages):
        fields = _names(NewMessage)
        out["messages"] = [{n: getattr(m, n) for n in fields} for m in cmd.messages]
    return out


def encode(cmd: Command) -> bytes:
    """The record bytes of a command (orjson, with a version and a type tag)."""
    return orjson.dumps(_plain(cmd))


def decode(record: bytes) -> Command:
    """The command in a record; ``CommandDecodeError`` for anything else."""
    try:
        data = orjson.loads(record)
    except orjson.JSONDecodeError as exc:
        raise CommandDecodeError(f"record is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CommandDecodeError("record is not a JSON object")
    version = data.pop("v", None)
    if version != VERSION:
        raise CommandDecodeError(f"unknown command version {version!r} (this code reads {VERSION})")
    cls = COMMAND_TYPES.get(data.pop("t", None))  # type: ignore[arg-type]
    if cls is None:
        raise CommandDecodeError("unknown command type")
    if cls is PostMessages and isinstance(data.get("messages"), list):
        try:
            data["messages"] = [NewMessage(**m) for m in data["messages"]]
        except TypeError as exc:
            raise CommandDecodeError(f"bad message in post: {exc}") from exc
    try:
        return cls(**data)
    except TypeError as exc:
        raise CommandDecodeError(f"bad {cls.TAG} command: {exc}") from exc


DECODED_MAX = 4096
DECODED_MAX_BYTES = 16 << 20
"""Records ``decode_to_append`` keeps at most, by count and by their bytes: those appended
and not folded yet. A failed append leaves its entry behind until the next clear, so while
the disk refuses writes large posts would otherwise pile up to 4,096 records of any size."""


class _Kept(dict[bytes, Command]):
    """The kept commands by record, with the bytes of those records (``size``)."""

    size = 0


_decoded = _Kept()


def decode_to_append(record: bytes) -> Command:
    """``decode``, for a record about to be appended: the command is kept for the fold of that
    record (``decode_appended``), so the core's check and apply decode it once between them.

    Kept by the record's bytes, so the fold gets exactly what decoding the bytes it read from
    the log gives (nothing the log does not hold), or decodes them itself if the entry is gone.
    """
    cmd = decode(record)
    if len(_decoded) >= DECODED_MAX or _decoded.size + len(record) > DECODED_MAX_BYTES:
        _decoded.clear()
        _decoded.size = 0
    _decoded[record] = cmd
    _decoded.size += len(record)
    return cmd


def decode_appended(record: bytes) -> Command:
    """``decode`` of a record read back from the log; the command ``decode_to_append`` kept
    for these bytes if there is one (taken once: apply may change what it holds)."""
    cmd = _decoded.pop(record, None)
    if cmd is None:
        return decode(record)
    _decoded.size -= len(record)
    return cmd
