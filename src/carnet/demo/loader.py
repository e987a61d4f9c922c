"""``carnet demo``: load the personas, their records and documents. Running it twice changes nothing."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass, field
from importlib import resources

import sqlalchemy as sa

from carnet.access.models import AccessGrant
from carnet.accounts import service as accounts
from carnet.accounts.models import Account, AccountKind, Client, ClientKind, Credential
from carnet.auth import patients
from carnet.auth.actor import SYSTEM_ACTOR
from carnet.auth.authenticate import actor_for
from carnet.consents import service as consents
from carnet.demo.pdf import make_pdf
from carnet.demo.personas import (
    BY_KEY,
    DEMO_PASSWORD,
    ORGANIZATIONS,
    PERSONAS,
    Persona,
    demo_totp_secret,
    persona_uuid,
    token_claims,
)
from carnet.directory import service as directory
from carnet.directory.models import Organization
from carnet.documents import service as documents
from carnet.documents.cda import read_header
from carnet.fhirtypes import CS_IDENTITY_STATUS, EXT_IDENTITY_RELIABILITY, JSON, format_instant
from carnet.identifiers import parse_ins
from carnet.records import service as records
from carnet.runtime import Runtime, Work
from carnet.storage.models import SearchToken

G15 = directory.G15
R01 = directory.R01
R02 = "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
A01 = "https://mos.esante.gouv.fr/NOS/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice"
LOINC = "http://loinc.org"
A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
A07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
A00 = "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"
R94 = "https://mos.esante.gouv.fr/NOS/TRE_R94-ProfessionSocial/FHIR/TRE-R94-ProfessionSocial"


@dataclass(frozen=True, slots=True)
class DemoDocument:
    key: str
    patient: str
    depositor: str
    cda: str | None = None
    title: str = ""
    type_code: str = ""
    type_system: str = LOINC
    facility: str = "SA07"
    setting: str = "AMBULATOIRE"
    flags: tuple[str, ...] = ()
    days_ago: int = 30
    lines: tuple[str, ...] = ()


DOCUMENTS = (
    DemoDocument("vsm", "dominique_patient", "dr_medioni", cda="VSM_1.4_2022.01.xml"),
    DemoDocument("bio-tsh", "dominique_patient", "dr_camparini", cda="BIO-CR-BIO_2024.01_TSH_1.xml"),
    DemoDocument("bio-n1", "dominique_patient", "dr_camparini", cda="DOC_NON_STRUCTURE_CDA-R2-N1.xml"),
    DemoDocument("ldl-ees", "dominique_patient", "dpi_saint_roch", cda="LDL-EES_2022.01.xml"),
    DemoDocument("vac", "dominique_patient", "dr_medioni", cda="VAC_2023.01.xml"),
    DemoDocument("trod", "dominique_patient", "ph_didot", cda="BIO-TROD_2024.01_Angine.xml"),
    DemoDocument("cnam-hr", "dominique_patient", "cnam_feed", cda="CNAM-HR_2021.01_sans-info.xml"),
    DemoDocument("presc", "dominique_patient", "dr_medioni", cda="eP-MED-DM_2024.01_PosoNonStruct.xml"),
    DemoDocument(
        "cr-cardio",
        "dominique_patient",
        "dpi_saint_roch",
        title="Compte rendu de consultation de cardiologie",
        type_code="11488-4",
        facility="SA01",
        setting="ETABLISSEMENT",
        days_ago=12,
        lines=(
            "Consultation de cardiologie du Dr Claire Lambert.",
            "Echocardiographie normale.",
            "Pas de traitement supplementaire.",
        ),
    ),
    DemoDocument(
        "anapath",
        "dominique_patient",
        "dpi_saint_roch",
        title="Compte rendu d'anatomie pathologique",
        type_code="60568-3",
        facility="SA01",
        setting="ETABLISSEMENT",
        flags=("INVISIBLE_PATIENT",),
        days_ago=3,
        lines=("Resultat a annoncer lors de la consultation du Dr Lambert.",),
    ),
    DemoDocument(
        "psy",
        "dominique_patient",
        "dr_medioni",
        title="Compte rendu de consultation (masqué)",
        type_code="11488-4",
        flags=("MASQUE_PS",),
        days_ago=200,
        lines=("Document masque aux professionnels a la demande de la patiente.",),
    ),
    DemoDocument(
        "directives",
        "dominique_patient",
        "dominique_patient",
        title="Mes directives anticipées",
        type_code="EXPPAT_3",
        type_system=A05,
        facility="EXP_PATIENT",
        setting="EXP_PATIENT",
        days_ago=90,
        lines=("Directives anticipees redigees par la patiente.",),
    ),
    DemoDocument(
        "jean-cr",
        "jean_patient",
        "dr_medioni",
        title="Compte rendu de consultation",
        type_code="11488-4",
        days_ago=20,
        lines=("Consultation de suivi, tension arterielle 13/8.",),
    ),
    DemoDocument(
        "jean-disp",
        "jean_patient",
        "ph_didot",
        title="Dispensation médicamenteuse",
        type_code="60593-1",
        facility="SA33",
        days_ago=19,
        lines=("Dispensation: amlodipine 5 mg.",),
    ),
    DemoDocument(
        "lea-vac",
        "lea_minor",
        "dr_medioni",
        title="Note de vaccination HPV",
        type_code="87273-9",
        days_ago=60,
        lines=("Gardasil 9, premiere dose.",),
    ),
    DemoDocument(
        "lea-secret",
        "lea_minor",
        "dr_medioni",
        title="Consultation (confidentielle)",
        type_code="11488-4",
        flags=("INVISIBLE_REPRESENTANTS_LEGAUX",),
        days_ago=10,
        lines=("Consultation demandee par la patiente mineure, non visible par ses representants.",),
    ),
)


@dataclass(slots=True)
class DemoReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def _patient_resource(persona: Persona) -> JSON:
    assert persona.ins and persona.ins_oid and persona.family
    return {
        "resourceType": "Patient",
        "extension": [
            {
                "url": EXT_IDENTITY_RELIABILITY,
                "extension": [{"url": "identityStatus", "valueCoding": {"system": CS_IDENTITY_STATUS, "code": "QUAL"}}],
            }
        ],
        "identifier": [{"use": "official", "system": f"urn:oid:{persona.ins_oid}", "value": persona.ins}],
        "name": [{"use": "official", "family": persona.family, "given": list(persona.given)}],
        "gender": persona.gender,
        "birthDate": persona.birth_date,
    }


def _directory(work: Work, report: DemoReport) -> None:
    for org in ORGANIZATIONS:
        _, changed = directory.upsert_organization(
            work,
            {
                "resourceType": "Organization",
                "id": org.key.replace("_", "-"),
                "identifier": [{"system": directory.IDNAT_STRUCT, "value": org.idnat}],
                "name": org.name,
                "active": True,
                "type": [{"coding": [{"system": R02, "code": org.facility_type}]}]
                + ([{"coding": [{"system": A01, "code": org.practice_setting}]}] if org.practice_setting else []),
            },
        )
        (report.created if changed else report.existing).append(f"Organization {org.key}")
    for persona in PERSONAS:
        if persona.kind != "professional":
            continue
        assert persona.idnat and persona.family and persona.profession
        identifiers = [{"system": directory.IDNAT_PS, "value": persona.idnat}]
        if persona.idnat.startswith("8"):
            identifiers.append({"system": directory.RPPS_SYSTEM, "value": persona.idnat[1:]})
        practitioner, changed = directory.upsert_practitioner(
            work,
            {
                "resourceType": "Practitioner",
                "id": persona.key.replace("_", "-"),
                "identifier": identifiers,
                "active": True,
                "name": [
                    {
                        "family": persona.family,
                        "given": list(persona.given),
                        "prefix": ["Dr"] if persona.profession == "10" else [],
                    }
                ],
            },
        )
        (report.created if changed else report.existing).append(f"Practitioner {persona.key}")
        organization = work.session.scalar(
            sa.select(Organization).where(Organization.id == (persona.organization or "").replace("_", "-"))
        )
        profession = (
            {"system": R94, "code": persona.profession.removeprefix("R94:")}
            if persona.profession.startswith("R94:")
            else {"system": G15, "code": persona.profession}
        )
        role: JSON = {
            "resourceType": "PractitionerRole",
            "id": f"{persona.key.replace('_', '-')}-role",
            "active": True,
            "code": [{"coding": [profession]}],
        }
        if persona.specialty:
            role["specialty"] = [{"coding": [{"system": R01, "code": persona.specialty}]}]
        directory.upsert_role(work, role, practitioner=practitioner, organization=organization)


def _people(work: Work, report: DemoReport) -> None:
    for persona in PERSONAS:
        if persona.kind == "patient":
            assert persona.ins and persona.ins_oid
            ins = parse_ins(f"urn:oid:{persona.ins_oid}", persona.ins, allow_test=True)
            record = records.find_by_ins(work, ins)
            if record is None:
                record = records.create_record(work, actor=SYSTEM_ACTOR, patient=_patient_resource(persona))
                report.created.append(f"Record {persona.key}")
            else:
                report.existing.append(f"Record {persona.key}")
            if work.session.get(Account, persona_uuid(persona.key)) is None:
                accounts.create_account(
                    work,
                    kind=AccountKind.PATIENT,
                    label=persona.key,
                    record_id=record.id,
                    account_id=persona_uuid(persona.key),
                )
        elif persona.kind in ("legal-representative", "operator", "auditor"):
            kind = {
                "legal-representative": AccountKind.REPRESENTATIVE,
                "operator": AccountKind.OPERATOR,
                "auditor": AccountKind.AUDITOR,
            }[persona.kind]
            if work.session.get(Account, persona_uuid(persona.key)) is None:
                accounts.create_account(work, kind=kind, label=persona.key, account_id=persona_uuid(persona.key))
                report.created.append(f"Account {persona.key}")
            else:
                report.existing.append(f"Account {persona.key}")
        elif persona.kind in ("software", "insurer") and persona.client_id:
            _client(work, persona, report)
    work.session.flush()
    for persona in PERSONAS:
        for child in persona.represents:
            child_persona = BY_KEY[child]
            assert child_persona.ins and child_persona.ins_oid
            record = records.find_by_ins(
                work, parse_ins(f"urn:oid:{child_persona.ins_oid}", child_persona.ins, allow_test=True)
            )
            assert record is not None
            relationship = "MTH" if persona.gender == "female" else "FTH"
            accounts.add_representation(
                work, account_id=persona_uuid(persona.key), record_id=record.id, relationship=relationship
            )


# (patient, kind, professional): who the demo patients' records are open to.
TEAM = ("dr_lambert", "dr_camparini", "ph_didot", "inf_moreau")
DEMO_GRANTS: tuple[tuple[str, str, str], ...] = (
    *((patient, "medecin-traitant", "dr_medioni") for patient in ("dominique_patient", "jean_patient", "lea_minor")),
    *((patient, "care-team", pro) for patient in ("dominique_patient", "jean_patient", "lea_minor") for pro in TEAM),
    ("dominique_patient", "care-team", "dent_petit"),
    ("dominique_patient", "care-team", "as_leroy"),
    ("dominique_patient", "authorization", "dr_girard"),
    ("dominique_patient", "block", "dr_noir"),
    ("dominique_patient", "administrator", "dr_roux"),
)


def _grants(work: Work, report: DemoReport) -> None:
    for patient_key, kind, pro_key in DEMO_GRANTS:
        patient, pro = BY_KEY[patient_key], BY_KEY[pro_key]
        assert patient.ins and patient.ins_oid and pro.idnat
        record = records.find_by_ins(work, parse_ins(f"urn:oid:{patient.ins_oid}", patient.ins, allow_test=True))
        assert record is not None
        exists = work.session.scalar(
            sa.select(AccessGrant.id).where(
                AccessGrant.record_id == record.id,
                AccessGrant.kind == kind,
                AccessGrant.subject_value == pro.idnat,
                AccessGrant.active.is_(True),
            )
        )
        label = f"Consent {kind} {patient_key}/{pro_key}"
        if exists:
            report.existing.append(label)
            continue
        declared = kind in (consents.Kind.CARE_TEAM.value, consents.Kind.MEDECIN_TRAITANT.value)
        subject, extra = token_claims(pro if declared else patient)
        actor = actor_for(work, {"sub": subject, **extra})
        resource = consents.declaration(consents.Kind(kind), str(record.id), pro.idnat)
        if kind == consents.Kind.BLOCK.value:
            resource["provision"]["type"] = "deny"
        consents.create(work, actor=actor, resource=resource)
        report.created.append(label)


def _client(work: Work, persona: Persona, report: DemoReport) -> None:
    assert persona.client_id is not None
    if work.session.get(Client, persona.client_id) is not None:
        report.existing.append(f"Client {persona.key}")
        return
    accounts.create_client(
        work,
        client_id=persona.client_id,
        name=persona.display,
        kind=ClientKind.SOFTWARE if persona.kind == "software" else ClientKind.INSURER,
        organization_id=(persona.organization or "").replace("_", "-") or None,
    )
    report.created.append(f"Client {persona.key}")


def _unique_id(doc: DemoDocument) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'carnet-demo:' + doc.key)}"


def _document_resource(doc: DemoDocument, now: dt.datetime) -> tuple[JSON, bytes]:
    patient = BY_KEY[doc.patient]
    depositor = BY_KEY[doc.depositor]
    author_persona = BY_KEY[depositor.acts_for] if depositor.acts_for else depositor
    contained: list[JSON] = []
    subject = {"identifier": {"system": f"urn:oid:{patient.ins_oid}", "value": patient.ins}}
    if doc.cda:
        data = resources.files("carnet.demo").joinpath("data", "cda", doc.cda).read_bytes()
        resource: JSON = {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": subject,
            "content": [{"attachment": {"contentType": "text/xml", "language": "fr-FR"}}],
        }
        return resource, data
    created = now - dt.timedelta(days=doc.days_ago)
    data = make_pdf(
        doc.title.encode("latin-1", "replace").decode("latin-1"),
        [*doc.lines, f"Patient: {patient.display}", f"Date: {created.date().isoformat()}"],
    )
    if author_persona.kind == "patient":
        contained.append(
            {
                "resourceType": "Patient",
                "id": "author",
                "identifier": [{"system": f"urn:oid:{patient.ins_oid}", "value": patient.ins}],
            }
        )
    else:
        contained.append(
            {
                "resourceType": "Practitioner",
                "id": "author",
                "identifier": [{"system": directory.IDNAT_PS, "value": author_persona.idnat}],
                "name": [{"family": author_persona.family, "given": list(author_persona.given)}],
            }
        )
    labels: list[JSON] = [{"coding": [{"system": A07, "code": flag}]} for flag in doc.flags]
    facility_system = A00 if doc.facility == "EXP_PATIENT" else R02
    setting_system = A00 if doc.setting == "EXP_PATIENT" else A01
    resource = {
        "resourceType": "DocumentReference",
        "contained": contained,
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": _unique_id(doc)},
        "status": "current",
        "type": {"coding": [{"system": doc.type_system, "code": doc.type_code}]},
        "subject": subject,
        "date": format_instant(created),
        "author": [{"reference": "#author"}],
        "securityLabel": labels,
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "language": "fr-FR",
                    "title": doc.title,
                    "creation": format_instant(created),
                }
            }
        ],
        "context": {
            "period": {"start": format_instant(created - dt.timedelta(hours=1)), "end": format_instant(created)},
            "facilityType": {"coding": [{"system": facility_system, "code": doc.facility}]},
            "practiceSetting": {"coding": [{"system": setting_system, "code": doc.setting}]},
        },
    }
    return resource, data


def _already_deposited(work: Work, unique_id: str) -> bool:
    return (
        work.session.scalar(
            sa.select(SearchToken.resource_id)
            .where(SearchToken.param == "master", SearchToken.value_hash == work.store.token("master", unique_id))
            .limit(1)
        )
        is not None
    )


def _cda_unique_id(data: bytes) -> str:
    header = read_header(data, "demo")
    assert header.document_id is not None
    return header.document_id.unique_id


def _documents(runtime: Runtime, report: DemoReport) -> None:
    for doc in DOCUMENTS:
        with runtime.work() as work:
            resource, data = _document_resource(doc, work.now)
            unique = f"urn:oid:{_cda_unique_id(data)}" if doc.cda else _unique_id(doc)
            if _already_deposited(work, documents.unique_key(unique)):
                report.existing.append(f"Document {doc.key}")
                continue
            subject, extra = token_claims(BY_KEY[doc.depositor])
            actor = actor_for(work, {"sub": subject, **extra})
            resource["content"][0]["attachment"]["data"] = base64.b64encode(data).decode()
            inline = documents.parse_inline_data(resource, "DocumentReference")
            documents.publish(work, actor=actor, resource=resource, data=inline)
            report.created.append(f"Document {doc.key}")


def load_demo_directory_and_people(runtime: Runtime, report: DemoReport | None = None) -> DemoReport:
    """The personas without their documents: directory, records, accounts, clients (used by the tests)."""
    report = report or DemoReport()
    with runtime.work() as work:
        _directory(work, report)
        _people(work, report)
    with runtime.work() as work:
        _grants(work, report)
    return report


def _credentials(runtime: Runtime, report: DemoReport) -> None:
    """Demo patients and legal representatives get a password and a TOTP secret (once: a password
    changed through the API stays)."""
    with runtime.work() as work:
        for persona in PERSONAS:
            if persona.kind not in ("patient", "legal-representative"):
                continue
            account_id = persona_uuid(persona.key)
            if work.session.get(Credential, account_id) is not None:
                report.existing.append(f"Credentials {persona.key}")
                continue
            patients.set_credentials(work, account_id, DEMO_PASSWORD, demo_totp_secret(persona.key))
            report.created.append(f"Credentials {persona.key}")


def load_demo(runtime: Runtime) -> DemoReport:
    """Create (or confirm) every persona, record, account, client, credential and document of the demo."""
    report = load_demo_directory_and_people(runtime)
    _credentials(runtime, report)
    _documents(runtime, report)
    return report
