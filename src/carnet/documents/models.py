"""Search indexes of documents (DocumentReference), lists (SubmissionSet, Folder) and binaries.

The resources themselves are stored encrypted in ``resource_versions``; these tables hold only what
searches need: codes, dates, statuses, flags, and opaque ids. Identifiers, authors and related ids
are searchable through keyed hashes in ``search_tokens``.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime


class DocumentEntry(Base):
    """The searchable metadata of the current version of one DocumentReference."""

    __tablename__ = "document_entries"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("records.id"), primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(20))
    is_archived: Mapped[bool] = mapped_column(default=False)
    type_code: Mapped[str] = mapped_column(sa.String(40))
    class_code: Mapped[str] = mapped_column(sa.String(64))
    format_code: Mapped[str | None] = mapped_column(sa.String(96))
    facility_code: Mapped[str | None] = mapped_column(sa.String(40))
    setting_code: Mapped[str | None] = mapped_column(sa.String(40))
    confidentiality: Mapped[str] = mapped_column(sa.String(1), default="N")
    # Bitmask of MASQUE_PS (1), INVISIBLE_PATIENT (2), INVISIBLE_REPRESENTANTS_LEGAUX (4).
    flags: Mapped[int] = mapped_column(default=0)
    date: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    period_start: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    period_end: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    binary_id: Mapped[str] = mapped_column(sa.String(64))
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int]
    author_key: Mapped[str] = mapped_column(sa.String(80))
    author_org: Mapped[str | None] = mapped_column(sa.String(40))
    submission_set_id: Mapped[str | None] = mapped_column(sa.String(64))
    replaces_id: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_updated: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        sa.Index("ix_document_entries_record_status_date", "record_id", "status", "date"),
        sa.Index("ix_document_entries_record_type", "record_id", "type_code"),
        sa.Index("ix_document_entries_record_period", "record_id", "period_start"),
    )


class ListEntry(Base):
    """The searchable metadata of a List: an MHD SubmissionSet or Folder."""

    __tablename__ = "list_entries"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("records.id"), primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version: Mapped[int]
    code: Mapped[str] = mapped_column(sa.String(16))  # submissionset | folder
    status: Mapped[str] = mapped_column(sa.String(16))
    date: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    designation_code: Mapped[str | None] = mapped_column(sa.String(64))
    author_key: Mapped[str] = mapped_column(sa.String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_updated: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (sa.Index("ix_list_entries_record_code_date", "record_id", "code", "date"),)


class ListMember(Base):
    """A DocumentReference listed by a SubmissionSet or Folder."""

    __tablename__ = "list_members"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("records.id"), primary_key=True)
    list_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    document_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)

    __table_args__ = (sa.Index("ix_list_members_record_document", "record_id", "document_id"),)


class BinaryEntry(Base):
    """A stored document's bytes: where the encrypted blob is, its media type and size."""

    __tablename__ = "binary_entries"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("records.id"), primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    document_id: Mapped[str] = mapped_column(sa.String(64))
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int]
    blob_address: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
