"""Signed checkpoints: periodic Ed25519-signed snapshots of the chain heads that changed.

A checkpoint ``k`` taken at time ``at_k`` lists the heads ``(chain, seq, hash)`` whose last change
(``audit_heads.updated_at``) is at or after ``covers_from_k = at_(k-1) − margin`` and whose current
``seq`` no checkpoint recorded yet, and signs::

    digest_k = SHA-256( "carnet-audit-checkpoint/1" ‖ digest_(k-1) ‖ at_k (µs since 1970, 8 bytes)
                        ‖ for each head, by chain: chain (16 bytes) ‖ seq (8 bytes) ‖ hash (32 bytes) )
    signature_k = Ed25519(digest_k)

with ``digest_0`` = 32 zero bytes. Each checkpoint names the digest of the one before (``previous``),
so the checkpoints form a chain of their own; ``key_id`` is the SHA-256 fingerprint (hex) of the
signing public key.

**Guarantee.** ``updated_at`` is the time the appending transaction began (PostgreSQL ``now()``) or
the time of the append (SQLite, under the single writer lock). A change whose transaction commits at
most ``CARNET_AUDIT_CHECKPOINT_MARGIN_SECONDS`` after that time is recorded by the first checkpoint
taken after the commit: that checkpoint's snapshot sees the commit, and ``updated_at ≥ commit −
margin > at_(k-1) − margin``. A head is recorded at most once per ``seq`` (the overlap re-reads heads,
it does not re-record them). Once checkpoint ``k`` exists, rewriting, reordering, deleting or
truncating any entry at or before a recorded ``(seq, hash)`` — and moving the head back — is detected
by ``carnet audit verify``, unless the attacker also holds the signing key. Entries appended after the
latest checkpoint are protected by their chain links only until the next checkpoint.

On PostgreSQL a session advisory lock serialises checkpointers (several workers may run the job) and
the checkpoint is computed in one REPEATABLE READ snapshot, read twice (once for the digest, once to
store the heads): no checkpoint is ever updated after it is written, so the application role needs
only INSERT on the checkpoint tables. On SQLite the unit takes the write lock when it begins.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.engine import Connection

from carnet.audit.models import GENESIS, AuditCheckpoint, AuditCheckpointHead, AuditHead
from carnet.config import Settings
from carnet.runtime import Runtime

DOMAIN = b"carnet-audit-checkpoint/1"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# pg_advisory_lock key held while a checkpoint is taken ("carnet-ck" as an integer).
LOCK_KEY = int.from_bytes(b"carnetck", "big") & 0x7FFF_FFFF_FFFF_FFFF
BATCH = 1000


# --------------------------------------------------------------------------------------- keys


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The private key that signs checkpoints (CARNET_AUDIT_SIGNING_KEY)."""
    return Ed25519PrivateKey.from_private_bytes(settings.audit_signing_seed())


def public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: bytes) -> str:
    """The fingerprint that names a signing key: SHA-256 of its raw public key, in hex (64 characters)."""
    return hashlib.sha256(public).hexdigest()


def verification_keys(settings: Settings) -> dict[str, Ed25519PublicKey]:
    """key id → public key: the current signing key and the earlier ones still trusted."""
    raw = [public_bytes(signing_key(settings).public_key()), *settings.audit_verify_public_keys()]
    return {key_id(r): Ed25519PublicKey.from_public_bytes(r) for r in raw}


def public_key_pem(settings: Settings) -> str:
    return (
        signing_key(settings)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# --------------------------------------------------------------------------------------- digest


def microseconds(at: dt.datetime) -> int:
    delta = at.astimezone(dt.UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class Digest:
    """The running digest of one checkpoint (fed the heads in chain order)."""

    def __init__(self, previous: bytes, at: dt.datetime) -> None:
        self._hash = hashlib.sha256(DOMAIN + previous + microseconds(at).to_bytes(8, "big", signed=True))
        self.count = 0

    def add(self, chain: bytes, seq: int, head_hash: bytes) -> None:
        self._hash.update(chain + seq.to_bytes(8, "big") + head_hash)
        self.count += 1

    def digest(self) -> bytes:
        return self._hash.digest()


def verify_signature(keys: dict[str, Ed25519PublicKey], key: str, digest: bytes, signature: bytes) -> bool:
    public = keys.get(key)
    if public is None:
        return False
    try:
        public.verify(signature, digest)
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------------------- taking one


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint as written (or found)."""

    id: int
    at: dt.datetime
    covers_from: dt.datetime | None
    heads: int
    digest: bytes
    previous: bytes
    key_id: str

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "at": self.at.isoformat(timespec="microseconds"),
            "coversFrom": self.covers_from.isoformat(timespec="microseconds") if self.covers_from else None,
            "heads": self.heads,
            "digest": self.digest.hex(),
            "previous": self.previous.hex(),
            "keyId": self.key_id,
        }


def latest(conn: Connection) -> Checkpoint | None:
    row = conn.execute(
        sa.select(
            AuditCheckpoint.id,
            AuditCheckpoint.at,
            AuditCheckpoint.covers_from,
            AuditCheckpoint.heads,
            AuditCheckpoint.digest,
            AuditCheckpoint.previous,
            AuditCheckpoint.key_id,
        )
        .order_by(AuditCheckpoint.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    at = _aware(row.at)
    assert at is not None
    return Checkpoint(row.id, at, _aware(row.covers_from), row.heads, row.digest, row.previous, row.key_id)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # Core selects on SQLite return what UTCDateTime stored (naive UTC); ORM and PostgreSQL return aware ones.
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _changed_heads(covers_from: dt.datetime | None) -> sa.Select[uuid.UUID, int, bytes]:
    """Heads changed since ``covers_from`` whose current seq no checkpoint recorded, in chain order."""
    already = sa.exists().where(AuditCheckpointHead.chain == AuditHead.chain, AuditCheckpointHead.seq == AuditHead.seq)
    query = sa.select(AuditHead.chain, AuditHead.seq, AuditHead.hash).where(
        ~already,
        AuditHead.seq > 0,  # seq 0: a head row whose first append rolled back
    )
    if covers_from is not None:
        query = query.where(AuditHead.updated_at >= covers_from)
    return query.order_by(AuditHead.chain)


def _stream(conn: Connection, query: sa.Select[uuid.UUID, int, bytes]) -> Iterator[tuple[bytes, int, bytes]]:
    with conn.execute(query.execution_options(yield_per=BATCH)) as result:
        for chain, seq, head_hash in result:
            yield chain.bytes, seq, head_hash


def database_now(conn: Connection, postgresql: bool) -> dt.datetime:
    """The time by the clock that stamps the heads (PostgreSQL's, or this process's on SQLite)."""
    if postgresql:
        value = conn.execute(sa.text("SELECT statement_timestamp()")).scalar_one()
        assert isinstance(value, dt.datetime)
        return value.astimezone(dt.UTC)
    return dt.datetime.now(dt.UTC)


def checkpoint(runtime: Runtime, *, min_interval: dt.timedelta | None = None) -> Checkpoint | None:
    """Take a checkpoint now; with ``min_interval``, only if the latest one is at least that old (else None)."""
    settings = runtime.settings
    postgresql = runtime.engine.dialect.name == "postgresql"
    margin = dt.timedelta(seconds=settings.audit_checkpoint_margin_seconds)
    key = signing_key(settings)
    kid = key_id(public_bytes(key.public_key()))
    engine = runtime.engine
    if postgresql:
        with engine.connect() as lock_conn:
            # A session lock, held across the snapshot transaction below (taken before it begins, so the
            # snapshot sees any checkpoint committed by whoever held the lock before us).
            conn = lock_conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(sa.select(sa.func.pg_advisory_lock(LOCK_KEY)))
            try:
                with engine.connect() as work_conn:
                    snap = work_conn.execution_options(isolation_level="REPEATABLE READ")
                    with snap.begin():
                        return _take(snap, True, key, kid, margin, min_interval)
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(LOCK_KEY)))
    with engine.connect() as conn:
        write = conn.execution_options(carnet_write=True)  # BEGIN IMMEDIATE: the single writer lock
        with write.begin():
            return _take(write, False, key, kid, margin, min_interval)


def _take(
    conn: Connection,
    postgresql: bool,
    key: Ed25519PrivateKey,
    kid: str,
    margin: dt.timedelta,
    min_interval: dt.timedelta | None,
) -> Checkpoint | None:
    at = database_now(conn, postgresql)
    previous = latest(conn)
    if previous is not None and at <= previous.at:
        at = previous.at + dt.timedelta(microseconds=1)  # strictly increasing, whatever the clock did
    if previous is not None and min_interval is not None and at - previous.at < min_interval:
        return None
    covers_from = previous.at - margin if previous is not None else None
    previous_digest = previous.digest if previous is not None else GENESIS
    query = _changed_heads(covers_from)

    running = Digest(previous_digest, at)
    for chain, seq, head_hash in _stream(conn, query):
        running.add(chain, seq, head_hash)
    digest = running.digest()
    checkpoint_id = conn.execute(
        sa.insert(AuditCheckpoint)
        .values(
            at=at,
            covers_from=covers_from,
            previous=previous_digest,
            digest=digest,
            heads=running.count,
            key_id=kid,
            signature=key.sign(digest),
        )
        .returning(AuditCheckpoint.id)
    ).scalar_one()
    # The same snapshot, read again to store what was signed (PostgreSQL: REPEATABLE READ; SQLite: the
    # write lock). The stored rows are checked against the digest by `carnet audit verify`.
    batch: list[dict[str, object]] = []
    stored = 0
    for chain, seq, head_hash in _stream(conn, query):
        batch.append({"checkpoint_id": checkpoint_id, "chain": uuid.UUID(bytes=chain), "seq": seq, "hash": head_hash})
        if len(batch) >= BATCH:
            conn.execute(sa.insert(AuditCheckpointHead), batch)
            stored += len(batch)
            batch = []
    if batch:
        conn.execute(sa.insert(AuditCheckpointHead), batch)
        stored += len(batch)
    if stored != running.count:  # pragma: no cover - the snapshot guarantees it
        raise RuntimeError("the heads changed while the checkpoint was taken")
    return Checkpoint(checkpoint_id, at, covers_from, running.count, digest, previous_digest, kid)
