"""Test data builders: random valid INS, Patients, DocumentReferences, CDA documents, ITI-65 bundles."""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from typing import Any

from carnet.demo.pdf import make_pdf
from carnet.fhirtypes import CS_IDENTITY_STATUS, EXT_CONSENT_ATTESTED, EXT_IDENTITY_RELIABILITY, MHD_LIST_TYPES
from carnet.identifiers import nir_key
from carnet.identifiers.ins import INS_NIR_TEST_OID

JSON = dict[str, Any]
LOINC = "http://loinc.org"
A03 = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
A07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
R02 = "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
A01 = "https://mos.esante.gouv.fr/NOS/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice"
A11 = "https://mos.esante.gouv.fr/NOS/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"
HL7_CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
_rng = random.Random()


def random_ins(oid: str = INS_NIR_TEST_OID) -> tuple[str, str]:
    """A random, structurally valid INS (matricule with its key) and its system."""
    sex = _rng.choice("12")
    body = (
        f"{sex}{_rng.randint(30, 99):02d}{_rng.randint(1, 12):02d}{_rng.randint(1, 95):02d}"
        f"{_rng.randint(1, 999):03d}{_rng.randint(1, 999):03d}"
    )
    return f"{body}{nir_key(body):02d}", f"urn:oid:{oid}"


def patient_resource(
    ins: str,
    system: str,
    *,
    family: str = "TESTEUR",
    given: str = "Camille",
    birth_date: str = "1980-06-15",
    gender: str = "female",
    attest: bool = True,
    status: str = "QUAL",
) -> JSON:
    resource: JSON = {
        "resourceType": "Patient",
        "extension": [
            {
                "url": EXT_IDENTITY_RELIABILITY,
                "extension": [{"url": "identityStatus", "valueCoding": {"system": CS_IDENTITY_STATUS, "code": status}}],
            }
        ],
        "identifier": [{"use": "official", "system": system, "value": ins}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": gender,
        "birthDate": birth_date,
    }
    if attest:
        resource["extension"].append({"url": EXT_CONSENT_ATTESTED, "valueBoolean": True})
    return resource


def pdf_bytes(marker: str = "") -> bytes:
    return make_pdf("Compte rendu de test", [f"Contenu {marker or uuid.uuid4().hex}"])


def sha1_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode()


def docref(
    ins: str,
    system: str,
    *,
    data: bytes | None = None,
    type_code: str = "11488-4",
    type_system: str = LOINC,
    class_code: str | None = "10",
    flags: tuple[str, ...] = (),
    content_type: str = "application/pdf",
    format_code: str | None = "urn:ihe:iti:xds-sd:pdf:2008",
    facility: str | None = "SA07",
    setting: str | None = "AMBULATOIRE",
    author_idnat: str = "801234567897",
    date: str = "2026-10-01T10:00:00+02:00",
    period: tuple[str, str] | None = ("2026-10-01T09:00:00+02:00", "2026-10-01T09:30:00+02:00"),
    inline: bool = True,
    url: str | None = None,
    unique_id: str | None = None,
    title: str = "Compte rendu",
    related: tuple[tuple[str, str], ...] = (),
    identifiers: tuple[tuple[str, str], ...] = (),
    with_hash: bool = True,
) -> JSON:
    """A DMP DocumentReference (ITI-105 with inline data by default; ITI-65 with ``inline=False``)."""
    data = pdf_bytes() if data is None else data
    attachment: JSON = {"contentType": content_type, "language": "fr-FR", "title": title}
    if inline:
        attachment["data"] = base64.b64encode(data).decode()
    else:
        attachment["url"] = url
    if with_hash:
        attachment["size"] = len(data)
        attachment["hash"] = sha1_b64(data)
    resource: JSON = {
        "resourceType": "DocumentReference",
        "contained": [
            {
                "resourceType": "Practitioner",
                "id": "author",
                "identifier": [{"system": IDNAT_PS, "value": author_idnat}],
            }
        ],
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": unique_id or f"urn:uuid:{uuid.uuid4()}"},
        "status": "current",
        "type": {"coding": [{"system": type_system, "code": type_code}]},
        "subject": {"reference": f"Patient?identifier={system}|{ins}"},
        "date": date,
        "author": [{"reference": "#author"}],
        "securityLabel": [{"coding": [{"system": HL7_CONF, "code": "N"}]}]
        + [{"coding": [{"system": A07, "code": f}]} for f in flags],
        "content": [{"attachment": attachment}],
        "context": {},
    }
    if class_code:
        resource["category"] = [{"coding": [{"system": A03, "code": class_code}]}]
    if format_code:
        resource["content"][0]["format"] = {"system": A11, "code": format_code}
    if facility:
        resource["context"]["facilityType"] = {"coding": [{"system": R02, "code": facility}]}
    if setting:
        resource["context"]["practiceSetting"] = {"coding": [{"system": A01, "code": setting}]}
    if period:
        resource["context"]["period"] = {"start": period[0], "end": period[1]}
    if related:
        resource["context"]["related"] = [{"identifier": {"system": s, "value": v}} for s, v in related]
    if identifiers:
        resource["identifier"] = [{"system": s, "value": v} for s, v in identifiers]
    return resource


def submission_set(ins: str, system: str, members: list[str], *, source: str = "urn:oid:1.2.250.1.999.1") -> JSON:
    return {
        "resourceType": "List",
        "extension": [
            {
                "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
                "valueIdentifier": {"value": source},
            }
        ],
        "identifier": [{"use": "usual", "system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"}],
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": MHD_LIST_TYPES, "code": "submissionset"}]},
        "subject": {"reference": f"Patient?identifier={system}|{ins}"},
        "date": "2026-10-01T10:00:00+02:00",
        "entry": [{"item": {"reference": m}} for m in members],
    }


def bundle(ins: str, system: str, docs: list[tuple[JSON, bytes, str]], *, folder: bool = False) -> JSON:
    """An ITI-65 transaction: SubmissionSet + (DocumentReference, Binary) per document (+ a Folder)."""
    entries: list[JSON] = []
    members = []
    for doc, data, content_type in docs:
        doc_url = f"urn:uuid:{uuid.uuid4()}"
        bin_url = f"urn:uuid:{uuid.uuid4()}"
        doc["content"][0]["attachment"].pop("data", None)
        doc["content"][0]["attachment"]["url"] = bin_url
        members.append(doc_url)
        entries.append({"fullUrl": doc_url, "resource": doc, "request": {"method": "POST", "url": "DocumentReference"}})
        entries.append(
            {
                "fullUrl": bin_url,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": content_type,
                    "data": base64.b64encode(data).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            }
        )
    ss_url = f"urn:uuid:{uuid.uuid4()}"
    entries.insert(
        0,
        {
            "fullUrl": ss_url,
            "resource": submission_set(ins, system, members),
            "request": {"method": "POST", "url": "List"},
        },
    )
    if folder:
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "List",
                    "status": "current",
                    "mode": "working",
                    "title": "Dossier de test",
                    "code": {"coding": [{"system": MHD_LIST_TYPES, "code": "folder"}]},
                    "subject": {"reference": f"Patient?identifier={system}|{ins}"},
                    "entry": [{"item": {"reference": m}} for m in members],
                },
                "request": {"method": "POST", "url": "List"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def cda(
    ins: str,
    oid: str = INS_NIR_TEST_OID,
    *,
    type_code: str = "11488-4",
    marker: str = "",
    author_idnat: str = "801234567897",
    doc_id: str | None = None,
    set_id: str | None = None,
    version: int = 1,
    effective: str = "20261001100000+0200",
    confidentiality: str = "N",
    parent_id: str | None = None,
    extra_header: str = "",
) -> bytes:
    """A small but complete CDA R2 document (structured body with one section)."""
    doc_id = doc_id or f"1.2.250.1.999.{_rng.randint(1, 10**9)}"
    set_id = set_id or f"1.2.250.1.999.{_rng.randint(1, 10**9)}.0"
    related = (
        (
            f'<relatedDocument typeCode="RPLC"><parentDocument><id root="{parent_id}"/></parentDocument>'
            f"</relatedDocument>"
        )
        if parent_id
        else ""
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <id root="{doc_id}"/>
  <code code="{type_code}" codeSystem="2.16.840.1.113883.6.1"/>
  <title>Compte rendu {marker}</title>
  <effectiveTime value="{effective}"/>
  <confidentialityCode code="{confidentiality}" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="{set_id}"/>
  <versionNumber value="{version}"/>
  <recordTarget><patientRole><id root="{oid}" extension="{ins}"/>
    <patient><name><family>TESTEUR</family><given>Camille</given></name>
      <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="19800615"/></patient>
  </patientRole></recordTarget>
  <author><time value="{effective}"/><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="{author_idnat}"/>
    <assignedPerson><name><family>MEDIONI</family></name></assignedPerson></assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization><id root="1.2.250.1.71.4.2.2" extension="1440000289"/>
  </representedCustodianOrganization></assignedCustodian></custodian>
  <documentationOf><serviceEvent><effectiveTime><low value="20261001090000+0200"/><high value="20261001093000+0200"/></effectiveTime>
    <performer typeCode="PRF"><assignedEntity><id root="1.2.250.1.71.4.2.1" extension="{author_idnat}"/>
      <representedOrganization><standardIndustryClassCode code="AMBULATOIRE" codeSystem="1.2.250.1.213.1.1.4.9"/>
      </representedOrganization></assignedEntity></performer></serviceEvent></documentationOf>
  {related}{extra_header}
  <componentOf><encompassingEncounter><effectiveTime value="20261001"/><location><healthCareFacility>
    <code code="SA07" codeSystem="1.2.250.1.71.4.2.4"/></healthCareFacility></location></encompassingEncounter></componentOf>
  <component><structuredBody><component><section><title>Observations</title>
    <text>Observation clinique {marker}</text></section></component></structuredBody></component>
</ClinicalDocument>
""".encode()


CONSENT_KIND = "https://carnet.health/fhir/CodeSystem/consent-kind"
IDNAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


def consent(
    patient_id: str,
    kind: str,
    *,
    provision: str = "permit",
    idnat: str | None = None,
    system: str = IDNAT_PS,
    start: str | None = None,
    end: str | None = None,
    masked_label: bool = False,
) -> JSON:
    """A Consent of ``kind`` (Carnet's consent-kind code system) on ``patient_id``, naming ``idnat`` (an
    IdNat_PS, or with ``system`` IDNAT_STRUCT an organisation) as its actor, with an optional period."""
    resource: JSON = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": CONSENT_KIND, "code": kind}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "provision": {"type": provision},
    }
    if idnat:
        resource["provision"]["actor"] = [
            {
                "role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
                "reference": {"identifier": {"system": system, "value": idnat}},
            }
        ]
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        resource["provision"]["period"] = period
    if masked_label:
        resource["provision"]["securityLabel"] = [{"system": A07, "code": "MASQUE_PS"}]
    return resource


def signing_keys(kid: str = "k1") -> str:
    """A fresh Ed25519 JSON Web Key Set (private), as CARNET_SIGNING_KEYS expects."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from joserfc.jwk import OKPKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = OKPKey.import_key(pem, {"kid": kid, "use": "sig", "alg": "Ed25519"})
    return json.dumps({"keys": [key.as_dict(private=True)]})
