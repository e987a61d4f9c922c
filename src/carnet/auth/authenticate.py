"""Turn verified token claims into an ``Actor`` by looking the subject up in accounts and the directory.

Resolutions are cached per process for a few seconds (``ActorCache``): a busy professional's
software makes many calls a second, and the directory changes a few times a day. A disabled account
or a professional removed from the directory loses access within ``ActorCache.ttl`` seconds.
"""

from __future__ import annotations

import uuid
from typing import Any

from carnet.accounts import service as accounts
from carnet.accounts.models import Account, AccountKind, Client, ClientKind
from carnet.auth import certificates, sessions
from carnet.auth.actor import AccessMode, Actor, ActorKind
from carnet.auth.cache import ActorCache
from carnet.directory import service as directory
from carnet.errors import Unauthenticated
from carnet.runtime import Work

_ACCOUNT_KINDS = {
    AccountKind.PATIENT.value: ActorKind.PATIENT,
    AccountKind.REPRESENTATIVE.value: ActorKind.REPRESENTATIVE,
    AccountKind.OPERATOR.value: ActorKind.OPERATOR,
    AccountKind.AUDITOR.value: ActorKind.AUDITOR,
}


def actor_for(work: Work, claims: dict[str, Any]) -> Actor:
    """The actor a token speaks for; ``Unauthenticated`` when the subject is unknown or disabled."""
    cache = work.actors
    # A patient's session is looked up at every request: signing out (in any worker process) ends it at once.
    if cache is None or str(claims.get("sub", "")).startswith(sessions.SUBJECT_PREFIX):
        return resolve(work, claims)
    key = ActorCache.key(claims)
    actor = cache.get(key)
    if actor is None:
        actor = resolve(work, claims)
        cache.put(key, actor)
    return actor


def _common(claims: dict[str, Any]) -> dict[str, Any]:
    """Actor attributes every kind of credential may carry."""
    mode = str(claims.get("access_mode") or AccessMode.NORMAL.value)
    try:
        declared = AccessMode(mode)
    except ValueError as exc:
        raise Unauthenticated(f"unknown access mode {mode!r}") from exc
    scope = claims.get("scope")
    return {
        "persona": claims.get("persona"),
        "declared_mode": declared,
        "secret_connection": bool(claims.get("secret_connection")),
        "scopes": frozenset(str(scope).split()) if scope is not None else None,
        "auth_method": "dev" if claims.get("dev") else str(claims.get("auth") or "token"),
    }


def resolve(work: Work, claims: dict[str, Any]) -> Actor:
    """Look the token's subject up (no cache)."""
    subject = str(claims.get("sub", ""))
    scheme, _, ident = subject.partition(":")
    common = _common(claims)
    if scheme == "session":
        account_id = sessions.account_for_session(work, ident)
        if account_id is None:
            raise Unauthenticated("the session has expired or was signed out")
        scheme, ident = "account", str(account_id)
        common["auth_method"] = "password"
    if scheme == "account":
        try:
            account = work.session.get(Account, uuid.UUID(ident))
        except ValueError:
            account = None
        if account is None or not account.active:
            raise Unauthenticated("unknown or disabled account")
        kind = _ACCOUNT_KINDS[account.kind]
        # A parent may be a patient with their own record and the representative of a child: the
        # access policy decides per record which of the two they are.
        represented = accounts.represented_records(work, account.id)
        return Actor(
            kind=kind,
            key=f"account:{account.id}",
            display=account.label,
            account_id=account.id,
            own_record=account.record_id,
            represented_records=represented,
            **common,
        )
    if scheme == "pro":
        professional = directory.professional(work, ident, claims.get("role"))
        if professional is None:
            raise Unauthenticated("unknown professional or no active role in the directory")
        return Actor(
            kind=ActorKind.PROFESSIONAL,
            key=f"pro:{professional.idnat}",
            display=professional.display,
            professional=professional,
            **common,
        )
    if scheme == "client":
        client = work.session.get(Client, ident)
        if client is None or not client.active:
            raise Unauthenticated("unknown or disabled client")
        if client.kind == ClientKind.INSURER.value:
            return Actor(
                kind=ActorKind.INSURER,
                key=f"client:{client.id}",
                display=client.name,
                client_id=client.id,
                **common,
            )
        acting = (claims.get("act") or {}).get("sub", "")
        if not str(acting).startswith("pro:"):
            raise Unauthenticated("software must name the professional it acts for (act.sub = pro:<IdNat>)")
        professional = directory.professional(work, str(acting)[4:], claims.get("role"))
        if professional is None:
            raise Unauthenticated("the professional the software acts for is unknown")
        return Actor(
            kind=ActorKind.SOFTWARE,
            key=f"client:{client.id}",
            display=f"{client.name} / {professional.display}",
            client_id=client.id,
            professional=professional,
            **common,
        )
    if scheme == certificates.ORG_CERT_SCHEME:
        # An organisation ("personne morale") certificate: the organisation's registered software,
        # acting for a professional who works there (see carnet.auth.certificates).
        acting = str((claims.get("act") or {}).get("sub", ""))
        if not acting.startswith("pro:"):
            raise Unauthenticated("software must name the professional it acts for (X-Acting-Professional)")
        client, professional = certificates.software_for_organization(work, ident, acting[4:])
        return Actor(
            kind=ActorKind.SOFTWARE,
            key=f"client:{client.id}",
            display=f"{client.name} / {professional.display}",
            client_id=client.id,
            professional=professional,
            **common,
        )
    raise Unauthenticated("unknown token subject")
