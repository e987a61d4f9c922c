"""Envelope encryption with AES-256-GCM.

Each patient record has its own 256-bit data key (DEK). The DEK is stored only wrapped (encrypted)
by a key-encryption key (KEK) from the settings, with the record id as associated data, so a
wrapped key copied onto another record does not unwrap. Resource JSON and document bytes are
encrypted with the DEK; their associated data binds record, resource type, resource id and version,
so ciphertext moved to another row fails authentication instead of decrypting as the wrong thing.

Destroying a record's wrapped DEK makes everything encrypted under it unreadable (crypto-shredding).

Stored format of a ciphertext: ``version byte (1) || nonce (12) || AES-GCM ciphertext+tag``.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_V1 = b"\x01"
NONCE_BYTES = 12


class DecryptionFailed(Exception):
    """Ciphertext did not authenticate: wrong key, wrong associated data, or tampered bytes."""


def _seal(key: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return FORMAT_V1 + nonce + key.encrypt(nonce, plaintext, aad)


def _open(key: AESGCM, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != FORMAT_V1:
        raise DecryptionFailed("not a Carnet ciphertext")
    try:
        return key.decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], aad)
    except InvalidTag as exc:
        raise DecryptionFailed("ciphertext failed authentication") from exc


def resource_aad(record_id: uuid.UUID, resource_type: str, resource_id: str, version: int) -> bytes:
    """Associated data binding a ciphertext to one version of one resource of one record."""
    return f"carnet:v1|{record_id}|{resource_type}|{resource_id}|{version}".encode()


@dataclass(frozen=True, slots=True)
class WrappedKey:
    kek_id: str
    wrapped: bytes


class RecordCipher:
    """Encrypts and decrypts one record's data with its data key."""

    __slots__ = ("_aead", "record_id")

    def __init__(self, record_id: uuid.UUID, dek: bytes) -> None:
        self.record_id = record_id
        self._aead = AESGCM(dek)

    def encrypt(self, plaintext: bytes, *, resource_type: str, resource_id: str, version: int) -> bytes:
        return _seal(self._aead, plaintext, resource_aad(self.record_id, resource_type, resource_id, version))

    def decrypt(self, blob: bytes, *, resource_type: str, resource_id: str, version: int) -> bytes:
        return _open(self._aead, blob, resource_aad(self.record_id, resource_type, resource_id, version))


class KeyRing:
    """The key-encryption keys: the first wraps new data keys, all of them unwrap."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key-encryption key")
        self._keys = {kid: AESGCM(key) for kid, key in keys}
        self.active_id = keys[0][0]

    @staticmethod
    def _aad(record_id: uuid.UUID, kek_id: str) -> bytes:
        return f"carnet:dek:v1|{record_id}|{kek_id}".encode()

    def new_data_key(self, record_id: uuid.UUID) -> tuple[RecordCipher, WrappedKey]:
        """Generate a record's data key; return it ready to use and wrapped for storage."""
        dek = AESGCM.generate_key(bit_length=256)
        wrapped = _seal(self._keys[self.active_id], dek, self._aad(record_id, self.active_id))
        return RecordCipher(record_id, dek), WrappedKey(self.active_id, wrapped)

    def unwrap(self, record_id: uuid.UUID, wrapped: WrappedKey) -> RecordCipher:
        kek = self._keys.get(wrapped.kek_id)
        if kek is None:
            raise DecryptionFailed(f"key-encryption key {wrapped.kek_id!r} is not configured")
        dek = _open(kek, wrapped.wrapped, self._aad(record_id, wrapped.kek_id))
        return RecordCipher(record_id, dek)

    def rewrap(self, record_id: uuid.UUID, wrapped: WrappedKey) -> WrappedKey:
        """Re-wrap a data key under the active KEK (key rotation); the data itself is untouched."""
        kek = self._keys.get(wrapped.kek_id)
        if kek is None:
            raise DecryptionFailed(f"key-encryption key {wrapped.kek_id!r} is not configured")
        dek = _open(kek, wrapped.wrapped, self._aad(record_id, wrapped.kek_id))
        return WrappedKey(self.active_id, _seal(self._keys[self.active_id], dek, self._aad(record_id, self.active_id)))
