"""The directory as people read it: a professional's name, profession and organisation, and a search by
name or RPPS for the patient who wants to authorize someone.

Directory data is public (the RPPS/FINESS annuaire); these functions read it as it is, for display.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

from carnet.directory.models import Organization, Practitioner, PractitionerRole
from carnet.runtime import Work
from carnet.terminology import terminology

DOCTOR_PROFESSIONS = ("10", "40")  # médecins, chirurgiens-dentistes: "Dr"
MAX_RESULTS = 20


@dataclass(frozen=True, slots=True)
class Card:
    """One professional as a patient sees them."""

    idnat: str
    rpps: str | None
    name: str
    profession_code: str | None
    profession: str | None  # TRE_G15 display
    organization: str | None
    organization_idnat: str | None
    active: bool = True

    @property
    def title(self) -> str:
        """The name, with "Dr" for doctors and dentists."""
        return f"Dr {self.name}" if self.profession_code in DOCTOR_PROFESSIONS else self.name


def _card(practitioner: Practitioner, role: PractitionerRole | None, org: Organization | None) -> Card:
    professions = terminology().professions.codes
    code = role.profession_code if role is not None else None
    coding = professions.get(code or "")
    return Card(
        idnat=practitioner.idnat_ps,
        rpps=practitioner.rpps,
        name=" ".join(p for p in (practitioner.given, practitioner.family) if p),
        profession_code=code,
        profession=coding.display if coding is not None else code,
        organization=org.name if org is not None else None,
        organization_idnat=org.idnat_struct if org is not None else None,
        active=practitioner.active,
    )


def _query() -> sa.Select[Practitioner, PractitionerRole, Organization]:
    return (
        sa.select(Practitioner, PractitionerRole, Organization)
        .outerjoin(
            PractitionerRole,
            sa.and_(PractitionerRole.practitioner_id == Practitioner.id, PractitionerRole.active.is_(True)),
        )
        .outerjoin(Organization, Organization.id == PractitionerRole.organization_id)
    )


def cards(work: Work, idnats: set[str] | list[str]) -> dict[str, Card]:
    """Cards of these professionals (their first active role), keyed by IdNat_PS; unknown ones are absent."""
    wanted = sorted({i for i in idnats if i})
    if not wanted:
        return {}
    found: dict[str, Card] = {}
    rows = work.session.execute(
        _query().where(Practitioner.idnat_ps.in_(wanted)).order_by(Practitioner.idnat_ps, PractitionerRole.id)
    )
    for practitioner, role, org in rows:
        found.setdefault(practitioner.idnat_ps, _card(practitioner, role, org))
    return found


def organizations(work: Work, idnats: set[str] | list[str]) -> dict[str, str]:
    """Names of organisations by IdNat_Struct."""
    wanted = sorted({i for i in idnats if i})
    if not wanted:
        return {}
    return dict(
        work.session.execute(
            sa.select(Organization.idnat_struct, Organization.name).where(Organization.idnat_struct.in_(wanted))
        )
    )


def search_professionals(work: Work, *, text: str, limit: int = MAX_RESULTS) -> list[Card]:
    """Active professionals whose name contains ``text``, or whose RPPS / IdNat_PS is ``text``."""
    text = " ".join(text.split())[:100]
    if len(text) < 2:
        return []
    compact = re.sub(r"\s", "", text)
    query = _query().where(Practitioner.active.is_(True))
    if compact.isdigit():
        query = query.where(sa.or_(Practitioner.rpps == compact, Practitioner.idnat_ps == compact))
    else:
        conditions = []
        for word in text.lower().split()[:4]:
            pattern = f"%{word.replace('%', '').replace('_', '')}%"
            conditions.append(
                sa.or_(
                    sa.func.lower(Practitioner.family).like(pattern), sa.func.lower(Practitioner.given).like(pattern)
                )
            )
        query = query.where(*conditions)
    rows = work.session.execute(
        query.order_by(Practitioner.family, Practitioner.given, Practitioner.idnat_ps, PractitionerRole.id)
    )
    found: dict[str, Card] = {}
    for practitioner, role, org in rows:
        if practitioner.idnat_ps not in found:
            found[practitioner.idnat_ps] = _card(practitioner, role, org)
        if len(found) >= limit:
            break
    return list(found.values())
