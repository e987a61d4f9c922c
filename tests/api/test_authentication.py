"""No anonymous access, and the development token authenticator refuses every kind of bad token."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.routing import iter_route_contexts
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from carnet.app import create_app
from carnet.auth import tokens
from carnet.runtime import Runtime
from tests import factories
from tests.conftest import Api

# What must answer without credentials, and why. Everything else refuses anonymous callers.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/fhir/metadata"): "the CapabilityStatement",
    ("GET", "/health/live"): "health",
    ("GET", "/health/ready"): "health",
    ("GET", "/.well-known/jwks.json"): "public keys that verify access tokens",
    ("GET", "/.well-known/smart-configuration"): "SMART discovery",
    ("GET", "/openapi.json"): "API description (no data)",
    ("GET", "/docs"): "API documentation (no data)",
    ("GET", "/docs/oauth2-redirect"): "API documentation (no data)",
    ("GET", "/static"): "portal CSS and JavaScript",
    ("GET", "/dev/mailbox"): "development mailbox: development and test only, 404 in production",
    # Sign-in: these take credentials (an assertion, a code, a password) in the request itself.
    ("POST", "/auth/token"): "SMART client credentials",
    ("GET", "/auth/oidc/login"): "Pro Santé Connect sign-in",
    ("GET", "/auth/oidc/callback"): "Pro Santé Connect sign-in",
    ("POST", "/auth/patient/activate"): "patient activation",
    ("POST", "/auth/patient/activate/confirm"): "patient activation",
    ("POST", "/auth/patient/login"): "patient sign-in",
    ("POST", "/auth/patient/reset/request"): "password reset",
    ("POST", "/auth/patient/reset/confirm"): "password reset",
    ("POST", "/auth/patient/oppose"): "objection to an announced record (its provisional code is the credential)",
    # Portal pages anyone may see: the landing page, the sign-in and activation forms.
    ("GET", "/"): "landing page",
    ("GET", "/a-propos"): "about page",
    ("POST", "/langue"): "language choice",
    ("GET", "/patient/connexion"): "patient sign-in page",
    ("POST", "/patient/connexion"): "patient sign-in form",
    ("GET", "/patient/activation"): "patient activation page",
    ("POST", "/patient/activation"): "patient activation form",
    ("POST", "/patient/activation/confirmation"): "patient activation form",
    ("GET", "/patient/mot-de-passe-oublie"): "password reset page",
    ("POST", "/patient/mot-de-passe-oublie"): "password reset form",
    ("GET", "/patient/mot-de-passe-oublie/nouveau"): "password reset page",
    ("POST", "/patient/mot-de-passe-oublie/nouveau"): "password reset form",
    ("GET", "/patient/opposition"): "objection to an announced record (page)",
    ("POST", "/patient/opposition"): "objection to an announced record (form: its provisional code is the credential)",
    ("GET", "/pro/connexion"): "professional sign-in page",
    ("POST", "/pro/connexion/demonstration"): "demo sign-in (development only)",
}
# Known gaps, each answering anonymously with this status instead of refusing (remove when fixed).
KNOWN_GAPS: dict[tuple[str, str], int] = {}
PORTALS = {"/patient": "/patient/connexion", "/pro": "/pro/connexion"}
# Forms whose handler checks the action before the caller: a valid action reaches the sign-in check.
FORMS = {
    "/patient/dossiers/{record_id}/documents/confidentialite": {"action": "tout-masquer"},
    "/patient/dossiers/{record_id}/professionnels/decision": {"action": "autoriser"},
}
CSRF = "c" * 43  # a double-submit token an anonymous browser can make up: the cookie and the form agree
_PARAM = re.compile(r"\{[^}]+\}")


def _routes(app: Any) -> list[tuple[str, str]]:
    found = []
    for route in iter_route_contexts(app.routes):
        methods = route.methods or {"GET"}  # a mount (static files) answers GET
        found += [(method, route.path or "") for method in sorted(methods - {"HEAD"})]
    return found


@pytest.fixture(scope="module")
def anonymous(runtime: Runtime) -> Iterator[TestClient]:
    """A client of its own (no cookie another test left), not following redirects."""
    with TestClient(create_app(runtime.settings, runtime), base_url="http://testserver", follow_redirects=False) as c:
        yield c


def _anonymous_request(client: TestClient, method: str, path: str) -> httpx.Response:
    url = _PARAM.sub(str(uuid.uuid4()), path)
    portal = next((prefix for prefix in PORTALS if path == prefix or path.startswith(f"{prefix}/")), None)
    if portal is not None and method != "GET":
        return client.request(
            method,
            url,
            data={**FORMS.get(path, {}), "csrf": CSRF},
            headers={"Cookie": f"carnet_csrf={CSRF}", "X-Carnet-Form": CSRF},
        )
    return client.request(method, url, content=b"{}", headers={"Content-Type": "application/fhir+json"})


def _refused(response: httpx.Response, path: str) -> bool:
    if response.status_code == 401:
        return True
    portal = next((prefix for prefix in PORTALS if path == prefix or path.startswith(f"{prefix}/")), None)
    location = response.headers.get("location", "")
    return portal is not None and response.status_code in (302, 303) and location.startswith(PORTALS[portal])


def test_no_route_answers_anonymous_callers(anonymous: TestClient) -> None:
    """Every route of the app, whatever its prefix (FHIR, /api, /auth, /notifications, the portals):
    401 — or, for a portal page, a redirect to its sign-in page — unless it is in ``PUBLIC``."""
    routes = _routes(anonymous.app)
    assert len(routes) > 100  # the enumeration sees the included routers, not just the app's own routes
    answered = []
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        response = _anonymous_request(anonymous, method, path)
        if (method, path) in KNOWN_GAPS:
            assert response.status_code == KNOWN_GAPS[(method, path)], (method, path, "fixed? remove it")
            continue
        if not _refused(response, path):
            answered.append(f"{method} {path} -> {response.status_code} {response.headers.get('location', '')}")
        elif path.startswith("/fhir"):
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), path
            assert response.json()["resourceType"] == "OperationOutcome", path
    assert answered == [], "reachable without credentials:\n" + "\n".join(answered)


def test_the_public_list_names_real_routes_that_answer(anonymous: TestClient) -> None:
    routes = set(_routes(anonymous.app))
    assert set(PUBLIC) <= routes, set(PUBLIC) - routes
    assert set(KNOWN_GAPS) <= routes, set(KNOWN_GAPS) - routes
    for method, path in PUBLIC:
        if method != "GET":
            continue
        response = anonymous.get("/static/" if path == "/static" else path)
        assert response.status_code != 401, path
        assert not response.headers.get("location", "").startswith(tuple(PORTALS.values())), path


def test_metadata_and_health_are_public(api: Api) -> None:
    assert api.client.get("/fhir/metadata").json()["resourceType"] == "CapabilityStatement"
    assert api.client.get("/health/live").status_code == 200
    assert api.client.get("/health/ready").json() == {"status": "ok"}


def _token(api: Api, key_set: str | None = None, **changes: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": api.settings.base_url,
        "aud": tokens.AUDIENCE,
        "sub": "pro:801234567897",
        "iat": now,
        "exp": now + 300,
    }
    claims.update(changes)
    keys = KeySet.import_key_set(json.loads(key_set or api.settings.signing_keys.get_secret_value()))
    return jwt.encode({"alg": "Ed25519", "kid": keys.keys[0].kid}, claims, keys, algorithms=["Ed25519"])


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "wrong-audience",
        "wrong-issuer",
        "tampered",
        "other-key",
        "unknown-professional",
        "unknown-account",
        "software-without-actor",
        "none-alg",
    ],
)
def test_bad_tokens_are_401(api: Api, case: str) -> None:
    if case == "expired":
        token = _token(api, exp=int(time.time()) - 60)
    elif case == "wrong-audience":
        token = _token(api, aud="someone-else")
    elif case == "wrong-issuer":
        token = _token(api, iss="https://evil.example")
    elif case == "tampered":
        head, payload, sig = api.token("dr_medioni").split(".")
        token = f"{head}.{payload[:-2]}AA.{sig}"
    elif case == "other-key":
        token = _token(api, key_set=factories.signing_keys("dev-1"))  # the same kid, another key
    elif case == "unknown-professional":
        token = _token(api, sub="pro:899999999999")
    elif case == "unknown-account":
        token = _token(api, sub="account:00000000-0000-0000-0000-000000000000")
    elif case == "software-without-actor":
        token = _token(api, sub="client:dpi-saint-roch")
    else:
        token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJwcm86ODAxMjM0NTY3ODk3In0."
    response = api.client.get("/fhir/Practitioner", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text


def test_tokens_are_refused_outside_development(api: Api) -> None:
    from carnet.config import Environment, Settings

    prod = Settings(
        env=Environment.PRODUCTION,
        base_url="https://carnet.example",
        kek="k1:" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
        index_key="QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=",
        signing_keys=factories.signing_keys("k1"),
        audit_signing_key="U1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1NTU1M=",
    )
    with pytest.raises(PermissionError):
        tokens.issue_dev(prod, "pro:801234567897")
    from carnet.errors import Unauthenticated

    with pytest.raises(Unauthenticated):
        tokens.verify(prod, api.token("dr_medioni"))


def test_xml_is_not_acceptable(api: Api) -> None:
    response = api.client.get(
        "/fhir/Practitioner",
        headers={"Authorization": f"Bearer {api.token('dr_medioni')}", "Accept": "application/fhir+xml"},
    )
    assert response.status_code == 406
    response = api.client.get("/fhir/metadata?_format=xml")
    assert response.status_code == 406


def test_unknown_endpoint_is_an_outcome(api: Api) -> None:
    response = api.client.get("/fhir/Observation", headers={"Authorization": f"Bearer {api.token('dr_medioni')}"})
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_wrong_content_type_is_415(api: Api) -> None:
    response = api.client.post(
        "/fhir/DocumentReference",
        content=b"<x/>",
        headers={"Authorization": f"Bearer {api.token('dr_medioni')}", "Content-Type": "application/xml"},
    )
    assert response.status_code == 415
