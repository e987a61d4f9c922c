"""Software clients for SMART Backend Services: registration, public keys, scopes.

A client is hospital, lab or pharmacy software (kind ``software``: it belongs to an organisation of
the directory and acts for that organisation's professionals) or the insurer's feed (kind
``insurer``: it acts for no professional). It authenticates with ``private_key_jwt``: assertions
signed with one of the private keys whose public halves are registered here (``Client.jwks``).
Registering again updates the client (upsert); ``rotate_keys`` replaces its key set, so an assertion
signed with a key that has left the set is refused from then on.

Scopes are SMART v2 system scopes (``system/DocumentReference.crus``). A client is granted what it
requests within what it is registered for: a registered scope, or a narrower one (fewer permissions,
or one resource type under a registered ``system/*.…``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, KeySet

from carnet.accounts.models import Client, ClientKind
from carnet.directory.models import Organization
from carnet.errors import Conflict, Invalid, NotFound
from carnet.runtime import Work

# Signature algorithms accepted on client assertions (SMART requires RS384 and ES384).
CLIENT_ALGORITHMS = ("RS384", "ES384", "ES256", "Ed25519")
_ALGORITHM_KEYS = {
    "RS384": ("RSA", None),
    "ES384": ("EC", "P-384"),
    "ES256": ("EC", "P-256"),
    "Ed25519": ("OKP", "Ed25519"),
}
_CURVES = {"EC": ("P-256", "P-384"), "OKP": ("Ed25519",)}
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
MIN_RSA_BITS = 2048
MAX_KEYS = 10
_KID = re.compile(r"^[\x21-\x7e]{1,128}$")

# Resource types a system scope may name (the FHIR API's types, Consent for the consent service).
SCOPE_RESOURCE_TYPES = (
    "DocumentReference",
    "Binary",
    "List",
    "Patient",
    "Consent",
    "Practitioner",
    "PractitionerRole",
    "Organization",
)
_SCOPE = re.compile(r"^system/(?P<type>\*|[A-Z][A-Za-z]{1,63})\.(?P<perms>c?r?u?d?s?)$")
# Advertised in /.well-known/smart-configuration.
SUPPORTED_SCOPES = (
    "system/DocumentReference.crus",
    "system/DocumentReference.rs",
    "system/Patient.rs",
    "system/List.rs",
    "system/Binary.r",
    "system/Consent.crus",
    "system/Consent.rs",
    "system/Practitioner.rs",
    "system/PractitionerRole.rs",
    "system/Organization.rs",
)
_SCOPES_COLUMN = 500


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A client as ``carnet account client list`` shows it (public information only)."""

    id: str
    kind: str
    name: str
    organization_idnat: str | None
    active: bool
    key_ids: tuple[str, ...]
    scopes: tuple[str, ...]


# --------------------------------------------------------------------------------------- scopes


def _parse_scope(scope: str) -> tuple[str, str] | None:
    """(resource type or ``*``, permissions) of a SMART v2 system scope, None if it is not one."""
    match = _SCOPE.match(scope)
    if match is None or not match["perms"]:
        return None
    return match["type"], match["perms"]


def validate_scopes(text: str) -> list[str]:
    """The scopes of a registration, checked and de-duplicated (order kept); ``Invalid`` otherwise."""
    scopes = list(dict.fromkeys(text.split()))
    for scope in scopes:
        parsed = _parse_scope(scope)
        if parsed is None:
            raise Invalid(
                f"{scope!r} is not a SMART v2 system scope (system/<ResourceType>.<permissions in c r u d s order>)"
            )
        if parsed[0] != "*" and parsed[0] not in SCOPE_RESOURCE_TYPES:
            raise Invalid(f"{scope!r} names a resource type Carnet does not serve ({', '.join(SCOPE_RESOURCE_TYPES)})")
    if len(" ".join(scopes)) > _SCOPES_COLUMN:
        raise Invalid(f"the scopes take more than {_SCOPES_COLUMN} characters")
    return scopes


def grant_scopes(requested: str, registered: str) -> list[str]:
    """The requested scopes the client may have: each one registered, or narrower than a registered one."""
    exact = set(registered.split())
    allowed = [parsed for scope in exact if (parsed := _parse_scope(scope)) is not None]
    granted: list[str] = []
    for scope in dict.fromkeys(requested.split()):
        parsed = _parse_scope(scope)
        if scope in exact:
            granted.append(scope)
        elif parsed is not None:
            kind, perms = parsed
            if any(their_kind in ("*", kind) and set(perms) <= set(their_perms) for their_kind, their_perms in allowed):
                granted.append(scope)
    return granted


# --------------------------------------------------------------------------------------- keys


def _check_key(data: Any, position: int) -> str:
    """Check one JWK of a client's set; return its kid."""
    where = f"key {position + 1}"
    if not isinstance(data, dict):
        raise Invalid(f"{where} is not a JSON object")
    kid = data.get("kid")
    if not isinstance(kid, str) or not _KID.match(kid):
        raise Invalid(f"{where} needs a kid (key id, printable ASCII, at most 128 characters)")
    where = f"key {kid!r}"
    private = [m for m in _PRIVATE_MEMBERS if m in data]
    if private:
        raise Invalid(f"{where} holds private or secret material ({', '.join(private)}): register the public key only")
    kty = data.get("kty")
    if kty not in ("RSA", "EC", "OKP"):
        raise Invalid(f"{where}: key type {kty!r} is not accepted (RSA, EC or OKP)")
    if kty in _CURVES and data.get("crv") not in _CURVES[kty]:
        raise Invalid(f"{where}: curve {data.get('crv')!r} is not accepted ({', '.join(_CURVES[kty])})")
    if data.get("use") not in (None, "sig"):
        raise Invalid(f"{where}: use must be 'sig'")
    ops = data.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise Invalid(f"{where}: key_ops must allow 'verify'")
    alg = data.get("alg")
    if alg is not None:
        if alg not in _ALGORITHM_KEYS:
            raise Invalid(f"{where}: algorithm {alg!r} is not accepted ({', '.join(CLIENT_ALGORITHMS)})")
        expected_kty, expected_crv = _ALGORITHM_KEYS[alg]
        if kty != expected_kty or (expected_crv is not None and data.get("crv") != expected_crv):
            raise Invalid(f"{where}: algorithm {alg} does not fit this key")
    if kty == "RSA" and _rsa_bits(data.get("n")) < MIN_RSA_BITS:
        raise Invalid(f"{where}: RSA keys need at least {MIN_RSA_BITS} bits")
    try:
        key = JWKRegistry.import_key(data)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise Invalid(f"{where} is not a valid JSON Web Key") from exc
    if key.is_private:
        raise Invalid(f"{where} holds private material: register the public key only")
    return kid


def _rsa_bits(modulus: object) -> int:
    """The size of an RSA modulus given as base64url (0 when it is not one)."""
    if not isinstance(modulus, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))
    except (binascii.Error, ValueError):
        return 0
    return int.from_bytes(raw, "big").bit_length()


def validate_jwks(text: str) -> str:
    """Check a client's JSON Web Key Set (public signature keys with unique kids); return it as stored."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Invalid("the key set is not JSON") from exc
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise Invalid('the key set must be a JSON Web Key Set: {"keys": [ … ]} with at least one key')
    if len(keys) > MAX_KEYS:
        raise Invalid(f"a client registers at most {MAX_KEYS} keys")
    kids = [_check_key(key, position) for position, key in enumerate(keys)]
    duplicates = sorted({kid for kid in kids if kids.count(kid) > 1})
    if duplicates:
        raise Invalid(f"two keys share the kid {duplicates[0]!r}")
    return json.dumps({"keys": keys}, separators=(",", ":"), sort_keys=True)


def key_set(client: Client) -> KeySet | None:
    """The client's registered public keys, None when it has none."""
    if not client.jwks:
        return None
    return KeySet.import_key_set(json.loads(client.jwks))


def key_ids(client: Client) -> tuple[str, ...]:
    if not client.jwks:
        return ()
    return tuple(str(k.get("kid")) for k in json.loads(client.jwks).get("keys", []))


# --------------------------------------------------------------------------------------- clients


def _organization(work: Work, idnat_struct: str) -> Organization:
    org = work.session.scalar(sa.select(Organization).where(Organization.idnat_struct == idnat_struct))
    if org is None:
        raise Invalid(f"no organisation with IdNat_Struct {idnat_struct} in the directory")
    return org


def register_client(
    work: Work,
    *,
    client_id: str,
    name: str,
    kind: ClientKind,
    organization_idnat: str | None = None,
    jwks: str | None = None,
    scopes: str = "",
) -> Client:
    """Create or update a client. Software belongs to an organisation of the directory; a new client
    needs its public keys; an existing one keeps its keys when ``jwks`` is None."""
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", client_id):
        raise Invalid("a client id is 1 to 64 letters, digits, '.', '_' or '-'")
    if not name.strip():
        raise Invalid("a client needs a name")
    if kind is ClientKind.SOFTWARE and not organization_idnat:
        raise Invalid("software acts for the professionals of one organisation: give its IdNat_Struct")
    org = _organization(work, organization_idnat) if organization_idnat else None
    stored_keys = validate_jwks(jwks) if jwks is not None else None
    stored_scopes = " ".join(validate_scopes(scopes))
    client = work.session.get(Client, client_id)
    if client is None:
        if stored_keys is None:
            raise Invalid("a new client needs its public keys (JWKS)")
        client = Client(id=client_id, kind=kind.value, active=True, created_at=work.now)
        work.session.add(client)
    elif client.kind != kind.value:
        raise Conflict(f"client {client_id} is registered as {client.kind}; its kind cannot change")
    client.name = name.strip()
    client.organization_id = org.id if org else None
    client.scopes = stored_scopes
    if stored_keys is not None:
        client.jwks = stored_keys
    work.session.flush()
    return client


def rotate_keys(work: Work, *, client_id: str, jwks: str) -> Client:
    """Replace a client's public keys: assertions signed with a key no longer in the set are refused."""
    client = work.session.get(Client, client_id)
    if client is None:
        raise NotFound(f"no client {client_id}")
    client.jwks = validate_jwks(jwks)
    work.session.flush()
    return client


def set_active(work: Work, *, client_id: str, active: bool) -> Client:
    """Disable a client (its token requests are refused from now on) or enable it again."""
    client = work.session.get(Client, client_id)
    if client is None:
        raise NotFound(f"no client {client_id}")
    client.active = active
    work.session.flush()
    return client


def list_clients(work: Work) -> list[ClientInfo]:
    rows = work.session.execute(
        sa.select(Client, Organization.idnat_struct)
        .outerjoin(Organization, Organization.id == Client.organization_id)
        .order_by(Client.id)
    ).all()
    return [
        ClientInfo(
            id=client.id,
            kind=client.kind,
            name=client.name,
            organization_idnat=idnat,
            active=client.active,
            key_ids=key_ids(client),
            scopes=tuple(client.scopes.split()),
        )
        for client, idnat in rows
    ]
