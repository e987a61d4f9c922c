"""State of the authentication flows: replay protection of client assertions, pending OIDC logins."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from carnet.db import Base, UTCDateTime


class UsedAssertion(Base):
    """A client assertion (private_key_jwt) already used: the same ``jti`` is refused until it expires."""

    __tablename__ = "used_assertions"

    jti: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    client_id: Mapped[str] = mapped_column(sa.String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class OidcLogin(Base):
    """An OpenID Connect login under way: state, PKCE verifier and nonce until the callback."""

    __tablename__ = "oidc_logins"

    state: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    code_verifier: Mapped[str] = mapped_column(sa.String(200))
    nonce: Mapped[str] = mapped_column(sa.String(100))
    return_to: Mapped[str] = mapped_column(sa.String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
