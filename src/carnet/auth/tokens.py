"""Carnet access tokens: short-lived JWTs signed with the keys of CARNET_SIGNING_KEYS (Ed25519 or ES256).

The first key of the set signs; every key of the set verifies, and all public keys are published at
``/.well-known/jwks.json``: to rotate, put the new key first, keep the old one until its tokens have
expired, then remove it. No downtime, no shared secret with resource servers.

Every way of signing in (card certificate excepted, which needs no token) ends with one of these:
OpenID Connect login, SMART Backend Services client credentials, patient password + TOTP, and in
development ``carnet token --as <persona>``. In staging and production the development key is
refused at start-up, so development tokens can never verify there.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from carnet.config import Settings
from carnet.errors import Unauthenticated

AUDIENCE = "carnet-api"
ALGORITHMS = ["Ed25519", "ES256"]


@functools.lru_cache(maxsize=8)
def _key_set(material: str) -> KeySet:
    return KeySet.import_key_set(json.loads(material))


def key_set(settings: Settings) -> KeySet:
    return _key_set(settings.signing_keys.get_secret_value())


def active_key_id(settings: Settings) -> str:
    return settings.signing_key_set()[0]["kid"]


def public_jwks(settings: Settings) -> dict[str, Any]:
    """The public half of every signing key, for /.well-known/jwks.json."""
    public = key_set(settings).as_dict(private=False)
    return dict(public)


def issue(settings: Settings, subject: str, *, extra: dict[str, Any] | None = None, ttl: int | None = None) -> str:
    """Sign an access token for ``subject`` (``account:…``, ``pro:…``, ``client:…``)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.base_url,
        "aud": AUDIENCE,
        "sub": subject,
        "iat": now,
        "nbf": now - 5,
        "exp": now + (ttl or settings.access_token_ttl_seconds),
        "jti": uuid.uuid4().hex,
        **(extra or {}),
    }
    keys = key_set(settings)
    kid = active_key_id(settings)
    header = {"alg": keys.get_by_kid(kid).alg or "Ed25519", "typ": "at+jwt", "kid": kid}
    return jwt.encode(header, claims, keys, algorithms=ALGORITHMS)


def issue_dev(settings: Settings, subject: str, *, extra: dict[str, Any] | None = None, ttl: int | None = None) -> str:
    """A development token (``carnet token``): refused outside development and test."""
    if not settings.allows_dev_tokens:
        raise PermissionError("development tokens are refused outside development and test")
    return issue(settings, subject, extra={"dev": True, **(extra or {})}, ttl=ttl or settings.token_ttl_seconds)


# Tokens whose signature and claims were verified, until they expire: a client sends the same token with
# every request, and checking an Ed25519 signature through joserfc costs ~0.25 ms. The key includes the
# key set, the issuer and whether development tokens are allowed, so a rotated-out key or another
# deployment's settings never hit; the time claims are checked again on every hit.
_VERIFIED: dict[tuple[str, str, bool, str], dict[str, Any]] = {}
_VERIFIED_MAX = 8192
_LEEWAY = 5


def verify(settings: Settings, token: str) -> dict[str, Any]:
    """The claims of a valid Carnet access token; ``Unauthenticated`` for anything else."""
    cache_key = (settings.signing_keys.get_secret_value(), settings.base_url, settings.allows_dev_tokens, token)
    cached = _VERIFIED.get(cache_key)
    if cached is not None:
        now = time.time()
        if cached["exp"] + _LEEWAY > now and cached.get("nbf", 0) - _LEEWAY <= now:
            return dict(cached)
        _VERIFIED.pop(cache_key, None)
    claims = _verify_signed(settings, token)
    if isinstance(claims.get("exp"), int | float):
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()  # simple and bounded: the hot tokens come back at their next request
        _VERIFIED[cache_key] = dict(claims)
    return claims


def _verify_signed(settings: Settings, token: str) -> dict[str, Any]:
    try:
        decoded = jwt.decode(token, key_set(settings), algorithms=ALGORITHMS)
    except (JoseError, ValueError) as exc:
        raise Unauthenticated("the bearer token is malformed or its signature is wrong") from exc
    claims = dict(decoded.claims)
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": settings.base_url},
        aud={"essential": True, "value": AUDIENCE},
        sub={"essential": True},
        exp={"essential": True},
        leeway=_LEEWAY,
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise Unauthenticated(f"the bearer token is not valid here ({exc.error})") from exc
    if claims.get("dev") and not settings.allows_dev_tokens:
        raise Unauthenticated("development tokens are not accepted here")
    return claims
