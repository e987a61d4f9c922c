"""The named demo personas, shared by ``carnet demo``, ``carnet personas``, ``carnet token`` and the tests.

Patients carry test/demo INS (never real ones); professionals reuse the ANS test identities that
author the example CDA documents, plus invented ones with Luhn-valid RPPS numbers.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, field

from carnet.identifiers.ins import INS_NIR_DEMO_OID, INS_NIR_TEST_OID

NAMESPACE = uuid.UUID("5b0e7a4c-6f7e-4b9a-9d0c-2f1e3c4d5a6b")


# Patients and legal representatives of the demo sign in with their key as login, this password and
# the TOTP code of ``demo_totp_secret`` (``carnet totp --as <key>`` prints it). Never outside the demo.
DEMO_PASSWORD = "Carnet-demo-2026"  # noqa: S105 - published demo credential, refused in production


def demo_totp_secret(key: str) -> str:
    """A stable base32 TOTP secret per demo persona (so an authenticator enrolled once keeps working)."""
    return base64.b32encode(hashlib.sha256(f"carnet-demo-totp:{key}".encode()).digest()[:20]).decode()


def persona_uuid(key: str) -> uuid.UUID:
    """Stable ids for demo accounts, so tokens and links survive a re-run of ``carnet demo``."""
    return uuid.uuid5(NAMESPACE, key)


@dataclass(frozen=True, slots=True)
class OrganizationSpec:
    key: str
    idnat: str
    name: str
    facility_type: str
    practice_setting: str | None = None
    role: str = "organisation"

    def identifiers(self) -> dict[str, str]:
        return {"IdNat_Struct": self.idnat}


@dataclass(frozen=True, slots=True)
class Persona:
    key: str
    kind: str  # patient, legal-representative, professional, software, insurer, operator, auditor
    role: str
    display: str
    ins: str | None = None
    ins_oid: str | None = None
    idnat: str | None = None
    profession: str | None = None
    specialty: str | None = None
    organization: str | None = None
    birth_date: str | None = None
    gender: str | None = None
    family: str | None = None
    given: tuple[str, ...] = ()
    represents: tuple[str, ...] = ()
    acts_for: str | None = None
    client_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def identifiers(self) -> dict[str, str]:
        ids: dict[str, str] = {}
        if self.ins:
            ids["INS"] = self.ins
            ids["INS-system"] = f"urn:oid:{self.ins_oid}"
        if self.idnat:
            ids["IdNat_PS"] = self.idnat
            if self.idnat.startswith("8"):
                ids["RPPS"] = self.idnat[1:]
        if self.client_id:
            ids["client_id"] = self.client_id
        if self.kind in ("patient", "legal-representative", "operator", "auditor"):
            ids["account"] = str(persona_uuid(self.key))
        return ids


ORGANIZATIONS = (
    OrganizationSpec("hopital_saint_roch", "1440000289", "Hôpital Saint-Roch (démonstration)", "SA01", role="hospital"),
    OrganizationSpec("cabinet_medioni", "349912345600011", "Cabinet du Dr Medioni", "SA07", role="GP practice"),
    OrganizationSpec("labo_charmes", "1120459876", "Laboratoire des charmes", "SA25", role="medical laboratory"),
    OrganizationSpec("pharmacie_4_cantons", "2801234567", "Pharmacie des 4 cantons", "SA33", role="pharmacy"),
    OrganizationSpec(
        "cabinet_infirmier", "349912345600029", "Cabinet infirmier du Marché", "SA08", role="nursing practice"
    ),
    OrganizationSpec(
        "cabinet_gare", "349912345600037", "Maison de santé de la Gare", "SA52", role="multi-professional health centre"
    ),
    OrganizationSpec(
        "cabinet_dentaire", "349912345600045", "Cabinet dentaire des Lilas", "SA07", role="dental practice"
    ),
    OrganizationSpec(
        "service_social", "349912345600052", "Service social départemental", "SA41", role="social services"
    ),
    OrganizationSpec(
        "samu_44", "1440000297", "SAMU 44 - Centre 15", "SA01", "SAMU_SMUR", role="emergency medical regulation (SAMU)"
    ),
)
ORGANIZATIONS_BY_KEY = {o.key: o for o in ORGANIZATIONS}

PERSONAS = (
    Persona(
        "dominique_patient",
        "patient",
        "patient (adult, ANS test identity)",
        "Dominique PAT-TROIS",
        ins="279035121518989",
        ins_oid=INS_NIR_TEST_OID,
        birth_date="1979-03-28",
        gender="female",
        family="PAT-TROIS",
        given=("DOMINIQUE", "MARIE-LOUISE"),
        represents=("lea_minor",),
    ),
    Persona(
        "jean_patient",
        "patient",
        "patient (adult)",
        "Jean LEFÈVRE",
        ins="155037511223327",
        ins_oid=INS_NIR_DEMO_OID,
        birth_date="1955-03-02",
        gender="male",
        family="LEFÈVRE",
        given=("JEAN",),
    ),
    Persona(
        "lea_minor",
        "patient",
        "patient (minor, 14)",
        "Léa PAT-TROIS",
        ins="212054410902154",
        ins_oid=INS_NIR_DEMO_OID,
        birth_date="2012-05-14",
        gender="female",
        family="PAT-TROIS",
        given=("LÉA",),
    ),
    Persona(
        "marc_parent",
        "legal-representative",
        "second legal representative of Léa",
        "Marc DURAND",
        represents=("lea_minor",),
    ),
    Persona(
        "dr_medioni",
        "professional",
        "médecin traitant (general practitioner)",
        "Dr Stéphane MEDIONI",
        idnat="801234567897",
        profession="10",
        specialty="SM26",
        organization="cabinet_medioni",
        family="MEDIONI",
        given=("Stéphane",),
    ),
    Persona(
        "dr_lambert",
        "professional",
        "hospital doctor (cardiology)",
        "Dr Claire LAMBERT",
        idnat="810001745206",
        profession="10",
        specialty="SM04",
        organization="hopital_saint_roch",
        family="LAMBERT",
        given=("Claire",),
    ),
    Persona(
        "dr_haddad",
        "professional",
        "emergency doctor",
        "Dr Karim HADDAD",
        idnat="810002864303",
        profession="10",
        specialty="SM59",
        organization="hopital_saint_roch",
        family="HADDAD",
        given=("Karim",),
        extra={"service": "urgences"},
    ),
    Persona(
        "dr_camparini",
        "professional",
        "medical biologist",
        "Dr Marcel CAMPARINI",
        idnat="801234534765",
        profession="10",
        specialty="SM03",
        organization="labo_charmes",
        family="CAMPARINI",
        given=("Marcel",),
    ),
    Persona(
        "ph_didot",
        "professional",
        "pharmacist",
        "Pierre DIDOT",
        idnat="807655473259",
        profession="21",
        organization="pharmacie_4_cantons",
        family="DIDOT",
        given=("Pierre",),
    ),
    Persona(
        "inf_moreau",
        "professional",
        "nurse",
        "Inès MOREAU",
        idnat="810003911509",
        profession="60",
        organization="cabinet_infirmier",
        family="MOREAU",
        given=("Inès",),
    ),
    Persona(
        "dr_roux",
        "professional",
        "administrator professional designated by Dominique",
        "Dr Sophie ROUX",
        idnat="810005123459",
        profession="10",
        specialty="SM26",
        organization="cabinet_gare",
        family="ROUX",
        given=("Sophie",),
    ),
    Persona(
        "dr_girard",
        "professional",
        "general practitioner authorized by Dominique",
        "Dr Paul GIRARD",
        idnat="810006234560",
        profession="10",
        specialty="SM26",
        organization="cabinet_gare",
        family="GIRARD",
        given=("Paul",),
    ),
    Persona(
        "dr_blanc",
        "professional",
        "general practitioner with no authorization",
        "Dr Marc BLANC",
        idnat="810007345670",
        profession="10",
        specialty="SM26",
        organization="cabinet_gare",
        family="BLANC",
        given=("Marc",),
    ),
    Persona(
        "dr_noir",
        "professional",
        "general practitioner blocked by Dominique",
        "Dr Hugo NOIR",
        idnat="810008456781",
        profession="10",
        specialty="SM26",
        organization="cabinet_gare",
        family="NOIR",
        given=("Hugo",),
    ),
    Persona(
        "dent_petit",
        "professional",
        "dentist in Dominique's care team",
        "Dr Alice PETIT",
        idnat="810009567891",
        profession="40",
        organization="cabinet_dentaire",
        family="PETIT",
        given=("Alice",),
    ),
    Persona(
        "as_leroy",
        "professional",
        "social worker in Dominique's care team",
        "Nadia LEROY",
        idnat="810010678901",
        profession="R94:41",
        organization="service_social",
        family="LEROY",
        given=("Nadia",),
    ),
    Persona(
        "dr_regul",
        "professional",
        "médecin régulateur (SAMU - centre 15)",
        "Dr Yanis MERCIER",
        idnat="810011789012",
        profession="10",
        specialty="SM59",
        organization="samu_44",
        family="MERCIER",
        given=("Yanis",),
    ),
    Persona(
        "dpi_saint_roch",
        "software",
        "hospital software (DPI) acting for Dr Lambert",
        "DPI Hôpital Saint-Roch",
        client_id="dpi-saint-roch",
        acts_for="dr_lambert",
        organization="hopital_saint_roch",
    ),
    Persona(
        "cnam_feed",
        "insurer",
        "insurer feed (24 months of reimbursed care)",
        "Assurance Maladie",
        client_id="cnam-feed",
    ),
    Persona("ops_admin", "operator", "platform operator", "Opérateur Carnet"),
    Persona("auditeur", "auditor", "auditor (reads every trace, no clinical content)", "Auditeur Carnet"),
)

BY_KEY = {p.key: p for p in PERSONAS}


def token_claims(persona: Persona) -> tuple[str, dict[str, object]]:
    """The subject (and extra claims) a development token for this persona carries."""
    extra: dict[str, object] = {"persona": persona.key}
    if persona.kind in ("patient", "legal-representative", "operator", "auditor"):
        return f"account:{persona_uuid(persona.key)}", extra
    if persona.kind == "professional":
        return f"pro:{persona.idnat}", extra
    if persona.kind == "software":
        assert persona.acts_for is not None
        extra["act"] = {"sub": f"pro:{BY_KEY[persona.acts_for].idnat}"}
        return f"client:{persona.client_id}", extra
    return f"client:{persona.client_id}", extra
