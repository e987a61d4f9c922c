"""Emergency access: a professional without authorization opens a record in break-glass mode (or, as a
médecin régulateur of a SAMU / centre 15, in regulation mode), with a mandatory reason.

Granted only if the patient did not oppose (consents ETREAT and BTG), for CARNET_EMERGENCY_MINUTES,
read-only; its mode travels with every decision it enables (and into the traces).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from carnet import audit
from carnet.access import Action, decide, require
from carnet.access.context import context_for, forget
from carnet.access.models import EmergencyAccess, EmergencyMode
from carnet.audit.trace import TraceAction
from carnet.auth.actor import AccessMode, Actor, ActorKind
from carnet.errors import Forbidden, Invalid, IssueCode, NotFound
from carnet.records import lookup as records
from carnet.records.models import Record, RecordStatus
from carnet.runtime import Work

REGULATION_SETTING = "SAMU_SMUR"
MIN_REASON = 10


@dataclass(frozen=True, slots=True)
class Granted:
    id: str
    mode: EmergencyMode
    started_at: dt.datetime
    expires_at: dt.datetime


def open_access(work: Work, *, actor: Actor, patient_id: str, mode: EmergencyMode, reason: str) -> Granted:
    """Open an emergency access for ``actor`` to the record of ``patient_id``."""
    record = records.get_record(work, patient_id)
    if record is None:
        raise NotFound()
    known = decide(work, actor, Action.RECORD_LOOKUP, record).permit
    require(work, actor, Action.EMERGENCY, record, visible=known)
    professional = actor.professional
    assert professional is not None
    reason = " ".join(reason.split())
    if len(reason) < MIN_REASON:
        raise Invalid.at(
            "Parameters.parameter('reason')",
            f"an emergency access needs a reason (at least {MIN_REASON} characters)",
            IssueCode.REQUIRED,
        )
    if actor.kind is ActorKind.SOFTWARE and actor.declared_mode.value != mode.value:
        raise Forbidden(f"the software's token declares access mode {actor.declared_mode.value}, not {mode.value}")
    if mode is EmergencyMode.BREAK_GLASS and not record.emergency_break_glass:
        raise Forbidden("the patient opposed access in emergencies (bris de glace)")
    if mode is EmergencyMode.REGULATION:
        if not record.emergency_regulation:
            raise Forbidden("the patient opposed access by the regulation centre (SAMU - centre 15)")
        if professional.practice_setting != REGULATION_SETTING:
            raise Forbidden("regulation access is for médecins régulateurs of a SAMU / centre 15")
    started = work.now
    expires = started + dt.timedelta(minutes=work.settings.emergency_minutes)
    access_id = str(uuid.uuid4())
    ciphertext = work.store.cipher(record).encrypt(
        reason.encode(), resource_type="EmergencyAccess", resource_id=access_id, version=1
    )
    work.store.stage(
        EmergencyAccess,
        record_id=record.id,
        id=access_id,
        actor_key=f"pro:{professional.idnat}",
        mode=mode.value,
        reason=ciphertext,
        started_at=started,
        expires_at=expires,
    )
    work.store.flush()
    forget(work, record.id)
    ctx = context_for(work, actor, record)
    assert ctx.emergency is not None or ctx.mode is AccessMode.NORMAL
    # The reason may say something medical: it stays encrypted with the record's key; the trace names the
    # emergency access and binds its encrypted reason by digest (an altered reason would not match).
    audit.trace(
        work,
        TraceAction.EMERGENCY_ACCESS,
        actor,
        record=record,
        resource_type="EmergencyAccess",
        resource_id=access_id,
        access_mode=mode.value,
        reason=f"sha256:{hashlib.sha256(ciphertext).hexdigest()}",
        detail=f"until:{expires.isoformat(timespec='seconds')}",
    )
    return Granted(access_id, mode, started, expires)


@dataclass(frozen=True, slots=True)
class Active:
    """An emergency access a professional holds right now."""

    record_id: uuid.UUID
    mode: EmergencyMode
    started_at: dt.datetime
    expires_at: dt.datetime


def active_accesses(work: Work, *, actor: Actor) -> list[Active]:
    """The emergency accesses ``actor`` holds now, one per record, the longest-lasting first.

    Accesses to closed records, and those the patient has opposed since they were opened, are left out:
    the policy re-checks the opposition at every access, so they open nothing.
    """
    professional = actor.professional if actor.acts_as_professional else None
    if professional is None:
        return []
    rows = work.session.execute(
        sa.select(
            EmergencyAccess.record_id,
            EmergencyAccess.mode,
            EmergencyAccess.started_at,
            EmergencyAccess.expires_at,
            Record.status,
            Record.emergency_break_glass,
            Record.emergency_regulation,
        )
        .join(Record, Record.id == EmergencyAccess.record_id)
        .where(EmergencyAccess.actor_key == f"pro:{professional.idnat}", EmergencyAccess.expires_at > work.now)
        .order_by(EmergencyAccess.expires_at.desc(), EmergencyAccess.id)
    ).all()
    found: dict[uuid.UUID, Active] = {}
    for record_id, mode_value, started, expires, status, break_glass, regulation in rows:
        mode = EmergencyMode(mode_value)
        allowed = break_glass if mode is EmergencyMode.BREAK_GLASS else regulation
        if status != RecordStatus.ACTIVE.value or not allowed or record_id in found:
            continue
        found[record_id] = Active(record_id, mode, started, expires)
    return list(found.values())
