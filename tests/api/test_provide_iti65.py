"""ITI-65 Provide Document Bundle: atomic deposits, the PDSm examples, and ANS CDA round-trips."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carnet.app import create_app
from carnet.documents.models import BinaryEntry, DocumentEntry, ListEntry
from carnet.runtime import Runtime
from carnet.storage.models import ResourceVersion, StoredBlob
from tests import factories
from tests.conftest import DATA, Api, issue_at, match_ids

PDSM = DATA / "pdsm"
CDA_DIR = DATA / "cda-roundtrip"
EXAMPLE_INS = "123456789012345"
A03 = factories.A03
A00 = "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"


def _post_bundle(api: Api, persona: str, body: dict[str, Any]) -> Any:
    return api.post("/fhir", persona, body)


def _rows(api: Api, model: Any, patient_id: str) -> int:
    query = sa.select(sa.func.count()).select_from(model).where(model.record_id == uuid.UUID(patient_id))
    if model is ResourceVersion:  # the Patient and the care-team Consents are there from the start
        query = query.where(ResourceVersion.resource_type.in_(("DocumentReference", "List", "Binary")))
    with api.runtime.work() as work:
        return int(work.session.scalar(query) or 0)


def test_bundle_with_two_documents_and_a_folder(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    first, second = factories.pdf_bytes("one"), factories.pdf_bytes("two")
    body = factories.bundle(
        ins,
        system,
        [
            (factories.docref(ins, system, data=first, inline=False), first, "application/pdf"),
            (factories.docref(ins, system, data=second, inline=False, type_code="11502-2"), second, "application/pdf"),
        ],
        folder=True,
    )
    response = _post_bundle(api, "dpi_saint_roch", body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created"] * len(body["entry"])
    locations = [e["response"]["location"] for e in result["entry"]]
    assert locations[0].startswith("List/")
    assert locations[0].endswith("/_history/1")
    assert locations[1].startswith("DocumentReference/")
    assert locations[2].startswith("Binary/")
    assert locations[-1].startswith("List/")  # the folder

    found = api.search("dpi_saint_roch", patient=patient_id)
    assert found["total"] == 2
    lists = api.get("/fhir/List", "dpi_saint_roch", params={"patient": patient_id}).json()
    codes = sorted(e["resource"]["code"]["coding"][0]["code"] for e in lists["entry"])
    assert codes == ["folder", "submissionset"]
    for entry in found["entry"]:
        url = entry["resource"]["content"][0]["attachment"]["url"].replace("http://testserver", "")
        data = api.get(url, "dpi_saint_roch", headers={"Accept": "application/pdf"}).content
        assert data in (first, second)


def test_an_invalid_second_document_leaves_nothing_behind(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    good, bad = factories.pdf_bytes("good"), factories.pdf_bytes("bad")
    bad_doc = factories.docref(ins, system, data=bad, inline=False, type_code="NOT-A-TYPE")
    body = factories.bundle(
        ins,
        system,
        [
            (factories.docref(ins, system, data=good, inline=False), good, "application/pdf"),
            (bad_doc, bad, "application/pdf"),
        ],
    )
    response = _post_bundle(api, "dr_medioni", body)
    assert response.status_code == 422
    assert issue_at(response.json(), "Bundle.entry[3].resource.type")
    for model in (DocumentEntry, ListEntry, BinaryEntry, StoredBlob, ResourceVersion):
        assert _rows(api, model, patient_id) == 0, model.__tablename__


def test_a_binary_that_does_not_match_its_hash_fails_the_whole_bundle(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    data = factories.pdf_bytes("hash")
    doc = factories.docref(ins, system, data=data, inline=False)
    body = factories.bundle(ins, system, [(doc, factories.pdf_bytes("other"), "application/pdf")])
    response = _post_bundle(api, "dr_medioni", body)
    assert response.status_code == 422
    assert issue_at(response.json(), "attachment.size") or issue_at(response.json(), "attachment.hash")
    assert _rows(api, DocumentEntry, patient_id) == 0


@pytest.mark.parametrize(
    "mutate",
    ["batch", "no-submission-set", "unreferenced-binary", "duplicate-fullurl", "unlisted-document", "bad-base64"],
)
def test_malformed_bundles_are_refused(api: Api, mutate: str) -> None:
    patient_id, ins, system = api.new_patient()
    data = factories.pdf_bytes()
    body = factories.bundle(
        ins, system, [(factories.docref(ins, system, data=data, inline=False), data, "application/pdf")]
    )
    if mutate == "batch":
        body["type"] = "batch"
    elif mutate == "no-submission-set":
        body["entry"].pop(0)
    elif mutate == "unreferenced-binary":
        body["entry"].append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "request": {"method": "POST", "url": "Binary"},
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/pdf",
                    "data": base64.b64encode(data).decode(),
                },
            }
        )
    elif mutate == "duplicate-fullurl":
        body["entry"][2]["fullUrl"] = body["entry"][1]["fullUrl"]
    elif mutate == "unlisted-document":
        body["entry"][0]["resource"]["entry"] = []
    elif mutate == "bad-base64":
        body["entry"][2]["resource"]["data"] = "%%%not base64%%%"
    response = _post_bundle(api, "dr_medioni", body)
    assert response.status_code in (400, 422), response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert _rows(api, DocumentEntry, patient_id) == 0


def test_duplicate_unique_id_is_a_conflict(api: Api) -> None:
    _, ins, system = api.new_patient()
    unique = f"urn:oid:1.2.250.1.999.{uuid.uuid4().int % 10**12}"
    assert api.publish("dr_medioni", factories.docref(ins, system, unique_id=unique)).status_code == 201
    again = api.publish("dr_medioni", factories.docref(ins, system, unique_id=unique))
    assert again.status_code == 409
    assert again.json()["issue"][0]["code"] == "conflict"


def test_deposit_to_an_unknown_patient_is_not_found(api: Api) -> None:
    ins, system = factories.random_ins()
    data = factories.pdf_bytes()
    body = factories.bundle(
        ins, system, [(factories.docref(ins, system, data=data, inline=False), data, "application/pdf")]
    )
    response = _post_bundle(api, "dr_medioni", body)
    assert response.status_code == 404


def test_a_patient_cannot_deposit_into_someone_elses_record(api: Api) -> None:
    _, ins, system = api.new_patient()
    doc = factories.docref(
        ins,
        system,
        type_code="DOCPAT03",
        type_system="https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire",
        facility="EXP_PATIENT",
        setting="EXP_PATIENT",
        class_code="10",
    )
    doc["context"]["facilityType"]["coding"][0]["system"] = A00
    doc["context"]["practiceSetting"]["coding"][0]["system"] = A00
    response = api.publish("jean_patient", doc)
    assert response.status_code == 404  # the same answer as for a record that does not exist


# ----------------------------------------------------------------------------------------- PDSm examples


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PDSM / name).read_text(encoding="utf-8"))
    return data


def adapt_pdsm(resource: dict[str, Any], ins: str, system: str, cda: bytes) -> dict[str, Any]:
    """The documented adaptation of the ANS PDSm examples to DMP rules (see tests/data/pdsm/README.md):
    our patient's INS instead of the placeholder; class 10 as ASS_X16 requires for 11488-4; the JDV_J60
    format of an unreferenced CDA model; DMP facility and setting codings beside the SNOMED ones; and a
    complete CDA document for that patient instead of the empty ClinicalDocument."""
    text = json.dumps(resource).replace(f"urn:oid:1.2.250.1.213.1.4.8|{EXAMPLE_INS}", f"{system}|{ins}")
    text = text.replace(
        f'"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "{EXAMPLE_INS}"', f'"system": "{system}", "value": "{ins}"'
    )
    adapted: dict[str, Any] = json.loads(text)
    entries = [e["resource"] for e in adapted.get("entry", [])] if adapted["resourceType"] == "Bundle" else [adapted]
    encoded = base64.b64encode(cda).decode()
    for res in entries:
        if res["resourceType"] == "DocumentReference":
            for category in res.get("category", []):
                category["coding"][0]["code"] = "10"
                category["coding"][0]["display"] = "Compte rendu"
            content = res["content"][0]
            if "format" in content:
                content["format"] = {
                    "system": "https://mos.esante.gouv.fr/NOS/TRE_A06-FormatCodeComplementaire/FHIR/TRE-A06-FormatCodeComplementaire",
                    "code": "urn:asipSante:modelesHorsProfils:2011",
                }
            context = res.get("context", {})
            if "facilityType" in context:
                context["facilityType"]["coding"].append({"system": factories.R02, "code": "SA01"})
            if "practiceSetting" in context:
                context["practiceSetting"]["coding"].append({"system": factories.A01, "code": "ETABLISSEMENT"})
            attachment = content["attachment"]
            if "data" in attachment:
                attachment["data"] = encoded
            if "size" in attachment:
                attachment["size"] = len(cda)
                attachment["hash"] = factories.sha1_b64(cda)
            attachment.pop("creation", None)
        if res["resourceType"] == "Binary":
            res["data"] = encoded
    return adapted


def _cda_for(ins: str, *, set_id: str, version: int, doc_id: str, parent: str | None = None) -> bytes:
    return factories.cda(
        ins,
        type_code="11488-4",
        author_idnat="899700218896",
        doc_id=doc_id,
        set_id=set_id,
        version=version,
        parent_id=parent,
    )


def _master_ids(resource: dict[str, Any], doc_id: str) -> None:
    for res in [e["resource"] for e in resource["entry"]] if resource["resourceType"] == "Bundle" else [resource]:
        if res["resourceType"] == "DocumentReference":
            res["masterIdentifier"] = {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{doc_id}"}


def test_pdsm_submission_bundle_as_published_is_refused_for_its_dmp_faults(api: Api) -> None:
    original = _load("Bundle-example-td2-iti65-lot-soumission.json")
    response = _post_bundle(api, "dr_medioni", original)
    assert response.status_code == 422, response.text
    outcome = response.json()
    texts = " ".join(i["diagnostics"] for i in outcome["issue"])
    assert "ASS_X16" in texts  # class 11 with type 11488-4
    assert issue_at(outcome, "Bundle.entry[1].resource.category[0]")
    assert issue_at(outcome, "Bundle.entry[1].resource.content[0].format")
    assert issue_at(outcome, "Bundle.entry[1].resource.context.facilityType")


def test_pdsm_examples_round_trip_after_adaptation_including_replacement(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    set_id = f"1.2.250.1.999.{uuid.uuid4().int % 10**9}"
    v1_id, v2_id = f"{set_id}.1", f"{set_id}.2"
    cda_v1 = _cda_for(ins, set_id=set_id, version=1, doc_id=v1_id)
    submission = adapt_pdsm(_load("Bundle-example-td2-iti65-lot-soumission.json"), ins, system, cda_v1)
    _master_ids(submission, v1_id)
    response = _post_bundle(api, "dr_medioni", submission)
    assert response.status_code == 200, response.text
    doc_location = response.json()["entry"][1]["response"]["location"]
    old_id = doc_location.split("/")[1]

    found = api.search("dr_medioni", patient=patient_id, status="current")
    assert match_ids(found) == [old_id]
    url = found["entry"][0]["resource"]["content"][0]["attachment"]["url"].replace("http://testserver", "")
    assert api.get(url, "dr_medioni", headers={"Accept": "*/*"}).content == cda_v1

    cda_v2 = _cda_for(ins, set_id=set_id, version=2, doc_id=v2_id, parent=v1_id)
    replacement = adapt_pdsm(_load("Bundle-example-td2-1-remplacement.json"), ins, system, cda_v2)
    _master_ids(replacement, v2_id)
    text = json.dumps(replacement).replace("DocumentReference/doc-x-id", f"DocumentReference/{old_id}")
    response = _post_bundle(api, "dr_medioni", json.loads(text))
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201 Created", "201 Created", "200 OK", "201 Created"]
    new_id = response.json()["entry"][1]["response"]["location"].split("/")[1]

    current = api.search("dr_medioni", patient=patient_id, status="current")
    assert match_ids(current) == [new_id]
    new_doc = current["entry"][0]["resource"]
    assert new_doc["relatesTo"] == [{"code": "replaces", "target": {"reference": f"DocumentReference/{old_id}"}}]
    old = api.get(f"/fhir/DocumentReference/{old_id}", "dr_medioni").json()
    assert old["status"] == "superseded"
    assert old["meta"]["versionId"] == "2"
    history = api.get(f"/fhir/DocumentReference/{old_id}/_history", "dr_medioni").json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["superseded", "current"]


def test_replacement_must_keep_the_cda_set_id(api: Api) -> None:
    _, ins, system = api.new_patient()
    set_id = f"1.2.250.1.999.{uuid.uuid4().int % 10**9}"
    first = factories.cda(ins, set_id=set_id, doc_id=f"{set_id}.1")
    doc = factories.docref(
        ins, system, data=first, content_type="text/xml", format_code=None, unique_id=f"urn:oid:{set_id}.1"
    )
    old_id = api.publish("dr_medioni", doc).json()["id"]
    other = factories.cda(ins, doc_id=f"{set_id}.2")  # a different setId
    replacement = factories.docref(
        ins, system, data=other, content_type="text/xml", format_code=None, unique_id=f"urn:oid:{set_id}.2"
    )
    replacement["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{old_id}"}}]
    response = api.publish("dr_medioni", replacement)
    assert response.status_code == 422
    assert "setId" in response.text


def test_only_the_author_or_their_organisation_replaces(api: Api) -> None:
    _, ins, system = api.new_patient()
    old_id = api.publish("dr_medioni", factories.docref(ins, system)).json()["id"]
    replacement = factories.docref(ins, system)
    replacement["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{old_id}"}}]
    assert api.publish("ph_didot", replacement).status_code == 403
    assert api.get(f"/fhir/DocumentReference/{old_id}", "dr_medioni").json()["status"] == "current"


def test_pdsm_simplified_publish_example_after_adaptation(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    doc_id = f"1.2.250.1.999.{uuid.uuid4().int % 10**9}"
    cda = factories.cda(ins, type_code="11488-4", author_idnat="899700218896", doc_id=doc_id)
    example = adapt_pdsm(_load("DocumentReference-example-td2-iti105-publication-simplifiee.json"), ins, system, cda)
    _master_ids(example, doc_id)
    response = api.publish("dr_medioni", example)
    assert response.status_code == 201, response.text
    assert response.json()["category"][0]["coding"][0]["code"] == "10"  # derived through ASS_X16
    assert api.search("dr_medioni", patient=patient_id)["total"] == 1


def test_ihe_minimal_bundle_with_a_patient_entry_is_not_iti65_for_the_dmp(api: Api) -> None:
    response = _post_bundle(api, "dr_medioni", _load("Bundle-ex-minimalProvideDocumentBundleSimple.json"))
    assert response.status_code in (400, 422)
    assert response.json()["resourceType"] == "OperationOutcome"


# ----------------------------------------------------------------------------------------- ANS CDA corpus

ROUNDTRIP = {
    # file: (type, class, facility, practice setting, depositor)
    "AVC-SUNV_2022.01.xml": ("34133-9", "11", "SA04", "ETABLISSEMENT", "dpi_saint_roch"),
    "BIO-CR-BIO_2024.01_TSH_1.xml": ("11502-2", "10", "SA25", "AMBULATOIRE", "dr_camparini"),
    "BIO-TROD_2024.01_COVID-19.xml": ("96173-0", "52", "SA33", "DEPISTAGE", "ph_didot"),
    "CARD-F-PRC-AVK_2022.01.xml": ("34133-9", "11", "SA21", "AMBULATOIRE", "dpi_saint_roch"),
    "CARD-F-PRC-PPV_2022.01.xml": ("34133-9", "11", "SA01", "ETABLISSEMENT", "dpi_saint_roch"),
    "CNAM-HR_2021.01_sans-info.xml": ("REMB", "60", "SA24", "AMO", "cnam_feed"),
    "IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml": ("18748-4", "31", "SA08", "AMBULATOIRE", "dr_lambert"),
    "LDL-EES_2022.01.xml": ("18761-7", "11", "SA01", "ETABLISSEMENT", "dpi_saint_roch"),
    "OBP-SCM_2024.01.xml": ("89235-6", "11", "SA04", "ETABLISSEMENT", "dpi_saint_roch"),
    "TLM-DA_2022.01_TE1_anamnese-non-structuree.xml": ("75496-0", "10", "SA03", "ETABLISSEMENT", "dr_lambert"),
    "VAC_2023.01.xml": ("11369-6", "52", "SA24", "AMO", "dr_medioni"),
    "VSM_1.4_2022.01.xml": ("SYNTH", "11", "SA04", "ETABLISSEMENT", "dr_medioni"),
    "eP-MED-DM_2024.01_PosoNonStruct.xml": ("57833-6", "42", "SA07", "AMBULATOIRE", "dr_medioni"),
}
CORPUS_PATIENTS = {"1.2.250.1.213.1.4.10": "279035121518989", "1.2.250.1.213.1.4.8": "277076322082910"}


def _record_for(api: Api, oid: str, ins: str) -> str:
    system = f"urn:oid:{oid}"
    found = api.get("/fhir/Patient", "dr_medioni", params={"identifier": f"{system}|{ins}"}).json()
    if found["total"]:
        return str(found["entry"][0]["resource"]["id"])
    response = api.post("/fhir/Patient", "dr_medioni", factories.patient_resource(ins, system, family="PATIENTE"))
    if response.status_code == 409:  # opened meanwhile by a parallel test of this database
        return _record_for(api, oid, ins)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.slow
@pytest.mark.parametrize("filename", sorted(ROUNDTRIP))
def test_ans_cda_example_round_trips(api: Api, filename: str) -> None:
    data = (CDA_DIR / filename).read_bytes()
    type_code, class_code, facility, setting, depositor = ROUNDTRIP[filename]
    oid = "1.2.250.1.213.1.4.8" if filename.startswith("OBP") else "1.2.250.1.213.1.4.10"
    ins = CORPUS_PATIENTS[oid]
    patient_id = _record_for(api, oid, ins)
    resource = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient?identifier=urn:oid:{oid}|{ins}"},
        "content": [{"attachment": {"contentType": "text/xml", "data": base64.b64encode(data).decode()}}],
    }
    response = api.publish(depositor, resource)
    assert response.status_code == 201, response.text
    reader = "dr_medioni" if depositor != "cnam_feed" else "dr_lambert"
    doc = response.json()
    if depositor == "cnam_feed":  # the insurer's feed writes but may not read: it gets an outcome
        assert doc["resourceType"] == "OperationOutcome"
        doc_id = response.headers["Location"].split("/DocumentReference/")[1].split("/")[0]
        doc = api.get(f"/fhir/DocumentReference/{doc_id}", reader).json()
    assert doc["type"]["coding"][0]["code"] == type_code
    assert doc["category"][0]["coding"][0]["code"] == class_code
    assert doc["context"]["facilityType"]["coding"][0]["code"] == facility
    assert doc["context"]["practiceSetting"]["coding"][0]["code"] == setting
    found = api.search(reader, patient=patient_id, _id=doc["id"])
    assert match_ids(found) == [doc["id"]]
    url = doc["content"][0]["attachment"]["url"].replace("http://testserver", "")
    retrieved = api.get(url, reader, headers={"Accept": "text/xml"})
    assert retrieved.status_code == 200
    assert retrieved.content == data
    assert retrieved.headers["content-type"].startswith("text/xml")


def test_an_ans_example_with_a_wrong_ins_key_is_refused(api: Api) -> None:
    data = (CDA_DIR / "CSE-CS8_2025.01.xml").read_bytes()
    resource = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient?identifier=urn:oid:1.2.250.1.213.1.4.10|221042545611404"},
        "content": [{"attachment": {"contentType": "text/xml", "data": base64.b64encode(data).decode()}}],
    }
    response = api.publish("dpi_saint_roch", resource)
    assert response.status_code == 400
    assert "key" in response.json()["issue"][0]["diagnostics"]
    assert issue_at(response.json(), "DocumentReference.subject")


def test_the_binary_resource_form_of_a_document(api: Api) -> None:
    _, ins, system = api.new_patient()
    data = factories.pdf_bytes("binary-json")
    doc = api.publish("dr_medioni", factories.docref(ins, system, data=data)).json()
    url = doc["content"][0]["attachment"]["url"].replace("http://testserver", "")
    binary = api.get(url, "dr_medioni", headers={"Accept": "application/fhir+json"}).json()
    assert binary["resourceType"] == "Binary"
    assert binary["contentType"] == "application/pdf"
    assert binary["securityContext"]["reference"] == f"DocumentReference/{doc['id']}"
    assert base64.b64decode(binary["data"]) == data


# ----------------------------------------------------------------------------------------- size limit

SMALL_LIMIT = 4096  # bytes: CARNET_MAX_DOCUMENT_BYTES of the small app below


@pytest.fixture
def small_api(runtime: Runtime) -> Iterator[Api]:
    """The app on the same database with ``max_document_bytes`` lowered to ``SMALL_LIMIT``."""
    small = Runtime(runtime.settings.model_copy(update={"max_document_bytes": SMALL_LIMIT}), engine=runtime.engine)
    with TestClient(create_app(small.settings, small), base_url="http://testserver") as client:
        yield Api(client, small)


def _pdf_of(size: int) -> bytes:
    data = factories.pdf_bytes()
    return data + b"\n%" + b"x" * (size - len(data) - 2)


@pytest.mark.parametrize(
    "size",
    [SMALL_LIMIT + 1, 5 * 1024 * 1024],
    ids=["just-over-the-document-limit", "over-the-request-limit"],
)
def test_a_bundle_with_an_oversize_document_is_413_and_nothing_is_written(small_api: Api, size: int) -> None:
    patient_id, ins, system = small_api.new_patient()
    fits, oversize = _pdf_of(SMALL_LIMIT), _pdf_of(size)
    body = factories.bundle(
        ins,
        system,
        [
            (factories.docref(ins, system, data=fits, inline=False), fits, "application/pdf"),
            (factories.docref(ins, system, data=oversize, inline=False), oversize, "application/pdf"),
        ],
    )
    response = _post_bundle(small_api, "dr_medioni", body)
    assert response.status_code == 413, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "too-long"
    assert "limit" in outcome["issue"][0]["diagnostics"]
    for model in (DocumentEntry, ListEntry, BinaryEntry, StoredBlob, ResourceVersion):
        assert _rows(small_api, model, patient_id) == 0, model.__tablename__
    # The document at the limit alone is accepted: the refusal was the size, and only the size.
    alone = factories.bundle(
        ins, system, [(factories.docref(ins, system, data=fits, inline=False), fits, "application/pdf")]
    )
    assert _post_bundle(small_api, "dr_medioni", alone).status_code == 200
    assert _rows(small_api, DocumentEntry, patient_id) == 1


# ----------------------------------------------------------------------------------------- ASS_X16 example


def test_the_pdsm_class_type_mismatch_example_is_refused_naming_the_class(api: Api) -> None:
    """reference/dmp.md §2.4: ``DocumentReference-doc-x-id.json`` pairs type 11488-4 with class 11 where
    ASS_X16 says 10. Deposited as published, in the ITI-65 bundle it needs, it is refused for that."""
    document = _load("DocumentReference-doc-x-id.json")
    assert document["type"]["coding"][0]["code"] == "11488-4"
    assert document["category"][0]["coding"][0]["code"] == "11"
    subject_system, _, subject_ins = document["subject"]["reference"].split("=", 1)[1].partition("|")
    binary_url = document["content"][0]["attachment"]["url"]
    doc_url = f"urn:uuid:{uuid.uuid4()}"
    body = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": factories.submission_set(subject_ins, subject_system, [doc_url]),
                "request": {"method": "POST", "url": "List"},
            },
            {"fullUrl": doc_url, "resource": document, "request": {"method": "POST", "url": "DocumentReference"}},
            {
                "fullUrl": binary_url,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/xml",
                    "data": base64.b64encode(b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>').decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }
    response = _post_bundle(api, "dr_medioni", body)
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    class_issues = [
        i for i in outcome["issue"] if "Bundle.entry[1].resource.category[0].coding[0].code" in i.get("expression", [])
    ]
    assert len(class_issues) == 1, outcome
    assert class_issues[0]["code"] == "business-rule"
    assert "ASS_X16" in class_issues[0]["diagnostics"]
    assert "class 10" in class_issues[0]["diagnostics"]
