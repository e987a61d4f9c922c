"""Helpers for the SMART Backend Services tests: client key pairs, signed assertions, token requests."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.jwk import ECKey, KeyParameters, OKPKey, RSAKey

from carnet.accounts import clients
from carnet.accounts.models import Client, ClientKind
from carnet.auth.smart import ASSERTION_TYPE
from carnet.runtime import Runtime
from tests.conftest import Api

SAINT_ROCH = "1440000289"  # IdNat_Struct of Hôpital Saint-Roch
LAMBERT = "810001745206"  # Dr Claire Lambert, cardiologist at Saint-Roch
MEDIONI = "801234567897"  # Dr Medioni, general practitioner in his own practice (no role at Saint-Roch)
IDNAT_PS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
SCOPES = "system/DocumentReference.crus system/Patient.rs system/Practitioner.rs"
TOKEN_URL = "/auth/token"

AnyKey = RSAKey | ECKey | OKPKey


@dataclass(frozen=True)
class ClientKey:
    """A client's key pair as a JWK (private), with the algorithm it signs with."""

    key: AnyKey
    alg: str

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    def public(self) -> dict[str, Any]:
        return dict(self.key.as_dict(private=False))


def _pem(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_key(alg: str = "ES384", kid: str | None = None) -> ClientKey:
    """A fresh key pair generated with ``cryptography`` for one of the accepted algorithms."""
    params: KeyParameters = {"kid": kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", "use": "sig", "alg": alg}
    key: AnyKey
    if alg == "RS384":
        key = RSAKey.import_key(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), params)
    elif alg == "ES384":
        key = ECKey.import_key(_pem(ec.generate_private_key(ec.SECP384R1())), params)
    elif alg == "ES256":
        key = ECKey.import_key(_pem(ec.generate_private_key(ec.SECP256R1())), params)
    elif alg == "Ed25519":
        key = OKPKey.import_key(_pem(Ed25519PrivateKey.generate()), params)
    else:
        raise ValueError(alg)
    return ClientKey(key, alg)


def jwks(*keys: ClientKey) -> str:
    """The public JSON Web Key Set a client registers."""
    return json.dumps({"keys": [k.public() for k in keys]})


def new_client_id(prefix: str = "sw") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def register(
    runtime: Runtime,
    *keys: ClientKey,
    client_id: str | None = None,
    kind: ClientKind = ClientKind.SOFTWARE,
    organization: str | None = SAINT_ROCH,
    scopes: str = SCOPES,
    name: str = "Test software",
) -> str:
    """Register (or update) a client through the service; return its id."""
    client_id = client_id or new_client_id()
    with runtime.work() as work:
        clients.register_client(
            work,
            client_id=client_id,
            name=name,
            kind=kind,
            organization_idnat=organization if kind is ClientKind.SOFTWARE else None,
            jwks=jwks(*keys) if keys else None,
            scopes=scopes,
        )
    return client_id


def set_active(runtime: Runtime, client_id: str, active: bool) -> None:
    with runtime.work() as work:
        client = work.session.get(Client, client_id)
        assert client is not None
        client.active = active


def assertion(
    key: ClientKey,
    client_id: str,
    *,
    audience: str = "http://testserver/auth/token",
    expires_in: int = 240,
    practitioner: str | None = LAMBERT,
    header: dict[str, Any] | None = None,
    **changes: Any,
) -> str:
    """A client assertion (RFC 7523) signed with ``key``; ``changes`` override or (None) remove claims."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "exp": now + expires_in,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }
    if practitioner is not None:
        claims["carnet_practitioner"] = practitioner
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    headers = {"alg": key.alg, "typ": "JWT", "kid": key.kid, **(header or {})}
    return jwt.encode(headers, claims, key.key, algorithms=[key.alg])


def token_form(signed: str, scope: str | None = SCOPES, **more: str | None) -> dict[str, str]:
    form: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
        **more,
    }
    return {k: v for k, v in form.items() if v is not None}


def request_token(api: Api, signed: str, scope: str | None = SCOPES, **more: str | None) -> httpx.Response:
    """POST /auth/token as a form (``more`` adds, or with None removes, form parameters)."""
    return api.client.post(TOKEN_URL, data=token_form(signed, scope, **more))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
