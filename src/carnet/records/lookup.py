"""Finding a record by id or by INS, with no access check (callers decide what to reveal)."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from carnet.identifiers import Ins
from carnet.records.models import Record
from carnet.runtime import Work


def find_by_ins(work: Work, ins: Ins) -> Record | None:
    """The record keyed by this INS, if any."""
    return work.session.scalar(sa.select(Record).where(Record.ins_hash == work.store.indexer.ins(ins.value)))


def get_record(work: Work, record_id: uuid.UUID | str) -> Record | None:
    try:
        key = record_id if isinstance(record_id, uuid.UUID) else uuid.UUID(str(record_id))
    except ValueError:
        return None
    return work.session.get(Record, key)
