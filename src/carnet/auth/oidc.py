"""OpenID Connect login of professionals (authorization code + PKCE), Pro Santé Connect claims.

``GET /auth/oidc/login`` discovers the provider (``{CARNET_OIDC_ISSUER}/.well-known/openid-configuration``,
cached), remembers a random ``state``, a PKCE verifier and a ``nonce`` in ``oidc_logins``, and sends
the browser to the provider's authorization endpoint. ``GET /auth/oidc/callback`` consumes the
state (single use, ten minutes at most), exchanges the code at the token endpoint
(``client_secret_basic`` + ``code_verifier``), validates the ID token (signature against the
provider's JWKS, issuer, audience, expiry, nonce), reads the userinfo endpoint and maps the Pro Santé
Connect claims onto a role of Carnet's directory; it answers with a Carnet access token, or, when
the login asked to come back to a page of Carnet, sets it in the ``carnet_pro_token`` cookie and
redirects there.

Carnet admits only professionals its directory knows: the provider says who they are and which
professions they exercise where (``SubjectRefPro.exercices``), the directory says which of those
roles Carnet accepts.
"""

from __future__ import annotations

import datetime as dt
import secrets
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import httpx2
import sqlalchemy as sa
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from joserfc import jws, jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import KeySet
from starlette.responses import JSONResponse, RedirectResponse, Response

from carnet import audit
from carnet.audit.trace import TraceAction
from carnet.auth import tokens
from carnet.auth.actor import Actor, ActorKind
from carnet.auth.models import OidcLogin
from carnet.config import Settings
from carnet.deps import PRO_TOKEN_COOKIE, RuntimeDep
from carnet.directory import service as directory
from carnet.directory.models import Organization, Practitioner, PractitionerRole
from carnet.errors import Forbidden, Invalid, IssueCode, NotFound, Problem, Unauthenticated
from carnet.fhir.outcomes import outcome_response
from carnet.logging import log
from carnet.runtime import Runtime, Work

router = APIRouter(prefix="/auth/oidc", tags=["Auth"])

COOKIE = PRO_TOKEN_COOKIE
# Binds a login to the browser that started it (RFC 6749 §10.12): a callback URL carrying someone
# else's code and state (login CSRF: "sign in as the attacker") is refused.
STATE_COOKIE = "carnet_oidc_state"
CALLBACK_PATH = "/auth/oidc/callback"
STATE_LIFETIME = dt.timedelta(minutes=10)
# How long the provider's discovery document and keys are trusted before being fetched again (an
# ID token signed by a key not in the cached set makes Carnet fetch the keys once more at once).
METADATA_TTL = 3600.0
JWKS_TTL = 3600.0
# Every call to the provider is bounded: a slow provider fails the login, it never holds a worker.
TIMEOUT = httpx2.Timeout(10.0, connect=5.0)
# Asymmetric signatures only: never "none", never HMAC with the client secret.
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "Ed25519"]
CLOCK_SKEW = 60  # seconds of leeway on exp / iat
MAX_RETURN_TO = 500  # OidcLogin.return_to


class ProviderError(Exception):
    """The identity provider could not be reached (503) or answered something unusable (502)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What Carnet uses of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str


@dataclass(frozen=True, slots=True)
class PendingLogin:
    code_verifier: str
    nonce: str
    return_to: str


@dataclass(frozen=True, slots=True)
class RoleCandidate:
    """An active directory role of the professional signing in."""

    role_id: str
    profession: str
    specialty: str | None
    organization_idnat: str | None


# ------------------------------------------------------------------------------------ provider client


class OidcClient:
    """The calls Carnet makes to one OpenID provider, with its discovery document and keys cached.

    One per application (``app.state``); the HTTP clients themselves are opened per call, so nothing
    is tied to an event loop.
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        production: bool = False,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._client_secret = client_secret
        self._production = production
        self._transport = transport
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._keys: tuple[float, KeySet] | None = None
        self._ssl: ssl.SSLContext | None = None

    def _client_options(self) -> dict[str, Any]:
        # Loading the CA bundle costs ~0.1 s: once per provider, not once per HTTP client.
        if self._ssl is None:
            self._ssl = httpx2.create_ssl_context()
        return {"timeout": TIMEOUT, "transport": self._transport, "verify": self._ssl, "follow_redirects": False}

    def _http(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(**self._client_options())

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            async with self._http() as http:
                response = await http.get(url, headers={"Accept": "application/json"})
        except httpx2.HTTPError as exc:
            raise ProviderError(f"the identity provider is unreachable ({what}: {type(exc).__name__})", 503) from exc
        if response.status_code != 200:
            raise ProviderError(f"the identity provider answered {response.status_code} to the {what} request")
        try:
            data = response.json()
        except ValueError as exc:
            raise ProviderError(f"the identity provider's {what} is not JSON") from exc
        if not isinstance(data, dict):
            raise ProviderError(f"the identity provider's {what} is not a JSON object")
        return data

    async def metadata(self) -> ProviderMetadata:
        """The discovery document (OpenID Connect Discovery 1.0), fetched at most once an hour."""
        now = time.monotonic()
        if self._metadata is not None and now - self._metadata[0] < METADATA_TTL:
            return self._metadata[1]
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        data = await self._get_json(url, "discovery")
        issuer = data.get("issuer")
        if not isinstance(issuer, str) or issuer.rstrip("/") != self.issuer.rstrip("/"):
            raise ProviderError("the discovery document names another issuer than CARNET_OIDC_ISSUER")
        endpoints: dict[str, str] = {}
        for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri"):
            value = data.get(name)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise ProviderError(f"the discovery document has no usable {name}")
            if self._production and not value.startswith("https://"):
                raise ProviderError(f"the provider's {name} must use https:// in production")
            endpoints[name] = value
        metadata = ProviderMetadata(issuer=issuer, **endpoints)
        self._metadata = (now, metadata)
        return metadata

    async def keys(self, metadata: ProviderMetadata, *, refresh: bool = False) -> KeySet:
        """The provider's public keys (``jwks_uri``), cached; ``refresh`` fetches them again."""
        now = time.monotonic()
        if not refresh and self._keys is not None and now - self._keys[0] < JWKS_TTL:
            return self._keys[1]
        data = await self._get_json(metadata.jwks_uri, "JWKS")
        try:
            public = {"keys": [k for k in data.get("keys") or [] if isinstance(k, dict) and "d" not in k]}
            key_set = KeySet.import_key_set(public)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ProviderError("the identity provider's JWKS holds no usable public key") from exc
        self._keys = (now, key_set)
        return key_set

    def authorization_url(self, metadata: ProviderMetadata, *, redirect_uri: str, scope: str, login: OidcLogin) -> str:
        uri: str = prepare_grant_uri(
            metadata.authorization_endpoint,
            client_id=self.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=scope,
            state=login.state,
            nonce=login.nonce,
            code_challenge=create_s256_code_challenge(login.code_verifier),
            code_challenge_method="S256",
        )
        return uri

    async def sign_in(
        self, metadata: ProviderMetadata, *, code: str, redirect_uri: str, pending: PendingLogin
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Exchange the code, validate the ID token, read userinfo: (ID token claims, userinfo claims)."""
        oauth = AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self._client_secret,
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 (a method name)
            **self._client_options(),
        )
        try:
            async with oauth:
                try:
                    token = await oauth.fetch_token(
                        metadata.token_endpoint,
                        grant_type="authorization_code",
                        code=code,
                        redirect_uri=redirect_uri,
                        code_verifier=pending.code_verifier,
                    )
                except OAuthError as exc:
                    raise Unauthenticated(
                        f"the identity provider refused the authorization code ({exc.error}): sign in again"
                    ) from exc
                except httpx2.HTTPStatusError as exc:
                    raise ProviderError(
                        f"the identity provider's token endpoint answered {exc.response.status_code}"
                    ) from exc
                id_token = token.get("id_token")
                access_token = token.get("access_token")
                if not isinstance(id_token, str) or not isinstance(access_token, str):
                    raise ProviderError("the token response has no ID token (is 'openid' in CARNET_OIDC_SCOPES?)")
                claims = await self.validate_id_token(metadata, id_token, nonce=pending.nonce)
                response = await oauth.request(
                    "GET",
                    metadata.userinfo_endpoint,
                    withhold_token=True,
                    headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                )
        except httpx2.HTTPError as exc:
            raise ProviderError(f"the identity provider is unreachable ({type(exc).__name__})", 503) from exc
        if response.status_code != 200:
            raise ProviderError(f"the identity provider's userinfo endpoint answered {response.status_code}")
        try:
            userinfo = response.json()
        except ValueError as exc:
            raise ProviderError("the userinfo response is not JSON (signed userinfo is not supported)") from exc
        if not isinstance(userinfo, dict):
            raise ProviderError("the userinfo response is not a JSON object")
        # OpenID Connect Core §5.3.2: the userinfo sub MUST be the ID token's, or the answer is not to be used.
        if userinfo.get("sub") != claims.get("sub"):
            raise Unauthenticated("the identity provider's userinfo is about another subject than the ID token")
        return claims, userinfo

    async def validate_id_token(self, metadata: ProviderMetadata, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The claims of a valid ID token (OpenID Connect Core §3.1.3.7); ``Unauthenticated`` otherwise."""
        try:
            header = jws.extract_compact(id_token.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("the ID token is malformed") from exc
        if header.get("alg") not in ID_TOKEN_ALGORITHMS:
            raise Unauthenticated(
                f"the ID token is signed with an algorithm Carnet does not accept ({header.get('alg')})"
            )
        key_set = await self.keys(metadata)
        kid = header.get("kid")
        if kid is not None and all(key.kid != kid for key in key_set.keys):
            key_set = await self.keys(metadata, refresh=True)  # the provider may have rotated its keys
        try:
            decoded = jwt.decode(id_token, key_set, algorithms=ID_TOKEN_ALGORITHMS)
        except (JoseError, ValueError) as exc:
            raise Unauthenticated("the ID token's signature is not valid for the identity provider's keys") from exc
        claims = dict(decoded.claims)
        registry = jwt.JWTClaimsRegistry(
            leeway=CLOCK_SKEW,
            iss={"essential": True, "value": metadata.issuer},
            aud={"essential": True, "value": self.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise Unauthenticated("the ID token has expired") from exc
        except ClaimError as exc:
            raise Unauthenticated(f"the ID token's '{exc.claim}' claim is not valid for Carnet") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (len(audiences) > 1 and azp is None) or (azp is not None and azp != self.client_id):
            raise Unauthenticated("the ID token's 'azp' claim is not valid for Carnet")
        return claims


def _client(request: Request, settings: Settings) -> OidcClient:
    issuer, client_id, secret = _configuration(settings)
    client: OidcClient | None = getattr(request.app.state, "carnet_oidc_client", None)
    if client is None or client.issuer != issuer or client.client_id != client_id:
        client = OidcClient(issuer, client_id, secret, production=settings.is_production)
        request.app.state.carnet_oidc_client = client
    return client


def _configuration(settings: Settings) -> tuple[str, str, str]:
    if not (settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret):
        raise NotFound(
            "OpenID Connect sign-in is not configured on this server "
            "(CARNET_OIDC_ISSUER, CARNET_OIDC_CLIENT_ID, CARNET_OIDC_CLIENT_SECRET)"
        )
    return settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret.get_secret_value()


def redirect_uri(settings: Settings) -> str:
    return f"{settings.base_url}{CALLBACK_PATH}"


# ------------------------------------------------------------------------------------ login state


def safe_return_to(value: str | None) -> str:
    """A path of Carnet to come back to, or ``""``; anything that could leave Carnet is refused."""
    if value is None or value == "":
        return ""
    parts = urllib.parse.urlsplit(value)
    if (
        len(value) > MAX_RETURN_TO
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or parts.scheme
        or parts.netloc
        or any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value)
    ):
        raise Invalid.at(
            "return_to",
            "return_to must be a path of this server (e.g. /portal/), not an absolute URL",
            IssueCode.VALUE,
        )
    return value


def _start_login(runtime: Runtime, return_to: str) -> OidcLogin:
    with runtime.work() as work:
        # Abandoned logins are swept as new ones start: the table holds ten minutes of logins at most.
        work.session.execute(sa.delete(OidcLogin).where(OidcLogin.created_at < work.now - STATE_LIFETIME))
        login = OidcLogin(
            state=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),  # 86 characters of the RFC 7636 alphabet
            nonce=secrets.token_urlsafe(32),
            return_to=return_to,
            created_at=work.now,
        )
        work.session.add(login)
        work.session.flush()
        work.session.expunge(login)
    return login


def _take_login(runtime: Runtime, state: str) -> PendingLogin:
    """Consume a pending login: a state works once, for ten minutes."""
    refused = Invalid.at(
        "state", "this sign-in is unknown, already used or expired: start again from /auth/oidc/login", IssueCode.VALUE
    )
    with runtime.work() as work:
        login = work.session.get(OidcLogin, state)
        if login is None:
            raise refused
        pending = PendingLogin(login.code_verifier, login.nonce, login.return_to)
        created_at = login.created_at
        # Two callbacks racing with the same state: only the one whose DELETE removes the row goes on.
        deleted = work.session.execute(sa.delete(OidcLogin).where(OidcLogin.state == state))
        if getattr(deleted, "rowcount", 0) != 1:
            raise refused
        expired = work.now - created_at > STATE_LIFETIME
    if expired:  # consumed all the same
        raise refused
    return pending


# ------------------------------------------------------------------------------------ claims → role


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def structure_ids(activity: dict[str, Any]) -> set[str]:
    """The identifiers under which a Pro Santé Connect activity names its structure."""
    keys = (
        "identifiantTechniqueDeLaStructure",
        "numeroFinessSite",
        "numeroSiretSite",
        "ancienIdentifiantDeLaStructure",
    )
    return {_text(activity.get(key)) for key in keys} - {""}


def same_structure(idnat_struct: str, candidate: str) -> bool:
    """Whether a structure identifier from Pro Santé Connect designates this IdNat_Struct.

    An IdNat_Struct is one prefix character and the national number (``1``+FINESS, ``3``+SIRET…);
    Pro Santé Connect gives either the IdNat_Struct itself (``ancienIdentifiantDeLaStructure``), the
    bare number (``numeroFinessSite``, ``numeroSiretSite``) or the number behind another one-letter
    prefix (``identifiantTechniqueDeLaStructure`` = ``F``+FINESS). Only whole national numbers of 9
    characters or more are compared, never partial suffixes.
    """
    idnat, candidate = idnat_struct.strip().upper(), candidate.strip().upper()
    if not idnat or not candidate:
        return False
    if idnat == candidate:
        return True
    number = idnat[1:]
    if len(number) < 9:
        return False
    return candidate == number or (len(candidate) == len(idnat) and candidate[1:] == number)


def choose_role(roles: list[RoleCandidate], exercices: list[dict[str, Any]]) -> RoleCandidate | None:
    """The directory role the sign-in speaks for.

    A role qualifies when its profession is the ``codeProfession`` of one of the exercises. Among
    those, a role whose organisation is one of the exercise's activity structures comes first, then
    a role whose specialty is the exercise's ``codeSavoirFaire``, then the first matching profession
    (exercises in the provider's order, roles in the directory's).
    """
    best: tuple[int, int, int] | None = None
    chosen: RoleCandidate | None = None
    for e_index, exercice in enumerate(exercices):
        profession = _text(exercice.get("codeProfession"))
        if not profession:
            continue
        savoir_faire = _text(exercice.get("codeSavoirFaire"))
        structures: set[str] = set()
        for activity in exercice.get("activities") or []:
            if isinstance(activity, dict):
                structures |= structure_ids(activity)
        for r_index, role in enumerate(roles):
            if role.profession != profession:
                continue
            at_structure = role.organization_idnat is not None and any(
                same_structure(role.organization_idnat, s) for s in structures
            )
            same_specialty = bool(savoir_faire) and role.specialty == savoir_faire
            rank = (0 if at_structure else 1 if same_specialty else 2, e_index, r_index)
            if best is None or rank < best:
                best, chosen = rank, role
    return chosen


def _exercices(userinfo: dict[str, Any]) -> list[dict[str, Any]]:
    ref = userinfo.get("SubjectRefPro")
    items = ref.get("exercices") if isinstance(ref, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def idnat_of(userinfo: dict[str, Any], id_claims: dict[str, Any]) -> str:
    """The IdNat_PS of the professional: ``SubjectNameID``, else ``preferred_username``."""
    for value in (
        userinfo.get("SubjectNameID"),
        userinfo.get("preferred_username"),
        id_claims.get("preferred_username"),
    ):
        if _text(value):
            return _text(value)
    raise Forbidden("the identity provider did not give your national identifier (SubjectNameID)")


def professional_for(work: Work, idnat: str, exercices: list[dict[str, Any]]) -> RoleCandidate:
    """The directory role matching the Pro Santé Connect exercises; ``Forbidden`` when there is none."""
    practitioner = work.session.scalar(
        sa.select(Practitioner).where(Practitioner.idnat_ps == idnat, Practitioner.active.is_(True))
    )
    if practitioner is None:
        raise Forbidden(
            f"the professional {idnat} is not in Carnet's professional directory (or is inactive): "
            "Carnet admits only the professionals its directory lists"
        )
    rows = work.session.execute(
        sa.select(PractitionerRole, Organization.idnat_struct)
        .outerjoin(Organization, Organization.id == PractitionerRole.organization_id)
        .where(PractitionerRole.practitioner_id == practitioner.id, PractitionerRole.active.is_(True))
        .order_by(PractitionerRole.id)
    ).all()
    roles = [RoleCandidate(role.id, role.profession_code, role.specialty_code, org_idnat) for role, org_idnat in rows]
    chosen = choose_role(roles, exercices)
    if chosen is None:
        declared = sorted({_text(e.get("codeProfession")) for e in exercices} - {""})
        raise Forbidden(
            f"none of the professions your identity provider declares ({', '.join(declared) or 'none'}) "
            f"matches an active role of {idnat} in Carnet's professional directory"
        )
    return chosen


def _sign_in(runtime: Runtime, idnat: str, exercices: list[dict[str, Any]], acr: str | None) -> dict[str, Any]:
    settings = runtime.settings
    with runtime.read() as work:
        role = professional_for(work, idnat, exercices)
        professional = directory.professional(work, idnat, role.role_id)
        if professional is not None:
            audit.trace(
                work,
                TraceAction.LOGIN,
                Actor(kind=ActorKind.PROFESSIONAL, key=f"pro:{idnat}", display="", professional=professional),
                detail=f"oidc acr={acr or '-'}"[:200],
            )
    if professional is None:  # the role vanished between the two reads
        raise Forbidden(f"the professional {idnat} has no active role in Carnet's professional directory")
    extra: dict[str, Any] = {"role": professional.role_id, "auth": "oidc"}
    if acr:
        extra["acr"] = acr
    access_token = tokens.issue(settings, f"pro:{idnat}", extra=extra)
    return {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": settings.access_token_ttl_seconds,
        "professional": {
            "idnat": professional.idnat,
            "name": professional.display,
            "role": professional.role_id,
            "profession": professional.profession,
            "specialty": professional.specialty,
            "organization": professional.organization_idnat,
        },
    }


# ------------------------------------------------------------------------------------ routes


def _provider_failure(exc: ProviderError) -> Response:
    log.warning("oidc_provider_error", status=exc.status)
    return outcome_response(exc.status, [Problem(exc.message, code=IssueCode.EXCEPTION)])


@router.get("/login")
async def login(request: Request, runtime: RuntimeDep, return_to: str | None = None) -> Response:
    """Start a professional's sign-in at the OpenID provider (Pro Santé Connect)."""
    settings = runtime.settings
    client = _client(request, settings)
    target = safe_return_to(return_to)
    try:
        metadata = await client.metadata()
    except ProviderError as exc:
        return _provider_failure(exc)
    pending = await run_in_threadpool(_start_login, runtime, target)
    url = client.authorization_url(
        metadata, redirect_uri=redirect_uri(settings), scope=settings.oidc_scopes, login=pending
    )
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        STATE_COOKIE,
        pending.state,
        max_age=int(STATE_LIFETIME.total_seconds()),
        path="/auth/oidc",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )
    return response


@router.get("/callback")
async def callback(
    request: Request,
    runtime: RuntimeDep,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> Response:
    """The provider sends the browser back here: finish the sign-in, issue a Carnet access token."""
    settings = runtime.settings
    client = _client(request, settings)
    if not state:
        raise Invalid.at("state", "the provider's answer has no state", IssueCode.REQUIRED)
    pending = await run_in_threadpool(_take_login, runtime, state)
    if not secrets.compare_digest(request.cookies.get(STATE_COOKIE, "").encode(), state.encode()):
        raise Invalid.at(
            "state",
            "this sign-in was started in another browser (or its cookies are off): start again from /auth/oidc/login",
            IssueCode.VALUE,
        )
    if error:
        raise Unauthenticated(f"the identity provider did not sign you in ({error[:64]})")
    if not code:
        raise Invalid.at("code", "the provider's answer has no authorization code", IssueCode.REQUIRED)
    try:
        metadata = await client.metadata()
        id_claims, userinfo = await client.sign_in(
            metadata, code=code, redirect_uri=redirect_uri(settings), pending=pending
        )
    except ProviderError as exc:
        return _provider_failure(exc)
    idnat = idnat_of(userinfo, id_claims)
    acr = id_claims.get("acr")
    body = await run_in_threadpool(
        _sign_in, runtime, idnat, _exercices(userinfo), acr if isinstance(acr, str) else None
    )
    log.info("oidc_login", cookie=bool(pending.return_to))
    response: Response
    if not pending.return_to:
        response = JSONResponse(body)
        response.delete_cookie(STATE_COOKIE, path="/auth/oidc", secure=settings.cookie_secure, httponly=True)
        return response
    response = RedirectResponse(pending.return_to, status_code=303)
    response.delete_cookie(STATE_COOKIE, path="/auth/oidc", secure=settings.cookie_secure, httponly=True)
    response.set_cookie(
        COOKIE,
        body["access_token"],
        max_age=settings.access_token_ttl_seconds,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="lax",
    )
    return response
