"""What the policy knows about a professional's relationship to a record, loaded once per unit of work.

Correlated subqueries gather the grants that name the professional (or their organisation), their
live emergency accesses, and whether they have accessed the record before (what the first-access
notice needs to know). Services add them to the statement that loads the record (``context_columns``
then ``remember``), so neither the policy nor the first-access rule costs a round trip of its own;
otherwise ``context_for`` loads them in one. The result is cached on the unit of work.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from carnet.access.models import AccessGrant, EmergencyAccess, EmergencyMode, GrantKind, SubjectKind
from carnet.auth.actor import AccessMode, Actor
from carnet.notifications.models import ProfessionalAccess
from carnet.records.models import Record
from carnet.runtime import Work


@dataclass(frozen=True, slots=True)
class AccessContext:
    record: Record
    kinds: frozenset[str]  # the GrantKind values that apply to this professional
    emergency: EmergencyMode | None
    matrix_path: Path | None

    @property
    def blocked(self) -> bool:
        return GrantKind.BLOCK.value in self.kinds

    @property
    def administrator(self) -> bool:
        return GrantKind.ADMINISTRATOR.value in self.kinds

    @property
    def privileged(self) -> bool:
        """Médecin traitant and administrators see everything, the matrix and masking aside (L1111-16)."""
        return bool({GrantKind.MEDECIN_TRAITANT.value, GrantKind.ADMINISTRATOR.value} & self.kinds)

    @property
    def has_relationship(self) -> bool:
        return (
            self.privileged
            or bool({GrantKind.AUTHORIZATION.value, GrantKind.CARE_TEAM.value} & self.kinds)
            or self.emergency is not None
        )

    @property
    def mode(self) -> AccessMode:
        """Emergency only when nothing else opens the record."""
        if (
            self.emergency is None
            or self.privileged
            or {GrantKind.AUTHORIZATION.value, GrantKind.CARE_TEAM.value} & self.kinds
        ):
            return AccessMode.NORMAL
        return AccessMode(self.emergency.value)

    @property
    def basis(self) -> str:
        for kind in (GrantKind.MEDECIN_TRAITANT, GrantKind.ADMINISTRATOR, GrantKind.AUTHORIZATION, GrantKind.CARE_TEAM):
            if kind.value in self.kinds:
                return kind.value
        return self.emergency.value if self.emergency is not None else "none"


ContextColumns = tuple[sa.Label[str | None], sa.Label[str | None], sa.Label[bool]]


@functools.cache
def context_subqueries() -> ContextColumns:
    """Built once; the professional and the time are bound parameters (see ``context_columns``)."""
    now = sa.bindparam("ctx_now", type_=AccessGrant.start.type)
    idnat = sa.bindparam("ctx_idnat", type_=sa.String)
    # Blocks, declarations and designations name a person; an organisation can only be authorized.
    applies = sa.or_(
        sa.and_(AccessGrant.subject_kind == SubjectKind.PRACTITIONER.value, AccessGrant.subject_value == idnat),
        sa.and_(
            AccessGrant.subject_kind == SubjectKind.ORGANIZATION.value,
            AccessGrant.subject_value == sa.bindparam("ctx_org", type_=sa.String),
            AccessGrant.kind == GrantKind.AUTHORIZATION.value,
        ),
    )
    kinds = (
        sa.select(sa.func.aggregate_strings(AccessGrant.kind, ","))
        .where(
            AccessGrant.record_id == Record.id,
            AccessGrant.active.is_(True),
            AccessGrant.start <= now,
            sa.or_(AccessGrant.end.is_(None), AccessGrant.end > now),
            applies,
        )
        .scalar_subquery()
    )
    emergency = (
        sa.select(EmergencyAccess.mode)
        .where(
            EmergencyAccess.record_id == Record.id,
            EmergencyAccess.actor_key == sa.bindparam("ctx_actor_key", type_=sa.String),
            EmergencyAccess.expires_at > now,
            # Only a mode the patient still allows (re-checked at every access): opposing break-glass must
            # not hide a live regulation access opened earlier.
            sa.or_(
                sa.and_(EmergencyAccess.mode == EmergencyMode.BREAK_GLASS.value, Record.emergency_break_glass),
                sa.and_(EmergencyAccess.mode == EmergencyMode.REGULATION.value, Record.emergency_regulation),
            ),
        )
        .order_by(EmergencyAccess.expires_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    known = sa.exists().where(ProfessionalAccess.record_id == Record.id, ProfessionalAccess.professional == idnat)
    return kinds.label("access_kinds"), emergency.label("access_emergency"), known.label("access_known")


# The number of values ``context_columns`` adds to a row, in that order (``remember`` takes them).
CONTEXT_WIDTH = 3


def context_columns(work: Work, actor: Actor) -> tuple[list[sa.Label[Any]], dict[str, object]]:
    """Three scalar subqueries, correlated to ``Record.id``, that load a professional's context on a
    record, and the parameters to execute them with.

    Add them to the statement that loads the record (or the document and its record), execute it with
    the parameters, then call ``remember`` with the ``CONTEXT_WIDTH`` values: the access decision costs
    no round trip of its own. Empty for other actors.
    """
    professional = actor.professional if actor.acts_as_professional else None
    if professional is None:
        return [], {}
    params: dict[str, object] = {
        "ctx_now": work.now,
        "ctx_idnat": professional.idnat,
        "ctx_org": professional.organization_idnat or "",
        "ctx_actor_key": f"pro:{professional.idnat}",
    }
    return list(context_subqueries()), params


def remember(work: Work, actor: Actor, record: Record, values: Sequence[Any]) -> AccessContext:
    """Build the context from the ``context_columns`` values and cache it on the unit of work."""
    kinds, emergency_mode, known = values[0], values[1], values[2]
    if known and work.known_access is not None and actor.professional is not None:
        work.known_access(record.id, actor.professional.idnat)  # a committed earlier access: no notice due
    emergency = EmergencyMode(emergency_mode) if emergency_mode else None
    # The patient's preferences are re-checked at every access, not only when the emergency opened.
    if emergency is EmergencyMode.BREAK_GLASS and not record.emergency_break_glass:
        emergency = None
    if emergency is EmergencyMode.REGULATION and not record.emergency_regulation:
        emergency = None
    context = AccessContext(
        record, frozenset(kinds.split(",")) if kinds else frozenset(), emergency, work.settings.habilitation_matrix
    )
    work.access_contexts[(actor.key, actor.author_key, record.id)] = context
    return context


@functools.cache
def _record_statement(by_ins: bool) -> sa.Select[Any]:
    """Built once: a record by id or by the keyed hash of its INS, with the context columns."""
    key: Any = Record.ins_hash if by_ins else Record.id
    columns: list[Any] = [Record, *context_subqueries()]
    return sa.select(*columns).where(key == sa.bindparam("record_key"))


def load_record(
    work: Work, actor: Actor, *, record_id: uuid.UUID | None = None, ins_hash: bytes | None = None
) -> Record | None:
    """The record named by its id or its INS hash and, for a professional, their context on it, in one
    round trip (no access check: callers ask the policy)."""
    assert (record_id is None) != (ins_hash is None)
    columns, params = context_columns(work, actor)
    if not columns:
        if record_id is not None:
            return work.session.get(Record, record_id)
        return work.session.scalar(sa.select(Record).where(Record.ins_hash == ins_hash))
    key = ins_hash if ins_hash is not None else record_id
    row = work.session.execute(_record_statement(ins_hash is not None), {"record_key": key, **params}).first()
    if row is None:
        return None
    remember(work, actor, row[0], row[1:])
    record: Record = row[0]
    return record


def load_context(work: Work, actor: Actor, record: Record) -> AccessContext:
    """The context of a record already loaded without ``context_columns`` (one round trip)."""
    columns, params = context_columns(work, actor)
    assert columns, "only professionals have an access context"
    row = work.session.execute(sa.select(*columns).select_from(Record).where(Record.id == record.id), params).one()
    return remember(work, actor, record, row)


def context_for(work: Work, actor: Actor, record: Record) -> AccessContext:
    """The (cached) context of a professional actor on a record."""
    key = (actor.key, actor.author_key, record.id)
    cached = work.access_contexts.get(key)
    if not isinstance(cached, AccessContext) or cached.record is not record:
        cached = load_context(work, actor, record)
    return cached


def forget(work: Work, record_id: uuid.UUID) -> None:
    """Drop cached contexts of a record (after a grant changed within the same unit of work)."""
    for key in [k for k in work.access_contexts if k[2] == record_id]:
        del work.access_contexts[key]
