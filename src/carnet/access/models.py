"""Patient decisions and emergency accesses: the facts the access policy decides on.

Each grant is also kept as a FHIR Consent (encrypted, versioned) in the resource store; these rows
are its index, read on every access decision.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime


class GrantKind(enum.StrEnum):
    """What a patient (or a professional, for care-team and médecin traitant) decided."""

    AUTHORIZATION = "authorization"  # the patient authorizes a professional or an organisation
    BLOCK = "block"  # the patient blocks a professional
    CARE_TEAM = "care-team"  # a professional declares the patient's consent / care-team membership
    MEDECIN_TRAITANT = "medecin-traitant"  # a professional becomes médecin traitant with the patient's agreement
    ADMINISTRATOR = "administrator"  # the patient designates an administrator professional


class SubjectKind(enum.StrEnum):
    PRACTITIONER = "practitioner"  # IdNat_PS
    ORGANIZATION = "organization"  # IdNat_Struct


class AccessGrant(Base):
    """One active or past decision about who may access a record."""

    __tablename__ = "access_grants"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("records.id"), primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(24))
    subject_kind: Mapped[str] = mapped_column(sa.String(16))
    subject_value: Mapped[str] = mapped_column(sa.String(40))
    start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    active: Mapped[bool] = mapped_column(default=True)
    declared_by: Mapped[str] = mapped_column(sa.String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    __table_args__ = (sa.Index("ix_access_grants_record_subject", "record_id", "subject_value", "active"),)


class EmergencyMode(enum.StrEnum):
    BREAK_GLASS = "break-glass"  # "bris de glace": any professional, patient unable to consent
    REGULATION = "regulation"  # médecin régulateur of a SAMU / centre 15


class EmergencyAccess(Base):
    """A time-limited, read-only emergency access of one professional to one record."""

    __tablename__ = "emergency_accesses"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("records.id"), primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    actor_key: Mapped[str] = mapped_column(sa.String(80))
    mode: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[bytes] = mapped_column(sa.LargeBinary())  # encrypted with the record's key
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (sa.Index("ix_emergency_accesses_record_actor", "record_id", "actor_key", "expires_at"),)
