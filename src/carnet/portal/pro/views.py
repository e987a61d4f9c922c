"""What the professional portal's templates receive: plain view models built from the services' results.

No query and no rule here: the services (through the access policy) decided what the professional
may see; these functions only read the FHIR JSON they returned and the value sets' displays.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import orjson

from carnet.access import emergency
from carnet.auth.actor import Actor
from carnet.directory import service as directory
from carnet.fhirtypes import EXT_ACCESS_STATUS, EXT_IDENTITY_RELIABILITY, EXT_RECORD_CLOSURE, JSON, parse_datetime
from carnet.fhirtypes import extension as find_extension
from carnet.identifiers import INS_OIDS
from carnet.identifiers.ins import system_to_oid
from carnet.runtime import Work
from carnet.terminology import terminology
from carnet.terminology.valuesets import CONFIDENTIALITY_FLAGS, CONFIDENTIALITY_LEVELS

SOCIAL = "R94:"


# ------------------------------------------------------------------------------------ who is signed in
@dataclass(frozen=True, slots=True)
class EmergencyView:
    record_id: str
    mode: str
    expires_at: dt.datetime
    remaining: str  # h:mm:ss, for pages seen without JavaScript

    @property
    def iso(self) -> str:
        return self.expires_at.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Me:
    """The signed-in professional, as the banner of every page shows them."""

    actor: Actor
    name: str
    idnat: str
    profession: str
    profession_code: str
    specialty: str | None
    organization: str | None
    facility_type: str | None
    practice_setting: str | None
    auth: str
    emergencies: list[EmergencyView]

    @property
    def is_doctor(self) -> bool:
        return self.profession_code == "10"

    def emergency_on(self, record_id: str) -> EmergencyView | None:
        return next((e for e in self.emergencies if e.record_id == record_id), None)


def _remaining(seconds: float) -> str:
    left = max(0, int(seconds))
    hours, rest = divmod(left, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def profession_display(code: str) -> str:
    term = terminology()
    if code.startswith(SOCIAL):
        hit = term.social_professions.codes.get(code.removeprefix(SOCIAL))
    else:
        hit = term.professions.codes.get(code)
    return hit.display if hit else code


def me(work: Work, actor: Actor, claims: dict[str, Any]) -> Me:
    """The banner: identity, profession, organisation, how they signed in, their open emergency accesses."""
    professional = actor.professional
    assert professional is not None
    org = directory.organization_summary(work, professional.organization_id)
    specialty = None
    if professional.specialty:
        hit = terminology().specialties.codes.get(professional.specialty)
        specialty = hit.display if hit else None
    emergencies = [
        EmergencyView(
            str(a.record_id), a.mode.value, a.expires_at, _remaining((a.expires_at - work.now).total_seconds())
        )
        for a in emergency.active_accesses(work, actor=actor)
    ]
    return Me(
        actor=actor,
        name=professional.display,
        idnat=professional.idnat,
        profession=profession_display(professional.profession),
        profession_code=professional.profession,
        specialty=specialty,
        organization=org.name if org else None,
        facility_type=org.facility_type if org else None,
        practice_setting=org.practice_setting if org else professional.practice_setting,
        auth=str(claims.get("auth") or "certificate"),
        emergencies=emergencies,
    )


# ------------------------------------------------------------------------------------ the patient
@dataclass(frozen=True, slots=True)
class PatientView:
    """A record as the professional may see it: always its status, identity traits only when readable."""

    record_id: str
    active: bool
    closed_at: dt.datetime | None
    access_status: str | None  # None on a closed record
    readable: bool  # the Patient came with its identity traits
    family: str = ""
    given: list[str] = field(default_factory=list)
    birth_date: dt.date | None = None
    gender: str | None = None
    ins: str | None = None
    ins_system: str | None = None
    identity_status: str | None = None

    @property
    def display_name(self) -> str:
        return " ".join([*self.given[:1], self.family]).strip()


def _official_name(resource: JSON) -> JSON:
    names = [n for n in resource.get("name") or [] if isinstance(n, dict)]
    official = [n for n in names if n.get("use") == "official"]
    return (official or names or [{}])[0]


def patient_view(body: bytes) -> PatientView:
    resource = orjson.loads(body)
    closure = find_extension(resource, EXT_RECORD_CLOSURE) or {}
    closed_at = None
    for part in closure.get("extension") or []:
        if part.get("url") == "date" and part.get("valueDateTime"):
            closed_at = parse_datetime(str(part["valueDateTime"]))
    status_ext = find_extension(resource, EXT_ACCESS_STATUS)
    name = _official_name(resource)
    ins = ins_system = None
    for ident in resource.get("identifier") or []:
        oid = system_to_oid(ident.get("system")) if isinstance(ident, dict) else None
        if oid in INS_OIDS and ident.get("use") != "old":
            ins, ins_system = str(ident.get("value") or ""), oid
    reliability = find_extension(resource, EXT_IDENTITY_RELIABILITY) or {}
    identity_status = None
    for part in reliability.get("extension") or []:
        if part.get("url") == "identityStatus":
            identity_status = str((part.get("valueCoding") or {}).get("code") or "") or None
    birth = resource.get("birthDate")
    return PatientView(
        record_id=str(resource["id"]),
        active=bool(resource.get("active", True)),
        closed_at=closed_at,
        access_status=str(status_ext["valueCode"]) if status_ext else None,
        readable="name" in resource or "birthDate" in resource,
        family=str(name.get("family") or ""),
        given=[str(g) for g in name.get("given") or []],
        birth_date=dt.date.fromisoformat(str(birth)[:10]) if birth else None,
        gender=resource.get("gender"),
        ins=ins,
        ins_system=ins_system,
        identity_status=identity_status,
    )


# ------------------------------------------------------------------------------------ identity traits
def normalised(text: str) -> str:
    """A name as INSi compares it: capitals, no accents, hyphens and apostrophes as spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    for mark in "-'’":
        plain = plain.replace(mark, " ")
    return " ".join(plain.split())


@dataclass(frozen=True, slots=True)
class TraitsCheck:
    family: bool
    given: bool
    birth_date: bool

    @property
    def matches(self) -> bool:
        return self.family and self.given and self.birth_date


def check_traits(patient: PatientView, *, family: str, given: str, birth_date: dt.date) -> TraitsCheck | None:
    """Compare the traits the professional typed with the record's Patient (None when it is not readable)."""
    if not patient.readable:
        return None
    typed_given = normalised(given)
    givens = [normalised(g) for g in patient.given]
    return TraitsCheck(
        family=normalised(family) == normalised(patient.family),
        given=bool(givens) and typed_given in (givens[0], " ".join(givens)),
        birth_date=patient.birth_date == birth_date,
    )


# ------------------------------------------------------------------------------------ documents
@dataclass(frozen=True, slots=True)
class DocumentView:
    id: str
    record_id: str
    title: str
    type_code: str
    type_display: str
    class_code: str
    class_display: str
    date: dt.datetime | None
    service_start: dt.datetime | None
    author: str
    organization: str
    content_type: str
    level: str
    flags: list[str]
    status: str
    facility: str
    setting: str
    replaces: str | None

    @property
    def media(self) -> str:
        """How the portal shows it: pdf, image, cda or other."""
        kind = self.content_type.split(";", 1)[0].strip().lower()
        if kind == "application/pdf":
            return "pdf"
        if kind in ("image/jpeg", "image/png"):
            return "image"
        if kind in ("text/xml", "application/xml", "application/hl7-cda+xml", "application/xslt+xml"):
            return "cda"
        return "other"


def _first_coding(concept: object) -> JSON:
    if isinstance(concept, dict):
        for coding in concept.get("coding") or []:
            if isinstance(coding, dict):
                return coding
    return {}


def _author(resource: JSON) -> tuple[str, str]:
    """The author's name and organisation as the DocumentReference names them (contained resources)."""
    contained = {c.get("id"): c for c in resource.get("contained") or [] if isinstance(c, dict)}
    people, orgs = [], []
    for ref in resource.get("author") or []:
        target = contained.get(str((ref or {}).get("reference", "")).lstrip("#"))
        if target is None:
            if (ref or {}).get("display"):
                people.append(str(ref["display"]))
            continue
        if target.get("resourceType") == "Organization" and target.get("name"):
            orgs.append(str(target["name"]))
        for name in target.get("name") or [] if target.get("resourceType") != "Organization" else []:
            if isinstance(name, dict):
                parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family", "")]
                people.append(str(name.get("text") or " ".join(str(p) for p in parts)))
    return ", ".join(p.strip() for p in people if p.strip()), ", ".join(orgs)


def document_view(body: bytes) -> DocumentView:
    term = terminology()
    resource = orjson.loads(body)
    type_coding = _first_coding(resource.get("type"))
    type_code = str(type_coding.get("code") or "")
    type_hit = term.type_codes.codes.get(type_code)
    class_coding = _first_coding((resource.get("category") or [None])[0])
    class_code = str(class_coding.get("code") or term.expected_class(type_code) or "")
    class_hit = term.class_codes.codes.get(class_code)
    attachment = ((resource.get("content") or [{}])[0]).get("attachment") or {}
    level, flags = "N", []
    for label in resource.get("securityLabel") or []:
        code = str(_first_coding(label).get("code") or "")
        if code in CONFIDENTIALITY_LEVELS:
            level = code
        elif code in CONFIDENTIALITY_FLAGS:
            flags.append(code)
    context = resource.get("context") or {}
    period = context.get("period") or {}
    facility = str(_first_coding(context.get("facilityType")).get("code") or "")
    setting = str(_first_coding(context.get("practiceSetting")).get("code") or "")
    facility_hit = term.facility_types.codes.get(facility)
    setting_hit = term.practice_settings.codes.get(setting)
    replaces = None
    for relation in resource.get("relatesTo") or []:
        if isinstance(relation, dict) and relation.get("code") == "replaces":
            replaces = str((relation.get("target") or {}).get("reference") or "").rsplit("/", 1)[-1] or None
    type_display = type_hit.display if type_hit else str(type_coding.get("display") or type_code)
    author, organization = _author(resource)
    return DocumentView(
        id=str(resource["id"]),
        record_id=str((resource.get("subject") or {}).get("reference") or "").rsplit("/", 1)[-1],
        title=str(attachment.get("title") or resource.get("description") or type_display),
        type_code=type_code,
        type_display=type_display,
        class_code=class_code,
        class_display=class_hit.display if class_hit else str(class_coding.get("display") or class_code),
        date=parse_datetime(str(resource["date"])) if resource.get("date") else None,
        service_start=parse_datetime(str(period["start"])) if period.get("start") else None,
        author=author,
        organization=organization,
        content_type=str(attachment.get("contentType") or ""),
        level=level,
        flags=flags,
        status=str(resource.get("status") or ""),
        facility=facility_hit.display if facility_hit else facility,
        setting=setting_hit.display if setting_hit else setting,
        replaces=replaces,
    )


@dataclass(frozen=True, slots=True)
class ClassGroup:
    code: str
    display: str
    documents: list[DocumentView]

    @property
    def anchor(self) -> str:
        return f"classe-{self.code or 'autre'}"


def by_class(documents: list[DocumentView]) -> list[ClassGroup]:
    """Documents grouped by class (JDV_J57 order), each group newest first as the search returned them."""
    order = {code: index for index, code in enumerate(terminology().class_codes.codes)}
    groups: dict[str, ClassGroup] = {}
    for doc in documents:
        group = groups.setdefault(doc.class_code, ClassGroup(doc.class_code, doc.class_display, []))
        group.documents.append(doc)
    return sorted(groups.values(), key=lambda g: (order.get(g.code, len(order)), g.code))
