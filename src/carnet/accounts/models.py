"""Accounts of people who are not in the professional directory, and registered software clients.

Patients, legal representatives and operators have accounts; professionals are identified by their
national identifier (IdNat_PS) in the directory; hospital/lab/pharmacy software and the insurer's
feed are clients.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime


class AccountKind(enum.StrEnum):
    PATIENT = "patient"
    REPRESENTATIVE = "legal-representative"
    OPERATOR = "operator"
    AUDITOR = "auditor"  # reads the whole audit trail, never clinical content


class ClientKind(enum.StrEnum):
    SOFTWARE = "software"
    INSURER = "insurer"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(sa.String(24))
    # The patient's own record (a patient account); None for representatives without a record here
    # and for operators.
    record_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("records.id"), unique=True)
    label: Mapped[str] = mapped_column(sa.String(120))  # a non-identifying label (operator login, persona key)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Representation(Base):
    """A legal representative acting for a patient (typically a parent for a minor)."""

    __tablename__ = "representations"

    record_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("records.id"), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("accounts.id"), primary_key=True, index=True)
    relationship: Mapped[str] = mapped_column(sa.String(16))  # HL7 RoleCode: MTH, FTH, GUARD …
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class Client(Base):
    """A registered software client: professional software or the insurer's feed.

    ``jwks`` holds the client's public keys (JSON Web Key Set) for ``private_key_jwt`` authentication
    (SMART Backend Services); ``scopes`` the space-separated scopes it may be granted.
    """

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(200))
    organization_id: Mapped[str | None] = mapped_column(sa.ForeignKey("organizations.id"))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    jwks: Mapped[str | None] = mapped_column(sa.Text(), default=None)
    scopes: Mapped[str] = mapped_column(sa.String(500), default="", server_default="")


class Credential(Base):
    """A person's login secrets: argon2id password hash and TOTP second factor, with lockout state."""

    __tablename__ = "credentials"

    account_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("accounts.id"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    totp_secret: Mapped[bytes] = mapped_column(sa.LargeBinary())  # encrypted with the key-encryption key
    totp_last_step: Mapped[int] = mapped_column(default=0)  # refuses the reuse of a TOTP code
    failed_attempts: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class OneTimeCode(Base):
    """A one-time code sent to a person (activation of their account, password reset), stored hashed."""

    __tablename__ = "one_time_codes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    purpose: Mapped[str] = mapped_column(sa.String(16))  # activation | reset
    account_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    record_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("records.id"), index=True)
    code_hash: Mapped[str] = mapped_column(sa.String(200))
    attempts: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class LoginSession(Base):
    """A signed-in browser or app session; the cookie carries a random token, the table only its hash."""

    __tablename__ = "login_sessions"

    token_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    user_agent: Mapped[str] = mapped_column(sa.String(200), default="")


class LoginAttempt(Base):
    """Failed logins per source address, for rate limiting across accounts (credential stuffing)."""

    __tablename__ = "login_attempts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    source: Mapped[str] = mapped_column(sa.String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
