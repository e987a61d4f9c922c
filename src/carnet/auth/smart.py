"""SMART Backend Services: OAuth2 client credentials with private_key_jwt for professional software.

Hospital, lab and pharmacy software (and the insurer's feed) get a Carnet access token from
``POST /auth/token`` (RFC 6749 client credentials, RFC 7523 JWT client authentication)::

    grant_type=client_credentials
    scope=system/DocumentReference.crus system/Patient.rs
    client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
    client_assertion=<JWT signed with one of the client's registered keys>

The assertion: ``iss`` = ``sub`` = the client id, ``aud`` = this endpoint's URL, ``exp`` at most five
minutes ahead, a ``jti`` used once (kept in ``used_assertions`` until the assertion expires). Carnet
adds two claims: ``carnet_practitioner``, the IdNat_PS of the professional the software acts for (they
need an active role in the client's organisation; the insurer acts for nobody), and
``carnet_access_mode`` (``normal``, ``break-glass``, ``regulation``), which only *declares* the mode:
the access policy decides per record what an emergency allows. ``carnet_secret_connection: true``
declares the *connexion secrète* of a minor's care: documents the software deposits are then invisible
to the legal representatives.

Granted scopes are the requested ones within the client's registration (``carnet.accounts.clients``);
they travel in the access token's ``scope`` claim, where the access policy enforces them.

Errors are RFC 6749 JSON. Until the assertion's signature is verified, every failure reads the same
(``invalid_client``, "client authentication failed"): nothing tells an unknown client id from a bad
signature. Once the caller has proved it holds the key, the description says what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import time
import urllib.parse
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from carnet import audit
from carnet.accounts import clients
from carnet.accounts.models import Client, ClientKind
from carnet.audit.trace import Outcome, TraceAction
from carnet.auth import tokens
from carnet.auth.actor import AccessMode, Actor, ActorKind
from carnet.auth.authenticate import resolve
from carnet.auth.models import UsedAssertion
from carnet.config import Settings
from carnet.deps import RuntimeDep
from carnet.directory.models import Organization, Practitioner, PractitionerRole
from carnet.logging import log
from carnet.runtime import Runtime, Work

router = APIRouter(tags=["Auth"])

TOKEN_PATH = "/auth/token"  # noqa: S105 - a URL path, not a secret
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_SECONDS = 300  # an assertion expires at most five minutes after it is presented
LEEWAY = 5  # seconds of clock skew tolerated on exp, nbf and iat
MAX_BODY = 16 * 1024
MAX_ASSERTION = 8 * 1024
MAX_JTI = 255
_FORM = "application/x-www-form-urlencoded"
_NO_CACHE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_AUTH_FAILED = "client authentication failed"


class OAuthError(Exception):
    """An RFC 6749 error response; ``reason`` (a fixed phrase, never a value) goes to the log only."""

    def __init__(self, error: str, description: str, *, status: int = 400, reason: str | None = None) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.reason = reason or description


def _invalid_client(description: str, reason: str | None = None) -> OAuthError:
    return OAuthError("invalid_client", description, status=401, reason=reason)


def token_endpoint(settings: Settings) -> str:
    """The URL client assertions must name as their audience."""
    return f"{settings.base_url}{TOKEN_PATH}"


# --------------------------------------------------------------------------------------- request


async def _read_form(request: Request) -> dict[str, str]:
    """The form parameters (each at most once; empty ones count as absent, RFC 6749 §3.1)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != _FORM:
        raise OAuthError("invalid_request", f"the token request must be {_FORM}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise OAuthError("invalid_request", "the token request is too large")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY:
            raise OAuthError("invalid_request", "the token request is too large")
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthError("invalid_request", "the token request is not a valid form") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"the parameter {name} is repeated")
        if value:
            form[name] = value
    return form


def _segment(part: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise _invalid_client("the client assertion must be a signed JWT", "malformed assertion") from exc
    if not isinstance(value, dict):
        raise _invalid_client("the client assertion must be a signed JWT", "malformed assertion")
    return value


def _peek(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of the assertion, before its signature is checked (to find the client)."""
    parts = assertion.split(".")
    if len(parts) != 3 or len(assertion) > MAX_ASSERTION:
        raise _invalid_client(
            "the client assertion must be a signed JWT (compact serialization)", "malformed assertion"
        )
    return _segment(parts[0]), _segment(parts[1])


# --------------------------------------------------------------------------------------- checks


def _verify(client: Client | None, assertion: str) -> dict[str, Any]:
    """The assertion's claims, once its signature by one of the client's keys is verified."""
    if client is None:
        raise _invalid_client(_AUTH_FAILED, "unknown client")
    if not client.active:
        raise _invalid_client(_AUTH_FAILED, "disabled client")
    try:
        keys = clients.key_set(client)
    except (JoseError, ValueError, TypeError, KeyError):
        keys = None
    if keys is None:
        raise _invalid_client(_AUTH_FAILED, "client without usable keys")
    try:
        decoded = jwt.decode(assertion, keys, algorithms=list(clients.CLIENT_ALGORITHMS))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise _invalid_client(_AUTH_FAILED, "bad signature or unknown key") from exc
    return dict(decoded.claims)


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_claims(claims: dict[str, Any], client_id: str, settings: Settings, now: int) -> tuple[str, int]:
    """Check the registered claims of a verified assertion; return (jti, exp)."""
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise _invalid_client("iss and sub of the client assertion must both be the client_id")
    endpoint = token_endpoint(settings)
    audience = claims.get("aud")
    if not (audience == endpoint or (isinstance(audience, list) and endpoint in audience)):
        raise _invalid_client(f"the client assertion's aud must be the token endpoint {endpoint}", "wrong audience")
    exp = claims.get("exp")
    if not _is_time(exp):
        raise _invalid_client("the client assertion needs an exp (NumericDate)", "no exp")
    assert isinstance(exp, int | float)
    if exp <= now - LEEWAY:
        raise _invalid_client("the client assertion has expired", "expired")
    if exp > now + MAX_ASSERTION_SECONDS + LEEWAY:
        raise _invalid_client(
            f"the client assertion's exp is more than {MAX_ASSERTION_SECONDS // 60} minutes ahead", "exp too far"
        )
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        if not _is_time(value):
            raise _invalid_client(f"the client assertion's {name} must be a NumericDate")
        assert isinstance(value, int | float)
        if value > now + LEEWAY:
            raise _invalid_client(f"the client assertion's {name} is in the future", f"{name} in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI:
        raise _invalid_client(f"the client assertion needs a jti (a unique string of at most {MAX_JTI} characters)")
    return jti, int(exp)


def _consume(work: Work, client_id: str, jti: str, exp: int) -> None:
    """Record the assertion as used until it expires; refuse it if it already was.

    The key is a hash of (client, jti): each client has its own jti space, of any length.
    Expired rows are purged on the way.
    """
    work.session.execute(sa.delete(UsedAssertion).where(UsedAssertion.expires_at < work.now))
    key = hashlib.sha256(f"{client_id}\x00{jti}".encode()).hexdigest()
    if work.session.get(UsedAssertion, key) is not None:
        raise _invalid_client("this client assertion was already used (jti)", "replayed assertion")
    work.session.add(
        UsedAssertion(jti=key, client_id=client_id, expires_at=dt.datetime.fromtimestamp(exp + LEEWAY, dt.UTC))
    )
    work.session.flush()


def _role_in_organization(work: Work, idnat: str, organization_id: str) -> str:
    """The id of the professional's active role in the organisation; ``invalid_grant`` otherwise."""
    practitioner_id = work.session.scalar(
        sa.select(Practitioner.id).where(Practitioner.idnat_ps == idnat, Practitioner.active.is_(True))
    )
    if practitioner_id is None:
        raise OAuthError("invalid_grant", "carnet_practitioner is not an active professional of the directory")
    role_id = work.session.scalar(
        sa.select(PractitionerRole.id)
        .join(Organization, Organization.id == PractitionerRole.organization_id)
        .where(
            PractitionerRole.practitioner_id == practitioner_id,
            PractitionerRole.organization_id == organization_id,
            PractitionerRole.active.is_(True),
            Organization.active.is_(True),
        )
        .order_by(PractitionerRole.id)
        .limit(1)
    )
    if role_id is None:
        raise OAuthError("invalid_grant", "the professional has no active role in this client's organisation")
    return role_id


def _acting(work: Work, client: Client, claims: dict[str, Any]) -> tuple[dict[str, Any], AccessMode]:
    """The token claims naming who the client acts for, and the declared access mode."""
    raw_mode = claims.get("carnet_access_mode", AccessMode.NORMAL.value)
    try:
        mode = AccessMode(raw_mode) if isinstance(raw_mode, str) else None
    except ValueError:
        mode = None
    if mode is None:
        modes = ", ".join(m.value for m in AccessMode)
        raise OAuthError("invalid_grant", f"carnet_access_mode must be one of {modes}")
    practitioner = claims.get("carnet_practitioner")
    if client.kind == ClientKind.INSURER.value:
        if practitioner is not None:
            raise OAuthError("invalid_grant", "the insurer's client acts for no professional: omit carnet_practitioner")
        if mode is not AccessMode.NORMAL:
            raise OAuthError("invalid_grant", "emergency access modes are for professionals' software")
        if "carnet_secret_connection" in claims:
            raise OAuthError("invalid_grant", "the secret connection is for professionals' software")
        return {}, mode
    if client.kind != ClientKind.SOFTWARE.value or client.organization_id is None:
        raise _invalid_client("this client is not registered as software of an organisation", "misregistered client")
    if not isinstance(practitioner, str) or not practitioner:
        raise OAuthError(
            "invalid_grant", "software names the professional it acts for: carnet_practitioner = their IdNat_PS"
        )
    secret = claims.get("carnet_secret_connection", False)
    if not isinstance(secret, bool):
        raise OAuthError("invalid_grant", "carnet_secret_connection must be true or false")
    role_id = _role_in_organization(work, practitioner, client.organization_id)
    acting: dict[str, Any] = {"act": {"sub": f"pro:{practitioner}"}, "role": role_id}
    if secret:
        acting["secret_connection"] = True
    return acting, mode


# --------------------------------------------------------------------------------------- exchange


def exchange(runtime: Runtime, form: dict[str, str]) -> dict[str, Any]:
    """Check a client-credentials token request and issue the access token (the response body)."""
    settings = runtime.settings
    grant_type = form.get("grant_type")
    if grant_type is None:
        raise OAuthError("invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        raise OAuthError("unsupported_grant_type", "the only grant type is client_credentials")
    assertion_type = form.get("client_assertion_type")
    if assertion_type is None:
        raise OAuthError("invalid_request", f"client_assertion_type is required ({ASSERTION_TYPE})")
    if assertion_type != ASSERTION_TYPE:
        raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
    if "client_secret" in form:
        raise OAuthError("invalid_request", "clients authenticate with private_key_jwt only, never a secret")
    assertion = form.get("client_assertion")
    if assertion is None:
        raise OAuthError("invalid_request", "client_assertion is required")
    requested = form.get("scope")
    if requested is None:
        raise OAuthError("invalid_request", "scope is required (for example system/DocumentReference.crus)")
    _, unverified = _peek(assertion)
    client_id = unverified.get("sub")
    if not isinstance(client_id, str) or not client_id or unverified.get("iss") != client_id:
        raise _invalid_client("iss and sub of the client assertion must both be the client_id")
    if form.get("client_id", client_id) != client_id:
        raise _invalid_client("client_id does not match the client assertion")
    now = int(time.time())
    # Authenticate the client in a read-only unit: a request that fails here never writes.
    with runtime.read() as work:
        client = work.session.get(Client, client_id) if len(client_id) <= 64 else None
        claims = _verify(client, assertion)
        assert client is not None
        jti, exp = _check_claims(claims, client.id, settings, now)
    # Then spend the assertion and decide the grant in one write unit that starts with a write (on
    # SQLite, a transaction that read first could not take the write lock under concurrency). The
    # assertion stays spent even when the grant is refused: the refusal is raised after the commit.
    refused: OAuthError | None = None
    acting: dict[str, Any] = {}
    mode = AccessMode.NORMAL
    granted: list[str] = []
    try:
        with runtime.work() as work:
            _consume(work, client.id, jti, exp)
            caller = Actor(
                kind=ActorKind.INSURER if client.kind == ClientKind.INSURER.value else ActorKind.SOFTWARE,
                key=f"client:{client.id}",
                display="",
                client_id=client.id,
            )
            try:
                acting, mode = _acting(work, client, claims)
                granted = clients.grant_scopes(requested, client.scopes)
                if not granted:
                    raise OAuthError("invalid_scope", "none of the requested scopes is registered for this client")
                # Traced as the token's own actor: the software and the professional it acts for.
                issued_to = resolve(
                    work, {"sub": caller.key, **acting, "client_id": client.id, "access_mode": mode.value}
                )
                audit.trace(
                    work,
                    TraceAction.TOKEN_ISSUED,
                    issued_to,
                    access_mode=mode.value,
                    detail=f"{acting.get('act', {}).get('sub', 'no-professional')} scope={' '.join(granted)}"[:300],
                )
            except OAuthError as exc:
                refused = exc
                audit.trace(work, TraceAction.TOKEN_ISSUED, caller, outcome=Outcome.FAILURE, detail=exc.error[:200])
    except IntegrityError as exc:  # the same jti presented twice at the same moment
        raise _invalid_client("this client assertion was already used (jti)", "replayed assertion") from exc
    if refused is not None:
        raise refused
    scope = " ".join(granted)
    token = tokens.issue(
        settings,
        f"client:{client_id}",
        extra={**acting, "client_id": client_id, "scope": scope, "access_mode": mode.value, "auth": "smart"},
    )
    log.info("smart_token_issued", client=client_id, access_mode=mode.value)
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": settings.access_token_ttl_seconds,
        "scope": scope,
    }


@router.post(TOKEN_PATH)
async def token(request: Request, runtime: RuntimeDep) -> Response:
    """OAuth2 token endpoint: client credentials with a private_key_jwt client assertion."""
    try:
        if request.headers.get("authorization"):
            raise OAuthError("invalid_request", "authenticate with client_assertion only, not an Authorization header")
        form = await _read_form(request)
        body = await run_in_threadpool(exchange, runtime, form)
    except OAuthError as exc:
        log.info("smart_token_refused", error=exc.error, reason=exc.reason)
        return JSONResponse(
            {"error": exc.error, "error_description": exc.description}, status_code=exc.status, headers=_NO_CACHE
        )
    return JSONResponse(body, headers=_NO_CACHE)


@router.get("/.well-known/smart-configuration")
async def smart_configuration(runtime: RuntimeDep) -> Response:
    """SMART App Launch 2 discovery, for backend services (client credentials, private_key_jwt)."""
    base = runtime.settings.base_url
    return JSONResponse(
        {
            "issuer": base,
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "token_endpoint": token_endpoint(runtime.settings),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(clients.CLIENT_ALGORITHMS),
            "scopes_supported": list(clients.SUPPORTED_SCOPES),
            "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        }
    )
