"""Patient records: creation (one per INS), lookup by INS, the Patient resource, closure and reopening."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass

import orjson
import sqlalchemy as sa

from carnet import audit
from carnet.access import Action, decide, require
from carnet.access.context import context_for
from carnet.audit.trace import TraceAction
from carnet.auth.actor import Actor, ActorKind
from carnet.consents import service as consents
from carnet.errors import Conflict, Invalid, IssueCode, NotFound, Problem
from carnet.fhirtypes import (
    EXT_ACCESS_STATUS,
    EXT_CONSENT_ATTESTED,
    EXT_IDENTITY_RELIABILITY,
    EXT_RECORD_CLOSURE,
    JSON,
    extension,
    format_instant,
    remove_extension,
    set_extension,
)
from carnet.identifiers import INS_OIDS, IdentifierError, IdentityStatus, Ins, parse_ins
from carnet.identifiers.ins import LEGACY_INS_OIDS, system_to_oid
from carnet.records.lookup import find_by_ins, get_record
from carnet.records.models import ClosureReason, Record, RecordStatus
from carnet.records.periods import retention_ends
from carnet.runtime import Work

PATIENT = "Patient"
__all__ = [
    "PATIENT",
    "PatientView",
    "close_record",
    "create_record",
    "find_by_ins",
    "get_record",
    "lookup_by_ins",
    "patient_history",
    "read_patient",
    "reopen_record",
]
# Elements of Patient the operator may see: enough to manage the record, no identity traits.
OPERATOR_VIEW = ("resourceType", "id", "meta", "identifier", "active", "extension")


@dataclass(frozen=True, slots=True)
class PatientView:
    record: Record
    body: bytes  # JSON of the Patient as this caller may see it


def ins_of_patient(resource: JSON, *, allow_test: bool, path: str = "Patient") -> Ins:
    """The one INS among a Patient's identifiers, validated."""
    candidates: list[tuple[int, JSON]] = []
    for index, ident in enumerate(resource.get("identifier") or []):
        oid = system_to_oid(ident.get("system")) if isinstance(ident, dict) else None
        if oid in INS_OIDS or oid in LEGACY_INS_OIDS:
            candidates.append((index, ident))
    if not candidates:
        raise Invalid.at(
            f"{path}.identifier",
            "the Patient carries no INS (identifier with system urn:oid:1.2.250.1.213.1.4.8 or .9)",
            IssueCode.REQUIRED,
        )
    active = [(i, ident) for i, ident in candidates if ident.get("use") != "old"]
    if len(active) != 1:
        raise Invalid.at(f"{path}.identifier", "the Patient must carry exactly one current INS")
    index, ident = active[0]
    try:
        return parse_ins(ident.get("system"), ident.get("value"), allow_test=allow_test)
    except IdentifierError as exc:
        raise Invalid.at(f"{path}.identifier[{index}].value", str(exc), IssueCode.VALUE) from exc


def identity_status_of(resource: JSON, path: str = "Patient") -> IdentityStatus:
    ext = extension(resource, EXT_IDENTITY_RELIABILITY)
    if ext is None:
        raise Invalid.at(
            f"{path}.extension",
            f"the identity status is required: extension {EXT_IDENTITY_RELIABILITY} "
            "with identityStatus PROV, RECUP, VALI or QUAL",
            IssueCode.REQUIRED,
        )
    for sub in ext.get("extension") or []:
        if sub.get("url") == "identityStatus":
            code = str((sub.get("valueCoding") or {}).get("code"))
            try:
                return IdentityStatus(code)
            except ValueError as exc:
                raise Invalid.at(
                    f"{path}.extension('{EXT_IDENTITY_RELIABILITY}').extension('identityStatus')",
                    f"identity status {code!r} is not one of PROV, RECUP, VALI, QUAL",
                    IssueCode.CODE_INVALID,
                ) from exc
    raise Invalid.at(f"{path}.extension", "the identity reliability extension lacks identityStatus", IssueCode.REQUIRED)


def _check_traits(resource: JSON) -> None:
    problems = []
    names = resource.get("name") or []
    if not any(isinstance(n, dict) and n.get("family") for n in names):
        problems.append(Problem("the birth name (name.family) is required", "Patient.name", IssueCode.REQUIRED))
    if not resource.get("birthDate"):
        problems.append(Problem("the birth date is required", "Patient.birthDate", IssueCode.REQUIRED))
    if resource.get("gender") not in ("male", "female", "other", "unknown"):
        problems.append(Problem("the administrative gender is required", "Patient.gender", IssueCode.REQUIRED))
    if problems:
        raise Invalid("the Patient lacks identity traits", problems=problems, unprocessable=True)


def _closure_extension(record: Record) -> JSON:
    parts: list[JSON] = [{"url": "status", "valueCode": record.status}]
    if record.info_sent_at is not None:  # an announced record: the opposition window runs from then
        parts.append({"url": "infoSent", "valueDateTime": format_instant(record.info_sent_at)})
    if record.closed_at is not None:
        parts.append({"url": "date", "valueDateTime": format_instant(record.closed_at)})
    if record.closure_reason:
        parts.append({"url": "reason", "valueCode": record.closure_reason})
    return {"url": EXT_RECORD_CLOSURE, "extension": parts}


def _stamp(resource: JSON, record: Record, version: int, work: Work) -> JSON:
    resource["resourceType"] = PATIENT
    resource["id"] = str(record.id)
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_instant(work.now)
    resource["meta"] = meta
    resource["active"] = record.is_active
    set_extension(resource, _closure_extension(record))
    return resource


def validated_identity(work: Work, patient: JSON) -> tuple[Ins, IdentityStatus]:
    """The INS and identity status of a Patient that may key a record, its identity traits checked."""
    ins = ins_of_patient(patient, allow_test=not work.settings.is_production)
    status = identity_status_of(patient)
    if work.settings.is_production and status is not IdentityStatus.QUAL:
        raise Invalid.at(
            "Patient.extension",
            "only a qualified identity (QUAL) may key a shared record: qualify the INS through INSi first",
            IssueCode.BUSINESS_RULE,
        )
    _check_traits(patient)
    return ins, status


def create_record(work: Work, *, actor: Actor, patient: JSON) -> Record:
    """Open a record for the patient described by ``patient`` (a FHIR Patient).

    A professional must attest that the patient consented (extension record-consent-attestation);
    the operator opens records without it. A record announced for this INS (opposition window) opens at
    once when a professional attests the patient's consent; one the patient objected to starts again,
    empty, with a new data key (``carnet.records.lifecycle``).
    """
    require(work, actor, Action.RECORD_CREATE, None)
    ins, status = validated_identity(work, patient)
    if actor.kind in (ActorKind.PROFESSIONAL, ActorKind.SOFTWARE):
        attested = extension(patient, EXT_CONSENT_ATTESTED)
        if attested is None or attested.get("valueBoolean") is not True:
            raise Invalid.at(
                "Patient.extension",
                f"a professional opening a record attests the patient's consent (extension {EXT_CONSENT_ATTESTED})",
                IssueCode.BUSINESS_RULE,
            )
    ins_hash = work.store.indexer.ins(ins.value)
    existing = work.session.scalar(sa.select(Record).where(Record.ins_hash == ins_hash).with_for_update())
    if existing is not None:
        from carnet.records import lifecycle  # noqa: PLC0415 - the lifecycle builds on this module

        return lifecycle.open_existing(work, actor=actor, record=existing, patient=patient, status=status)
    record_id = uuid.uuid4()
    wrapped = work.store.new_record_key(record_id)
    record = Record(
        id=record_id,
        ins_hash=ins_hash,
        ins_kind=ins.kind.value,
        identity_status=status.value,
        status=RecordStatus.ACTIVE.value,
        created_at=work.now,
        updated_at=work.now,
        kek_id=wrapped.kek_id,
        wrapped_key=wrapped.wrapped,
        patient_version=1,
        opened_at=work.now,
    )
    work.session.add(record)
    work.store.flush()
    resource = copy.deepcopy(patient)
    remove_extension(resource, EXT_CONSENT_ATTESTED)
    resource.pop("text", None)
    work.store.put(record, PATIENT, str(record.id), 1, _stamp(resource, record, 1, work), work.now)
    work.store.flush()
    audit.trace(
        work,
        TraceAction.RECORD_CREATE,
        actor,
        record=record,
        resource_type=PATIENT,
        resource_id=str(record.id),
        version=1,
    )
    if actor.professional is not None:
        # The professional who opens the record with the patient's consent is part of their care team.
        consents.create(
            work,
            actor=actor,
            resource=consents.declaration(consents.Kind.CARE_TEAM, str(record.id), actor.professional.idnat),
        )
    return record


def _visible_body(
    work: Work, actor: Actor, record: Record, body: bytes, version: int, detail: str | None = None
) -> bytes:
    """The Patient as this caller may see it: whole, or (record management only) without identity traits.

    A professional also learns their own access status on the record (PDSm TD0.2): médecin traitant,
    administrator, authorization, care-team, break-glass, regulation or none — a block shows as none.
    """
    decision = decide(work, actor, Action.RECORD_READ, record)
    readable = decision.permit
    if not readable:
        decision = require(work, actor, Action.RECORD_LOOKUP, record)
    audit.trace(
        work,
        TraceAction.RECORD_READ if readable else TraceAction.RECORD_LOOKUP,
        actor,
        record=record,
        resource_type=PATIENT,
        resource_id=str(record.id),
        version=version,
        decision=decision,
        detail=detail,
    )
    if readable and not actor.acts_as_professional:
        return body
    full = orjson.loads(body)
    view = full if readable else {k: v for k, v in full.items() if k in OPERATOR_VIEW}
    if actor.acts_as_professional and record.is_active:
        ctx = context_for(work, actor, record)
        status = "none" if ctx.blocked else ctx.basis
        set_extension(view, {"url": EXT_ACCESS_STATUS, "valueCode": status})
    return orjson.dumps(view)


def lookup_by_ins(work: Work, *, actor: Actor, ins: Ins) -> PatientView | None:
    """PDSm TD0.2: does a record exist for this INS, and what is its status."""
    record = find_by_ins(work, ins)
    if record is None:
        return None
    require(work, actor, Action.RECORD_LOOKUP, record)
    stored = work.store.current(record, PATIENT, str(record.id))
    if stored is None:  # pragma: no cover - a record always has its Patient
        raise NotFound()
    return PatientView(record, _visible_body(work, actor, record, stored.body, stored.version, "ins"))


def _record_for(work: Work, actor: Actor, patient_id: str) -> Record:
    record = get_record(work, patient_id)
    if record is None:
        raise NotFound()
    require(work, actor, Action.RECORD_LOOKUP, record)
    return record


def read_patient(work: Work, *, actor: Actor, patient_id: str, version: int | None = None) -> PatientView:
    record = _record_for(work, actor, patient_id)
    stored = (
        work.store.current(record, PATIENT, str(record.id))
        if version is None
        else work.store.version(record, PATIENT, str(record.id), version)
    )
    if stored is None:
        raise NotFound()
    return PatientView(record, _visible_body(work, actor, record, stored.body, stored.version))


def patient_history(work: Work, *, actor: Actor, patient_id: str) -> list[PatientView]:
    record = _record_for(work, actor, patient_id)
    return [
        PatientView(record, _visible_body(work, actor, record, v.body, v.version, "history"))
        for v in work.store.history(record, PATIENT, str(record.id))
    ]


def _rewrite_status(work: Work, record: Record) -> None:
    stored = work.store.current(record, PATIENT, str(record.id))
    if stored is None:  # pragma: no cover
        raise NotFound()
    resource = orjson.loads(stored.body)
    record.patient_version += 1
    record.updated_at = work.now
    work.store.put(
        record,
        PATIENT,
        str(record.id),
        record.patient_version,
        _stamp(resource, record, record.patient_version, work),
        work.now,
    )
    work.store.flush()


def close_record(work: Work, *, actor: Actor, patient_id: str, reason: ClosureReason) -> Record:
    """Close a record (kept ten years, then destroyed). Deposits stop; the holder keeps read access."""
    record = _record_for(work, actor, patient_id)
    decision = require(work, actor, Action.RECORD_CLOSE, record, visible=True)
    if record.is_announced:
        raise Conflict("the record is not open yet: objecting to it ($oppose) closes it")
    if not record.is_active:
        raise Conflict("the record is already closed")
    record.status = RecordStatus.CLOSED.value
    record.closed_at = work.now
    record.closure_reason = reason.value
    _rewrite_status(work, record)
    audit.trace(
        work,
        TraceAction.RECORD_CLOSE,
        actor,
        record=record,
        resource_type=PATIENT,
        resource_id=str(record.id),
        version=record.patient_version,
        decision=decision,
        detail=reason.value,
    )
    return record


def reopen_record(work: Work, *, actor: Actor, patient_id: str) -> Record:
    """Reopen a closed record within its retention period; its archived content is available again."""
    record = _record_for(work, actor, patient_id)
    decision = require(work, actor, Action.RECORD_REOPEN, record, visible=True)
    if record.is_active:
        raise Conflict("the record is already open")
    if record.is_announced:
        raise Conflict("the record is not open yet: it opens at the end of its opposition window")
    ends = retention_ends(work.settings, record)
    if ends is not None and ends <= work.now:
        raise Conflict(f"the record's retention ended on {ends.date().isoformat()}: it is due for destruction")
    record.status = RecordStatus.ACTIVE.value
    record.closed_at = None
    record.closure_reason = None
    _rewrite_status(work, record)
    audit.trace(
        work,
        TraceAction.RECORD_REOPEN,
        actor,
        record=record,
        resource_type=PATIENT,
        resource_id=str(record.id),
        version=record.patient_version,
        decision=decision,
    )
    return record
