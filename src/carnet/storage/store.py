"""The encrypted, versioned resource store: the only code that encrypts or decrypts patient data.

A ``ResourceStore`` lives for one unit of work. It unwraps each record's data key at most once,
writes every version of a resource as AES-256-GCM ciphertext bound to (record, type, id, version),
and hands back plaintext JSON bytes only to the services that asked for them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from carnet.crypto import BlindIndexer, KeyRing, RecordCipher
from carnet.crypto.envelope import WrappedKey
from carnet.records.models import Record
from carnet.storage.blobs import BlobStore
from carnet.storage.models import ResourceLocator, ResourceVersion, SearchToken


@dataclass(frozen=True, slots=True)
class StoredVersion:
    version: int
    last_updated: dt.datetime
    body: bytes  # decrypted JSON


class ResourceStore:
    """Read and write one unit of work's encrypted resources, blobs and search tokens."""

    def __init__(self, session: Session, keyring: KeyRing, indexer: BlindIndexer, blobs: BlobStore) -> None:
        self.session = session
        self.keyring = keyring
        self.indexer = indexer
        self.blobs = blobs
        self._ciphers: dict[uuid.UUID, RecordCipher] = {}
        # Rows to insert, per table, written in one statement per table by flush(): much cheaper than
        # ORM objects for the append-only tables of a deposit.
        self._staged: dict[sa.Table, list[dict[str, object]]] = {}

    # ------------------------------------------------------------------ staged inserts
    def stage(self, model: type[object], **row: object) -> None:
        """Queue one row for insertion at the next ``flush``."""
        table = model.__table__  # type: ignore[attr-defined]
        self._staged.setdefault(table, []).append(row)

    def flush(self) -> None:
        """Write ORM changes, then every staged row (one INSERT per table).

        On PostgreSQL the INSERTs go out in one pipeline: one network round trip for all of them.
        """
        self.session.flush()
        staged, self._staged = self._staged, {}
        if not staged:
            return
        connection = self.session.connection()
        driver = connection.connection.driver_connection
        pipeline = getattr(driver, "pipeline", None) if connection.dialect.name == "postgresql" else None
        dbapi_error = connection.dialect.loaded_dbapi.Error
        try:
            with pipeline() if pipeline is not None else contextlib.nullcontext():
                for table, rows in staged.items():
                    connection.execute(sa.insert(table), rows)
        except dbapi_error as exc:  # errors raised when the pipeline syncs come straight from the driver
            raise sa.exc.DBAPIError.instance(None, None, exc, dbapi_error) from exc

    # ------------------------------------------------------------------ keys
    def new_record_key(self, record_id: uuid.UUID) -> WrappedKey:
        cipher, wrapped = self.keyring.new_data_key(record_id)
        self._ciphers[record_id] = cipher
        return wrapped

    def cipher(self, record: Record) -> RecordCipher:
        cipher = self._ciphers.get(record.id)
        if cipher is None:
            cipher = self.keyring.unwrap(record.id, WrappedKey(record.kek_id, record.wrapped_key))
            self._ciphers[record.id] = cipher
        return cipher

    # ------------------------------------------------------------------ resources
    def put(
        self,
        record: Record,
        resource_type: str,
        resource_id: str,
        version: int,
        resource: dict[str, object],
        last_updated: dt.datetime,
    ) -> bytes:
        """Store a new version (the previous one stops being current); return the JSON stored."""
        body = orjson.dumps(resource)
        ciphertext = self.cipher(record).encrypt(
            body, resource_type=resource_type, resource_id=resource_id, version=version
        )
        if version > 1:
            self.session.execute(
                sa.update(ResourceVersion)
                .where(
                    ResourceVersion.record_id == record.id,
                    ResourceVersion.resource_type == resource_type,
                    ResourceVersion.resource_id == resource_id,
                    ResourceVersion.is_current.is_(True),
                )
                .values(is_current=False)
            )
        self.stage(
            ResourceVersion,
            record_id=record.id,
            resource_type=resource_type,
            resource_id=resource_id,
            version=version,
            is_current=True,
            last_updated=last_updated,
            body=ciphertext,
        )
        return body

    def decrypt(self, record: Record, resource_type: str, resource_id: str, version: int, body: bytes) -> bytes:
        """Decrypt a stored body read by a caller's own query (searches join it in)."""
        return self.cipher(record).decrypt(body, resource_type=resource_type, resource_id=resource_id, version=version)

    def _decrypt(self, record: Record, row: ResourceVersion) -> StoredVersion:
        body = self.cipher(record).decrypt(
            row.body, resource_type=row.resource_type, resource_id=row.resource_id, version=row.version
        )
        return StoredVersion(row.version, row.last_updated, body)

    def current(self, record: Record, resource_type: str, resource_id: str) -> StoredVersion | None:
        row = self.session.scalar(
            sa.select(ResourceVersion).where(
                ResourceVersion.record_id == record.id,
                ResourceVersion.resource_type == resource_type,
                ResourceVersion.resource_id == resource_id,
                ResourceVersion.is_current.is_(True),
            )
        )
        return None if row is None else self._decrypt(record, row)

    def current_many(self, record: Record, resource_type: str, resource_ids: list[str]) -> dict[str, bytes]:
        """Current JSON of several resources of one record, in one query."""
        if not resource_ids:
            return {}
        rows = self.session.scalars(
            sa.select(ResourceVersion).where(
                ResourceVersion.record_id == record.id,
                ResourceVersion.resource_type == resource_type,
                ResourceVersion.resource_id.in_(resource_ids),
                ResourceVersion.is_current.is_(True),
            )
        ).all()
        return {row.resource_id: self._decrypt(record, row).body for row in rows}

    def version(self, record: Record, resource_type: str, resource_id: str, version: int) -> StoredVersion | None:
        row = self.session.get(ResourceVersion, (record.id, resource_type, resource_id, version))
        return None if row is None else self._decrypt(record, row)

    def history(self, record: Record, resource_type: str, resource_id: str) -> list[StoredVersion]:
        rows = self.session.scalars(
            sa.select(ResourceVersion)
            .where(
                ResourceVersion.record_id == record.id,
                ResourceVersion.resource_type == resource_type,
                ResourceVersion.resource_id == resource_id,
            )
            .order_by(ResourceVersion.version.desc())
        ).all()
        return [self._decrypt(record, row) for row in rows]

    # ------------------------------------------------------------------ routing
    def register(self, resource_type: str, resource_id: str, record_id: uuid.UUID) -> None:
        self.stage(ResourceLocator, resource_type=resource_type, resource_id=resource_id, record_id=record_id)

    def locate(self, resource_type: str, resource_id: str) -> uuid.UUID | None:
        return self.session.scalar(
            sa.select(ResourceLocator.record_id).where(
                ResourceLocator.resource_type == resource_type, ResourceLocator.resource_id == resource_id
            )
        )

    # ------------------------------------------------------------------ search tokens
    def token(self, param: str, value: str) -> bytes:
        return self.indexer.digest(param, value)

    def add_tokens(
        self, record_id: uuid.UUID, resource_type: str, resource_id: str, tokens: set[tuple[str, str]]
    ) -> None:
        for param, value in sorted(tokens):
            self.stage(
                SearchToken,
                record_id=record_id,
                resource_type=resource_type,
                param=param,
                value_hash=self.token(param, value),
                resource_id=resource_id,
            )

    def replace_tokens(
        self, record_id: uuid.UUID, resource_type: str, resource_id: str, tokens: set[tuple[str, str]]
    ) -> None:
        self.session.execute(
            sa.delete(SearchToken).where(
                SearchToken.record_id == record_id,
                SearchToken.resource_type == resource_type,
                SearchToken.resource_id == resource_id,
            )
        )
        self.add_tokens(record_id, resource_type, resource_id, tokens)
