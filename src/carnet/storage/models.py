"""Tables of the encrypted, versioned resource store and of the database blob store.

Every row that belongs to a patient carries ``record_id`` first in its primary key, so the schema can
be distributed on that column (PostgreSQL + Citus, or one database per shard) without code changes.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime


class ResourceVersion(Base):
    """One version of one FHIR resource of a record, its JSON encrypted with the record's data key."""

    __tablename__ = "resource_versions"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("records.id"), primary_key=True)
    resource_type: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    resource_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    version: Mapped[int] = mapped_column(primary_key=True)
    is_current: Mapped[bool] = mapped_column(default=True)
    last_updated: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    body: Mapped[bytes] = mapped_column(sa.LargeBinary())


class ResourceLocator(Base):
    """Global routing table: which record a resource id belongs to (FHIR URLs carry no patient)."""

    __tablename__ = "resource_locator"

    resource_type: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    resource_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    record_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("records.id"), index=True)


class StoredBlob(Base):
    """Encrypted document bytes kept in the database, addressed by the SHA-256 of the stored bytes."""

    __tablename__ = "blobs"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("records.id"), primary_key=True)
    address: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    size: Mapped[int]
    data: Mapped[bytes] = mapped_column(sa.LargeBinary())


class SearchToken(Base):
    """Keyed hashes of identifier-like search values (identifiers, authors, related ids, sources).

    The database can match an exact value without ever holding it in clear.
    """

    __tablename__ = "search_tokens"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("records.id"), primary_key=True)
    resource_type: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    param: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    value_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32), primary_key=True)
    resource_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)

    __table_args__ = (
        # Conditional operations (PATCH DocumentReference?identifier=…) find a resource without a patient.
        sa.Index("ix_search_tokens_lookup", "resource_type", "param", "value_hash"),
        # A document uniqueId exists once per record: the database refuses the duplicate (409).
        sa.Index(
            "uq_search_tokens_master",
            "record_id",
            "resource_type",
            "value_hash",
            unique=True,
            postgresql_where=sa.text("param = 'master'"),
            sqlite_where=sa.text("param = 'master'"),
        ),
    )
