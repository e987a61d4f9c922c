"""Blob stores for (already encrypted) document bytes.

A blob is addressed by the SHA-256 of the bytes stored, and every read recomputes that hash: a blob
store that returns the wrong object, or a corrupted one, is caught before decryption is even tried.
Two implementations: in the database (the default; atomic with the transaction) and on the
filesystem (write-then-rename; a rolled-back transaction can leave an unreferenced file, never a
reference to a missing one).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from carnet.storage.models import StoredBlob


class BlobCorrupted(Exception):
    """The bytes read back do not hash to their address."""


def address_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


Stage = Callable[..., None]


class BlobStore(Protocol):
    """Stores opaque bytes per record; the caller encrypts before ``put`` and decrypts after ``get``.

    ``stage(model, **row)`` queues a row in the unit of work's batched inserts; a store that keeps
    blobs in the database uses it, so the blob is written with everything else, in one transaction.
    """

    def put(self, session: Session, record_id: uuid.UUID, data: bytes, stage: Stage) -> str: ...

    def get(self, session: Session, record_id: uuid.UUID, address: str) -> bytes: ...

    def delete_record(self, session: Session, record_id: uuid.UUID) -> None: ...

    def inline_column(
        self, record_id: sa.ColumnExpressionArgument[uuid.UUID], address: sa.ColumnExpressionArgument[str]
    ) -> sa.ScalarSelect[bytes] | None:
        """A column expression that reads the blob in the caller's own statement (saving a round trip), or
        None when the blob is not in the database; the value read goes through ``inlined``."""
        ...

    def inlined(self, address: str, data: bytes | None) -> bytes:
        """The bytes ``inline_column`` read, verified against their address."""
        ...


def _verified(address: str, data: bytes) -> bytes:
    if address_of(data) != address:
        raise BlobCorrupted(f"blob {address[:12]}… does not match its address")
    return data


class DatabaseBlobStore:
    """Blobs in the ``blobs`` table, written in the caller's transaction."""

    def put(self, session: Session, record_id: uuid.UUID, data: bytes, stage: Stage) -> str:
        address = address_of(data)
        stage(StoredBlob, record_id=record_id, address=address, size=len(data), data=data)
        return address

    def get(self, session: Session, record_id: uuid.UUID, address: str) -> bytes:
        data = session.scalar(
            sa.select(StoredBlob.data).where(StoredBlob.record_id == record_id, StoredBlob.address == address)
        )
        if data is None:
            raise BlobCorrupted(f"blob {address[:12]}… is missing")
        return _verified(address, data)

    def delete_record(self, session: Session, record_id: uuid.UUID) -> None:
        session.execute(sa.delete(StoredBlob).where(StoredBlob.record_id == record_id))

    def inline_column(
        self, record_id: sa.ColumnExpressionArgument[uuid.UUID], address: sa.ColumnExpressionArgument[str]
    ) -> sa.ScalarSelect[bytes] | None:
        return (
            sa.select(StoredBlob.data)
            .where(StoredBlob.record_id == record_id, StoredBlob.address == address)
            .scalar_subquery()
        )

    def inlined(self, address: str, data: bytes | None) -> bytes:
        if data is None:
            raise BlobCorrupted(f"blob {address[:12]}… is missing")
        return _verified(address, data)


class FilesystemBlobStore:
    """Blobs as files under ``root/<record id>/<2 hex>/<address>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, record_id: uuid.UUID, address: str) -> Path:
        if len(address) != 64 or not all(c in "0123456789abcdef" for c in address):
            raise BlobCorrupted("malformed blob address")
        return self.root / str(record_id) / address[:2] / address

    def put(self, session: Session, record_id: uuid.UUID, data: bytes, stage: Stage) -> str:
        address = address_of(data)
        path = self._path(record_id, address)
        if path.exists():
            return address
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{address}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
        return address

    def get(self, session: Session, record_id: uuid.UUID, address: str) -> bytes:
        path = self._path(record_id, address)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise BlobCorrupted(f"blob {address[:12]}… is missing") from exc
        return _verified(address, data)

    def delete_record(self, session: Session, record_id: uuid.UUID) -> None:
        folder = self.root / str(record_id)
        if not folder.exists():
            return
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        folder.rmdir()

    def inline_column(
        self, record_id: sa.ColumnExpressionArgument[uuid.UUID], address: sa.ColumnExpressionArgument[str]
    ) -> sa.ScalarSelect[bytes] | None:
        return None

    def inlined(self, address: str, data: bytes | None) -> bytes:  # pragma: no cover - never inlined
        raise BlobCorrupted("the filesystem store reads its blobs itself")
