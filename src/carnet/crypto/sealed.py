"""Small secrets sealed under a key-encryption key: TOTP secrets, contact addresses.

The format is the one ``carnet.auth.patients.encrypt_totp_secret`` introduced::

    0x01 || len(kid) (1 byte) || kid || nonce (12 bytes) || AES-256-GCM(plaintext, aad)

with the AES key derived from the key-encryption key ``kid`` (``CARNET_KEK``) by HKDF-SHA256 with a
per-purpose ``context`` (``info``): a value sealed for one purpose never opens for another. The key id
travels with the ciphertext, so a rotation of ``CARNET_KEK`` (new key first, old ones kept) leaves
older values readable. ``aad`` binds the value to its owner (an account, a delivery): a ciphertext
copied onto another row does not open. The associated data actually authenticated is
``aad || "|" || kid``, so the key id cannot be swapped either.

With ``context=b"carnet-totp"`` and ``aad=f"carnet:totp:v1|{account_id}".encode()``, ``seal`` produces
exactly what ``encrypt_totp_secret`` does for the same key, nonce aside (the tests check that each
opens the other's values).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = b"\x01"
NONCE_BYTES = 12
TAG_BYTES = 16


def _cipher(kek: bytes, context: bytes) -> AESGCM:
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(kek))


def _associated(aad: bytes, kid: str) -> bytes:
    return aad + b"|" + kid.encode()


def seal(keys: Sequence[tuple[str, bytes]], plaintext: bytes, *, context: bytes, aad: bytes) -> bytes:
    """Encrypt ``plaintext`` under the active (first) key-encryption key of ``keys``."""
    kid, kek = keys[0]
    nonce = secrets.token_bytes(NONCE_BYTES)
    kid_bytes = kid.encode()
    sealed = _cipher(kek, context).encrypt(nonce, plaintext, _associated(aad, kid))
    return FORMAT + bytes([len(kid_bytes)]) + kid_bytes + nonce + sealed


def key_id(blob: bytes) -> str | None:
    """The id of the key-encryption key a sealed value was made with (None if it is not one)."""
    if len(blob) < 2 or blob[:1] != FORMAT:
        return None
    return blob[2 : 2 + blob[1]].decode(errors="replace")


def open_sealed(keys: Sequence[tuple[str, bytes]], blob: bytes, *, context: bytes, aad: bytes) -> bytes | None:
    """The plaintext, or None when it cannot be read (unknown key, tampered, sealed for another owner)."""
    kid = key_id(blob)
    if kid is None:
        return None
    rest = blob[2 + blob[1] :]
    kek = dict(keys).get(kid)
    if kek is None or len(rest) < NONCE_BYTES + TAG_BYTES:
        return None
    try:
        return _cipher(kek, context).decrypt(rest[:NONCE_BYTES], rest[NONCE_BYTES:], _associated(aad, kid))
    except InvalidTag:
        return None
