"""SMART Backend Services: software gets Carnet access tokens with client credentials and private_key_jwt."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from joserfc import jwt
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from carnet.accounts import clients
from carnet.accounts.models import ClientKind
from carnet.app import create_app
from carnet.auth import authenticate, smart, tokens
from carnet.auth.actor import AccessMode, ActorKind
from carnet.auth.models import UsedAssertion
from carnet.cli import app as cli
from carnet.errors import Conflict, Invalid, Unauthenticated
from carnet.runtime import Runtime
from tests.auth.smart_support import (
    IDNAT_PS_SYSTEM,
    LAMBERT,
    MEDIONI,
    SAINT_ROCH,
    SCOPES,
    TOKEN_URL,
    ClientKey,
    assertion,
    bearer,
    jwks,
    make_key,
    new_client_id,
    register,
    request_token,
    set_active,
    token_form,
)
from tests.cli.support import carnet_env
from tests.conftest import Api, make_settings
from tests.factories import signing_keys

PRACTITIONER_SEARCH = f"/fhir/Practitioner?identifier={IDNAT_PS_SYSTEM}|{LAMBERT}"


def _ok_token(api: Api, key: ClientKey, client_id: str, scope: str = SCOPES, **claims: Any) -> dict[str, Any]:
    response = request_token(api, assertion(key, client_id, **claims), scope)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _refused(response: Any, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error, body
    assert set(body) == {"error", "error_description"}
    assert response.headers["cache-control"] == "no-store"
    description: str = body["error_description"]
    return description


# --------------------------------------------------------------------------------------- discovery


def test_smart_configuration(api: Api) -> None:
    response = api.client.get("/.well-known/smart-configuration")
    assert response.status_code == 200
    config = response.json()
    assert config["token_endpoint"] == "http://testserver/auth/token"
    assert config["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert config["grant_types_supported"] == ["client_credentials"]
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert "client-confidential-asymmetric" in config["capabilities"]
    for scope in ("system/DocumentReference.crus", "system/Patient.rs", "system/List.rs", "system/Binary.r"):
        assert scope in config["scopes_supported"]
    assert api.client.get("/.well-known/jwks.json").json()["keys"]


# --------------------------------------------------------------------------------------- success


@pytest.mark.parametrize("alg", ["RS384", "ES384", "ES256", "Ed25519"])
def test_software_gets_a_token_and_calls_the_fhir_api(api: Api, alg: str) -> None:
    key = make_key(alg)
    client_id = register(api.runtime, key)
    body = _ok_token(api, key, client_id)
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == api.settings.access_token_ttl_seconds
    assert body["scope"] == SCOPES

    response = api.client.get(PRACTITIONER_SEARCH, headers=bearer(body["access_token"]))
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 1

    claims = tokens.verify(api.settings, body["access_token"])
    assert claims["sub"] == f"client:{client_id}"
    assert claims["act"] == {"sub": f"pro:{LAMBERT}"}
    assert claims["scope"] == SCOPES
    assert claims["access_mode"] == "normal"
    assert claims["auth"] == "smart"
    assert claims["iss"] == api.settings.base_url
    assert claims["exp"] - claims["iat"] == api.settings.access_token_ttl_seconds
    assert "dev" not in claims
    with api.runtime.read() as work:
        actor = authenticate.resolve(work, claims)
    assert actor.kind is ActorKind.SOFTWARE
    assert actor.client_id == client_id
    assert actor.professional is not None
    assert actor.professional.idnat == LAMBERT
    assert actor.organization_idnat == SAINT_ROCH  # the role in the client's organisation
    assert actor.scopes == frozenset(SCOPES.split())
    assert actor.auth_method == "smart"
    assert actor.declared_mode is AccessMode.NORMAL


def test_the_demo_client_gets_keys_and_a_token(api: Api) -> None:
    key = make_key("ES384")
    # The demo DPI exists without keys: registering it again (upsert) gives it keys and scopes.
    register(api.runtime, key, client_id="dpi-saint-roch", name="DPI Hôpital Saint-Roch (démonstration)")
    body = _ok_token(api, key, "dpi-saint-roch")
    assert api.client.get(PRACTITIONER_SEARCH, headers=bearer(body["access_token"])).status_code == 200
    assert tokens.verify(api.settings, body["access_token"])["sub"] == "client:dpi-saint-roch"


@pytest.mark.parametrize("mode", ["break-glass", "regulation"])
def test_the_declared_access_mode_is_carried_into_the_token(api: Api, mode: str) -> None:
    key = make_key()
    client_id = register(api.runtime, key)
    body = _ok_token(api, key, client_id, carnet_access_mode=mode)
    claims = tokens.verify(api.settings, body["access_token"])
    assert claims["access_mode"] == mode
    with api.runtime.read() as work:
        assert authenticate.resolve(work, claims).declared_mode is AccessMode(mode)


def test_the_secret_connection_is_carried_into_the_token(api: Api) -> None:
    key = make_key()
    client_id = register(api.runtime, key)
    claims = tokens.verify(api.settings, _ok_token(api, key, client_id, carnet_secret_connection=True)["access_token"])
    assert claims["secret_connection"] is True
    with api.runtime.read() as work:
        assert authenticate.resolve(work, claims).secret_connection is True
    # Not declared, or declared false: an ordinary connection.
    extras: list[dict[str, Any]] = [{}, {"carnet_secret_connection": False}]
    for extra in extras:
        claims = tokens.verify(api.settings, _ok_token(api, key, client_id, **extra)["access_token"])
        assert "secret_connection" not in claims
        with api.runtime.read() as work:
            assert authenticate.resolve(work, claims).secret_connection is False
    response = request_token(api, assertion(key, client_id, carnet_secret_connection="yes"))
    assert "carnet_secret_connection" in _refused(response, 400, "invalid_grant")


def test_the_insurer_acts_for_no_professional(api: Api) -> None:
    key = make_key()
    client_id = register(
        api.runtime, key, client_id=new_client_id("cnam"), kind=ClientKind.INSURER, scopes="system/DocumentReference.c"
    )
    body = _ok_token(api, key, client_id, scope="system/DocumentReference.c", practitioner=None)
    claims = tokens.verify(api.settings, body["access_token"])
    assert "act" not in claims
    assert claims["scope"] == "system/DocumentReference.c"
    with api.runtime.read() as work:
        actor = authenticate.resolve(work, claims)
    assert actor.kind is ActorKind.INSURER
    assert actor.professional is None

    response = request_token(api, assertion(key, client_id), "system/DocumentReference.c")
    assert "no professional" in _refused(response, 400, "invalid_grant")
    response = request_token(
        api,
        assertion(key, client_id, practitioner=None, carnet_access_mode="break-glass"),
        "system/DocumentReference.c",
    )
    _refused(response, 400, "invalid_grant")


def test_granted_scopes_are_requested_within_registered(api: Api) -> None:
    key = make_key()
    client_id = register(api.runtime, key, scopes="system/DocumentReference.crus system/Patient.rs")
    requested = "system/DocumentReference.rs system/Patient.rs system/Binary.r system/Patient.crus launch openid"
    body = _ok_token(api, key, client_id, scope=requested)
    assert body["scope"] == "system/DocumentReference.rs system/Patient.rs"
    assert tokens.verify(api.settings, body["access_token"])["scope"] == body["scope"]


def test_grant_scopes_rules() -> None:
    registered = "system/DocumentReference.crus system/*.rs"
    assert clients.grant_scopes("system/DocumentReference.crus", registered) == ["system/DocumentReference.crus"]
    assert clients.grant_scopes("system/DocumentReference.cr system/List.s", registered) == [
        "system/DocumentReference.cr",
        "system/List.s",
    ]
    assert clients.grant_scopes("system/List.c system/*.r system/*.cruds", registered) == ["system/*.r"]
    assert clients.grant_scopes("patient/*.rs user/*.rs system/List.sr system/List.rs?x=1", registered) == []
    assert clients.grant_scopes("system/Patient.rs system/Patient.rs", "system/Patient.rs") == ["system/Patient.rs"]


# --------------------------------------------------------------------------------------- refusals


def _case_expired(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id, expires_in=-60))


def _case_exp_too_far(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id, expires_in=3600))


def _case_no_exp(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id, exp=None))


def _case_wrong_audience(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id, audience="https://other.example/auth/token"))


def _case_issuer_audience(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id, audience=api.settings.base_url))


def _case_iss_sub_mismatch(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id, iss="someone-else"))


def _case_sub_is_another_client(api: Api, key: ClientKey, client_id: str) -> Any:
    other = register(api.runtime, make_key())
    return request_token(api, assertion(key, client_id, iss=other, sub=other))


def _case_other_key_same_kid(api: Api, key: ClientKey, client_id: str) -> Any:
    impostor = make_key(key.alg, kid=key.kid)
    return request_token(api, assertion(impostor, client_id))


def _case_unknown_kid(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(make_key(key.alg), client_id))


def _case_unknown_client(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, new_client_id("nobody")))


def _case_disabled_client(api: Api, key: ClientKey, client_id: str) -> Any:
    set_active(api.runtime, client_id, False)
    return request_token(api, assertion(key, client_id))


def _case_replayed_jti(api: Api, key: ClientKey, client_id: str) -> Any:
    signed = assertion(key, client_id)
    assert request_token(api, signed).status_code == 200
    return request_token(api, signed)


def _case_reused_jti(api: Api, key: ClientKey, client_id: str) -> Any:
    assert request_token(api, assertion(key, client_id, jti="same-jti-" + client_id)).status_code == 200
    return request_token(api, assertion(key, client_id, jti="same-jti-" + client_id, expires_in=200))


def _case_no_jti(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id, jti=None))


def _case_hmac_signed(api: Api, key: ClientKey, client_id: str) -> Any:
    # An assertion "signed" with HS256 using the client's public key as the secret (algorithm confusion).
    from joserfc.jwk import OctKey

    secret = OctKey.import_key(json.dumps(key.public()).encode())
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": "http://testserver/auth/token", "exp": now + 60, "jti": "x"}
    signed = jwt.encode({"alg": "HS256", "kid": key.kid}, claims, secret, algorithms=["HS256"])
    return request_token(api, signed)


def _case_unsigned(api: Api, key: ClientKey, client_id: str) -> Any:
    head, payload, _ = assertion(key, client_id).split(".")
    return request_token(api, f"{head}.{payload}.")


def _case_not_a_jwt(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, "not-a-jwt")


def _case_professional_unknown(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id, practitioner="899999999999"))


def _case_professional_elsewhere(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id, practitioner=MEDIONI))


def _case_no_professional(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id, practitioner=None))


def _case_unknown_access_mode(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id, carnet_access_mode="god-mode"))


def _case_scope_not_registered(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id), "system/Consent.crus")


def _case_no_scope(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id), scope=None)


def _case_unsupported_grant_type(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id), grant_type="authorization_code")


def _case_missing_grant_type(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id), grant_type=None)


def _case_missing_assertion_type(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id), client_assertion_type=None)


def _case_wrong_assertion_type(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id), client_assertion_type="urn:x:saml2-bearer")


def _case_missing_assertion(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id), client_assertion=None)


def _case_client_secret(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id), client_secret="hunter2")


def _case_mismatched_client_id(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id), client_id="another")


def _case_repeated_parameter(api: Api, key: ClientKey, client_id: str) -> Any:
    form = token_form(assertion(key, client_id))
    body = "&".join(f"{k}={v}" for k, v in form.items()) + "&scope=system/Patient.rs"
    return api.client.post(
        TOKEN_URL, content=body.encode(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )


def _case_json_body(api: Api, key: ClientKey, client_id: str) -> Any:
    return api.client.post(TOKEN_URL, json=token_form(assertion(key, client_id)))


def _case_basic_auth(api: Api, key: ClientKey, client_id: str) -> Any:
    return api.client.post(
        TOKEN_URL, data=token_form(assertion(key, client_id)), headers={"Authorization": "Basic Zm9vOmJhcg=="}
    )


def _case_oversized(api: Api, key: ClientKey, client_id: str) -> Any:
    return request_token(api, assertion(key, client_id), padding="x" * 20_000)


Case = Callable[[Api, ClientKey, str], Any]
REFUSALS: dict[str, tuple[Case, int, str]] = {
    "expired": (_case_expired, 401, "invalid_client"),
    "exp-too-far": (_case_exp_too_far, 401, "invalid_client"),
    "no-exp": (_case_no_exp, 401, "invalid_client"),
    "wrong-audience": (_case_wrong_audience, 401, "invalid_client"),
    "issuer-as-audience": (_case_issuer_audience, 401, "invalid_client"),
    "iss-sub-mismatch": (_case_iss_sub_mismatch, 401, "invalid_client"),
    "sub-is-another-client": (_case_sub_is_another_client, 401, "invalid_client"),
    "other-key-same-kid": (_case_other_key_same_kid, 401, "invalid_client"),
    "unknown-kid": (_case_unknown_kid, 401, "invalid_client"),
    "unknown-client": (_case_unknown_client, 401, "invalid_client"),
    "disabled-client": (_case_disabled_client, 401, "invalid_client"),
    "replayed-jti": (_case_replayed_jti, 401, "invalid_client"),
    "reused-jti": (_case_reused_jti, 401, "invalid_client"),
    "no-jti": (_case_no_jti, 401, "invalid_client"),
    "hmac-signed": (_case_hmac_signed, 401, "invalid_client"),
    "unsigned": (_case_unsigned, 401, "invalid_client"),
    "not-a-jwt": (_case_not_a_jwt, 401, "invalid_client"),
    "professional-unknown": (_case_professional_unknown, 400, "invalid_grant"),
    "professional-without-role-in-organisation": (_case_professional_elsewhere, 400, "invalid_grant"),
    "no-professional": (_case_no_professional, 400, "invalid_grant"),
    "unknown-access-mode": (_case_unknown_access_mode, 400, "invalid_grant"),
    "scope-not-registered": (_case_scope_not_registered, 400, "invalid_scope"),
    "no-scope": (_case_no_scope, 400, "invalid_request"),
    "unsupported-grant-type": (_case_unsupported_grant_type, 400, "unsupported_grant_type"),
    "missing-grant-type": (_case_missing_grant_type, 400, "invalid_request"),
    "missing-assertion-type": (_case_missing_assertion_type, 400, "invalid_request"),
    "wrong-assertion-type": (_case_wrong_assertion_type, 400, "invalid_request"),
    "missing-assertion": (_case_missing_assertion, 400, "invalid_request"),
    "client-secret": (_case_client_secret, 400, "invalid_request"),
    "mismatched-client-id": (_case_mismatched_client_id, 401, "invalid_client"),
    "repeated-parameter": (_case_repeated_parameter, 400, "invalid_request"),
    "json-body": (_case_json_body, 400, "invalid_request"),
    "basic-auth": (_case_basic_auth, 400, "invalid_request"),
    "oversized": (_case_oversized, 400, "invalid_request"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_token_requests_are_refused(api: Api, case: str) -> None:
    key = make_key("ES256")
    client_id = register(api.runtime, key)
    make_request, status, error = REFUSALS[case]
    description = _refused(make_request(api, key, client_id), status, error)
    assert description


def test_failures_before_the_signature_all_read_the_same(api: Api) -> None:
    """Unknown client, disabled client, wrong key: one description, so client ids cannot be probed."""
    key = make_key()
    client_id = register(api.runtime, key)
    disabled = register(api.runtime, key)
    set_active(api.runtime, disabled, False)
    descriptions = {
        _refused(request_token(api, assertion(key, new_client_id("nobody"))), 401, "invalid_client"),
        _refused(request_token(api, assertion(key, disabled)), 401, "invalid_client"),
        _refused(request_token(api, assertion(make_key(kid=key.kid), client_id)), 401, "invalid_client"),
    }
    assert descriptions == {"client authentication failed"}


def test_specific_descriptions_once_the_client_is_authenticated(api: Api) -> None:
    key = make_key()
    client_id = register(api.runtime, key)
    expired = _refused(request_token(api, assertion(key, client_id, expires_in=-60)), 401, "invalid_client")
    assert "expired" in expired
    audience = _refused(request_token(api, assertion(key, client_id, audience="x")), 401, "invalid_client")
    assert "http://testserver/auth/token" in audience
    elsewhere = _refused(request_token(api, assertion(key, client_id, practitioner=MEDIONI)), 400, "invalid_grant")
    assert "organisation" in elsewhere


def test_a_refused_assertion_is_spent_all_the_same(api: Api) -> None:
    key = make_key()
    client_id = register(api.runtime, key)
    signed = assertion(key, client_id)
    _refused(request_token(api, signed, "system/Consent.crus"), 400, "invalid_scope")
    assert "already used" in _refused(request_token(api, signed), 401, "invalid_client")


def test_one_assertion_presented_concurrently_yields_one_token(api: Api) -> None:
    key = make_key()
    client_id = register(api.runtime, key)
    form = token_form(assertion(key, client_id))

    def attempt(_: int) -> str:
        try:
            smart.exchange(api.runtime, form)
        except smart.OAuthError as exc:
            return exc.error
        return "ok"

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(attempt, range(6)))
    assert sorted(outcomes) == ["invalid_client"] * 5 + ["ok"]


def test_used_assertions_are_purged_once_expired(api: Api) -> None:
    key = make_key()
    client_id = register(api.runtime, key)
    with api.runtime.work() as work:
        work.session.add(
            UsedAssertion(jti=f"old-{client_id}", client_id=client_id, expires_at=work.now - dt.timedelta(minutes=1))
        )
    _ok_token(api, key, client_id)
    with api.runtime.read() as work:
        assert work.session.get(UsedAssertion, f"old-{client_id}") is None
        kept = work.session.scalars(sa.select(UsedAssertion).where(UsedAssertion.client_id == client_id)).all()
    assert len(kept) == 1
    assert kept[0].expires_at > dt.datetime.now(dt.UTC)
    assert kept[0].jti != f"old-{client_id}"


# --------------------------------------------------------------------------------------- client keys


def test_a_client_with_two_keys_uses_either_and_rotation_retires_the_old(api: Api) -> None:
    first, second = make_key("RS384"), make_key("ES384")
    client_id = register(api.runtime, first, second)
    _ok_token(api, first, client_id)
    _ok_token(api, second, client_id)

    third = make_key("Ed25519")
    with api.runtime.work() as work:
        clients.rotate_keys(work, client_id=client_id, jwks=jwks(third))
    _refused(request_token(api, assertion(first, client_id)), 401, "invalid_client")
    _refused(request_token(api, assertion(second, client_id)), 401, "invalid_client")
    _ok_token(api, third, client_id)


def _key_dict(**changes: Any) -> dict[str, Any]:
    data = make_key("ES256").public()
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("material", "message"),
    [
        (json.dumps({"keys": [make_key("ES256").key.as_dict(private=True)]}), "private"),
        (json.dumps({"keys": [_key_dict(kid="a"), _key_dict(kid="a")]}), "share the kid"),
        (json.dumps({"keys": [{k: v for k, v in _key_dict().items() if k != "kid"}]}), "kid"),
        (json.dumps({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}), "secret"),
        (json.dumps({"keys": [_key_dict(use="enc")]}), "use"),
        (json.dumps({"keys": [_key_dict(alg="RS256")]}), "algorithm"),
        (json.dumps({"keys": [_key_dict(alg="ES384")]}), "does not fit"),
        (json.dumps({"keys": []}), "at least one key"),
        (json.dumps(make_key("ES256").public()), "JSON Web Key Set"),
        ("not json", "not JSON"),
    ],
)
def test_registered_key_sets_hold_public_signature_keys_only(material: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        clients.validate_jwks(material)


def test_small_rsa_keys_and_unknown_curves_are_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from joserfc.jwk import ECKey

    weak = rsa.generate_private_key(65537, 1024).public_key().public_numbers()  # noqa: S505 - the weak key under test
    small = {"kty": "RSA", "kid": "small", "n": _b64url(weak.n), "e": _b64url(weak.e)}
    with pytest.raises(Invalid, match="2048"):
        clients.validate_jwks(json.dumps({"keys": [small]}))
    strong = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    fine = {"kty": "RSA", "kid": "fine", "n": _b64url(strong.n), "e": _b64url(strong.e)}
    assert json.loads(clients.validate_jwks(json.dumps({"keys": [fine]})))["keys"] == [fine]
    p521 = ECKey.import_key(ec.generate_private_key(ec.SECP521R1()).public_key(), {"kid": "p521"})
    with pytest.raises(Invalid, match="curve"):
        clients.validate_jwks(json.dumps({"keys": [p521.as_dict()]}))


def test_registration_rules(api: Api) -> None:
    key = make_key()
    with pytest.raises(Invalid, match="IdNat_Struct"):
        register(api.runtime, key, organization=None)
    with pytest.raises(Invalid, match="no organisation"):
        register(api.runtime, key, organization="1999999999")
    with pytest.raises(Invalid, match="public keys"):
        register(api.runtime)
    with pytest.raises(Invalid, match="SMART v2 system scope"):
        register(api.runtime, key, scopes="patient/*.rs")
    with pytest.raises(Invalid, match="resource type"):
        register(api.runtime, key, scopes="system/Observation.rs")
    client_id = register(api.runtime, key)
    with pytest.raises(Conflict):
        register(api.runtime, client_id=client_id, kind=ClientKind.INSURER)
    # Updating without keys keeps them.
    register(api.runtime, client_id=client_id, scopes="system/Patient.rs", name="Renamed")
    with api.runtime.read() as work:
        info = next(c for c in clients.list_clients(work) if c.id == client_id)
    assert info.key_ids == (key.kid,)
    assert info.scopes == ("system/Patient.rs",)
    assert info.name == "Renamed"
    assert info.organization_idnat == SAINT_ROCH


def test_the_cli_registers_lists_and_rotates_client_keys(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In-process (Typer's runner) on the session database, from an empty directory (no .env file).
    monkeypatch.chdir(tmp_path)
    env = {k: v for k, v in carnet_env(api.settings.database_url).items() if k.startswith("CARNET_")}
    runner = CliRunner()

    def carnet(*args: str) -> Result:
        return runner.invoke(cli, ["account", "client", *args], env=env)

    client_id = new_client_id("cli")
    old, new = make_key("RS384"), make_key("ES384")
    (tmp_path / "old.jwks").write_text(jwks(old))
    (tmp_path / "new.jwks").write_text(jwks(new))
    (tmp_path / "private.jwks").write_text(json.dumps({"keys": [new.key.as_dict(private=True)]}))
    common = ("--id", client_id, "--name", "LGC Saint-Roch", "--kind", "software", "--organization", SAINT_ROCH)

    result = carnet("register", *common, "--jwks", "private.jwks", "--scopes", SCOPES)
    assert result.exit_code == 1, result.output
    assert "private" in result.output
    result = carnet("register", *common, "--kind", "robot", "--jwks", "old.jwks", "--scopes", SCOPES)
    assert result.exit_code == 2, result.output

    result = carnet("register", *common, "--jwks", "old.jwks", "--scopes", SCOPES)
    assert result.exit_code == 0, result.output
    assert old.kid in result.output
    result = carnet("list", "--json")
    assert result.exit_code == 0, result.output
    listed = {row["id"]: row for row in json.loads(result.stdout)}
    assert listed[client_id]["key_ids"] == [old.kid]
    assert listed[client_id]["organization_idnat"] == SAINT_ROCH
    assert listed[client_id]["scopes"] == SCOPES.split()
    assert listed["dpi-saint-roch"]["kind"] == "software"
    _ok_token(api, old, client_id)

    result = carnet("keys", "--id", client_id, "--jwks", "new.jwks")
    assert result.exit_code == 0, result.output
    _refused(request_token(api, assertion(old, client_id)), 401, "invalid_client")
    _ok_token(api, new, client_id)
    assert client_id in carnet("list").stdout

    result = carnet("disable", "--id", client_id)
    assert result.exit_code == 0, result.output
    _refused(request_token(api, assertion(new, client_id)), 401, "invalid_client")
    assert carnet("enable", "--id", client_id).exit_code == 0
    _ok_token(api, new, client_id)
    assert carnet("keys", "--id", "no-such-client", "--jwks", "new.jwks").exit_code == 1


# --------------------------------------------------------------------------------------- Carnet tokens


def _app(settings_runtime: Runtime) -> TestClient:
    return TestClient(create_app(settings_runtime.settings, settings_runtime), base_url="http://testserver")


def test_carnet_access_tokens_expire(api: Api) -> None:
    short = Runtime(make_settings(api.settings.database_url, access_token_ttl_seconds=60))
    try:
        key = make_key()
        client_id = register(short, key)
        with _app(short) as client:
            response = client.post(TOKEN_URL, data=token_form(assertion(key, client_id)))
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["expires_in"] == 60
            claims = tokens.verify(short.settings, body["access_token"])
            assert claims["exp"] - claims["iat"] == 60
            assert client.get(PRACTITIONER_SEARCH, headers=bearer(body["access_token"])).status_code == 200

            # The same token, its lifetime over: refused.
            now = int(time.time())
            claims.update(iat=now - 120, nbf=now - 125, exp=now - 60)
            keys = tokens.key_set(short.settings)
            kid = tokens.active_key_id(short.settings)
            expired = jwt.encode({"alg": "Ed25519", "typ": "at+jwt", "kid": kid}, claims, keys, algorithms=["Ed25519"])
            response = client.get(PRACTITIONER_SEARCH, headers=bearer(expired))
            assert response.status_code == 401
    finally:
        short.dispose()


def _keys(*kids: str) -> str:
    """A CARNET_SIGNING_KEYS set with fresh keys of these kids, the first one signing."""
    keys: list[dict[str, Any]] = []
    for kid in kids:
        keys.extend(json.loads(signing_keys(kid))["keys"])
    return json.dumps({"keys": keys})


def test_carnet_signing_keys_rotate_without_downtime(api: Api) -> None:
    old_only = _keys("old")
    old_set = json.loads(old_only)["keys"]
    new_set = json.loads(_keys("new"))["keys"]
    both = json.dumps({"keys": new_set + old_set})  # the new key signs, the old one still verifies
    new_only = json.dumps({"keys": new_set})
    url = api.settings.database_url
    before = make_settings(url, signing_keys=old_only)
    during = make_settings(url, signing_keys=both)
    after = make_settings(url, signing_keys=new_only)

    key = make_key()
    client_id = register(api.runtime, key)
    tokens_by_phase: dict[str, str] = {}
    for phase, settings in (("before", before), ("during", during)):
        runtime = Runtime(settings)
        try:
            with _app(runtime) as client:
                response = client.post(TOKEN_URL, data=token_form(assertion(key, client_id)))
                assert response.status_code == 200, response.text
                tokens_by_phase[phase] = response.json()["access_token"]
                published = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
                assert published == ({"old"} if phase == "before" else {"new", "old"})
        finally:
            runtime.dispose()
    old_token, new_token = tokens_by_phase["before"], tokens_by_phase["during"]
    assert json.loads(_b64(new_token.split(".")[0]))["kid"] == "new"
    assert json.loads(_b64(old_token.split(".")[0]))["kid"] == "old"

    # During the rotation both verify; afterwards only the new key's tokens do.
    assert tokens.verify(during, old_token)["sub"] == f"client:{client_id}"
    assert tokens.verify(during, new_token)["sub"] == f"client:{client_id}"
    assert tokens.verify(after, new_token)["sub"] == f"client:{client_id}"
    with pytest.raises(Unauthenticated):
        tokens.verify(after, old_token)
    with pytest.raises(Unauthenticated):
        tokens.verify(before, new_token)

    runtime = Runtime(after)
    try:
        with _app(runtime) as client:
            assert client.get(PRACTITIONER_SEARCH, headers=bearer(new_token)).status_code == 200
            assert client.get(PRACTITIONER_SEARCH, headers=bearer(old_token)).status_code == 401
    finally:
        runtime.dispose()


def _b64(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64url(number: int) -> str:
    import base64

    return base64.urlsafe_b64encode(number.to_bytes((number.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
