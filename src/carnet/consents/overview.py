"""The patient's decisions as their space shows them, and the Consents their forms create.

``overview`` reads the record's active Consents through ``consents.service.search`` (the policy decides
who may read them; the read is traced) and turns them into what a page shows: who is authorized,
blocked, administrator, in the care team or médecin traitant, and the four preferences (emergency
access by the regulation centre, break-glass, masked documents in emergencies, new documents masked
by default) with their defaults when no Consent says otherwise.

The other functions build the Consent a form asks for and hand it to ``consents.service.create`` /
``revoke``, which check who may decide (``access.policy``). Nothing here decides.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import orjson

from carnet.auth.actor import Actor
from carnet.consents import service as consents
from carnet.consents.service import CONSENT, CS_KIND, CS_SCOPE, IDNAT_PS, IDNAT_STRUCT, PREFERENCES, TA07, Kind
from carnet.directory import people
from carnet.errors import Invalid, IssueCode, NotFound
from carnet.fhirtypes import JSON, parse_datetime
from carnet.runtime import Work

PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PATIENT_DECISIONS = (Kind.AUTHORIZATION, Kind.BLOCK, Kind.ADMINISTRATOR)


@dataclass(frozen=True, slots=True)
class Decision:
    """One active decision about a professional (or an organisation)."""

    consent_id: str
    kind: Kind
    subject: str  # IdNat_PS (or IdNat_Struct for an organisation's authorization)
    organization: bool
    start: dt.datetime | None
    end: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Preferences:
    regulation: bool  # SAMU / centre 15 may access in an emergency (ETREAT)
    break_glass: bool  # any professional may break the glass (BTG)
    masked_in_emergency: bool  # masked documents readable in an emergency
    default_masked: bool  # new documents of professionals are masked by default


@dataclass(slots=True)
class Professional:
    """A professional with their relationships to the record (all active decisions naming them)."""

    idnat: str
    card: people.Card | None
    decisions: dict[Kind, Decision] = field(default_factory=dict)

    def has(self, kind: Kind) -> bool:
        return kind in self.decisions


@dataclass(slots=True)
class Overview:
    professionals: list[Professional]
    organizations: list[tuple[Decision, str | None]]  # organisation authorizations, with the name
    preferences: Preferences


def _kind(resource: JSON) -> Kind | None:
    for concept in resource.get("category") or []:
        for coding in concept.get("coding") or []:
            if coding.get("system") == CS_KIND:
                try:
                    return Kind(str(coding.get("code")))
                except ValueError:
                    return None
    return None


def _date(value: object) -> dt.datetime | None:
    try:
        return parse_datetime(str(value)) if value else None
    except ValueError:
        return None


def _decision(resource: JSON) -> Decision | None:
    kind = _kind(resource)
    if kind is None or kind in PREFERENCES:
        return None
    provision = resource.get("provision") or {}
    for actor in provision.get("actor") or []:
        ident = ((actor or {}).get("reference") or {}).get("identifier") or {}
        if ident.get("value"):
            period = provision.get("period") or {}
            return Decision(
                consent_id=str(resource.get("id")),
                kind=kind,
                subject=str(ident["value"]),
                organization=ident.get("system") == IDNAT_STRUCT,
                start=_date(period.get("start")) or _date(resource.get("dateTime")),
                end=_date(period.get("end")),
            )
    return None


def _preferences(resources: list[JSON]) -> Preferences:
    values = {kind: default for kind, (_, default) in PREFERENCES.items()}
    for resource in resources:
        kind = _kind(resource)
        if kind in PREFERENCES:
            permit = (resource.get("provision") or {}).get("type") == "permit"
            values[kind] = not permit if kind is Kind.DEFAULT_CONFIDENTIALITY else permit
    return Preferences(
        regulation=values[Kind.EMERGENCY_REGULATION],
        break_glass=values[Kind.EMERGENCY_BREAK_GLASS],
        masked_in_emergency=values[Kind.EMERGENCY_MASKED],
        default_masked=values[Kind.DEFAULT_CONFIDENTIALITY],
    )


def overview(work: Work, *, actor: Actor, patient_id: str, extra_idnats: set[str] | None = None) -> Overview:
    """The record's active decisions and preferences, as the caller may read them.

    ``extra_idnats``: professionals to list even without a decision (e.g. those who accessed the record).
    """
    bodies = consents.search(work, actor=actor, patient_id=patient_id, kinds=[], statuses=["active"])
    resources = [orjson.loads(b) for b in bodies]
    by_idnat: dict[str, Professional] = {}
    organizations: list[Decision] = []
    now = work.now
    for resource in resources:
        decision = _decision(resource)
        if decision is None or (decision.end is not None and decision.end <= now):
            continue
        if decision.organization:
            organizations.append(decision)
            continue
        professional = by_idnat.setdefault(decision.subject, Professional(decision.subject, None))
        professional.decisions.setdefault(decision.kind, decision)
    for idnat in extra_idnats or set():
        by_idnat.setdefault(idnat, Professional(idnat, None))
    found = people.cards(work, set(by_idnat))
    for professional in by_idnat.values():
        professional.card = found.get(professional.idnat)
    names = people.organizations(work, {d.subject for d in organizations})
    listed = sorted(by_idnat.values(), key=lambda p: ((p.card.name if p.card else "") or p.idnat).lower())
    return Overview(
        professionals=listed,
        organizations=[(d, names.get(d.subject)) for d in organizations],
        preferences=_preferences(resources),
    )


def decision_resource(kind: Kind, patient_id: str, *, idnat: str | None = None, permit: bool = True) -> JSON:
    """The Consent of a patient's decision: an authorization, a block or an administrator (naming a
    professional), or a preference (permit / deny; default confidentiality: deny = masked)."""
    resource: JSON = {
        "resourceType": CONSENT,
        "status": "active",
        "scope": {"coding": [{"system": CS_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": CS_KIND, "code": kind.value}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "provision": {"type": "permit" if permit else "deny"},
    }
    if kind in PATIENT_DECISIONS:
        if not idnat:
            raise Invalid.at("professional", "choose a professional", IssueCode.REQUIRED)
        resource["provision"]["type"] = "deny" if kind is Kind.BLOCK else "permit"
        resource["provision"]["actor"] = [
            {
                "role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
                "reference": {"identifier": {"system": IDNAT_PS, "value": idnat}},
            }
        ]
    if kind is Kind.DEFAULT_CONFIDENTIALITY:
        resource["provision"]["securityLabel"] = [{"system": TA07, "code": "MASQUE_PS"}]
    return resource


def decide(work: Work, *, actor: Actor, patient_id: str, kind: Kind, idnat: str) -> str:
    """Authorize, block or designate an administrator; the new Consent's id. A professional unknown to
    the directory is refused (the form offers only directory entries)."""
    if kind not in PATIENT_DECISIONS:
        raise Invalid.at("kind", f"{kind.value} is not a decision about a professional", IssueCode.CODE_INVALID)
    if not people.cards(work, {idnat}):
        raise Invalid.at("professional", "this professional is not in the directory", IssueCode.VALUE)
    current = active_decision(work, actor=actor, patient_id=patient_id, kind=kind, idnat=idnat)
    if current is not None:
        return current  # already decided: nothing to add
    consent_id, _ = consents.create(work, actor=actor, resource=decision_resource(kind, patient_id, idnat=idnat))
    return consent_id


def active_decision(work: Work, *, actor: Actor, patient_id: str, kind: Kind, idnat: str) -> str | None:
    """The id of the active Consent of ``kind`` naming ``idnat``, if any."""
    for body in consents.search(work, actor=actor, patient_id=patient_id, kinds=[kind.value], statuses=["active"]):
        decision = _decision(orjson.loads(body))
        if decision is not None and decision.subject == idnat and not decision.organization:
            return decision.consent_id
    return None


def withdraw(work: Work, *, actor: Actor, patient_id: str, kind: Kind, idnat: str) -> bool:
    """Revoke the active decision of ``kind`` about ``idnat`` (unblock, remove an administrator, revoke an
    authorization); whether there was one."""
    consent_id = active_decision(work, actor=actor, patient_id=patient_id, kind=kind, idnat=idnat)
    if consent_id is None:
        return False
    consents.revoke(work, actor=actor, consent_id=consent_id)
    return True


def revoke_consent(work: Work, *, actor: Actor, patient_id: str, consent_id: str) -> None:
    """Withdraw one Consent of this record (``NotFound`` when it belongs to another)."""
    resource = orjson.loads(consents.read(work, actor=actor, consent_id=consent_id))
    if (resource.get("patient") or {}).get("reference") != f"Patient/{patient_id}":
        raise NotFound()
    consents.revoke(work, actor=actor, consent_id=consent_id)


def set_preference(work: Work, *, actor: Actor, patient_id: str, kind: Kind, value: bool) -> bool:
    """Set one preference (``value``: allowed, or for the default confidentiality: masked); whether it
    changed. The new Consent supersedes the previous one of this preference (``consents.service.create``)."""
    if kind not in PREFERENCES:
        raise Invalid.at("kind", f"{kind.value} is not a preference", IssueCode.CODE_INVALID)
    current = overview(work, actor=actor, patient_id=patient_id).preferences
    now_value = {
        Kind.EMERGENCY_REGULATION: current.regulation,
        Kind.EMERGENCY_BREAK_GLASS: current.break_glass,
        Kind.EMERGENCY_MASKED: current.masked_in_emergency,
        Kind.DEFAULT_CONFIDENTIALITY: current.default_masked,
    }[kind]
    if now_value == value:
        return False
    permit = not value if kind is Kind.DEFAULT_CONFIDENTIALITY else value
    consents.create(work, actor=actor, resource=decision_resource(kind, patient_id, permit=permit))
    return True
