"""Patient sessions: the cookie set at sign-in, checked against the ``login_sessions`` table.

The cookie ``carnet_session`` carries a random token (32 bytes, URL-safe base64); the table keeps
only the SHA-256 of that text, so a copy of the database lets nobody sign in. A session lives
``settings.session_idle_seconds`` after its last use and never longer than
``settings.session_max_seconds`` after sign-in; signing out revokes it.

Cross-site request forgery: a browser sends the cookie with any request to Carnet, whoever built the
page (SameSite=Strict already stops most). Every state-changing request (anything but GET, HEAD,
OPTIONS) authenticated by the cookie must also carry the header ``X-Carnet-CSRF: 1``. A cross-site
HTML form cannot add a header, and a cross-site script can only with a CORS pre-flight that Carnet
never grants. The portal sets the header on every call.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from fastapi import Request

from carnet.accounts.models import LoginSession
from carnet.config import Settings
from carnet.errors import Forbidden
from carnet.runtime import Work

COOKIE = "carnet_session"
CSRF_HEADER = "X-Carnet-CSRF"
CSRF_VALUE = "1"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SUBJECT_PREFIX = "session:"
TOKEN_BYTES = 32
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a person sees of one of their sessions."""

    created_at: dt.datetime
    last_seen_at: dt.datetime
    expires_at: dt.datetime
    user_agent: str
    current: bool


def token_hash(token: str) -> bytes:
    """What the table stores of a session token: SHA-256 of its text."""
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


def csrf_ok(request: Request) -> bool:
    """Whether a request may change state on the strength of the session cookie."""
    return request.method in SAFE_METHODS or request.headers.get(CSRF_HEADER) == CSRF_VALUE


def cookie_token(request: Request) -> str | None:
    token = request.cookies.get(COOKIE)
    return token or None


def claims_from_cookie(request: Request, settings: Settings) -> dict[str, Any] | None:
    """Identity claims for a session cookie (validated later, in the unit of work), or None.

    Raises ``Forbidden`` for a state-changing request that lacks the CSRF header.
    """
    token = cookie_token(request)
    if token is None:
        return None
    if not csrf_ok(request):
        raise Forbidden(
            f"a state-changing request authenticated by the session cookie must carry the header {CSRF_HEADER}: 1"
        )
    return {"sub": f"{SUBJECT_PREFIX}{token}"}


def token_of_claims(claims: dict[str, Any]) -> str | None:
    """The session token behind claims made by ``claims_from_cookie`` (None for other credentials)."""
    subject = str(claims.get("sub", ""))
    return subject[len(SUBJECT_PREFIX) :] if subject.startswith(SUBJECT_PREFIX) else None


def _live(row: LoginSession, settings: Settings, now: dt.datetime) -> bool:
    return (
        row.revoked_at is None
        and row.expires_at > now
        and row.last_seen_at + dt.timedelta(seconds=settings.session_idle_seconds) > now
    )


def _refresh_after(settings: Settings) -> dt.timedelta:
    """How stale ``last_seen_at`` may get before a use writes it again (spares a write per request)."""
    return dt.timedelta(seconds=min(60, settings.session_idle_seconds // 4))


def account_for_session(work: Work, token: str) -> uuid.UUID | None:
    """The account a live session token belongs to (and refresh its idle timer), or None."""
    if not _TOKEN.fullmatch(token):
        return None
    row = work.session.get(LoginSession, token_hash(token))
    if row is None or not _live(row, work.settings, work.now):
        return None
    if work.now - row.last_seen_at >= _refresh_after(work.settings):
        row.last_seen_at = work.now
        work.session.flush()  # now: read units of work on PostgreSQL run in autocommit
    return row.account_id


def create_session(work: Work, account_id: uuid.UUID, *, user_agent: str = "") -> str:
    """Open a session for an account; returns the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    work.session.add(
        LoginSession(
            token_hash=token_hash(token),
            account_id=account_id,
            created_at=work.now,
            last_seen_at=work.now,
            expires_at=work.now + dt.timedelta(seconds=work.settings.session_max_seconds),
            user_agent=user_agent[:200],
        )
    )
    work.session.flush()
    return token


def revoke(work: Work, token: str) -> bool:
    """Revoke one session by its token; whether a live session was revoked."""
    if not _TOKEN.fullmatch(token):
        return False
    row = work.session.get(LoginSession, token_hash(token))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = work.now
    work.session.flush()
    return True


def revoke_all(work: Work, account_id: uuid.UUID) -> int:
    """Revoke every session of an account (sign out everywhere); how many were still open."""
    result = work.session.execute(
        sa.update(LoginSession)
        .where(LoginSession.account_id == account_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=work.now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def live_sessions(work: Work, account_id: uuid.UUID, *, current: str | None = None) -> list[SessionInfo]:
    """An account's open sessions, most recently used first; ``current`` marks the caller's own."""
    now = work.now
    rows = work.session.scalars(
        sa.select(LoginSession)
        .where(
            LoginSession.account_id == account_id,
            LoginSession.revoked_at.is_(None),
            LoginSession.expires_at > now,
            LoginSession.last_seen_at > now - dt.timedelta(seconds=work.settings.session_idle_seconds),
        )
        .order_by(LoginSession.last_seen_at.desc())
    ).all()
    mine = token_hash(current) if current else None
    return [
        SessionInfo(
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            expires_at=row.expires_at,
            user_agent=row.user_agent,
            current=row.token_hash == mine,
        )
        for row in rows
    ]


def previous_visit(work: Work, account_id: uuid.UUID, *, current: str | None = None) -> dt.datetime | None:
    """When the account was last active before the ``current`` session (the portal's "since your last
    visit"): the latest use of any other session, or None for a first visit."""
    query = sa.select(sa.func.max(LoginSession.last_seen_at)).where(LoginSession.account_id == account_id)
    if current:
        query = query.where(LoginSession.token_hash != token_hash(current))
    value = work.session.scalar(query)
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
