"""Blind indexes: keyed hashes that let the database find a record by an identifier or a name
without ever storing that identifier or name in clear.

``HMAC-SHA256(index key, domain || normalised value)``. The domain separates kinds of values, so the
hash of an INS cannot be matched against the hash of a document identifier. Without the index key
an attacker holding the database cannot test guesses offline.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

_FOLD = str.maketrans(
    {
        "Æ": "AE",
        "æ": "ae",
        "Œ": "OE",
        "œ": "oe",
        "ß": "ss",
        "-": " ",
        "'": " ",
        "’": " ",
        "‘": " ",
        "ʼ": " ",
        "‐": " ",
        "‑": " ",
    }
)


def normalise_text(value: str) -> str:
    """Case-, accent-, ligature- and punctuation-insensitive form used before hashing names
    (the way the national identity rules write them: Æ → AE, Œ → OE, apostrophes and hyphens → space)."""
    decomposed = unicodedata.normalize("NFKD", value.translate(_FOLD))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.upper().split())


class BlindIndexer:
    """Computes blind-index values with one secret key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the blind-index key must be at least 32 bytes")
        self._key = key

    def digest(self, domain: str, value: str) -> bytes:
        msg = domain.encode() + b"\x00" + value.encode()
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def ins(self, matricule: str) -> bytes:
        return self.digest("ins", matricule.strip().upper())

    def identifier(self, system: str | None, value: str) -> bytes:
        """Identifiers of documents, lists and submission sets (system-qualified)."""
        return self.digest("identifier", f"{(system or '').strip()}|{value.strip()}")

    def name(self, value: str) -> bytes:
        return self.digest("name", normalise_text(value))
