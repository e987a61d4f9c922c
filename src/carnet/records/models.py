"""The patient record: one per INS, the root of the patient partition."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime


class RecordStatus(enum.StrEnum):
    """Where a record is in its life (reference/dmp.md §5, docs/records.md).

    ``opposition_pending``: announced, the patient informed, open in six weeks unless they object;
    ``active``: open; ``closed``: closed and archived (kept ten years from closure, may be reopened);
    ``deleted``: destroyed at the end of its retention or on request (only this row and the audit trail
    remain). An objection closes an announced record and destroys its content at once.
    """

    OPPOSITION_PENDING = "opposition_pending"
    ACTIVE = "active"
    CLOSED = "closed"
    DELETED = "deleted"


class ClosureReason(enum.StrEnum):
    """Why a record was closed (legacy DMP ``FermerDossier`` codes and the MES flows)."""

    PATIENT_REQUEST = "FERMETURE_DEMANDE_PATIENT"
    DECEASED = "DECES"
    OPERATOR = "FERMETURE_OPERATEUR"
    OPPOSITION = "OPPOSITION"


class Record(Base):
    """A patient's shared record. The FHIR Patient id is the record id.

    Holds no clear-text identity: the INS is kept as a keyed hash (``ins_hash``) and the Patient
    resource (names, birth date, contacts) is encrypted in the resource store with this record's
    data key, which is itself stored wrapped (``wrapped_key``) by a key-encryption key.
    """

    __tablename__ = "records"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    ins_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32), unique=True)
    ins_kind: Mapped[str] = mapped_column(sa.String(8))
    identity_status: Mapped[str] = mapped_column(sa.String(8))
    status: Mapped[str] = mapped_column(sa.String(24), default=RecordStatus.ACTIVE.value)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    closure_reason: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    # The lifecycle (carnet.records.lifecycle): when the patient was informed of an announced record
    # (the opposition window runs from then), when the record opened, and when its data key was
    # destroyed (an objection, the end of its retention): ``wrapped_key`` is then empty.
    info_sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    opened_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    key_destroyed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    kek_id: Mapped[str] = mapped_column(sa.String(32))
    wrapped_key: Mapped[bytes] = mapped_column(sa.LargeBinary())
    patient_version: Mapped[int] = mapped_column(default=1)
    # The patient's emergency preferences (DMP consents ETREAT, BTG, MASKED) and default confidentiality.
    # Emergency access is allowed unless the patient opposed; masked documents stay masked unless allowed.
    emergency_regulation: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    emergency_break_glass: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    emergency_masked: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    default_masked: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    __table_args__ = (
        # The lifecycle jobs: announced records whose window ended, closed records whose retention ended.
        sa.Index("ix_records_status_info_sent_at", "status", "info_sent_at"),
        sa.Index("ix_records_status_closed_at", "status", "closed_at"),
    )

    @property
    def is_active(self) -> bool:
        return self.status == RecordStatus.ACTIVE.value

    @property
    def is_announced(self) -> bool:
        """Announced, not open yet: the patient may still object (nobody reads it, nobody feeds it)."""
        return self.status == RecordStatus.OPPOSITION_PENDING.value

    @property
    def is_destroyed(self) -> bool:
        """Its data key was destroyed: nothing it held can be read again (crypto-shredding)."""
        return self.key_destroyed_at is not None or self.status == RecordStatus.DELETED.value
