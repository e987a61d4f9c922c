"""The professional portal's session: a card sign-in, and the short-lived token that keeps it.

Both ways in end with the same Carnet access token in the ``carnet_pro_token`` cookie: a card
certificate (mutual TLS, or a trusted proxy's header), verified here exactly as the API verifies it
(``carnet.auth.certificates``) and resolved in the directory (``authenticate.actor_for``); or Pro
Santé Connect, whose callback issues the token itself (``carnet.auth.oidc``).

The token lives ``settings.access_token_ttl_seconds``: that is the portal's idle timeout. A page
viewed past half the token's life gets a fresh one (``renewal``), carrying the time of the sign-in
(``auth_time``), so activity keeps a session alive for at most ``settings.session_max_seconds``.
Signing out drops the cookie (the token dies with its short lifetime) and is traced.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from carnet import audit
from carnet.audit.trace import Outcome, TraceAction
from carnet.auth import certificates, tokens
from carnet.auth.actor import Actor, ActorKind
from carnet.auth.authenticate import actor_for
from carnet.config import Settings
from carnet.errors import Unauthenticated
from carnet.runtime import Work

CARD = "certificate"
DEMO = "demo"  # development only: sign in as a demo persona, no card (``make run``)
# Claims a renewed token keeps from the one it replaces (everything else is issued afresh).
KEPT_CLAIMS = ("role", "auth", "acr")


class CardStatus(enum.StrEnum):
    OK = "ok"
    NO_CARD = "no-card"  # the browser presented no certificate
    INVALID = "invalid"  # a certificate Carnet does not trust (expired, another authority, not for clients …)
    ORGANIZATION = "organization"  # an organisation's certificate: software, not a person
    UNKNOWN = "unknown"  # a valid card whose holder has no active role in Carnet's directory


@dataclass(frozen=True, slots=True)
class CardCheck:
    """What the certificate presented with a request says, before any database access."""

    status: CardStatus
    claims: dict[str, Any] | None = None


def check_card(request: Request, settings: Settings) -> CardCheck:
    """Read and verify the card certificate of ``request`` (no database access)."""
    try:
        claims = certificates.claims_from_request(request, settings)
    except Unauthenticated as exc:
        # An organisation certificate without X-Acting-Professional fails in claims_for: say what it is.
        if "organisation certificate" in exc.message:
            return CardCheck(CardStatus.ORGANIZATION)
        return CardCheck(CardStatus.INVALID)
    if claims is None:
        return CardCheck(CardStatus.NO_CARD)
    if not str(claims.get("sub", "")).startswith("pro:"):
        return CardCheck(CardStatus.ORGANIZATION)
    return CardCheck(CardStatus.OK, claims)


def sign_in(work: Work, claims: dict[str, Any], *, method: str = CARD) -> Actor | None:
    """The professional a verified card names, with the sign-in traced; None (and a failure traced) when
    the directory does not know them."""
    try:
        actor = actor_for(work, claims)
    except Unauthenticated:
        actor = None
    if actor is None or actor.kind is not ActorKind.PROFESSIONAL or actor.professional is None:
        stranger = Actor(kind=ActorKind.PROFESSIONAL, key=str(claims.get("sub", ""))[:80], display="")
        audit.trace(work, TraceAction.LOGIN_FAILURE, stranger, outcome=Outcome.FAILURE, detail="card unknown")
        return None
    audit.trace(work, TraceAction.LOGIN, actor, detail=f"portal {method}")
    return actor


def sign_out(work: Work, actor: Actor) -> None:
    """Trace the end of a portal session (the cookie is dropped by the caller)."""
    audit.trace(work, TraceAction.LOGOUT, actor, detail="portal")


def issue(settings: Settings, actor: Actor, *, auth: str = CARD, now: int | None = None) -> str:
    """The portal token of a professional who just signed in."""
    professional = actor.professional
    assert professional is not None
    moment = now or int(time.time())
    extra: dict[str, Any] = {"role": professional.role_id, "auth": auth, "auth_time": moment}
    return tokens.issue(settings, f"pro:{professional.idnat}", extra=extra, ttl=settings.access_token_ttl_seconds)


def renewal(settings: Settings, claims: dict[str, Any], *, now: int | None = None) -> str | None:
    """A fresh token when ``claims`` (a professional's portal token) are past half their life; None while
    they are young, once the session reached its maximum length, and for any other kind of token."""
    if not str(claims.get("sub", "")).startswith("pro:") or claims.get("dev"):
        return None
    moment = now or int(time.time())
    issued, expires = int(claims.get("iat", 0)), int(claims.get("exp", 0))
    if moment < issued + (expires - issued) // 2:
        return None
    started = int(claims.get("auth_time") or issued)
    if moment - started >= settings.session_max_seconds:
        return None
    extra: dict[str, Any] = {k: claims[k] for k in KEPT_CLAIMS if claims.get(k) is not None}
    extra["auth_time"] = started
    return tokens.issue(settings, str(claims["sub"]), extra=extra, ttl=settings.access_token_ttl_seconds)
