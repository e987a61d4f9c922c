"""The transactional outbox: writing notices with their cause, and the worker's side of the queue.

**Writing** (``enqueue``, called by the rules inside the unit of work's transaction): one
``notification_events`` row, one ``notification_inbox`` row per recipient (the in-app notice, which
therefore exists exactly once, and if and only if its cause committed) and one
``notification_deliveries`` row per (recipient, e-mail or SMS). The delivery's id and idempotency key
are derived from (event, recipient, channel), and a unique constraint holds them: a delivery cannot be
enqueued twice.

**Delivering** (the worker): ``claim`` takes up to ``limit`` due deliveries in one statement and leases
them (status ``sending``, ``lease_owner``, ``leased_until``; ``attempts`` + 1). On PostgreSQL the
candidates are selected ``FOR UPDATE SKIP LOCKED``, so concurrent workers never claim the same row and
never wait for each other; on SQLite the claiming ``UPDATE`` runs in a ``BEGIN IMMEDIATE`` transaction
(one writer at a time), which gives the same guarantee. After sending, ``mark_delivered`` (or
``mark_failed``) updates the row only if the lease is still this worker's.

**Semantics: at least once, with an idempotency key.** A worker can die after the channel accepted a
message and before ``mark_delivered`` committed; its lease then expires and another attempt sends the
message again. Nothing is ever lost (a claimed delivery is either marked or re-claimed), and the
duplicate carries the same idempotency key: the same ``Message-ID`` for e-mail (receiving systems and
mail clients collapse duplicates by it), the same ``Idempotency-Key`` header for the SMS gateway (which
must not send twice). Raw duplicates are bounded by the deliveries in flight when a worker dies: one
per worker, since a worker sends one message at a time and marks it before the next.

**Retries**: a transient failure puts the delivery back to ``pending`` with ``next_attempt_at`` = now +
``backoff(attempts)`` (exponential, capped, with jitter); a permanent refusal (SMTP 5xx for the
recipient, SMS gateway 4xx) or the last allowed attempt dead-letters it (status ``dead``, with its last
error: a code, never an address). ``requeue_dead`` gives dead letters a fresh set of attempts.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from carnet.config import Settings
from carnet.crypto import sealed
from carnet.notifications.kinds import Channel, Kind, Language, Role
from carnet.notifications.models import DeliveryStatus, InboxNotification, NotificationDelivery, NotificationEvent

if TYPE_CHECKING:  # the runtime imports the rules, which import this module
    from carnet.runtime import Work

DESTINATION_CONTEXT = b"carnet-notify-destination"
_IDS = uuid.UUID("0b6b7c1e-6f0e-5d4f-9a57-3c1a7e2b9f40")  # namespace of delivery ids (uuid5)
ERROR_MAX = 200


# ---------------------------------------------------------------------------------------- writing
@dataclass(frozen=True, slots=True)
class Recipient:
    """Someone told about an event, and where."""

    key: str  # account:<uuid> | pro:<IdNat_PS> | patient:<record id> (contacts of the Patient resource)
    role: Role
    language: Language
    in_app: bool
    email: str | None = None
    phone: str | None = None


def delivery_id(event_id: uuid.UUID, recipient: str, channel: Channel) -> uuid.UUID:
    """The id of the one delivery of ``event_id`` to ``recipient`` by ``channel`` (its idempotency key)."""
    return uuid.uuid5(_IDS, f"{event_id}|{recipient}|{channel.value}")


def idempotency_key(delivery: uuid.UUID) -> str:
    return f"carnet-{delivery.hex}"


def seal_destination(settings: Settings, key: str, destination: str) -> bytes:
    return sealed.seal(
        settings.key_encryption_keys(), destination.encode(), context=DESTINATION_CONTEXT, aad=key.encode()
    )


def open_destination(settings: Settings, key: str, blob: bytes) -> str | None:
    plain = sealed.open_sealed(settings.key_encryption_keys(), blob, context=DESTINATION_CONTEXT, aad=key.encode())
    return plain.decode() if plain is not None else None


def enqueue(
    work: Work,
    *,
    record_id: uuid.UUID,
    kind: Kind,
    occurred_at: dt.datetime,
    actor_kind: str,
    professional: str | None,
    params: dict[str, Any],
    recipients: Sequence[Recipient],
    event_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Stage an event, its in-app notices and its deliveries (written at the unit's next flush).

    ``event_id`` is chosen by the caller when ``params`` must be bound to it (a sealed secret, see
    ``carnet.notifications.reset_code``); a fresh one otherwise. Returns the event id, or None when
    nobody is to be told (nothing is written then). A recipient named twice (the same key) is told
    once, as first named: a notice or a delivery is unique per event and recipient.
    """
    unique: dict[str, Recipient] = {}
    for recipient in recipients:
        unique.setdefault(recipient.key, recipient)
    recipients = list(unique.values())
    if not any(r.in_app or r.email or r.phone for r in recipients):
        return None
    event_id = event_id or uuid.uuid4()
    now = work.now
    work.store.stage(
        NotificationEvent,
        record_id=record_id,
        id=event_id,
        kind=kind.value,
        occurred_at=occurred_at,
        actor_kind=actor_kind,
        professional=professional,
        params=orjson.dumps(params).decode(),
        created_at=now,
    )
    for recipient in recipients:
        if recipient.in_app:
            work.store.stage(
                InboxNotification,
                record_id=record_id,
                id=uuid.uuid4(),
                event_id=event_id,
                recipient=recipient.key,
                role=recipient.role.value,
                created_at=now,
                read_at=None,
            )
        for channel, destination in ((Channel.EMAIL, recipient.email), (Channel.SMS, recipient.phone)):
            if not destination:
                continue
            ident = delivery_id(event_id, recipient.key, channel)
            key = idempotency_key(ident)
            work.store.stage(
                NotificationDelivery,
                record_id=record_id,
                id=ident,
                event_id=event_id,
                recipient=recipient.key,
                role=recipient.role.value,
                channel=channel.value,
                language=recipient.language.value,
                destination=seal_destination(work.settings, key, destination),
                idempotency_key=key,
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                lease_owner=None,
                leased_until=None,
                last_error=None,
                created_at=now,
                updated_at=now,
                delivered_at=None,
            )
    return event_id


# ---------------------------------------------------------------------------------------- delivering
@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker holds the lease of, with what it needs to render and send it."""

    record_id: uuid.UUID
    id: uuid.UUID
    event_id: uuid.UUID
    recipient: str
    role: Role
    channel: Channel
    language: Language
    destination: bytes  # sealed; ``open_destination(settings, idempotency_key, destination)``
    idempotency_key: str
    attempts: int  # including this one
    created_at: dt.datetime
    kind: Kind
    occurred_at: dt.datetime
    params: dict[str, Any]


D = NotificationDelivery
_table = cast(sa.Table, NotificationDelivery.__table__)
_due = (
    sa.select(_table.c.record_id, _table.c.id)
    .where(
        _table.c.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]),
        _table.c.next_attempt_at <= sa.bindparam("b_now"),
    )
    .order_by(_table.c.next_attempt_at)
    .limit(sa.bindparam("b_limit"))
    .with_for_update(skip_locked=True)  # PostgreSQL; SQLite renders nothing (its writer lock is held)
)
_CLAIM = (
    sa.update(_table)
    .where(sa.tuple_(_table.c.record_id, _table.c.id).in_(_due))
    .values(
        status=DeliveryStatus.SENDING.value,
        lease_owner=sa.bindparam("b_owner"),
        leased_until=sa.bindparam("b_until"),
        next_attempt_at=sa.bindparam("b_until"),
        attempts=_table.c.attempts + 1,
        updated_at=sa.bindparam("b_now"),
    )
    .returning(
        _table.c.record_id,
        _table.c.id,
        _table.c.event_id,
        _table.c.recipient,
        _table.c.role,
        _table.c.channel,
        _table.c.language,
        _table.c.destination,
        _table.c.idempotency_key,
        _table.c.attempts,
        _table.c.created_at,
    )
)


def claim(session: Session, *, owner: str, now: dt.datetime, limit: int, lease: dt.timedelta) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries (pending and due, or sending with an expired lease).

    The caller commits; the session must be a writing one (``BEGIN IMMEDIATE`` on SQLite).
    """
    until = now + lease
    claimed = (
        session.connection()
        .execute(
            _CLAIM,
            {"b_now": now, "b_limit": limit, "b_owner": owner, "b_until": until},
        )
        .all()
    )
    if not claimed:
        return []
    event_keys = {(row.record_id, row.event_id) for row in claimed}
    events = {
        (e.record_id, e.id): e
        for e in session.execute(
            sa.select(
                NotificationEvent.record_id,
                NotificationEvent.id,
                NotificationEvent.kind,
                NotificationEvent.occurred_at,
                NotificationEvent.params,
            ).where(sa.tuple_(NotificationEvent.record_id, NotificationEvent.id).in_(sorted(event_keys)))
        )
    }
    found = []
    for row in sorted(claimed, key=lambda r: (r.created_at, r.id)):
        event = events[(row.record_id, row.event_id)]
        found.append(
            Claimed(
                record_id=row.record_id,
                id=row.id,
                event_id=row.event_id,
                recipient=row.recipient,
                role=Role(row.role),
                channel=Channel(row.channel),
                language=Language(row.language),
                destination=row.destination,
                idempotency_key=row.idempotency_key,
                attempts=row.attempts,
                created_at=row.created_at,
                kind=Kind(event.kind),
                occurred_at=event.occurred_at,
                params=orjson.loads(event.params),
            )
        )
    return found


def _mine(delivery: Claimed, owner: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        D.record_id == delivery.record_id,
        D.id == delivery.id,
        D.lease_owner == owner,
        D.status == DeliveryStatus.SENDING.value,
    )


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


# Built once: marking is one statement per message, the worker's hottest path.
_MARK_DELIVERED = (
    sa.update(_table)
    .where(
        _table.c.record_id == sa.bindparam("b_record"),
        _table.c.id == sa.bindparam("b_id"),
        _table.c.lease_owner == sa.bindparam("b_owner"),
        _table.c.status == DeliveryStatus.SENDING.value,
    )
    .values(
        status=DeliveryStatus.DELIVERED.value,
        delivered_at=sa.bindparam("b_now"),
        updated_at=sa.bindparam("b_now"),
        lease_owner=None,
        leased_until=None,
        last_error=None,
    )
)


def mark_delivered(session: Session, delivery: Claimed, *, owner: str, now: dt.datetime) -> bool:
    """The channel accepted the message. False if the lease was lost meanwhile (another worker took it)."""
    result = session.connection().execute(
        _MARK_DELIVERED, {"b_record": delivery.record_id, "b_id": delivery.id, "b_owner": owner, "b_now": now}
    )
    return _rowcount(result) == 1


def backoff(settings: Settings, attempts: int, rng: random.Random) -> dt.timedelta:
    """How long to wait after failed attempt number ``attempts``: base × 2^(attempts-1), capped, then
    "equal jitter" (between half and all of it) so failed deliveries do not retry in lockstep."""
    ceiling = min(settings.notify_backoff_max_seconds, settings.notify_backoff_base_seconds * 2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=ceiling / 2 + rng.uniform(0, ceiling / 2))


def mark_failed(
    session: Session,
    delivery: Claimed,
    *,
    owner: str,
    now: dt.datetime,
    error: str,
    permanent: bool,
    settings: Settings,
    rng: random.Random,
    retry_after: float | None = None,
) -> DeliveryStatus | None:
    """Record a failed attempt: retry later, or dead-letter. None if the lease was lost meanwhile."""
    dead = permanent or delivery.attempts >= settings.notify_max_attempts
    wait = backoff(settings, delivery.attempts, rng)
    if retry_after is not None:  # the channel said when (Retry-After), within reason
        wait = max(wait, dt.timedelta(seconds=min(retry_after, settings.notify_backoff_max_seconds)))
    status = DeliveryStatus.DEAD if dead else DeliveryStatus.PENDING
    result = session.execute(
        sa.update(D)
        .where(_mine(delivery, owner))
        .values(
            status=status.value,
            next_attempt_at=now if dead else now + wait,
            lease_owner=None,
            leased_until=None,
            last_error=error[:ERROR_MAX],
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return status if _rowcount(result) == 1 else None


def release(session: Session, deliveries: Iterable[Claimed], *, owner: str, now: dt.datetime) -> int:
    """Give back claimed deliveries that were not attempted (the worker is stopping): due now, the
    attempt they were charged not counted."""
    released = 0
    for delivery in deliveries:
        released += _rowcount(
            session.execute(
                sa.update(D)
                .where(_mine(delivery, owner))
                .values(
                    status=DeliveryStatus.PENDING.value,
                    next_attempt_at=now,
                    lease_owner=None,
                    leased_until=None,
                    attempts=D.attempts - 1,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
        )
    return released


def renew(
    session: Session, deliveries: Sequence[Claimed], *, owner: str, now: dt.datetime, lease: dt.timedelta
) -> None:
    """Extend the lease of deliveries still waiting in a worker's batch."""
    if not deliveries:
        return
    until = now + lease
    session.execute(
        sa.update(D)
        .where(
            sa.tuple_(D.record_id, D.id).in_([(d.record_id, d.id) for d in deliveries]),
            D.lease_owner == owner,
            D.status == DeliveryStatus.SENDING.value,
        )
        .values(leased_until=until, next_attempt_at=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def requeue_dead(session: Session, *, now: dt.datetime) -> int:
    """Give every dead letter a fresh set of attempts, due now (after fixing what killed them)."""
    result = session.execute(
        sa.update(D)
        .where(D.status == DeliveryStatus.DEAD.value)
        .values(status=DeliveryStatus.PENDING.value, attempts=0, next_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def counts(session: Session) -> dict[str, int]:
    """Deliveries per status (for `carnet worker status` and the metrics)."""
    found = {status.value: 0 for status in DeliveryStatus}
    for status, count in session.execute(sa.select(D.status, sa.func.count()).group_by(D.status)):
        found[str(status)] = int(count)
    return found
