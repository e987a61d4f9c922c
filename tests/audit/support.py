"""Helpers for the audit tests: activity through the API, the stored chains, and tampering with them the
way someone with write access to the database would (plain SQL, no Carnet code)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
import sqlalchemy as sa

from carnet.audit import writer
from carnet.audit.models import GENESIS, AuditCheckpoint, AuditCheckpointHead, AuditEntry, AuditHead
from carnet.audit.verify import Report, verify
from carnet.runtime import Runtime
from tests import factories
from tests.conftest import Api


def deposit(api: Api, ins: str, system: str, persona: str = "dr_lambert", **kwargs: Any) -> str:
    response = api.publish(persona, factories.docref(ins, system, author_idnat="810001745206", **kwargs))
    assert response.status_code == 201, response.text
    doc_id: str = response.json()["id"]
    return doc_id


def activity(api: Api, reads: int = 3) -> tuple[str, str, str, str]:
    """A new patient with a document and a few reads: a chain of a dozen entries. (id, INS, system, doc)."""
    patient_id, ins, system = api.new_patient()
    doc_id = deposit(api, ins, system)
    for _ in range(reads):
        assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_medioni").status_code == 200
    return patient_id, ins, system, doc_id


def rows(runtime: Runtime, chain: str | uuid.UUID) -> list[Any]:
    """The chain's entries in seq order, every column."""
    key = chain if isinstance(chain, uuid.UUID) else uuid.UUID(chain)
    with runtime.engine.connect() as conn:
        return list(conn.execute(sa.select(AuditEntry).where(AuditEntry.chain == key).order_by(AuditEntry.seq)))


def payload(row: Any) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(row.payload)
    return document


def canonical(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def execute(runtime: Runtime, *statements: Any) -> None:
    """Run statements directly against the database, in one transaction."""
    with runtime.engine.begin() as conn:
        for statement in statements:
            conn.execute(statement)


def entry(chain: str | uuid.UUID, seq: int) -> Any:
    key = chain if isinstance(chain, uuid.UUID) else uuid.UUID(chain)
    return sa.and_(AuditEntry.chain == key, AuditEntry.seq == seq)


def head(runtime: Runtime, chain: str | uuid.UUID) -> Any:
    key = chain if isinstance(chain, uuid.UUID) else uuid.UUID(chain)
    with runtime.engine.connect() as conn:
        return conn.execute(sa.select(AuditHead).where(AuditHead.chain == key)).one()


def relink(runtime: Runtime, chain: str | uuid.UUID, *, move_head: bool = True) -> None:
    """What a careful attacker does after changing entries: recompute every hash of the chain (seq as
    stored) and move the head, so that the chain is self-consistent again."""
    key = chain if isinstance(chain, uuid.UUID) else uuid.UUID(chain)
    previous = GENESIS
    statements = []
    for row in rows(runtime, key):
        previous = writer.link(previous, key, row.seq, row.payload)
        statements.append(
            sa.update(AuditEntry).where(entry(key, row.seq), AuditEntry.at == row.at).values(hash=previous)
        )
        last = row.seq
    if move_head:
        statements.append(sa.update(AuditHead).where(AuditHead.chain == key).values(seq=last, hash=previous))
    execute(runtime, *statements)


def renumber(runtime: Runtime, chain: str | uuid.UUID, after: int, by: int) -> None:
    """Shift the seq of the entries after ``after`` by ``by`` (two steps: the primary key stays unique)."""
    key = chain if isinstance(chain, uuid.UUID) else uuid.UUID(chain)
    where = sa.and_(AuditEntry.chain == key, AuditEntry.seq > after)
    execute(
        runtime,
        sa.update(AuditEntry).where(where).values(seq=AuditEntry.seq + 100_000),
        sa.update(AuditEntry)
        .where(AuditEntry.chain == key, AuditEntry.seq > 100_000)
        .values(seq=AuditEntry.seq - 100_000 + by),
    )


def check(runtime: Runtime, **kwargs: Any) -> Report:
    return verify(runtime, **kwargs)


def kinds(report: Report) -> set[str]:
    return set(report.by_kind)


def problems_of(report: Report, kind: str) -> list[Any]:
    return [p for p in report.problems if p.kind.value == kind]


def age_heads(runtime: Runtime, seconds: float) -> None:
    """Make every head's last change look ``seconds`` older (as if that much time had passed)."""
    with runtime.engine.connect() as conn:
        found = list(conn.execute(sa.select(AuditHead.chain, AuditHead.updated_at)))
    execute(
        runtime,
        *(
            sa.update(AuditHead)
            .where(AuditHead.chain == chain)
            .values(updated_at=updated.replace(tzinfo=dt.UTC) - dt.timedelta(seconds=seconds))
            for chain, updated in found
        ),
    )


def checkpoint_ids(runtime: Runtime) -> list[int]:
    with runtime.engine.connect() as conn:
        return list(conn.execute(sa.select(AuditCheckpoint.id).order_by(AuditCheckpoint.id)).scalars())


def delete_checkpoint(runtime: Runtime, checkpoint_id: int) -> None:
    execute(
        runtime,
        sa.delete(AuditCheckpointHead).where(AuditCheckpointHead.checkpoint_id == checkpoint_id),
        sa.delete(AuditCheckpoint).where(AuditCheckpoint.id == checkpoint_id),
    )
