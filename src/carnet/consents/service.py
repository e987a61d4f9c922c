"""Consents: who may access a record, decided by the patient or declared by a professional.

Each decision is a FHIR Consent (IHE Privacy Consent on FHIR shapes: scope patient-privacy, a
provision permitting or denying an actor) stored encrypted in the record, plus an index row the
access policy reads (``access_grants``) or, for the patient's preferences, a column of the record.
The kind of decision is the Consent's category in Carnet's code system ``consent-kind``:

=========================  ==================================  =====================================
kind                       provision                           who decides
=========================  ==================================  =====================================
authorization              permit; actor = IdNat_PS or _Struct  the patient (or legal representative)
block                      deny; actor = IdNat_PS               the patient, or an administrator PS
administrator              permit; actor = IdNat_PS             the patient
care-team                  permit; actor = the declarer         the professional (consent collected)
medecin-traitant           permit; actor = the declarer         the professional (patient agreed)
emergency-regulation       permit | deny (purpose ETREAT)       the patient
emergency-break-glass      permit | deny (purpose BTG)          the patient
emergency-masked           permit | deny (label MASQUE_PS)      the patient
default-confidentiality    deny + label MASQUE_PS = masked      the patient
=========================  ==================================  =====================================

Revoking a Consent makes it inactive (a new version); revoking a preference restores the default.
"""

from __future__ import annotations

import copy
import datetime as dt
import enum
import uuid
from dataclasses import dataclass

import orjson
import sqlalchemy as sa

from carnet import audit
from carnet.access import Action, Decision, decide, require
from carnet.access.context import context_for, forget
from carnet.access.models import AccessGrant, GrantKind, SubjectKind
from carnet.audit.trace import TraceAction
from carnet.auth.actor import Actor, ActorKind
from carnet.errors import Forbidden, Invalid, IssueCode, NotFound, Problem
from carnet.fhirtypes import CARNET_CANONICAL, JSON, codings, format_instant, parse_datetime
from carnet.identifiers import IDNAT_PS_OID, IDNAT_STRUCT_OID, IdentifierError, parse_idnat_ps, parse_idnat_struct
from carnet.records import lookup as records
from carnet.records.models import Record
from carnet.runtime import Work
from carnet.storage.models import ResourceLocator, SearchToken

CONSENT = "Consent"
CS_KIND = f"{CARNET_CANONICAL}/CodeSystem/consent-kind"
CS_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CS_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
IDNAT_PS = f"urn:oid:{IDNAT_PS_OID}"
IDNAT_STRUCT = f"urn:oid:{IDNAT_STRUCT_OID}"
TA07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"


class Kind(enum.StrEnum):
    AUTHORIZATION = "authorization"
    BLOCK = "block"
    ADMINISTRATOR = "administrator"
    CARE_TEAM = "care-team"
    MEDECIN_TRAITANT = "medecin-traitant"
    EMERGENCY_REGULATION = "emergency-regulation"
    EMERGENCY_BREAK_GLASS = "emergency-break-glass"
    EMERGENCY_MASKED = "emergency-masked"
    DEFAULT_CONFIDENTIALITY = "default-confidentiality"


GRANTS = {
    Kind.AUTHORIZATION: GrantKind.AUTHORIZATION,
    Kind.BLOCK: GrantKind.BLOCK,
    Kind.ADMINISTRATOR: GrantKind.ADMINISTRATOR,
    Kind.CARE_TEAM: GrantKind.CARE_TEAM,
    Kind.MEDECIN_TRAITANT: GrantKind.MEDECIN_TRAITANT,
}
DECLARATIONS = {Kind.CARE_TEAM, Kind.MEDECIN_TRAITANT}
# TRE_G15 profession code of médecins: only a doctor can be a patient's médecin traitant.
DOCTOR = "10"
# Record columns holding the patient's preferences, and their default (the value when no Consent says otherwise).
PREFERENCES = {
    Kind.EMERGENCY_REGULATION: ("emergency_regulation", True),
    Kind.EMERGENCY_BREAK_GLASS: ("emergency_break_glass", True),
    Kind.EMERGENCY_MASKED: ("emergency_masked", False),
    Kind.DEFAULT_CONFIDENTIALITY: ("default_masked", False),
}
DISPLAY = {
    Kind.AUTHORIZATION: "Autorisation d'accès",
    Kind.BLOCK: "Professionnel bloqué",
    Kind.ADMINISTRATOR: "Professionnel administrateur",
    Kind.CARE_TEAM: "Équipe de soins (consentement recueilli)",
    Kind.MEDECIN_TRAITANT: "Médecin traitant",
    Kind.EMERGENCY_REGULATION: "Accès du centre de régulation (SAMU - centre 15)",
    Kind.EMERGENCY_BREAK_GLASS: "Accès en urgence (bris de glace)",
    Kind.EMERGENCY_MASKED: "Documents masqués visibles en urgence",
    Kind.DEFAULT_CONFIDENTIALITY: "Confidentialité des nouveaux documents",
}


@dataclass(frozen=True, slots=True)
class ParsedConsent:
    kind: Kind
    permit: bool
    subject_kind: SubjectKind | None
    subject_value: str | None
    start: dt.datetime | None
    end: dt.datetime | None
    masked_label: bool


def _kind_of(resource: JSON) -> Kind:
    for concept in resource.get("category") or []:
        for coding in codings(concept):
            if coding.get("system") == CS_KIND:
                try:
                    return Kind(str(coding.get("code")))
                except ValueError:
                    break
    kinds = ", ".join(k.value for k in Kind)
    raise Invalid.at("Consent.category", f"the Consent needs a category from {CS_KIND} ({kinds})", IssueCode.REQUIRED)


def _parse(work: Work, resource: JSON) -> ParsedConsent:
    kind = _kind_of(resource)
    problems: list[Problem] = []
    if resource.get("status") not in (None, "active"):
        problems.append(Problem("a new Consent is active", "Consent.status"))
    provision = resource.get("provision") or {}
    provision_type = provision.get("type")
    if provision_type not in ("permit", "deny"):
        problems.append(Problem("provision.type is permit or deny", "Consent.provision.type", IssueCode.REQUIRED))
    permit = provision_type == "permit"
    subject_kind: SubjectKind | None = None
    subject_value: str | None = None
    actors = provision.get("actor") or []
    needs_actor = kind in GRANTS
    if needs_actor:
        if len(actors) != 1:
            problems.append(
                Problem(
                    "name exactly one professional or organisation in provision.actor",
                    "Consent.provision.actor",
                    IssueCode.REQUIRED,
                )
            )
        else:
            ident = ((actors[0] or {}).get("reference") or {}).get("identifier") or {}
            system, value = ident.get("system"), str(ident.get("value") or "")
            try:
                if system == IDNAT_PS:
                    subject_kind, subject_value = (
                        SubjectKind.PRACTITIONER,
                        parse_idnat_ps(value, check_luhn=work.settings.is_production).value,
                    )
                elif system == IDNAT_STRUCT and kind is Kind.AUTHORIZATION:
                    subject_kind, subject_value = (
                        SubjectKind.ORGANIZATION,
                        parse_idnat_struct(value, check_luhn=work.settings.is_production).value,
                    )
                else:
                    allowed = "IdNat_PS or IdNat_Struct" if kind is Kind.AUTHORIZATION else "IdNat_PS"
                    problems.append(
                        Problem(
                            f"provision.actor is identified by its {allowed} ({IDNAT_PS})",
                            "Consent.provision.actor[0].reference.identifier",
                            IssueCode.VALUE,
                        )
                    )
            except IdentifierError as exc:
                problems.append(
                    Problem(str(exc), "Consent.provision.actor[0].reference.identifier.value", IssueCode.VALUE)
                )
        expected = "deny" if kind is Kind.BLOCK else "permit"
        if provision_type and provision_type != expected:
            problems.append(Problem(f"a {kind.value} Consent has provision.type {expected}", "Consent.provision.type"))
    elif actors:
        problems.append(Problem(f"a {kind.value} Consent names no actor", "Consent.provision.actor"))
    period = provision.get("period") or {}
    start = end = None
    try:
        start = parse_datetime(period["start"]) if period.get("start") else None
        end = parse_datetime(period["end"]) if period.get("end") else None
    except ValueError as exc:
        problems.append(Problem(str(exc), "Consent.provision.period", IssueCode.VALUE))
    if start and end and end <= start:
        problems.append(Problem("the period ends before it starts", "Consent.provision.period"))
    if end is not None and kind not in (Kind.AUTHORIZATION, Kind.CARE_TEAM):
        problems.append(Problem(f"a {kind.value} Consent has no end date", "Consent.provision.period.end"))
    labels = {c.get("code") for label in provision.get("securityLabel") or [] for c in [label] if isinstance(c, dict)}
    masked = "MASQUE_PS" in labels
    if kind is Kind.DEFAULT_CONFIDENTIALITY and not masked:
        problems.append(
            Problem(
                "a default-confidentiality Consent carries the label MASQUE_PS (deny = masked)",
                "Consent.provision.securityLabel",
                IssueCode.REQUIRED,
            )
        )
    if problems:
        raise Invalid("the Consent is invalid", problems=problems, unprocessable=True)
    return ParsedConsent(kind, permit, subject_kind, subject_value, start, end, masked)


def _record_of(work: Work, resource: JSON) -> Record:
    patient = resource.get("patient") or {}
    ref = str(patient.get("reference") or "")
    if "Patient/" not in ref:
        raise Invalid.at("Consent.patient", "patient must reference the Patient (Patient/<id>)", IssueCode.REQUIRED)
    record = records.get_record(work, ref.rsplit("Patient/", 1)[1].split("/", 1)[0])
    if record is None:
        raise NotFound()
    return record


def _who_decides(work: Work, actor: Actor, record: Record, parsed: ParsedConsent) -> Decision:
    known = decide(work, actor, Action.RECORD_LOOKUP, record).permit
    if parsed.kind in DECLARATIONS:
        decision = require(work, actor, Action.DECLARE, record, visible=known)
        professional = actor.professional
        if professional is None or parsed.subject_value != professional.idnat:
            raise Invalid.at(
                "Consent.provision.actor", "a professional declares for themselves only", IssueCode.BUSINESS_RULE
            )
        if parsed.kind is Kind.MEDECIN_TRAITANT and professional.profession != DOCTOR:
            raise Invalid.at(
                "Consent.category", "only a doctor (médecin) can be the médecin traitant", IssueCode.BUSINESS_RULE
            )
        return decision
    if parsed.kind is Kind.BLOCK:
        return require(work, actor, Action.BLOCK_OTHERS, record, visible=known)
    return require(work, actor, Action.CONSENT_CHANGE, record, visible=known)


def _normalise(
    resource: JSON, parsed: ParsedConsent, record: Record, consent_id: str, version: int, status: str, work: Work
) -> JSON:
    out = copy.deepcopy(resource)
    out["resourceType"] = CONSENT
    out["id"] = consent_id
    out["meta"] = {"versionId": str(version), "lastUpdated": format_instant(work.now)}
    out.pop("text", None)
    out["status"] = status
    out["scope"] = {"coding": [{"system": CS_SCOPE, "code": "patient-privacy"}]}
    out["category"] = [{"coding": [{"system": CS_KIND, "code": parsed.kind.value, "display": DISPLAY[parsed.kind]}]}]
    out["patient"] = {"reference": f"Patient/{record.id}"}
    out.setdefault("dateTime", format_instant(work.now))
    out.setdefault(
        "policyRule",
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "OPTIN" if parsed.permit else "OPTOUT",
                }
            ]
        },
    )
    return out


def create(work: Work, *, actor: Actor, resource: JSON) -> tuple[str, bytes]:
    """Record a patient decision or a professional declaration; return its id and stored JSON."""
    parsed = _parse(work, resource)
    record = _record_of(work, resource)
    decision = _who_decides(work, actor, record, parsed)
    if not record.is_active:
        raise Invalid.at("Consent.patient", "the record is closed", IssueCode.BUSINESS_RULE)
    consent_id = str(uuid.uuid4())
    if parsed.kind in PREFERENCES:
        _supersede_preference(work, record, parsed.kind)
        column, _ = PREFERENCES[parsed.kind]
        # Emergency preferences: permit or deny. Default confidentiality: deny MASQUE_PS = new documents masked.
        value = not parsed.permit if parsed.kind is Kind.DEFAULT_CONFIDENTIALITY else parsed.permit
        setattr(record, column, value)
    else:
        assert parsed.subject_kind is not None
        assert parsed.subject_value is not None
        work.store.stage(
            AccessGrant,
            record_id=record.id,
            id=consent_id,
            kind=GRANTS[parsed.kind].value,
            subject_kind=parsed.subject_kind.value,
            subject_value=parsed.subject_value,
            start=parsed.start or work.now,
            end=parsed.end,
            active=True,
            declared_by=actor.author_key,
            created_at=work.now,
            revoked_at=None,
        )
    body = _normalise(resource, parsed, record, consent_id, 1, "active", work)
    work.store.put(record, CONSENT, consent_id, 1, body, work.now)
    work.store.register(CONSENT, consent_id, record.id)
    work.store.add_tokens(record.id, CONSENT, consent_id, {("category", parsed.kind.value), ("status", "active")})
    work.store.flush()
    forget(work, record.id)
    audit.trace(
        work,
        TraceAction.CONSENT_CREATE,
        actor,
        record=record,
        resource_type=CONSENT,
        resource_id=consent_id,
        version=1,
        decision=decision,
        detail=_summary(parsed.kind, parsed.permit, parsed.subject_value),
    )
    return consent_id, orjson.dumps(body)


def _summary(kind: Kind, permit: bool, subject: str | None) -> str:
    """What a Consent decides, as codes: its kind, permit or deny, and whom it names (an IdNat)."""
    return " ".join(p for p in (kind.value, "permit" if permit else "deny", subject) if p)


def _supersede_preference(work: Work, record: Record, kind: Kind) -> None:
    """Make the previous Consent of this preference inactive (a preference has one current value)."""
    previous = work.session.scalars(
        sa.select(SearchToken.resource_id).where(
            SearchToken.record_id == record.id,
            SearchToken.resource_type == CONSENT,
            SearchToken.param == "category",
            SearchToken.value_hash == work.store.token("category", kind.value),
        )
    ).all()
    for consent_id in previous:
        _set_status(work, record, str(consent_id), "inactive")


def _set_status(work: Work, record: Record, consent_id: str, status: str) -> bytes | None:
    stored = work.store.current(record, CONSENT, consent_id)
    if stored is None:
        return None
    resource = orjson.loads(stored.body)
    if resource.get("status") == status:
        return stored.body
    resource["status"] = status
    version = stored.version + 1
    resource["meta"] = {"versionId": str(version), "lastUpdated": format_instant(work.now)}
    work.store.put(record, CONSENT, consent_id, version, resource, work.now)
    work.session.execute(
        sa.delete(SearchToken).where(
            SearchToken.record_id == record.id,
            SearchToken.resource_type == CONSENT,
            SearchToken.resource_id == consent_id,
            SearchToken.param == "status",
        )
    )
    work.store.add_tokens(record.id, CONSENT, consent_id, {("status", status)})
    return orjson.dumps(resource)


def _locate(work: Work, consent_id: str) -> Record:
    record_id = work.session.scalar(
        sa.select(ResourceLocator.record_id).where(
            ResourceLocator.resource_type == CONSENT, ResourceLocator.resource_id == consent_id
        )
    )
    record = work.session.get(Record, record_id) if record_id else None
    if record is None:
        raise NotFound()
    return record


def _visible(work: Work, actor: Actor, record: Record, resource: JSON) -> bool:
    """Patients and their representatives see every Consent of their record; the médecin traitant and
    administrators too; other professionals see the Consents that name them."""
    if not decide(work, actor, Action.CONSENT_READ, record).permit:
        return False
    if actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE, ActorKind.SYSTEM):
        return True
    if actor.acts_as_professional and context_for(work, actor, record).privileged:
        return True
    professional = actor.professional
    names = {
        str((((a or {}).get("reference") or {}).get("identifier") or {}).get("value"))
        for a in (resource.get("provision") or {}).get("actor") or []
    }
    return professional is not None and bool({professional.idnat, professional.organization_idnat} & names)


def read(work: Work, *, actor: Actor, consent_id: str, version: int | None = None) -> bytes:
    record = _locate(work, consent_id)
    stored = (
        work.store.current(record, CONSENT, consent_id)
        if version is None
        else work.store.version(record, CONSENT, consent_id, version)
    )
    if stored is None or not _visible(work, actor, record, orjson.loads(stored.body)):
        raise NotFound()
    audit.trace(
        work,
        TraceAction.CONSENT_READ,
        actor,
        record=record,
        resource_type=CONSENT,
        resource_id=consent_id,
        version=stored.version,
    )
    return stored.body


def history(work: Work, *, actor: Actor, consent_id: str) -> list[bytes]:
    read(work, actor=actor, consent_id=consent_id)
    record = _locate(work, consent_id)
    return [v.body for v in work.store.history(record, CONSENT, consent_id)]


def search(work: Work, *, actor: Actor, patient_id: str, kinds: list[str], statuses: list[str]) -> list[bytes]:
    """The Consents of a record the caller may see, newest first."""
    record = records.get_record(work, patient_id)
    if record is None or not decide(work, actor, Action.CONSENT_READ, record).permit:
        return []
    ids = set(
        work.session.scalars(
            sa.select(ResourceLocator.resource_id).where(
                ResourceLocator.record_id == record.id, ResourceLocator.resource_type == CONSENT
            )
        )
    )
    for param, values in (("category", kinds), ("status", statuses)):
        if values:
            hashes = [work.store.token(param, v) for v in values]
            ids &= set(
                work.session.scalars(
                    sa.select(SearchToken.resource_id).where(
                        SearchToken.record_id == record.id,
                        SearchToken.resource_type == CONSENT,
                        SearchToken.param == param,
                        SearchToken.value_hash.in_(hashes),
                    )
                )
            )
    bodies = work.store.current_many(record, CONSENT, sorted(ids))
    visible = {i: b for i, b in bodies.items() if _visible(work, actor, record, orjson.loads(b))}
    audit.trace(
        work,
        TraceAction.CONSENT_READ,
        actor,
        record=record,
        resource_type=CONSENT,
        query=f"category={','.join(kinds)}&status={','.join(statuses)}",
        detail=f"total:{len(visible)}",
    )
    return sorted(visible.values(), key=lambda b: orjson.loads(b).get("dateTime", ""), reverse=True)


def revoke(work: Work, *, actor: Actor, consent_id: str) -> bytes:
    """Withdraw a decision: the Consent becomes inactive; a revoked preference returns to its default.

    The patient (or representative) revokes any Consent of their record; a professional revokes the
    declarations they made; an administrator revokes the blocks they set.
    """
    record = _locate(work, consent_id)
    stored = work.store.current(record, CONSENT, consent_id)
    if stored is None or not _visible(work, actor, record, orjson.loads(stored.body)):
        raise NotFound()
    resource = orjson.loads(stored.body)
    kind = _kind_of(resource)
    grant = work.session.get(AccessGrant, (record.id, consent_id))
    change = decide(work, actor, Action.CONSENT_CHANGE, record)
    patient_side = change.permit
    own_declaration = grant is not None and grant.declared_by == actor.author_key
    if not (patient_side or own_declaration):
        raise Forbidden("only the patient, or who declared it, withdraws this Consent")
    if resource.get("status") != "active":
        return stored.body
    body = _set_status(work, record, consent_id, "inactive")
    if grant is not None:
        grant.active = False
        grant.revoked_at = work.now
    if kind in PREFERENCES:
        column, default = PREFERENCES[kind]
        setattr(record, column, default)
    work.store.flush()
    forget(work, record.id)
    assert body is not None
    declared = None if patient_side else decide(work, actor, Action.DECLARE, record)
    basis = change if patient_side else (declared if declared is not None and declared.permit else None)
    audit.trace(
        work,
        TraceAction.CONSENT_REVOKE,
        actor,
        record=record,
        resource_type=CONSENT,
        resource_id=consent_id,
        version=int(orjson.loads(body)["meta"]["versionId"]),
        decision=basis,
        detail=_summary(
            kind, resource.get("provision", {}).get("type") != "deny", grant.subject_value if grant else None
        ),
    )
    return body


def declaration(kind: Kind, patient_id: str, idnat: str) -> JSON:
    """A professional's declaration (care team, médecin traitant) as a Consent resource to create."""
    return {
        "resourceType": CONSENT,
        "status": "active",
        "scope": {"coding": [{"system": CS_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": CS_KIND, "code": kind.value}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "provision": {
            "type": "permit",
            "actor": [
                {
                    "role": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}
                        ]
                    },
                    "reference": {"identifier": {"system": IDNAT_PS, "value": idnat}},
                }
            ],
        },
    }
