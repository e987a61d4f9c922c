"""The notification tables: the transactional outbox, the notification centre, preferences, first accesses.

Everything a notification rule writes (``notification_events``, ``notification_deliveries``,
``notification_inbox``, ``professional_accesses``) belongs to a patient and carries the record id first
in its primary key, like the rest of the patient partition. What the worker and the notification centre
query across records has its own index (deliveries by status and due time, notices by recipient).

* ``notification_events``: what happened (kind, when, the kind of actor, the professional's IdNat_PS,
  a few codes in ``params``), written in the same transaction as its cause. Never names, titles or
  medical content.
* ``notification_deliveries``: the outbox proper, one row per (event, recipient, channel) for e-mail
  and SMS, with its idempotency key, status, attempts, next attempt time, lease and last error. The
  address is sealed (AES-GCM under the key-encryption key, bound to the idempotency key).
* ``notification_inbox``: the in-app notification centre, one row per (event, recipient), written with
  the event: exactly once by construction.
* ``notification_preferences``: per account, language, channels, topics turned off, and the e-mail
  address and mobile number, sealed.
* ``professional_accesses``: the first successful access of each professional (IdNat_PS) to each record.

Foreign-key columns name their type (``sa.Uuid()``) rather than borrowing the referenced column's: the
outbox builds its statements once, at import, possibly before ``records`` is mapped.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt (next_attempt_at)
    SENDING = "sending"  # claimed by a worker until leased_until (= next_attempt_at): retried after, if it died
    DELIVERED = "delivered"  # the channel accepted it
    DEAD = "dead"  # dead-lettered: attempts exhausted or refused for good; `carnet worker requeue` retries


class NotificationEvent(Base):
    """Something that happened to a record and that someone is told about."""

    __tablename__ = "notification_events"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("records.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor_kind: Mapped[str] = mapped_column(sa.String(24))
    professional: Mapped[str | None] = mapped_column(sa.String(40), default=None)  # IdNat_PS of who acted
    params: Mapped[str] = mapped_column(sa.Text(), default="{}")  # JSON: codes only (mode, consent kind …)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class NotificationDelivery(Base):
    """One e-mail or SMS to send: the outbox row the worker claims, sends and marks."""

    __tablename__ = "notification_deliveries"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("records.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column()
    recipient: Mapped[str] = mapped_column(sa.String(80))  # account:<uuid> | pro:<IdNat_PS> | patient:<record>
    role: Mapped[str] = mapped_column(sa.String(24))
    channel: Mapped[str] = mapped_column(sa.String(8))
    language: Mapped[str] = mapped_column(sa.String(2))
    destination: Mapped[bytes] = mapped_column(sa.LargeBinary())  # sealed e-mail address or phone number
    idempotency_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    status: Mapped[str] = mapped_column(sa.String(12), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    leased_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_error: Mapped[str | None] = mapped_column(sa.String(200), default=None)  # a code, never an address
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    __table_args__ = (
        sa.UniqueConstraint("event_id", "recipient", "channel"),
        sa.Index("ix_notification_deliveries_status_due", "status", "next_attempt_at"),
    )


class InboxNotification(Base):
    """A notice in a person's notification centre (patients, representatives, professionals)."""

    __tablename__ = "notification_inbox"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("records.id"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column()
    recipient: Mapped[str] = mapped_column(sa.String(80))  # account:<uuid> | pro:<IdNat_PS>
    role: Mapped[str] = mapped_column(sa.String(24))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    __table_args__ = (
        sa.UniqueConstraint("event_id", "recipient"),
        sa.Index("ix_notification_inbox_recipient_created", "recipient", "created_at"),
    )


class NotificationPreference(Base):
    """How and about what an account is told. No row: the defaults (French, in-app only, every topic)."""

    __tablename__ = "notification_preferences"

    account_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("accounts.id"), primary_key=True)
    language: Mapped[str] = mapped_column(sa.String(2), default="fr")
    email: Mapped[bytes | None] = mapped_column(sa.LargeBinary(), default=None)  # sealed
    phone: Mapped[bytes | None] = mapped_column(sa.LargeBinary(), default=None)  # sealed, E.164
    email_channel: Mapped[bool] = mapped_column(default=False)
    sms_channel: Mapped[bool] = mapped_column(default=False)
    # Topics turned off, space-separated: a topic added later is on until the person turns it off.
    topics_off: Mapped[str] = mapped_column(sa.String(400), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ProfessionalAccess(Base):
    """A professional's first successful access to a record (what the first-access notice is about)."""

    __tablename__ = "professional_accesses"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("records.id"), primary_key=True)
    professional: Mapped[str] = mapped_column(sa.String(40), primary_key=True)  # IdNat_PS
    first_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(sa.String(40))
    access_mode: Mapped[str | None] = mapped_column(sa.String(20), default=None)
