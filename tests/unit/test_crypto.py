"""Encryption at rest: AES-GCM envelope (record data keys wrapped by KEKs) and blind indexes."""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carnet.crypto import BlindIndexer, DecryptionFailed, KeyRing, RecordCipher
from carnet.crypto.blind import normalise_text
from carnet.crypto.envelope import FORMAT_V1, NONCE_BYTES, WrappedKey

RECORD = uuid.UUID("6f1c1a52-3d0e-4a58-9b1e-0c7c1b5e2a10")
OTHER_RECORD = uuid.UUID("0b8e7d36-5a49-4f4e-8b0f-2d61f3a0c9d4")
DEK = bytes(range(32))
OLD_KEK = ("k2025", b"\x11" * 32)
NEW_KEK = ("k2026", b"\x22" * 32)
TAG_BYTES = 16


def _cipher() -> RecordCipher:
    return RecordCipher(RECORD, DEK)


def _seal(plaintext: bytes = b'{"resourceType":"Patient"}') -> bytes:
    return _cipher().encrypt(plaintext, resource_type="Patient", resource_id="p1", version=3)


# ---------------------------------------------------------------- RecordCipher


def test_record_cipher_roundtrip() -> None:
    plaintext = b'{"resourceType":"Patient","id":"p1"}'
    blob = _cipher().encrypt(plaintext, resource_type="Patient", resource_id="p1", version=3)
    assert _cipher().decrypt(blob, resource_type="Patient", resource_id="p1", version=3) == plaintext


def test_ciphertext_format_is_version_nonce_ciphertext_tag() -> None:
    plaintext = b"x" * 100
    blob = _cipher().encrypt(plaintext, resource_type="Binary", resource_id="b", version=1)
    assert blob[:1] == FORMAT_V1 == b"\x01"
    assert len(blob) == 1 + NONCE_BYTES + len(plaintext) + TAG_BYTES
    assert plaintext not in blob


def test_encryption_uses_a_fresh_nonce_each_time() -> None:
    first, second = _seal(b"same"), _seal(b"same")
    assert first != second
    assert first[1 : 1 + NONCE_BYTES] != second[1 : 1 + NONCE_BYTES]


@pytest.mark.parametrize(
    ("record_id", "resource_type", "resource_id", "version"),
    [
        (OTHER_RECORD, "Patient", "p1", 3),  # wrong record
        (RECORD, "DocumentReference", "p1", 3),  # wrong resource type
        (RECORD, "Patient", "p2", 3),  # wrong resource id
        (RECORD, "Patient", "p1", 2),  # wrong version
        (RECORD, "Patient", "p1", 4),
    ],
)
def test_decrypt_is_bound_to_record_type_id_and_version(
    record_id: uuid.UUID, resource_type: str, resource_id: str, version: int
) -> None:
    blob = _seal()
    with pytest.raises(DecryptionFailed, match="failed authentication"):
        RecordCipher(record_id, DEK).decrypt(
            blob, resource_type=resource_type, resource_id=resource_id, version=version
        )


def test_decrypt_with_another_data_key_fails() -> None:
    with pytest.raises(DecryptionFailed):
        RecordCipher(RECORD, b"\x00" * 32).decrypt(_seal(), resource_type="Patient", resource_id="p1", version=3)


@pytest.mark.parametrize("position", [1, NONCE_BYTES, 1 + NONCE_BYTES, -1])
def test_decrypt_detects_a_tampered_byte(position: int) -> None:
    blob = bytearray(_seal())
    blob[position] ^= 0x01
    with pytest.raises(DecryptionFailed, match="failed authentication"):
        _cipher().decrypt(bytes(blob), resource_type="Patient", resource_id="p1", version=3)


def test_decrypt_refuses_an_unknown_format_version() -> None:
    blob = b"\x02" + _seal()[1:]
    with pytest.raises(DecryptionFailed, match="not a Carnet ciphertext"):
        _cipher().decrypt(blob, resource_type="Patient", resource_id="p1", version=3)


@pytest.mark.parametrize("length", [0, 1, 1 + NONCE_BYTES, 1 + NONCE_BYTES + TAG_BYTES - 1])
def test_decrypt_refuses_a_blob_too_short_to_be_a_ciphertext(length: int) -> None:
    with pytest.raises(DecryptionFailed, match="not a Carnet ciphertext"):
        _cipher().decrypt(_seal()[:length], resource_type="Patient", resource_id="p1", version=3)


def test_decrypt_refuses_a_truncated_tag() -> None:
    blob = _seal(b"some payload")
    with pytest.raises(DecryptionFailed):
        _cipher().decrypt(blob[:-1], resource_type="Patient", resource_id="p1", version=3)


def test_empty_plaintext_roundtrips() -> None:
    blob = _cipher().encrypt(b"", resource_type="Binary", resource_id="b", version=1)
    assert len(blob) == 1 + NONCE_BYTES + TAG_BYTES
    assert _cipher().decrypt(blob, resource_type="Binary", resource_id="b", version=1) == b""


@given(st.binary(max_size=4096), st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=10**6))
def test_record_cipher_roundtrips_arbitrary_bytes(plaintext: bytes, resource_id: str, version: int) -> None:
    blob = _cipher().encrypt(plaintext, resource_type="Binary", resource_id=resource_id, version=version)
    assert _cipher().decrypt(blob, resource_type="Binary", resource_id=resource_id, version=version) == plaintext


@given(st.binary(min_size=1, max_size=256), st.data())
def test_any_single_byte_change_is_detected(plaintext: bytes, data: st.DataObject) -> None:
    blob = bytearray(_cipher().encrypt(plaintext, resource_type="Binary", resource_id="b", version=1))
    position = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    blob[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(DecryptionFailed):
        _cipher().decrypt(bytes(blob), resource_type="Binary", resource_id="b", version=1)


# ---------------------------------------------------------------- KeyRing


def test_key_ring_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one key-encryption key"):
        KeyRing([])


def test_key_ring_wraps_with_the_first_key() -> None:
    ring = KeyRing([NEW_KEK, OLD_KEK])
    assert ring.active_id == "k2026"
    _, wrapped = ring.new_data_key(RECORD)
    assert wrapped.kek_id == "k2026"


def test_new_data_key_unwraps_to_a_cipher_for_the_same_data() -> None:
    ring = KeyRing([OLD_KEK])
    cipher, wrapped = ring.new_data_key(RECORD)
    assert cipher.record_id == RECORD
    blob = cipher.encrypt(b"document bytes", resource_type="Binary", resource_id="d", version=1)
    unwrapped = KeyRing([OLD_KEK]).unwrap(RECORD, wrapped)
    assert unwrapped.record_id == RECORD
    assert unwrapped.decrypt(blob, resource_type="Binary", resource_id="d", version=1) == b"document bytes"


def test_wrapped_key_is_a_ciphertext_of_a_256_bit_key() -> None:
    _, wrapped = KeyRing([OLD_KEK]).new_data_key(RECORD)
    assert wrapped.wrapped[:1] == FORMAT_V1
    assert len(wrapped.wrapped) == 1 + NONCE_BYTES + 32 + TAG_BYTES


def test_each_record_gets_its_own_data_key() -> None:
    ring = KeyRing([OLD_KEK])
    first, _ = ring.new_data_key(RECORD)
    second, _ = ring.new_data_key(RECORD)
    blob = first.encrypt(b"secret", resource_type="Binary", resource_id="d", version=1)
    with pytest.raises(DecryptionFailed):
        second.decrypt(blob, resource_type="Binary", resource_id="d", version=1)


def test_unwrap_without_the_kek_fails_naming_it() -> None:
    _, wrapped = KeyRing([OLD_KEK]).new_data_key(RECORD)
    with pytest.raises(DecryptionFailed, match="'k2025' is not configured"):
        KeyRing([NEW_KEK]).unwrap(RECORD, wrapped)


def test_unwrap_with_a_different_key_under_the_same_id_fails() -> None:
    _, wrapped = KeyRing([OLD_KEK]).new_data_key(RECORD)
    with pytest.raises(DecryptionFailed, match="failed authentication"):
        KeyRing([("k2025", b"\x33" * 32)]).unwrap(RECORD, wrapped)


def test_wrapped_key_is_bound_to_its_record() -> None:
    ring = KeyRing([OLD_KEK])
    _, wrapped = ring.new_data_key(RECORD)
    with pytest.raises(DecryptionFailed):
        ring.unwrap(OTHER_RECORD, wrapped)
    with pytest.raises(DecryptionFailed):
        ring.rewrap(OTHER_RECORD, wrapped)


def test_wrapped_key_is_bound_to_its_kek_id() -> None:
    # The same key material under another id does not unwrap: the kek id is associated data.
    _, wrapped = KeyRing([OLD_KEK]).new_data_key(RECORD)
    relabelled = WrappedKey("alias", wrapped.wrapped)
    with pytest.raises(DecryptionFailed):
        KeyRing([("alias", OLD_KEK[1])]).unwrap(RECORD, relabelled)


def test_rotation_new_ring_still_unwraps_keys_wrapped_by_the_old_kek() -> None:
    old_ring = KeyRing([OLD_KEK])
    cipher, wrapped = old_ring.new_data_key(RECORD)
    blob = cipher.encrypt(b"before rotation", resource_type="Binary", resource_id="d", version=1)
    rotated = KeyRing([NEW_KEK, OLD_KEK])
    restored = rotated.unwrap(RECORD, wrapped)
    assert restored.decrypt(blob, resource_type="Binary", resource_id="d", version=1) == b"before rotation"


def test_rewrap_moves_the_data_key_to_the_active_kek() -> None:
    cipher, wrapped = KeyRing([OLD_KEK]).new_data_key(RECORD)
    blob = cipher.encrypt(b"untouched data", resource_type="Binary", resource_id="d", version=1)
    rotated = KeyRing([NEW_KEK, OLD_KEK])

    rewrapped = rotated.rewrap(RECORD, wrapped)

    assert rewrapped.kek_id == "k2026"
    assert rewrapped.wrapped != wrapped.wrapped
    # The data itself is untouched: the re-wrapped key still decrypts it, with the new KEK alone.
    new_only = KeyRing([NEW_KEK]).unwrap(RECORD, rewrapped)
    assert new_only.decrypt(blob, resource_type="Binary", resource_id="d", version=1) == b"untouched data"
    # The old KEK can no longer unwrap it: retiring the old KEK is now safe.
    with pytest.raises(DecryptionFailed, match="'k2026' is not configured"):
        KeyRing([OLD_KEK]).unwrap(RECORD, rewrapped)


def test_rewrap_refuses_a_key_whose_kek_is_missing() -> None:
    _, wrapped = KeyRing([OLD_KEK]).new_data_key(RECORD)
    with pytest.raises(DecryptionFailed, match="not configured"):
        KeyRing([NEW_KEK]).rewrap(RECORD, wrapped)


def test_wrapped_key_with_a_tampered_byte_does_not_unwrap() -> None:
    ring = KeyRing([OLD_KEK])
    _, wrapped = ring.new_data_key(RECORD)
    tampered = bytearray(wrapped.wrapped)
    tampered[-1] ^= 0x80
    with pytest.raises(DecryptionFailed):
        ring.unwrap(RECORD, WrappedKey(wrapped.kek_id, bytes(tampered)))


@given(st.binary(max_size=2048), st.uuids())
def test_envelope_roundtrip_through_rotation(plaintext: bytes, record_id: uuid.UUID) -> None:
    cipher, wrapped = KeyRing([OLD_KEK]).new_data_key(record_id)
    blob = cipher.encrypt(plaintext, resource_type="Binary", resource_id="x", version=7)
    rewrapped = KeyRing([NEW_KEK, OLD_KEK]).rewrap(record_id, wrapped)
    restored = KeyRing([NEW_KEK]).unwrap(record_id, rewrapped)
    assert restored.decrypt(blob, resource_type="Binary", resource_id="x", version=7) == plaintext


# ---------------------------------------------------------------- BlindIndexer

INDEX_KEY = b"k" * 32


def test_blind_index_key_must_be_at_least_32_bytes() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        BlindIndexer(b"k" * 31)
    assert len(BlindIndexer(b"k" * 32).ins("x")) == 32
    assert len(BlindIndexer(b"k" * 64).ins("x")) == 32


def test_blind_index_is_hmac_sha256_of_domain_nul_value() -> None:
    expected = hmac.new(INDEX_KEY, b"ins\x00255081416802538", hashlib.sha256).digest()
    assert BlindIndexer(INDEX_KEY).ins("255081416802538") == expected


def test_blind_index_is_deterministic_across_instances() -> None:
    assert BlindIndexer(INDEX_KEY).ins("255081416802538") == BlindIndexer(INDEX_KEY).ins("255081416802538")
    assert BlindIndexer(INDEX_KEY).name("Dupont") == BlindIndexer(bytes(INDEX_KEY)).name("Dupont")


def test_blind_index_depends_on_the_key() -> None:
    assert BlindIndexer(INDEX_KEY).ins("255081416802538") != BlindIndexer(b"j" * 32).ins("255081416802538")


def test_blind_index_separates_domains() -> None:
    indexer = BlindIndexer(INDEX_KEY)
    value = "DUPONT"
    digests = {indexer.ins(value), indexer.identifier(None, value), indexer.name(value), indexer.digest("x", value)}
    assert len(digests) == 4


def test_blind_index_of_ins_ignores_case_and_surrounding_spaces() -> None:
    indexer = BlindIndexer(INDEX_KEY)
    assert indexer.ins(" 284052a32102552\n") == indexer.ins("284052A32102552")
    assert indexer.ins("255081416802538") != indexer.ins("255081416802539")


def test_blind_index_of_identifiers_is_system_qualified() -> None:
    indexer = BlindIndexer(INDEX_KEY)
    assert indexer.identifier("urn:ietf:rfc:3986", "urn:uuid:1") != indexer.identifier("urn:oid:1.2.3", "urn:uuid:1")
    assert indexer.identifier(None, "abc") == indexer.identifier("", "abc")
    assert indexer.identifier(" urn:oid:1.2.3 ", " abc ") == indexer.identifier("urn:oid:1.2.3", "abc")
    # Identifier values are case-sensitive (unlike names).
    assert indexer.identifier(None, "ABC") != indexer.identifier(None, "abc")


@pytest.mark.parametrize(
    ("variant", "canonical"),
    [
        ("Lefèvre", "LEFEVRE"),
        ("lefevre", "LEFEVRE"),
        ("Jean-Pierre", "JEAN PIERRE"),
        ("  jean   pierre ", "JEAN PIERRE"),
        ("D'Arcy", "D ARCY"),
        ("Hélène Noël-Çağrı", "HELENE NOEL CAGRI"),
        ("ÉLODIE", "ELODIE"),
    ],
)
def test_name_index_ignores_accents_case_hyphens_and_spaces(variant: str, canonical: str) -> None:
    assert normalise_text(variant) == canonical
    indexer = BlindIndexer(INDEX_KEY)
    assert indexer.name(variant) == indexer.name(canonical)


@pytest.mark.parametrize(
    ("variant", "canonical"),
    [
        ("Lætitia", "LAETITIA"),  # RNIV: ligatures Æ and Œ are written AE and OE in identity traits
        ("Lœuillet", "LOEUILLET"),
        ("D\u2019Arcy", "D ARCY"),  # typographic apostrophe, as phones and word processors type it
    ],
)
def test_name_index_folds_ligatures_and_typographic_apostrophes(variant: str, canonical: str) -> None:
    indexer = BlindIndexer(INDEX_KEY)
    assert normalise_text(variant) == canonical
    assert indexer.name(variant) == indexer.name(canonical)


def test_name_index_still_tells_different_names_apart() -> None:
    indexer = BlindIndexer(INDEX_KEY)
    assert indexer.name("Lefèvre") != indexer.name("Lefebvre")
    assert indexer.name("Jean Pierre") != indexer.name("Jeanpierre")


@given(st.text(max_size=60), st.binary(min_size=32, max_size=64))
def test_blind_index_determinism_and_domain_separation(value: str, key: bytes) -> None:
    first, second = BlindIndexer(key), BlindIndexer(key)
    assert first.ins(value) == second.ins(value)
    assert first.identifier(None, value) == second.identifier(None, value)
    assert first.name(value) == second.name(value)
    assert len({first.ins(value), first.identifier(None, value), first.name(value)}) == 3


@given(st.text(max_size=40))
def test_name_normalisation_is_idempotent(value: str) -> None:
    once = normalise_text(value)
    assert normalise_text(once) == once
    assert once == once.strip()
    assert "  " not in once
    assert "-" not in once


def test_random_index_keys_give_unrelated_digests() -> None:
    assert BlindIndexer(os.urandom(32)).name("Dupont") != BlindIndexer(os.urandom(32)).name("Dupont")
