"""The access matrix, through the HTTP API: every persona × every action × every kind of document.

The expectations are written out by hand from the rules (DESIGN.md §3, reference/dmp.md §3.6), not
computed by the policy under test. Dominique's demo record is the stage: her médecin traitant is
dr_medioni, dr_roux is her administrator professional, dr_girard is authorized, dr_noir blocked; her
care team holds dr_lambert (hospital), dr_camparini, ph_didot (pharmacist), inf_moreau (nurse),
dent_petit (dentist) and as_leroy (social worker); dr_blanc has no relationship; dr_haddad (hospital
emergency doctor) breaks the glass and dr_regul (SAMU) accesses as the regulation centre. Léa (14) is
Dominique's daughter, with marc_parent as second legal representative.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from carnet.runtime import Runtime
from tests import factories
from tests.conftest import Api

DOMINIQUE = ("279035121518989", "urn:oid:1.2.250.1.213.1.4.10")
LEA = ("212054410902154", "urn:oid:1.2.250.1.213.1.4.11")
A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
ARCHIVED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"

# The documents on Dominique's record, all deposited by dr_lambert: (type, class, flags).
DOCS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "normal": ("11488-4", "http://loinc.org", "10", ()),
    "masked": ("11488-4", "http://loinc.org", "10", ("MASQUE_PS",)),
    "invisible-patient": ("11488-4", "http://loinc.org", "10", ("INVISIBLE_PATIENT",)),
    "residence": ("ATTEST-RESID", A05, "95", ()),
    "psychiatric": ("68599-0", "http://loinc.org", "11", ()),
    "social": ("28653-4", "http://loinc.org", "10", ()),
}
ALL = frozenset(DOCS)
NONE: frozenset[str] = frozenset()
EMERGENCY = frozenset({"normal", "invisible-patient", "psychiatric", "social"})  # masked stays masked
# Which of Dominique's documents each persona may read (read, search and retrieve alike).
READS: dict[str, frozenset[str]] = {
    "dominique_patient": ALL - {"invisible-patient"},
    "dr_medioni": ALL,  # médecin traitant: everything, matrix and masking aside
    "dr_roux": ALL,  # administrator professional
    "dr_girard": ALL - {"masked", "residence"},  # authorized doctor: the matrix excludes the residence certificate
    "dr_blanc": NONE,  # no relationship
    "dr_noir": NONE,  # blocked
    "ph_didot": frozenset({"normal", "invisible-patient"}),  # pharmacist: no psychiatric, social, residence
    "inf_moreau": frozenset({"normal", "invisible-patient"}),  # nurse
    "dent_petit": frozenset({"normal", "invisible-patient", "social"}),  # dentist: no psychiatric synthesis
    "as_leroy": frozenset({"social"}),  # social worker: social documents only
    "dr_haddad": EMERGENCY | {"masked"},  # break-glass; masked visible as dr_lambert's hospital colleague
    "dr_regul": EMERGENCY,  # regulation centre
    "dr_lambert": ALL,  # the author
    "dpi_saint_roch": ALL,  # software acting for the author
    "cnam_feed": NONE,
    "ops_admin": NONE,
    "marc_parent": NONE,  # represents Léa, not Dominique
    "lea_minor": NONE,
}
PERSONAS = sorted(READS)
# Who knows Dominique's record exists (and so gets 403 rather than 404 when refused).
KNOWS_RECORD = set(PERSONAS) - {"marc_parent", "lea_minor"}
PROFESSIONALS_FEEDING = {
    "dr_medioni",
    "dr_roux",
    "dr_girard",
    "dr_blanc",
    "ph_didot",
    "inf_moreau",
    "dent_petit",
    "as_leroy",
    "dr_haddad",
    "dr_regul",
    "dr_lambert",
    "dpi_saint_roch",
}
AUTHOR_SIDE = {"dr_lambert", "dpi_saint_roch"}


@dataclass
class Stage:
    api: Api
    patient_id: str
    lea_id: str
    docs: dict[str, str]
    binaries: dict[str, str]
    lea_docs: dict[str, str]


def _patient_id(api: Api, ins: str, system: str) -> str:
    bundle = api.get("/fhir/Patient", "dr_medioni", params={"identifier": f"{system}|{ins}"}).json()
    return str(bundle["entry"][0]["resource"]["id"])


def _deposit(api: Api, persona: str, key: str, ins: str = DOMINIQUE[0], system: str = DOMINIQUE[1]) -> Any:
    type_code, type_system, class_code, flags = DOCS[key]
    doc = factories.docref(
        ins,
        system,
        type_code=type_code,
        type_system=type_system,
        class_code=class_code,
        flags=flags,
        author_idnat=factories_idnat(persona),
    )
    response = api.publish(persona, doc)
    assert response.status_code == 201, response.text
    return response.json()


def factories_idnat(persona: str) -> str:
    from carnet.demo.personas import BY_KEY

    pro = BY_KEY[persona]
    target = BY_KEY[pro.acts_for] if pro.acts_for else pro
    return target.idnat or "801234567897"


@pytest.fixture(scope="module")
def stage(app_client: TestClient, runtime: Runtime) -> Stage:
    api = Api(app_client, runtime)
    patient_id = _patient_id(api, *DOMINIQUE)
    lea_id = _patient_id(api, *LEA)
    docs, binaries = {}, {}
    for key in DOCS:
        doc = _deposit(api, "dr_lambert", key)
        docs[key] = doc["id"]
        binaries[key] = doc["content"][0]["attachment"]["url"].split("/fhir/", 1)[1]
    lea_docs = {}
    for key, flags in (("normal", ()), ("secret", ("INVISIBLE_REPRESENTANTS_LEGAUX",))):
        lea_docs[key] = api.publish("dr_medioni", factories.docref(*LEA, flags=flags)).json()["id"]
    body: dict[str, Any] = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "mode", "valueCode": "break-glass"},
            {"name": "reason", "valueString": "patiente inconsciente aux urgences, antécédents inconnus"},
        ],
    }
    assert api.post(f"/fhir/Patient/{patient_id}/$emergency-access", "dr_haddad", body).status_code == 200
    body["parameter"][0]["valueCode"] = "regulation"
    assert api.post(f"/fhir/Patient/{patient_id}/$emergency-access", "dr_regul", body).status_code == 200
    return Stage(api, patient_id, lea_id, docs, binaries, lea_docs)


def _refused(persona: str) -> int:
    return 403 if persona in KNOWS_RECORD else 404


# ------------------------------------------------------------------------------------------ reading


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("doc", sorted(DOCS))
def test_read(stage: Stage, persona: str, doc: str) -> None:
    response = stage.api.get(f"/fhir/DocumentReference/{stage.docs[doc]}", persona)
    expected = 200 if doc in READS[persona] else 404
    assert response.status_code == expected, (persona, doc, response.text)


@pytest.mark.parametrize("persona", PERSONAS)
def test_search_returns_exactly_the_readable_documents(stage: Stage, persona: str) -> None:
    ids = ",".join(stage.docs.values())
    response = stage.api.get("/fhir/DocumentReference", persona, params={"patient": stage.patient_id, "_id": ids})
    assert response.status_code == 200
    bundle = response.json()
    found = {e["resource"]["id"] for e in bundle.get("entry", [])}
    expected = {stage.docs[d] for d in READS[persona]}
    assert found == expected, persona
    assert bundle["total"] == len(expected)


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("doc", sorted(DOCS))
def test_retrieve_bytes(stage: Stage, persona: str, doc: str) -> None:
    response = stage.api.get(f"/fhir/{stage.binaries[doc]}", persona, headers={"Accept": "application/pdf"})
    assert response.status_code == (200 if doc in READS[persona] else 404), (persona, doc)


MINOR_READS = {
    "lea_minor": {"normal", "secret"},
    "dominique_patient": {"normal"},
    "marc_parent": {"normal"},
    "dr_medioni": {"normal", "secret"},
    "jean_patient": set(),
}


@pytest.mark.parametrize("persona", sorted(MINOR_READS))
def test_minor_secret_documents(stage: Stage, persona: str) -> None:
    ids = ",".join(stage.lea_docs.values())
    bundle = stage.api.get("/fhir/DocumentReference", persona, params={"patient": stage.lea_id, "_id": ids}).json()
    found = {e["resource"]["id"] for e in bundle.get("entry", [])}
    assert found == {stage.lea_docs[k] for k in MINOR_READS[persona]}, persona


# ------------------------------------------------------------------------------------------ writing


@pytest.mark.parametrize("persona", PERSONAS)
def test_deposit(stage: Stage, persona: str) -> None:
    doc = factories.docref(*DOMINIQUE, author_idnat="801234567897")
    response = stage.api.publish(persona, doc)
    if persona in PROFESSIONALS_FEEDING:
        assert response.status_code == 201, (persona, response.text)
    else:
        assert response.status_code == _refused(persona), (persona, response.text)


def _fresh(stage: Stage) -> str:
    return str(_deposit(stage.api, "dr_lambert", "normal")["id"])


def _expect_write(persona: str, allowed: set[str], response: Any, ok: int = 200) -> None:
    if persona in allowed:
        assert response.status_code == ok, (persona, response.text)
    elif "normal" in READS[persona]:
        assert response.status_code == 403, (persona, response.text)  # they see the document: forbidden
    else:
        assert response.status_code == 404, (persona, response.text)  # they don't: the same as missing


@pytest.mark.parametrize("persona", PERSONAS)
def test_mask(stage: Stage, persona: str) -> None:
    doc_id = _fresh(stage)
    label = {"coding": [{"system": factories.A07, "code": "MASQUE_PS"}]}
    response = stage.api.patch(
        f"/fhir/DocumentReference/{doc_id}", persona, [{"op": "add", "path": "/securityLabel/-", "value": label}]
    )
    _expect_write(persona, AUTHOR_SIDE | {"dominique_patient"}, response)


@pytest.mark.parametrize("persona", PERSONAS)
def test_delete(stage: Stage, persona: str) -> None:
    doc_id = _fresh(stage)
    response = stage.api.delete(f"/fhir/DocumentReference/{doc_id}", persona)
    _expect_write(persona, AUTHOR_SIDE, response)


@pytest.mark.parametrize("persona", PERSONAS)
def test_archive(stage: Stage, persona: str) -> None:
    doc_id = _fresh(stage)
    response = stage.api.patch(
        f"/fhir/DocumentReference/{doc_id}",
        persona,
        [{"op": "add", "path": "/extension", "value": [{"url": ARCHIVED, "valueBoolean": True}]}],
    )
    # The author's organisation may archive too, but dr_haddad is there in break-glass: read-only.
    _expect_write(persona, AUTHOR_SIDE, response)


@pytest.mark.parametrize("persona", PERSONAS)
def test_replace(stage: Stage, persona: str) -> None:
    doc_id = _fresh(stage)
    replacement = factories.docref(*DOMINIQUE, author_idnat="810001745206")
    replacement["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{doc_id}"}}]
    response = stage.api.publish(persona, replacement)
    if persona in AUTHOR_SIDE:
        assert response.status_code == 201, response.text
    elif persona not in PROFESSIONALS_FEEDING:
        assert response.status_code == _refused(persona), (persona, response.text)  # may not deposit at all
    elif "normal" in READS[persona]:
        assert response.status_code == 403, (persona, response.text)
    else:  # the document to replace is invisible to them: the same answer as a missing one
        assert response.status_code == 422, (persona, response.text)
        assert "does not exist" in response.text


@pytest.mark.parametrize("persona", PERSONAS)
def test_change_consent(stage: Stage, persona: str) -> None:
    idnat = "8" + str(uuid.uuid4().int)[:11]
    resource = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [
            {"coding": [{"system": "https://carnet.health/fhir/CodeSystem/consent-kind", "code": "authorization"}]}
        ],
        "patient": {"reference": f"Patient/{stage.patient_id}"},
        "provision": {
            "type": "permit",
            "actor": [
                {
                    "role": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}
                        ]
                    },
                    "reference": {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": idnat}},
                }
            ],
        },
    }
    response = stage.api.post("/fhir/Consent", persona, resource)
    if persona == "dominique_patient":
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == _refused(persona), (persona, response.text)
