"""A real OpenID Connect provider for the tests, shaped like Pro Santé Connect, served on loopback.

Built on authlib's authorization server (authorization code grant, PKCE ``CodeChallenge``, OpenID
Connect ``OpenIDCode``): discovery, ``/authorize`` (auto-consents the configured user and redirects
back with a code), ``/token`` (client_secret_basic, code, redirect_uri, PKCE verifier), ``/userinfo``
(Pro Santé Connect claims) and ``/jwks``. ID tokens are RS256, as Pro Santé Connect signs them.

``Provider.mode`` makes it misbehave on purpose (wrong issuer, audience, nonce, expired or tampered
ID tokens, a foreign signing key…) so the tests can check that Carnet refuses each.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.oauth2 import AuthorizationServer  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Error, OAuth2Request, grants  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload  # type: ignore[import-untyped]
from authlib.oauth2.rfc6750 import BearerTokenGenerator  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import CodeChallenge  # type: ignore[import-untyped]
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo  # type: ignore[import-untyped]
from authlib.oidc.core.grants import OpenIDCode  # type: ignore[import-untyped]
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CLIENT_ID = "carnet-test"
CLIENT_SECRET = "carnet-test-secret-0123456789"
SCOPES = ["openid", "scope_all"]
PSC_ACR = "eidas3"

# Ways the provider can misbehave (``Provider.mode``).
MODES = (
    "tampered",  # the ID token's payload is changed after signing
    "foreign-key",  # signed by a key the provider does not publish, under the published kid
    "unpublished-key",  # signed by a key whose kid is not in the JWKS at all
    "wrong-audience",
    "wrong-issuer",
    "expired",
    "nonce-mismatch",
    "userinfo-other-sub",  # userinfo about another subject than the ID token
)


def activity(**ids: str) -> dict[str, str]:
    """A Pro Santé Connect activity (``SubjectRefPro.exercices[].activities[]``)."""
    base = {
        "codeModeExercice": "L",
        "codeSecteurDactivite": "SA07",
        "codeSectionPharmacien": "",
        "codeRole": "",
        "codeGenreActivite": "",
        "numeroSiretSite": "",
        "numeroSirenSite": "",
        "numeroFinessSite": "",
        "numeroFinessetablissementJuridique": "",
        "identifiantTechniqueDeLaStructure": "",
        "raisonSocialeSite": "STRUCTURE DE TEST",
        "codePostal": "75009",
        "ancienIdentifiantDeLaStructure": "",
        "autoriteDenregistrement": "CNOM/CNOM/CNOM",
    }
    base.update(ids)
    return base


def exercice(profession: str, savoir_faire: str = "", *activities: dict[str, str], family: str = "") -> dict[str, Any]:
    """A Pro Santé Connect exercise (``SubjectRefPro.exercices[]``)."""
    return {
        "codeProfession": profession,
        "codeCategorieProfessionnelle": "C",
        "codeCiviliteDexercice": "DR",
        "nomDexercice": family,
        "prenomDexercice": "",
        "codeTypeSavoirFaire": "S" if savoir_faire else "",
        "codeSavoirFaire": savoir_faire,
        "activities": list(activities),
    }


@dataclass
class PscUser:
    """A professional as Pro Santé Connect knows them."""

    idnat: str
    given: str
    family: str
    exercices: list[dict[str, Any]]
    sub: str = ""

    def __post_init__(self) -> None:
        # Pro Santé Connect subjects are opaque ("f:<uuid>:<IdNat>"), not the IdNat itself.
        self.sub = self.sub or f"f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:{self.idnat}"

    def userinfo(self, sub: str | None = None) -> dict[str, Any]:
        first = self.exercices[0] if self.exercices else {}
        first_activity = (first.get("activities") or [{}])[0]
        return {
            "sub": sub or self.sub,
            "SubjectNameID": self.idnat,
            "preferred_username": self.idnat,
            "given_name": self.given,
            "family_name": self.family,
            "SubjectRefPro": {"codeCivilite": "M", "exercices": self.exercices},
            "SubjectOrganization": first_activity.get("raisonSocialeSite", ""),
            "SubjectOrganizationID": first_activity.get("identifiantTechniqueDeLaStructure", ""),
            "SubjectRole": [f"{e['codeProfession']}^1.2.250.1.213.1.1.5.5" for e in self.exercices],
            "Secteur_Activite": f"{first_activity.get('codeSecteurDactivite', 'SA07')}^1.2.250.1.71.4.2.4",
            "Palier_Authentification": "APPPRIP3^1.2.250.1.213.1.5.1.1.1",
            "Mode_Acces_Raison": "",
            "Acces_Regulation_Medicale": "FAUX",
            "authMode": "CARD",
            "UITVersion": "1.0",
            "PSI_Locale": "1.2.250.1.213.1.3.1.1",
            "otherIds": [{"identifiant": self.idnat, "origine": "RPPS", "qualite": 1}],
        }


# Dr Medioni: GP (10 / SM26) at the cabinet whose IdNat_Struct is 3 + SIRET 49912345600011.
MEDIONI = PscUser(
    "801234567897",
    "STEPHANE",
    "MEDIONI",
    [
        exercice(
            "10",
            "SM26",
            activity(
                identifiantTechniqueDeLaStructure="R102671",
                numeroSiretSite="49912345600011",
                ancienIdentifiantDeLaStructure="349912345600011",
                raisonSocialeSite="CABINET DU DR MEDIONI",
            ),
            family="MEDIONI",
        )
    ],
)


@dataclass
class Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    user: PscUser
    auth_time: int = field(default_factory=lambda: int(time.time()))
    expires_at: float = field(default_factory=lambda: time.time() + 60)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str:
        return PSC_ACR

    def get_amr(self) -> list[str] | None:
        return None


class StarletteOAuth2Request(OAuth2Request):  # type: ignore[misc]
    """authlib's request, from the query string and form of a Starlette request."""

    def __init__(self, request: Request, form: dict[str, str]) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)
        self._args = dict(request.query_params)
        self._form = form
        self.payload = BasicOAuth2Payload({**self._args, **form})

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]  # noqa: RUF012 (authlib's class attribute)

    @property
    def provider(self) -> Provider:
        provider: Provider = self.server.provider
        return provider

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.provider.codes[code] = AuthorizationCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=data.get("redirect_uri", ""),
            scope=request.scope or "",
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            user=request.user,
        )

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        item = self.provider.codes.get(code)
        if item is None or item.client_id != client.client_id or item.expires_at < time.time():
            return None
        return item

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        self.provider.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> PscUser:
        return authorization_code.user


class PscOpenIDCode(OpenIDCode):  # type: ignore[misc]
    """ID tokens as Pro Santé Connect issues them (RS256), with the provider's misbehaviours."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return any(c.nonce == nonce for c in self.provider.codes.values())

    def _key(self) -> RSAKey:
        mode = self.provider.mode
        if mode == "foreign-key":
            return self.provider.foreign_key
        if mode == "unpublished-key":
            return self.provider.unpublished_key
        return self.provider.key

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self._key()

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "typ": "JWT", "kid": str(self._key().kid)}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        mode, now = self.provider.mode, int(time.time())
        claims: dict[str, Any] = {
            "iss": "https://evil.example/auth/realms/esante-wallet" if mode == "wrong-issuer" else self.provider.issuer,
            "aud": ["someone-else"] if mode == "wrong-audience" else [client.get_client_id()],
            "iat": now,
            "exp": now + 120,
            "azp": "someone-else" if mode == "wrong-audience" else client.get_client_id(),
        }
        if mode == "expired":
            claims.update(iat=now - 900, exp=now - 600)
        return claims

    def get_authorization_code_claims(self, authorization_code: AuthorizationCode) -> dict[str, Any]:
        claims: dict[str, Any] = super().get_authorization_code_claims(authorization_code)
        if self.provider.mode == "nonce-mismatch":
            claims["nonce"] = "not-the-nonce-of-this-login"
        return claims

    def generate_user_info(self, user: PscUser, scope: str) -> UserInfo:
        return UserInfo(sub=user.sub, preferred_username=user.idnat)

    def encode_id_token(self, token: dict[str, Any], request: OAuth2Request) -> str:
        id_token: str = super().encode_id_token(token, request)
        if self.provider.mode == "tampered":
            head, payload, signature = id_token.split(".")
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            claims["preferred_username"] = "810001745206"  # someone else
            forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
            id_token = f"{head}.{forged}.{signature}"
        return id_token


class PscAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, provider: Provider) -> None:
        super().__init__(scopes_supported=SCOPES)
        self.provider = provider
        self.register_token_generator(
            "default", BearerTokenGenerator(lambda **_: generate_token(42), expires_generator=120)
        )
        self.register_grant(CodeGrant, [CodeChallenge(required=True), PscOpenIDCode(provider)])

    def query_client(self, client_id: str) -> Client | None:
        client = self.provider.client
        return client if client_id == client.client_id else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.provider.access_tokens[token["access_token"]] = request.user

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> Response:
        content = json.dumps(body) if isinstance(body, dict) else (body or "")
        return Response(content, status_code=status, headers=dict(headers))

    def handle_error_response(self, request: OAuth2Request, error: OAuth2Error) -> Response:
        self.provider.errors.append(f"{error.error}: {error.description or ''}")
        response: Response = super().handle_error_response(request, error)
        return response

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None


class Provider:
    """The provider's state: one registered client (Carnet), the user who signs in, codes, tokens, keys."""

    def __init__(self, redirect_uris: list[str]) -> None:
        self.client = Client(CLIENT_ID, CLIENT_SECRET, redirect_uris)
        self.key = RSAKey.generate_key(2048, parameters={"kid": "psc-1", "use": "sig", "alg": "RS256"})
        self.published: list[RSAKey] = [self.key]
        self.rotations = 0
        # Same kid as the published key, other key material: a forged signature.
        self.foreign_key = RSAKey.generate_key(2048, parameters={"kid": "psc-1", "use": "sig", "alg": "RS256"})
        self.unpublished_key = RSAKey.generate_key(2048, parameters={"kid": "ghost", "use": "sig", "alg": "RS256"})
        self.user = MEDIONI
        self.mode: str | None = None
        self.codes: dict[str, AuthorizationCode] = {}
        self.access_tokens: dict[str, PscUser] = {}
        self.errors: list[str] = []
        self.hits: Counter[str] = Counter()
        self.issuer = ""
        self.server = PscAuthorizationServer(self)
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/userinfo", self.userinfo, methods=["GET", "POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    def reset(self) -> None:
        self.user = MEDIONI
        self.mode = None
        self.errors.clear()

    def rotate_key(self) -> None:
        """Sign with a new key from now on and publish only that one."""
        self.rotations += 1
        kid = f"psc-rotated-{self.rotations}"  # a provider never reuses a kid
        self.key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
        self.published = [self.key]

    # ------------------------------------------------------------------ endpoints
    async def discovery(self, request: Request) -> Response:
        self.hits["discovery"] += 1
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "scopes_supported": SCOPES,
                "acr_values_supported": ["eidas1", "eidas2", "eidas3"],
            }
        )

    async def authorize(self, request: Request) -> Response:
        """The user is already signed in (card or e-CPS) and always consents: code straight away."""
        self.hits["authorize"] += 1
        oauth_request = StarletteOAuth2Request(request, {})
        try:
            grant = self.server.get_consent_grant(oauth_request, end_user=self.user)
        except OAuth2Error as error:
            response: Response = self.server.handle_error_response(oauth_request, error)
            return response
        response = self.server.create_authorization_response(oauth_request, grant_user=self.user, grant=grant)
        return response

    async def token(self, request: Request) -> Response:
        self.hits["token"] += 1
        form = {key: str(value) for key, value in (await request.form()).items()}
        response: Response = self.server.create_token_response(StarletteOAuth2Request(request, form))
        return response

    async def userinfo(self, request: Request) -> Response:
        self.hits["userinfo"] += 1
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        user = self.access_tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        sub = "f:00000000-0000-0000-0000-000000000000:899999999999" if self.mode == "userinfo-other-sub" else None
        return JSONResponse(user.userinfo(sub))

    async def jwks(self, request: Request) -> Response:
        self.hits["jwks"] += 1
        return JSONResponse(KeySet(list(self.published)).as_dict(private=False))


class LoopbackServer:
    """Serve an ASGI app with uvicorn in a background thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_config=None, log_level="warning", access_log=False, lifespan="off", ws="none", http="h11"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="oidc-provider", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test OpenID provider did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def start_provider(redirect_uris: list[str]) -> tuple[Provider, LoopbackServer]:
    provider = Provider(redirect_uris)
    server = LoopbackServer(provider.app)
    provider.issuer = server.url
    server.start()
    return provider, server
