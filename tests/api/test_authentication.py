"""No anonymous access, and the development token authenticator refuses every kind of bad token."""

from __future__ import annotations

import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from carnet.auth import tokens
from tests import factories
from tests.conftest import Api

PROTECTED = [
    ("GET", "/fhir/DocumentReference?patient=x"),
    ("GET", "/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.10|279035121518989"),
    ("GET", "/fhir/List?patient=x"),
    ("GET", "/fhir/Binary/x"),
    ("GET", "/fhir/Practitioner"),
    ("POST", "/fhir"),
    ("POST", "/fhir/DocumentReference"),
    ("POST", "/fhir/Patient"),
]


@pytest.mark.parametrize(("method", "url"), PROTECTED)
def test_no_endpoint_is_reachable_anonymously(api: Api, method: str, url: str) -> None:
    response = api.client.request(method, url, content=b"{}", headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"


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
