"""The audit trail's tables.

``audit_entries``: one row per trace, in per-chain order. A chain is a record (its id) or, for events
about no record (sign-ins, administration), a subject (``chain_for_subject``). Each entry stores the
trace as canonical JSON (``payload``) and its link in the chain::

    hash(n) = SHA-256( hash(n-1) ‖ chain (16 bytes) ‖ seq (8 bytes, big-endian) ‖ payload )

with hash(0) = 32 zero bytes. The indexed columns repeat fields of the payload for searching; the
verifier checks they agree. On PostgreSQL the table is partitioned by month on ``at`` and the
application role may only INSERT and SELECT it (docs/audit.md).

``audit_heads``: the last (seq, hash) of each chain, locked by every append so a chain grows one
entry at a time. ``audit_checkpoints`` (+ ``audit_checkpoint_heads``): periodic Ed25519-signed
snapshots of the heads that changed, each linked to the previous checkpoint, so truncating or
rewriting a chain (and its head) is detected.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime

GENESIS = bytes(32)
SUBJECT_CHAINS = uuid.UUID("6f1d3c2e-9a4b-5c8d-8e7f-a1b2c3d4e5f6")


def chain_for_subject(subject: str) -> uuid.UUID:
    """The chain of events about no record (a sign-in, an administrative action) by one subject."""
    return uuid.uuid5(SUBJECT_CHAINS, subject)


class AuditEntry(Base):
    __tablename__ = "audit_entries"

    chain: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger(), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    record_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid(), default=None)
    action: Mapped[str] = mapped_column(sa.String(40))
    outcome: Mapped[str] = mapped_column(sa.String(10))
    actor_kind: Mapped[str] = mapped_column(sa.String(20))
    actor_key: Mapped[str] = mapped_column(sa.String(120))
    professional: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    resource_type: Mapped[str | None] = mapped_column(sa.String(40), default=None)
    resource_id: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    access_mode: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary())
    hash: Mapped[bytes] = mapped_column(sa.LargeBinary())

    __table_args__ = (
        # A record's history reads its chain in primary-key order (seq follows time); a professional's
        # traces and the auditor's searches by date use these two. Each index costs every append.
        sa.Index("ix_audit_entries_professional_at", "professional", "at"),
        sa.Index("ix_audit_entries_at", "at"),
        {"postgresql_partition_by": "RANGE (at)"},
    )


class AuditHead(Base):
    __tablename__ = "audit_heads"

    chain: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger())
    hash: Mapped[bytes] = mapped_column(sa.LargeBinary())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (sa.Index("ix_audit_heads_updated_at", "updated_at"),)


class AuditCheckpoint(Base):
    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    covers_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    previous: Mapped[bytes] = mapped_column(sa.LargeBinary())  # digest of the previous checkpoint
    digest: Mapped[bytes] = mapped_column(sa.LargeBinary())  # over previous, at and the heads listed
    heads: Mapped[int] = mapped_column(sa.Integer())
    key_id: Mapped[str] = mapped_column(sa.String(64))
    signature: Mapped[bytes] = mapped_column(sa.LargeBinary())


class AuditCheckpointHead(Base):
    __tablename__ = "audit_checkpoint_heads"

    checkpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("audit_checkpoints.id"), primary_key=True)
    chain: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger())
    hash: Mapped[bytes] = mapped_column(sa.LargeBinary())

    __table_args__ = (sa.Index("ix_audit_checkpoint_heads_chain", "chain", "checkpoint_id"),)
