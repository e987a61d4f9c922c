"""Encryption at rest: per-record data keys wrapped by key-encryption keys, and blind indexes."""

from carnet.crypto.blind import BlindIndexer
from carnet.crypto.envelope import DecryptionFailed, KeyRing, RecordCipher

__all__ = ["BlindIndexer", "DecryptionFailed", "KeyRing", "RecordCipher"]
