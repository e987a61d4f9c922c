"""The professional directory: upsert from an extract, resolve a professional, read and search.

An extract is either a CSV file (one row per exercise: practitioner, profession, specialty,
organisation) or FHIR JSON (a Bundle, an array or NDJSON of Organization, Practitioner and
PractitionerRole). Rows are keyed by the national identifiers, so importing the same extract twice
changes nothing, and importing a newer one updates what changed.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import sqlalchemy as sa

from carnet.auth.actor import Professional
from carnet.directory.models import Organization, Practitioner, PractitionerRole
from carnet.errors import Invalid, IssueCode, NotFound, Problem
from carnet.fhirtypes import JSON, codings, format_instant
from carnet.identifiers import (
    IDNAT_PS_OID,
    IDNAT_STRUCT_OID,
    IdentifierError,
    parse_idnat_ps,
    parse_idnat_struct,
)
from carnet.runtime import Work
from carnet.terminology import terminology

IDNAT_PS = f"urn:oid:{IDNAT_PS_OID}"
IDNAT_STRUCT = f"urn:oid:{IDNAT_STRUCT_OID}"
RPPS_SYSTEM = "http://rpps.fr"
G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
R01 = "https://mos.esante.gouv.fr/NOS/TRE_R01-EnsembleSavoirFaire-CISIS/FHIR/TRE-R01-EnsembleSavoirFaire-CISIS"
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
CSV_COLUMNS = (
    "idnat_ps",
    "family",
    "given",
    "profession_code",
    "specialty_code",
    "organization_idnat",
    "organization_name",
    "facility_type",
    "practice_setting",
)


@dataclass(slots=True)
class ImportReport:
    organizations: int = 0
    practitioners: int = 0
    roles: int = 0
    unchanged: int = 0

    def merge(self, other: ImportReport) -> None:
        self.organizations += other.organizations
        self.practitioners += other.practitioners
        self.roles += other.roles
        self.unchanged += other.unchanged


def _identifier_value(resource: JSON, system: str) -> str | None:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == system and ident.get("value"):
            return str(ident["value"])
    return None


def _id_for(resource: JSON) -> str:
    rid = resource.get("id")
    return rid if isinstance(rid, str) and _FHIR_ID.match(rid) else str(uuid.uuid4())


def _stamp(resource: JSON, rid: str, version: int, work: Work) -> str:
    resource = dict(resource)
    resource["id"] = rid
    resource["meta"] = {"versionId": str(version), "lastUpdated": format_instant(work.now)}
    resource.pop("text", None)
    return orjson.dumps(resource).decode()


def _same(existing: str, resource: JSON) -> bool:
    old = orjson.loads(existing)
    old.pop("meta", None)
    new = dict(resource)
    new.pop("meta", None)
    new.pop("text", None)
    new["id"] = old.get("id")
    return bool(old == new)


def upsert_organization(work: Work, resource: JSON, path: str = "Organization") -> tuple[Organization, bool]:
    """Create or update an Organization keyed by its IdNat_Struct; return it and whether it changed."""
    term = terminology()
    idnat = _identifier_value(resource, IDNAT_STRUCT)
    if idnat is None:
        raise Invalid.at(
            f"{path}.identifier", f"an Organization needs its IdNat_Struct ({IDNAT_STRUCT})", IssueCode.REQUIRED
        )
    try:
        parse_idnat_struct(idnat, check_luhn=work.settings.is_production)
    except IdentifierError as exc:
        raise Invalid.at(f"{path}.identifier", str(exc), IssueCode.VALUE) from exc
    if not resource.get("name"):
        raise Invalid.at(f"{path}.name", "an Organization needs a name", IssueCode.REQUIRED)
    facility = setting = None
    for concept in resource.get("type") or []:
        for coding in codings(concept):
            hit = term.facility_types.lookup(coding.get("system"), coding.get("code"))
            facility = hit.code if hit else facility
            setting_hit = term.practice_settings.lookup(coding.get("system"), coding.get("code"))
            setting = setting_hit.code if setting_hit else setting
    existing = work.session.scalar(sa.select(Organization).where(Organization.idnat_struct == idnat))
    if existing is not None:
        if _same(existing.resource, resource):
            return existing, False
        existing.version += 1
        existing.name = str(resource["name"])
        existing.facility_type = facility
        existing.practice_setting = setting
        existing.active = resource.get("active", True) is not False
        existing.updated_at = work.now
        existing.resource = _stamp(resource, existing.id, existing.version, work)
        return existing, True
    rid = _id_for(resource)
    org = Organization(
        id=rid,
        idnat_struct=idnat,
        name=str(resource["name"]),
        facility_type=facility,
        practice_setting=setting,
        active=resource.get("active", True) is not False,
        version=1,
        updated_at=work.now,
        resource=_stamp(resource, rid, 1, work),
    )
    work.session.add(org)
    work.session.flush()
    return org, True


def upsert_practitioner(work: Work, resource: JSON, path: str = "Practitioner") -> tuple[Practitioner, bool]:
    idnat = _identifier_value(resource, IDNAT_PS)
    if idnat is None:
        raise Invalid.at(f"{path}.identifier", f"a Practitioner needs its IdNat_PS ({IDNAT_PS})", IssueCode.REQUIRED)
    try:
        parsed = parse_idnat_ps(idnat, check_luhn=work.settings.is_production)
    except IdentifierError as exc:
        raise Invalid.at(f"{path}.identifier", str(exc), IssueCode.VALUE) from exc
    names = [n for n in resource.get("name") or [] if isinstance(n, dict)]
    if not names or not names[0].get("family"):
        raise Invalid.at(f"{path}.name", "a Practitioner needs a family name", IssueCode.REQUIRED)
    family = str(names[0]["family"])
    given = " ".join(names[0].get("given") or []) or None
    existing = work.session.scalar(sa.select(Practitioner).where(Practitioner.idnat_ps == idnat))
    if existing is not None:
        if _same(existing.resource, resource):
            return existing, False
        existing.version += 1
        existing.family, existing.given = family, given
        existing.active = resource.get("active", True) is not False
        existing.updated_at = work.now
        existing.resource = _stamp(resource, existing.id, existing.version, work)
        return existing, True
    rid = _id_for(resource)
    practitioner = Practitioner(
        id=rid,
        idnat_ps=idnat,
        rpps=parsed.rpps,
        family=family,
        given=given,
        active=resource.get("active", True) is not False,
        version=1,
        updated_at=work.now,
        resource=_stamp(resource, rid, 1, work),
    )
    work.session.add(practitioner)
    work.session.flush()
    return practitioner, True


def upsert_role(
    work: Work,
    resource: JSON,
    *,
    practitioner: Practitioner,
    organization: Organization | None,
    path: str = "PractitionerRole",
) -> tuple[PractitionerRole, bool]:
    term = terminology()
    problems: list[Problem] = []
    profession = None
    specialty = None
    offered: list[str] = []  # the profession codes given, for the error when none is known
    for concept in resource.get("code") or []:
        for coding in codings(concept):
            offered.append(str(coding.get("code")))
            hit = term.professions.lookup(coding.get("system"), coding.get("code"))
            profession = hit.code if hit else profession
            # Social and medico-social professions (TRE_R94) are kept as "R94:<code>".
            social = term.social_professions.lookup(coding.get("system"), coding.get("code"))
            profession = f"R94:{social.code}" if social else profession
    for concept in resource.get("specialty") or []:
        for coding in codings(concept):
            hit = term.specialties.lookup(coding.get("system"), coding.get("code"))
            specialty = hit.code if hit else specialty
            if hit is None:
                problems.append(
                    Problem(
                        f"specialty {coding.get('code')!r} is not in TRE_R01",
                        f"{path}.specialty",
                        IssueCode.CODE_INVALID,
                    )
                )
    if profession is None and offered:
        problems.append(
            Problem(
                f"profession {', '.join(repr(c) for c in offered)} is not in TRE_G15 (nor TRE_R94 for social work)",
                f"{path}.code",
                IssueCode.CODE_INVALID,
            )
        )
    elif profession is None:
        problems.append(
            Problem(
                "the profession (TRE_G15, or TRE_R94 for social work) is required", f"{path}.code", IssueCode.REQUIRED
            )
        )
    if problems:
        raise Invalid("the PractitionerRole is invalid", problems=problems, unprocessable=True)
    assert profession is not None
    resource = dict(resource)
    resource["practitioner"] = {"reference": f"Practitioner/{practitioner.id}"}
    if organization is not None:
        resource["organization"] = {"reference": f"Organization/{organization.id}"}
    existing = work.session.scalar(
        sa.select(PractitionerRole).where(
            PractitionerRole.practitioner_id == practitioner.id,
            PractitionerRole.organization_id == (organization.id if organization else None),
            PractitionerRole.profession_code == profession,
        )
    )
    if existing is not None:
        if _same(existing.resource, resource):
            return existing, False
        existing.version += 1
        existing.specialty_code = specialty
        existing.active = resource.get("active", True) is not False
        existing.updated_at = work.now
        existing.resource = _stamp(resource, existing.id, existing.version, work)
        return existing, True
    rid = _id_for(resource)
    role = PractitionerRole(
        id=rid,
        practitioner_id=practitioner.id,
        organization_id=organization.id if organization else None,
        profession_code=profession,
        specialty_code=specialty,
        active=resource.get("active", True) is not False,
        version=1,
        updated_at=work.now,
        resource=_stamp(resource, rid, 1, work),
    )
    work.session.add(role)
    work.session.flush()
    return role, True


# --------------------------------------------------------------------------------------- extracts


def _csv_row_resources(row: dict[str, str]) -> tuple[JSON | None, JSON, JSON]:
    """FHIR resources for one CSV row: (Organization or None, Practitioner, PractitionerRole)."""
    term = terminology()
    org: JSON | None = None
    if row.get("organization_idnat"):
        org = {
            "resourceType": "Organization",
            "identifier": [{"system": IDNAT_STRUCT, "value": row["organization_idnat"].strip()}],
            "name": (row.get("organization_name") or row["organization_idnat"]).strip(),
        }
        if row.get("facility_type"):
            hit = term.facility_types.codes.get(row["facility_type"].strip())
            system = (
                hit.system
                if hit
                else "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
            )
            org["type"] = [{"coding": [{"system": system, "code": row["facility_type"].strip()}]}]
    idnat = (row.get("idnat_ps") or "").strip()
    identifiers = [{"system": IDNAT_PS, "value": idnat}]
    if idnat.startswith("8"):
        identifiers.append({"system": RPPS_SYSTEM, "value": idnat[1:]})
    name: JSON = {"family": (row.get("family") or "").strip()}
    if row.get("given"):
        name["given"] = row["given"].strip().split()
    practitioner = {"resourceType": "Practitioner", "identifier": identifiers, "name": [name], "active": True}
    role: JSON = {
        "resourceType": "PractitionerRole",
        "active": True,
        "code": [{"coding": [{"system": G15, "code": (row.get("profession_code") or "").strip()}]}],
    }
    if row.get("specialty_code"):
        role["specialty"] = [{"coding": [{"system": R01, "code": row["specialty_code"].strip()}]}]
    return org, practitioner, role


def parse_extract(text: str, filename: str) -> Iterator[tuple[int, list[JSON]]]:
    """Yield (line or item number, [resources]) from a CSV or FHIR JSON directory extract."""
    stripped = text.lstrip()
    if filename.lower().endswith(".csv") or not stripped.startswith(("{", "[")):
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in ("idnat_ps", "family", "profession_code") if c not in (reader.fieldnames or [])]
        if missing:
            raise Invalid(f"the CSV extract lacks the columns {', '.join(missing)} (expected {', '.join(CSV_COLUMNS)})")
        for line, row in enumerate(reader, start=2):
            org, practitioner, role = _csv_row_resources(row)
            yield line, [r for r in (org, practitioner, role) if r is not None]
        return
    if stripped.startswith("[") or (stripped.startswith("{") and "\n{" not in stripped.strip()):
        data = orjson.loads(text)
        items = (
            data
            if isinstance(data, list)
            else (
                [e.get("resource") for e in data.get("entry") or []] if data.get("resourceType") == "Bundle" else [data]
            )
        )
        yield 1, [i for i in items if isinstance(i, dict)]
        return
    for line, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            yield line, [orjson.loads(raw)]


def import_resources(work: Work, resources: list[JSON], report: ImportReport) -> None:
    """Upsert a group of directory resources (organisations first, then practitioners, then roles)."""
    by_ref: dict[str, Organization | Practitioner] = {}
    order = {"Organization": 0, "Practitioner": 1, "PractitionerRole": 2}
    last_org: Organization | None = None
    last_practitioner: Practitioner | None = None
    for resource in sorted(resources, key=lambda r: order.get(str(r.get("resourceType")), 9)):
        kind = resource.get("resourceType")
        if kind == "Organization":
            last_org, changed = upsert_organization(work, resource)
            report.organizations += changed
            report.unchanged += not changed
            if resource.get("id"):
                by_ref[f"Organization/{resource['id']}"] = last_org
        elif kind == "Practitioner":
            last_practitioner, changed = upsert_practitioner(work, resource)
            report.practitioners += changed
            report.unchanged += not changed
            if resource.get("id"):
                by_ref[f"Practitioner/{resource['id']}"] = last_practitioner
        elif kind == "PractitionerRole":
            pref = (resource.get("practitioner") or {}).get("reference")
            oref = (resource.get("organization") or {}).get("reference")
            practitioner = by_ref.get(pref) if pref else last_practitioner
            organization = by_ref.get(oref) if oref else last_org
            if not isinstance(practitioner, Practitioner):
                raise Invalid.at("PractitionerRole.practitioner", "the role's practitioner is not in the extract")
            if organization is not None and not isinstance(organization, Organization):
                raise Invalid.at("PractitionerRole.organization", "the role's organisation is not in the extract")
            _, changed = upsert_role(work, resource, practitioner=practitioner, organization=organization)
            report.roles += changed
            report.unchanged += not changed
        else:
            raise Invalid(f"a directory extract holds Organization, Practitioner and PractitionerRole, not {kind}")


# --------------------------------------------------------------------------------------- lookups


def professional(work: Work, idnat: str, role_id: str | None = None) -> Professional | None:
    """The professional with this IdNat_PS, in the given role (or their first active one)."""
    practitioner = work.session.scalar(
        sa.select(Practitioner).where(Practitioner.idnat_ps == idnat, Practitioner.active.is_(True))
    )
    if practitioner is None:
        return None
    query = sa.select(PractitionerRole).where(
        PractitionerRole.practitioner_id == practitioner.id, PractitionerRole.active.is_(True)
    )
    if role_id is not None:
        query = query.where(PractitionerRole.id == role_id)
    role = work.session.scalars(query.order_by(PractitionerRole.id)).first()
    if role is None:
        return None
    org = work.session.get(Organization, role.organization_id) if role.organization_id else None
    display = " ".join(p for p in (practitioner.given, practitioner.family) if p)
    return Professional(
        idnat=practitioner.idnat_ps,
        practitioner_id=practitioner.id,
        role_id=role.id,
        profession=role.profession_code,
        specialty=role.specialty_code,
        organization_id=org.id if org else None,
        organization_idnat=org.idnat_struct if org else None,
        display=display,
        practice_setting=org.practice_setting if org else None,
    )


@dataclass(frozen=True, slots=True)
class OrganizationSummary:
    """What a page shows of an organisation, and the codes a deposit form starts from."""

    idnat_struct: str
    name: str
    facility_type: str | None  # TRE_R02
    practice_setting: str | None  # TRE_A01


def organization_summary(work: Work, organization_id: str | None) -> OrganizationSummary | None:
    """The organisation a professional acts for (None without one, or when it is no longer active)."""
    if organization_id is None:
        return None
    org = work.session.get(Organization, organization_id)
    if org is None or not org.active:
        return None
    return OrganizationSummary(org.idnat_struct, org.name, org.facility_type, org.practice_setting)


_MODELS: dict[str, type[Organization] | type[Practitioner] | type[PractitionerRole]] = {
    "Organization": Organization,
    "Practitioner": Practitioner,
    "PractitionerRole": PractitionerRole,
}


def read(work: Work, resource_type: str, rid: str) -> bytes:
    row = work.session.get(_MODELS[resource_type], rid)
    if not isinstance(row, Organization | Practitioner | PractitionerRole):
        raise NotFound()
    return row.resource.encode()


def search(
    work: Work,
    resource_type: str,
    *,
    identifier: tuple[str | None, str] | None = None,
    name: str | None = None,
    practitioner: str | None = None,
    organization: str | None = None,
    count: int = 20,
    offset: int = 0,
) -> tuple[int, list[bytes]]:
    """Search the directory by identifier, name, or (roles) practitioner and organisation."""
    model = _MODELS[resource_type]
    query = sa.select(model)
    if identifier is not None:
        system, value = identifier
        if model is Practitioner:
            if system in (None, IDNAT_PS):
                query = query.where(Practitioner.idnat_ps == value)
            elif system == RPPS_SYSTEM:
                query = query.where(Practitioner.rpps == value)
            else:
                query = query.where(sa.false())
        elif model is Organization:
            query = query.where(Organization.idnat_struct == value if system in (None, IDNAT_STRUCT) else sa.false())
        else:
            query = query.where(sa.false())
    if name is not None:
        pattern = f"%{name.lower()}%"
        if model is Practitioner:
            query = query.where(
                sa.or_(
                    sa.func.lower(Practitioner.family).like(pattern), sa.func.lower(Practitioner.given).like(pattern)
                )
            )
        elif model is Organization:
            query = query.where(sa.func.lower(Organization.name).like(pattern))
    if practitioner is not None and model is PractitionerRole:
        query = query.where(PractitionerRole.practitioner_id == practitioner.rsplit("/", 1)[-1])
    if organization is not None and model is PractitionerRole:
        query = query.where(PractitionerRole.organization_id == organization.rsplit("/", 1)[-1])
    total = work.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows: list[Organization | Practitioner | PractitionerRole] = list(
        work.session.scalars(query.order_by(model.id).limit(count).offset(offset))
    )
    return total, [row.resource.encode() for row in rows]
