"""Professionals sign in through OpenID Connect (Pro Santé Connect style): authorization code + PKCE.

A real OpenID provider (authlib's authorization server, ``tests/auth/oidc_provider.py``) runs on
loopback; the tests drive the flow as a browser would: Carnet's /auth/oidc/login, the provider's
/authorize, back to Carnet's /auth/oidc/callback, then the FHIR API with the token Carnet issued.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from starlette.testclient import TestClient

from carnet.app import create_app
from carnet.auth import oidc, tokens
from carnet.auth.models import OidcLogin
from carnet.config import Settings
from carnet.directory import service as directory
from carnet.directory.models import Organization, PractitionerRole
from carnet.runtime import Runtime
from tests.auth.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    MEDIONI,
    LoopbackServer,
    Provider,
    PscUser,
    activity,
    exercice,
    start_provider,
)
from tests.conftest import make_settings

MEDIONI_IDNAT = "801234567897"
MEDIONI_ORG = "349912345600011"
LAMBERT_ORG = "1440000289"
PRACTITIONER_SEARCH = f"/fhir/Practitioner?identifier=urn:oid:1.2.250.1.71.4.2.1|{MEDIONI_IDNAT}"
BROWSER_SSL = ssl.create_default_context()  # once: loading CA certificates per client is slow
REDIRECT_URIS = ["http://testserver/auth/oidc/callback", "https://testserver/auth/oidc/callback"]


@dataclass
class Carnet:
    client: TestClient
    runtime: Runtime

    @property
    def settings(self) -> Settings:
        return self.runtime.settings


@pytest.fixture(scope="module")
def provider_server() -> Iterator[tuple[Provider, LoopbackServer]]:
    provider, server = start_provider(REDIRECT_URIS)
    yield provider, server
    server.stop()


@pytest.fixture
def provider(provider_server: tuple[Provider, LoopbackServer]) -> Iterator[Provider]:
    p = provider_server[0]
    p.reset()
    yield p
    p.reset()


def _oidc_settings(runtime: Runtime, issuer: str, **overrides: Any) -> Settings:
    return make_settings(
        runtime.settings.database_url,
        oidc_issuer=issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        **overrides,
    )


@pytest.fixture(scope="module")
def carnet_app(runtime: Runtime, provider_server: tuple[Provider, LoopbackServer]) -> Iterator[Carnet]:
    """Carnet configured for the test provider, on the session database (demo directory loaded)."""
    settings = _oidc_settings(runtime, provider_server[0].issuer)
    rt = Runtime(settings)
    with TestClient(create_app(settings, rt), base_url="http://testserver") as client:
        yield Carnet(client, rt)
    rt.dispose()


@pytest.fixture
def carnet(carnet_app: Carnet) -> Iterator[Carnet]:
    carnet_app.client.cookies.clear()
    yield carnet_app
    carnet_app.client.cookies.clear()


# ------------------------------------------------------------------------------------ the browser


@dataclass
class Flow:
    authorize_url: str
    callback_url: str
    state: str
    response: httpx.Response


def start(carnet: Carnet, return_to: str | None = None) -> httpx.Response:
    params = {"return_to": return_to} if return_to is not None else {}
    return carnet.client.get("/auth/oidc/login", params=params, follow_redirects=False)


def sign_in(
    carnet: Carnet,
    provider: Provider,
    *,
    return_to: str | None = None,
    before_callback: Callable[[str], None] | None = None,
) -> Flow:
    """Carnet /login → provider /authorize → Carnet /callback, following redirects by hand."""
    login = start(carnet, return_to)
    assert login.status_code == 302, login.text
    authorize_url = login.headers["location"]
    assert authorize_url.startswith(f"{provider.issuer}/authorize?")
    with httpx.Client(timeout=10, verify=BROWSER_SSL) as browser:
        consent = browser.get(authorize_url, follow_redirects=False)
    assert consent.status_code == 302, consent.text
    callback_url = consent.headers["location"]
    assert callback_url.startswith(f"{carnet.settings.base_url}/auth/oidc/callback?"), callback_url
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(callback_url).query)["state"][0]
    if before_callback is not None:
        before_callback(state)
    response = carnet.client.get(callback_url, follow_redirects=False)
    return Flow(authorize_url, callback_url, state, response)


def _diagnostics(response: httpx.Response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(issue.get("diagnostics", "") for issue in body["issue"])


def _pending(carnet: Carnet, state: str) -> OidcLogin | None:
    with carnet.runtime.read() as work:
        return work.session.get(OidcLogin, state)


def _update_pending(carnet: Carnet, state: str, **values: Any) -> None:
    with carnet.runtime.work() as work:
        work.session.execute(sa.update(OidcLogin).where(OidcLogin.state == state).values(**values))


# ------------------------------------------------------------------------------------ the happy path


def test_login_redirects_to_the_provider_with_pkce_and_a_nonce(carnet: Carnet, provider: Provider) -> None:
    response = start(carnet)
    assert response.status_code == 302
    url = urllib.parse.urlsplit(response.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{provider.issuer}/authorize"
    params = dict(urllib.parse.parse_qsl(url.query))
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT_ID
    assert params["redirect_uri"] == "http://testserver/auth/oidc/callback"
    assert params["scope"] == "openid scope_all"
    assert params["code_challenge_method"] == "S256"
    pending = _pending(carnet, params["state"])
    assert pending is not None
    assert params["nonce"] == pending.nonce
    assert params["code_challenge"] == create_s256_code_challenge(pending.code_verifier)
    assert 43 <= len(pending.code_verifier) <= 128
    assert "code_verifier" not in params  # only its hash leaves Carnet
    assert pending.return_to == ""
    # The login is bound to this browser by a short-lived cookie holding the state.
    parts = [p.strip().lower() for p in response.headers["set-cookie"].split(";")]
    assert parts[0] == f"{oidc.STATE_COOKIE}={params['state']}".lower()
    assert {"httponly", "samesite=lax", "path=/auth/oidc", "max-age=600"} <= set(parts)


def test_professional_signs_in_and_uses_the_api(carnet: Carnet, provider: Provider) -> None:
    flow = sign_in(carnet, provider)
    assert flow.response.status_code == 200, flow.response.text
    body = flow.response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == carnet.settings.access_token_ttl_seconds
    assert body["professional"]["idnat"] == MEDIONI_IDNAT
    assert body["professional"]["profession"] == "10"
    assert body["professional"]["specialty"] == "SM26"
    assert body["professional"]["organization"] == MEDIONI_ORG

    claims = tokens.verify(carnet.settings, body["access_token"])
    assert claims["sub"] == f"pro:{MEDIONI_IDNAT}"
    assert claims["auth"] == "oidc"
    assert claims["acr"] == "eidas3"
    with carnet.runtime.read() as work:
        known = directory.professional(work, MEDIONI_IDNAT)
        assert known is not None
        assert claims["role"] == known.role_id == body["professional"]["role"]

    response = carnet.client.get(
        PRACTITIONER_SEARCH,
        headers={"Authorization": f"Bearer {body['access_token']}", "Accept": "application/fhir+json"},
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["total"] == 1
    identifiers = bundle["entry"][0]["resource"]["identifier"]
    assert {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": MEDIONI_IDNAT} in identifiers
    # The state was consumed (and its browser cookie cleared); the provider saw no error.
    assert _pending(carnet, flow.state) is None
    assert oidc.STATE_COOKIE not in carnet.client.cookies
    assert provider.errors == []


def test_discovery_is_cached(runtime: Runtime, provider: Provider) -> None:
    settings = _oidc_settings(runtime, provider.issuer)
    rt = Runtime(settings)
    try:
        with TestClient(create_app(settings, rt), base_url="http://testserver") as client:
            before = provider.hits["discovery"]
            for _ in range(3):
                assert sign_in(Carnet(client, rt), provider).response.status_code == 200
            assert provider.hits["discovery"] == before + 1
    finally:
        rt.dispose()


# ------------------------------------------------------------------------------------ the state


def test_unknown_state_is_refused(carnet: Carnet, provider: Provider) -> None:
    response = carnet.client.get("/auth/oidc/callback", params={"code": "whatever", "state": "never-issued"})
    assert response.status_code == 400
    assert "start again" in _diagnostics(response)
    response = carnet.client.get("/auth/oidc/callback", params={"code": "whatever"})
    assert response.status_code == 400


def test_replayed_state_is_refused(carnet: Carnet, provider: Provider) -> None:
    flow = sign_in(carnet, provider)
    assert flow.response.status_code == 200
    token_calls = provider.hits["token"]
    replay = carnet.client.get(flow.callback_url, follow_redirects=False)
    assert replay.status_code == 400
    assert "already used" in _diagnostics(replay)
    assert provider.hits["token"] == token_calls  # refused before the code is even tried


def test_expired_state_is_refused_and_consumed(carnet: Carnet, provider: Provider) -> None:
    def age(state: str) -> None:
        _update_pending(carnet, state, created_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=11))

    flow = sign_in(carnet, provider, before_callback=age)
    assert flow.response.status_code == 400
    assert "expired" in _diagnostics(flow.response)
    assert _pending(carnet, flow.state) is None


def test_callback_in_another_browser_is_refused(carnet: Carnet, provider: Provider) -> None:
    """Login CSRF: a victim's browser handed the attacker's callback URL does not sign in as the attacker."""
    flow = sign_in(carnet, provider, before_callback=lambda state: carnet.client.cookies.clear())
    assert flow.response.status_code == 400
    assert "another browser" in _diagnostics(flow.response)
    assert _pending(carnet, flow.state) is None  # and the attacker's login is spent


def test_provider_error_consumes_the_state(carnet: Carnet, provider: Provider) -> None:
    login = start(carnet)
    state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(login.headers["location"]).query))["state"]
    response = carnet.client.get("/auth/oidc/callback", params={"error": "access_denied", "state": state})
    assert response.status_code == 401
    assert "access_denied" in _diagnostics(response)
    assert _pending(carnet, state) is None


# ------------------------------------------------------------------------------------ the ID token


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("tampered", "signature"),
        ("foreign-key", "signature"),
        ("wrong-audience", "'aud'"),
        ("wrong-issuer", "'iss'"),
        ("expired", "expired"),
        ("nonce-mismatch", "'nonce'"),
        ("userinfo-other-sub", "another subject"),
    ],
)
def test_invalid_id_tokens_are_refused(carnet: Carnet, provider: Provider, mode: str, message: str) -> None:
    provider.mode = mode
    flow = sign_in(carnet, provider)
    assert flow.response.status_code == 401, flow.response.text
    assert message in _diagnostics(flow.response)
    assert "access_token" not in flow.response.text


def test_keys_are_cached_and_refetched_once_for_an_unknown_kid(carnet: Carnet, provider: Provider) -> None:
    assert sign_in(carnet, provider).response.status_code == 200  # keys cached (if they were not yet)
    fetched = provider.hits["jwks"]
    assert sign_in(carnet, provider).response.status_code == 200
    assert provider.hits["jwks"] == fetched  # cached

    provider.mode = "unpublished-key"  # a kid the provider never published: one refetch, then refused
    flow = sign_in(carnet, provider)
    assert flow.response.status_code == 401
    assert "signature" in _diagnostics(flow.response)
    assert provider.hits["jwks"] == fetched + 1

    provider.mode = None
    provider.rotate_key()  # a new kid: Carnet fetches the keys again and accepts it
    assert sign_in(carnet, provider).response.status_code == 200
    assert provider.hits["jwks"] == fetched + 2
    assert sign_in(carnet, provider).response.status_code == 200
    assert provider.hits["jwks"] == fetched + 2


def test_pkce_verifier_mismatch_is_refused_by_the_provider(carnet: Carnet, provider: Provider) -> None:
    def swap_verifier(state: str) -> None:
        _update_pending(carnet, state, code_verifier="x" * 64)

    flow = sign_in(carnet, provider, before_callback=swap_verifier)
    assert flow.response.status_code == 401
    assert "invalid_grant" in _diagnostics(flow.response)
    assert any(e.startswith("invalid_grant") and "challenge" in e.lower() for e in provider.errors), provider.errors


def test_the_test_provider_checks_client_credentials_and_pkce(provider: Provider) -> None:
    """The provider is real: the token endpoint authenticates the client and verifies PKCE."""
    verifier = "v" * 50
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URIS[0],
        "scope": "openid scope_all",
        "state": "s",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    with httpx.Client(base_url=provider.issuer, timeout=10, verify=BROWSER_SSL) as http:

        def code() -> str:
            answer = http.get("/authorize", params={**params, "nonce": secrets.token_urlsafe(16)})
            assert answer.status_code == 302
            return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(answer.headers["location"]).query))["code"]

        form = {"grant_type": "authorization_code", "redirect_uri": REDIRECT_URIS[0]}
        wrong_secret = http.post(
            "/token", data={**form, "code": code(), "code_verifier": verifier}, auth=(CLIENT_ID, "x")
        )
        assert wrong_secret.status_code == 401
        assert wrong_secret.json()["error"] == "invalid_client"
        auth = (CLIENT_ID, CLIENT_SECRET)
        wrong_verifier = http.post("/token", data={**form, "code": code(), "code_verifier": "w" * 50}, auth=auth)
        assert wrong_verifier.status_code == 400
        assert wrong_verifier.json()["error"] == "invalid_grant"
        good = http.post("/token", data={**form, "code": code(), "code_verifier": verifier}, auth=auth)
        assert good.status_code == 200, good.text
        assert {"access_token", "id_token"} <= set(good.json())


# ------------------------------------------------------------------------------------ claims → role


def test_professional_unknown_to_the_directory_is_forbidden(carnet: Carnet, provider: Provider) -> None:
    provider.user = PscUser("899999999999", "INCONNU", "INCONNU", [exercice("10", "SM26", activity())])
    flow = sign_in(carnet, provider)
    assert flow.response.status_code == 403
    text = _diagnostics(flow.response)
    assert "899999999999" in text
    assert "directory" in text


def test_profession_without_a_directory_role_is_forbidden(carnet: Carnet, provider: Provider) -> None:
    provider.user = PscUser(MEDIONI_IDNAT, "STEPHANE", "MEDIONI", [exercice("21", "", activity())])
    flow = sign_in(carnet, provider)
    assert flow.response.status_code == 403
    assert "(21)" in _diagnostics(flow.response)


def _professional_with_two_roles(runtime: Runtime) -> tuple[str, dict[str, str]]:
    """A new GP exercising at both demo organisations: (IdNat_PS, {organisation IdNat_Struct: role id})."""
    idnat = "8" + "".join(random.choices("0123456789", k=11))
    roles: dict[str, str] = {}
    with runtime.work() as work:
        practitioner, _ = directory.upsert_practitioner(
            work,
            {
                "resourceType": "Practitioner",
                "identifier": [{"system": directory.IDNAT_PS, "value": idnat}],
                "name": [{"family": "DEUXLIEUX", "given": ["Alex"]}],
            },
        )
        for org_idnat in (MEDIONI_ORG, LAMBERT_ORG):
            org = work.session.scalar(sa.select(Organization).where(Organization.idnat_struct == org_idnat))
            assert org is not None
            role, _ = directory.upsert_role(
                work,
                {
                    "resourceType": "PractitionerRole",
                    "code": [{"coding": [{"system": directory.G15, "code": "10"}]}],
                    "specialty": [{"coding": [{"system": directory.R01, "code": "SM26"}]}],
                },
                practitioner=practitioner,
                organization=org,
            )
            roles[org_idnat] = role.id
    return idnat, roles


@pytest.mark.parametrize(
    ("where", "expected_org"),
    [
        ({"numeroFinessSite": "440000289", "identifiantTechniqueDeLaStructure": "F440000289"}, LAMBERT_ORG),
        ({"ancienIdentifiantDeLaStructure": LAMBERT_ORG}, LAMBERT_ORG),
        ({"numeroSiretSite": "49912345600011", "identifiantTechniqueDeLaStructure": "R102671"}, MEDIONI_ORG),
        ({"ancienIdentifiantDeLaStructure": MEDIONI_ORG}, MEDIONI_ORG),
    ],
)
def test_the_role_at_the_declared_structure_is_chosen(
    carnet: Carnet, provider: Provider, where: dict[str, str], expected_org: str
) -> None:
    idnat, roles = _professional_with_two_roles(carnet.runtime)
    provider.user = PscUser(
        idnat,
        "ALEX",
        "DEUXLIEUX",
        [
            exercice("21", "", activity(numeroFinessSite="440000289")),  # not a profession Carnet knows them for
            exercice("10", "SM26", activity(identifiantTechniqueDeLaStructure="R999999"), activity(**where)),
        ],
    )
    flow = sign_in(carnet, provider)
    assert flow.response.status_code == 200, flow.response.text
    body = flow.response.json()
    assert body["professional"]["organization"] == expected_org
    assert tokens.verify(carnet.settings, body["access_token"])["role"] == roles[expected_org]
    with carnet.runtime.read() as work:
        role = work.session.get(PractitionerRole, roles[expected_org])
        assert role is not None
        assert role.active


# ------------------------------------------------------------------------------------ return_to + cookie


def test_return_to_sets_the_cookie_and_redirects(carnet: Carnet, provider: Provider) -> None:
    flow = sign_in(carnet, provider, return_to="/portal/patients?view=recent")
    response = flow.response
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/portal/patients?view=recent"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{oidc.COOKIE}="))
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=lax"
    assert attributes["path"] == "Path=/"
    assert attributes["max-age"] == f"Max-Age={carnet.settings.access_token_ttl_seconds}"
    assert "secure" not in attributes  # http://testserver
    assert "access_token" not in response.text
    assert oidc.STATE_COOKIE not in carnet.client.cookies  # spent

    # The cookie alone authenticates API calls (the professional portal will use it).
    token = carnet.client.cookies[oidc.COOKIE]
    assert tokens.verify(carnet.settings, token)["sub"] == f"pro:{MEDIONI_IDNAT}"
    api = carnet.client.get(PRACTITIONER_SEARCH, headers={"Accept": "application/fhir+json"})
    assert api.status_code == 200, api.text
    assert api.json()["total"] == 1

    # Writes on the strength of the cookie need the CSRF header, which a cross-site form cannot send.
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    forged = carnet.client.post("/fhir/Patient", content=b"{}", headers=headers)
    assert forged.status_code == 403
    assert "X-Carnet-CSRF" in _diagnostics(forged)
    allowed = carnet.client.post("/fhir/Patient", content=b"{}", headers={**headers, "X-Carnet-CSRF": "1"})
    assert allowed.status_code in (400, 422), allowed.text  # authenticated; the empty Patient is refused


def test_a_bad_cookie_is_401(carnet: Carnet) -> None:
    carnet.client.cookies.set(oidc.COOKIE, "not-a-token")
    response = carnet.client.get(PRACTITIONER_SEARCH, headers={"Accept": "application/fhir+json"})
    assert response.status_code == 401


def test_cookie_is_secure_over_https(runtime: Runtime, provider: Provider) -> None:
    settings = _oidc_settings(runtime, provider.issuer, base_url="https://testserver")
    rt = Runtime(settings)
    try:
        with TestClient(create_app(settings, rt), base_url="https://testserver") as client:
            flow = sign_in(Carnet(client, rt), provider, return_to="/portal/")
            assert flow.response.status_code == 303, flow.response.text
            params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(flow.authorize_url).query))
            assert params["redirect_uri"] == "https://testserver/auth/oidc/callback"
            cookie = next(c for c in flow.response.headers.get_list("set-cookie") if c.startswith(oidc.COOKIE))
            parts = [p.strip().lower() for p in cookie.split(";")]
            assert {"secure", "httponly", "samesite=lax"} <= set(parts)
    finally:
        rt.dispose()


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "http://testserver/portal/",
        "//evil.example/portal",
        "/\\evil.example",
        "javascript:alert(1)",
        "portal/home",
        "/portal/\nSet-Cookie: x=y",
        "/" + "a" * 600,
    ],
)
def test_return_to_must_be_a_local_path(carnet: Carnet, provider: Provider, target: str) -> None:
    with carnet.runtime.read() as work:
        before = work.session.scalar(sa.select(sa.func.count()).select_from(OidcLogin))
    response = start(carnet, target)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "return_to" in _diagnostics(response)
    with carnet.runtime.read() as work:
        assert work.session.scalar(sa.select(sa.func.count()).select_from(OidcLogin)) == before


# ------------------------------------------------------------------------------------ configuration


def test_not_configured_is_404(runtime: Runtime) -> None:
    settings = make_settings(runtime.settings.database_url)
    rt = Runtime(settings)
    try:
        with TestClient(create_app(settings, rt), base_url="http://testserver") as client:
            for url in ("/auth/oidc/login", "/auth/oidc/callback?code=x&state=y"):
                response = client.get(url, follow_redirects=False)
                assert response.status_code == 404
                assert "not configured" in _diagnostics(response)
    finally:
        rt.dispose()


def test_unreachable_provider_is_503(runtime: Runtime) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = _oidc_settings(runtime, f"http://127.0.0.1:{port}")
    rt = Runtime(settings)
    try:
        with TestClient(create_app(settings, rt), base_url="http://testserver") as client:
            response = client.get("/auth/oidc/login", follow_redirects=False)
            assert response.status_code == 503
            assert "unreachable" in _diagnostics(response)
    finally:
        rt.dispose()


# ------------------------------------------------------------------------------------ pure functions


@pytest.mark.parametrize(
    ("idnat_struct", "candidate", "same"),
    [
        ("1440000289", "1440000289", True),  # ancienIdentifiantDeLaStructure: the IdNat_Struct itself
        ("1440000289", "440000289", True),  # numeroFinessSite
        ("1440000289", "F440000289", True),  # identifiantTechniqueDeLaStructure = F + FINESS
        ("349912345600011", "49912345600011", True),  # numeroSiretSite
        ("349912345600011", "R102671", False),  # a technical id
        ("1440000289", "0289", False),  # partial suffixes never match
        ("1440000289", "1440000288", False),
        ("1440000289", "", False),
        ("0123", "123", False),  # too short to be a national number
    ],
)
def test_same_structure(idnat_struct: str, candidate: str, same: bool) -> None:
    assert oidc.same_structure(idnat_struct, candidate) is same


def test_choose_role_prefers_structure_then_specialty_then_order() -> None:
    hospital = oidc.RoleCandidate("r-hospital", "10", "SM04", LAMBERT_ORG)
    cabinet = oidc.RoleCandidate("r-cabinet", "10", "SM26", MEDIONI_ORG)
    nurse = oidc.RoleCandidate("r-nurse", "60", None, None)
    roles = [hospital, cabinet, nurse]
    at_cabinet = exercice("10", "SM04", activity(ancienIdentifiantDeLaStructure=MEDIONI_ORG))
    assert oidc.choose_role(roles, [at_cabinet]) == cabinet  # the structure beats the specialty
    assert oidc.choose_role(roles, [exercice("10", "SM26", activity())]) == cabinet  # then the specialty
    assert oidc.choose_role(roles, [exercice("10", "", activity())]) == hospital  # then the directory order
    assert oidc.choose_role(roles, [exercice("60", "", activity()), at_cabinet]) == cabinet
    assert oidc.choose_role(roles, [exercice("60", "", activity())]) == nurse
    assert oidc.choose_role(roles, [exercice("21", "", activity())]) is None
    assert oidc.choose_role(roles, []) is None


def test_idnat_comes_from_subject_name_id() -> None:
    info = MEDIONI.userinfo()
    assert oidc.idnat_of(info, {}) == MEDIONI_IDNAT
    assert oidc.idnat_of({"preferred_username": "810001745206"}, {}) == "810001745206"
    assert oidc.idnat_of({}, {"preferred_username": "810001745206"}) == "810001745206"
