"""ITI-105 Simplified Publish: a DocumentReference with the document inline, and every way it can be wrong."""

from __future__ import annotations

import base64
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
from tests.conftest import Api, issue_at, match_ids


def test_publish_pdf_then_find_and_retrieve_identical_bytes(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    data = factories.pdf_bytes("publish-roundtrip")
    response = api.publish("dr_medioni", factories.docref(ins, system, data=data))
    assert response.status_code == 201, response.text
    doc = response.json()
    assert response.headers["Location"].endswith(f"/DocumentReference/{doc['id']}/_history/1")
    assert doc["subject"]["reference"] == f"Patient/{patient_id}"
    assert doc["meta"]["versionId"] == "1"
    attachment = doc["content"][0]["attachment"]
    assert "data" not in attachment
    assert attachment["size"] == len(data)
    assert attachment["hash"] == factories.sha1_b64(data)

    found = api.search("dr_medioni", patient=patient_id)
    assert match_ids(found) == [doc["id"]]
    binary = api.client.get(
        attachment["url"].replace("http://testserver", ""),
        headers={"Authorization": f"Bearer {api.token('dr_medioni')}"},
    )
    assert binary.status_code == 200
    assert binary.headers["content-type"] == "application/pdf"
    assert binary.content == data


def test_publish_cda_derives_missing_metadata_from_the_header(api: Api) -> None:
    _, ins, system = api.new_patient()
    data = factories.cda(ins, type_code="11502-2", marker="derive")
    resource = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient?identifier={system}|{ins}"},
        "content": [{"attachment": {"contentType": "text/xml", "data": base64.b64encode(data).decode()}}],
    }
    response = api.publish("dr_camparini", resource)
    assert response.status_code == 201, response.text
    doc = response.json()
    assert doc["type"]["coding"][0]["code"] == "11502-2"
    assert doc["category"][0]["coding"][0]["code"] == "10"  # ASS_X16
    assert doc["context"]["facilityType"]["coding"][0]["code"] == "SA07"
    assert doc["context"]["practiceSetting"]["coding"][0]["code"] == "AMBULATOIRE"
    assert doc["masterIdentifier"]["value"].startswith("urn:oid:1.2.250.1.999.")
    assert doc["content"][0]["format"]["code"] == "urn:asipSante:modelesHorsProfils:2011"
    assert doc["context"]["period"]["start"] == "2026-10-01T07:00:00.000Z"


@pytest.mark.parametrize(
    ("change", "status", "where"),
    [
        (lambda d: d["type"]["coding"][0].update(code="99999-9"), 422, "DocumentReference.type"),
        (lambda d: d["category"][0]["coding"][0].update(code="11"), 422, "DocumentReference.category[0]"),
        (lambda d: d["content"][0]["attachment"].update(size=12), 422, "attachment.size"),
        (lambda d: d["content"][0]["attachment"].update(hash="A/hMRrv6Y15BjSM8kMLidrz+mHc="), 422, "attachment.hash"),
        (lambda d: d["context"]["facilityType"]["coding"][0].update(code="ZZZ"), 422, "context.facilityType"),
        (
            lambda d: d["context"]["practiceSetting"]["coding"][0].update(system="http://snomed.info/sct"),
            422,
            "context.practiceSetting",
        ),
        (lambda d: d["securityLabel"][0]["coding"][0].update(code="SECRET"), 422, "securityLabel[0]"),
        (
            lambda d: d["content"][0]["format"].update(code="urn:ihe:iti:xds:2017:mimeTypeSufficient"),
            422,
            "content[0].format",
        ),
        (lambda d: d.update(status="superseded"), 422, "DocumentReference.status"),
        (lambda d: d.update(date="le 3 octobre"), 400, "DocumentReference.date"),
        (lambda d: d["content"][0]["attachment"].update(contentType="image/png"), 422, "attachment.contentType"),
    ],
    ids=[
        "unknown-type",
        "class-type-mismatch",
        "wrong-size",
        "wrong-hash",
        "unknown-facility",
        "foreign-setting",
        "unknown-label",
        "format-not-in-J60",
        "not-current",
        "bad-date",
        "declared-png-is-pdf",
    ],
)
def test_bad_metadata_is_refused_naming_the_element(api: Api, change: object, status: int, where: str) -> None:
    patient_id, ins, system = api.new_patient()
    resource = factories.docref(ins, system)
    change(resource)  # type: ignore[operator]
    response = api.publish("dr_medioni", resource)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert issue_at(outcome, where), outcome
    assert api.search("dr_medioni", patient=patient_id)["total"] == 0


def test_malformed_json_is_a_400_outcome(api: Api) -> None:
    response = api.post("/fhir/DocumentReference", "dr_medioni", b'{"resourceType": "DocumentReference",')
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unsupported_media_type_is_415(api: Api) -> None:
    _, ins, system = api.new_patient()
    resource = factories.docref(ins, system, data=b"GIF89a....", content_type="image/gif")
    response = api.publish("dr_medioni", resource)
    assert response.status_code == 415, response.text


def test_wrong_patient_in_cda_header_is_refused(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    other_ins, _ = factories.random_ins()
    data = factories.cda(other_ins)
    resource = factories.docref(ins, system, data=data, content_type="text/xml", format_code=None)
    response = api.publish("dr_medioni", resource)
    assert response.status_code == 422, response.text
    assert issue_at(response.json(), "DocumentReference.subject")
    assert api.search("dr_medioni", patient=patient_id)["total"] == 0


@pytest.mark.parametrize(
    "payload",
    [
        b'<?xml version="1.0"?><!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>',
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol2;</title></ClinicalDocument>',
    ],
    ids=["xxe", "entity-expansion"],
)
def test_hostile_xml_is_refused(api: Api, payload: bytes) -> None:
    patient_id, ins, system = api.new_patient()
    resource = factories.docref(ins, system, data=payload, content_type="text/xml", format_code=None)
    response = api.publish("dr_medioni", resource)
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["code"] == "security"
    assert api.search("dr_medioni", patient=patient_id)["total"] == 0


# ----------------------------------------------------------------------------------------- size limit

SMALL_LIMIT = 4096  # bytes: CARNET_MAX_DOCUMENT_BYTES of the small app below


@pytest.fixture
def small_api(runtime: Runtime) -> Iterator[Api]:
    """The app on the same database with ``max_document_bytes`` lowered to ``SMALL_LIMIT``."""
    small = Runtime(runtime.settings.model_copy(update={"max_document_bytes": SMALL_LIMIT}), engine=runtime.engine)
    with TestClient(create_app(small.settings, small), base_url="http://testserver") as client:
        yield Api(client, small)


def stored_rows(api: Api, patient_id: str) -> dict[str, int]:
    """How many rows of each document table belong to this record (the Patient and Consents excluded)."""
    counts = {}
    with api.runtime.work() as work:
        for model in (DocumentEntry, ListEntry, BinaryEntry, StoredBlob, ResourceVersion):
            query = sa.select(sa.func.count()).select_from(model).where(model.record_id == uuid.UUID(patient_id))
            if model is ResourceVersion:
                query = query.where(ResourceVersion.resource_type.in_(("DocumentReference", "List", "Binary")))
            counts[model.__tablename__] = int(work.session.scalar(query) or 0)
    return counts


def padded_pdf(size: int) -> bytes:
    """A PDF of exactly ``size`` bytes (a comment after %%EOF makes up the difference)."""
    data = factories.pdf_bytes()
    assert len(data) + 2 <= size
    return data + b"\n%" + b"x" * (size - len(data) - 2)


@pytest.mark.parametrize(
    "size",
    [SMALL_LIMIT + 1, 3 * 1024 * 1024],
    ids=["just-over-the-document-limit", "over-the-request-limit"],
)
def test_an_oversize_document_is_413_and_nothing_is_written(small_api: Api, size: int) -> None:
    patient_id, ins, system = small_api.new_patient()
    at_limit = small_api.publish("dr_medioni", factories.docref(ins, system, data=padded_pdf(SMALL_LIMIT)))
    assert at_limit.status_code == 201, at_limit.text  # the limit itself is allowed
    before = stored_rows(small_api, patient_id)
    assert before["document_entries"] == 1

    response = small_api.publish("dr_medioni", factories.docref(ins, system, data=padded_pdf(size)))
    assert response.status_code == 413, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["code"] == "too-long"
    assert "limit" in outcome["issue"][0]["diagnostics"]
    assert stored_rows(small_api, patient_id) == before
    assert small_api.search("dr_medioni", patient=patient_id)["total"] == 1


# ----------------------------------------------------------------------------------------- CDA header


def _level1_body(cda: bytes, media_type: str = "application/pdf") -> bytes:
    """The CDA with its structured body replaced by a non-XML body (CDA R2 level 1)."""
    text = cda.decode()
    start = text.index("<component><structuredBody>")
    end = text.index("</structuredBody></component>") + len("</structuredBody></component>")
    payload = base64.b64encode(factories.pdf_bytes()).decode()
    body = f'<component><nonXMLBody><text mediaType="{media_type}" representation="B64">{payload}</text></nonXMLBody></component>'
    return (text[:start] + body + text[end:]).encode()


def _cda_deposit(ins: str, system: str, *, level1: bool = False, **cda_changes: Any) -> dict[str, Any]:
    """A DocumentReference whose metadata agrees with its CDA header in every respect, but ``cda_changes``."""
    doc_id = f"1.2.250.1.999.{uuid.uuid4().int % 10**9}"
    cda = factories.cda(ins, **{"doc_id": doc_id, **cda_changes})
    if level1:
        cda = _level1_body(cda)
    resource = factories.docref(
        ins,
        system,
        data=cda,
        content_type="text/xml",
        format_code="urn:ihe:iti:xds-sd:pdf:2008" if level1 else None,
        unique_id=f"urn:oid:{doc_id}",
    )
    resource["content"][0]["attachment"]["creation"] = "2026-10-01T10:00:00+02:00"  # the CDA effectiveTime
    return resource


@pytest.mark.parametrize("level1", [False, True], ids=["structured-body", "non-xml-body"])
def test_a_cda_whose_header_agrees_with_the_metadata_is_accepted(api: Api, level1: bool) -> None:
    patient_id, ins, system = api.new_patient()
    response = api.publish("dr_medioni", _cda_deposit(ins, system, level1=level1))
    assert response.status_code == 201, response.text
    doc = response.json()
    assert doc["content"][0]["format"]["code"] == (
        "urn:ihe:iti:xds-sd:pdf:2008" if level1 else "urn:asipSante:modelesHorsProfils:2011"
    )
    assert api.search("dr_medioni", patient=patient_id)["total"] == 1


@pytest.mark.parametrize(
    ("level1", "cda_changes", "metadata_change", "where"),
    [
        (False, {"type_code": "11502-2"}, None, "DocumentReference.type"),
        (False, {"confidentiality": "R"}, None, "DocumentReference.securityLabel"),
        (False, {"effective": "20260101080000+0100"}, None, "DocumentReference.content[0].attachment.creation"),
        (
            False,
            {},
            lambda d: d["masterIdentifier"].update(value="urn:oid:1.2.250.1.999.424242"),
            "DocumentReference.masterIdentifier",
        ),
        (False, {"author_idnat": "810001745206"}, None, "DocumentReference.author"),
        (
            True,
            {},
            lambda d: d["content"][0]["format"].update(code="urn:ihe:iti:xds-sd:text:2008"),
            "DocumentReference.content[0].format",
        ),
    ],
    ids=["type-code", "confidentiality", "effective-time", "master-identifier", "authors", "format"],
)
def test_a_cda_header_mismatch_is_422_naming_the_element(
    api: Api, level1: bool, cda_changes: dict[str, str], metadata_change: Any, where: str
) -> None:
    patient_id, ins, system = api.new_patient()
    resource = _cda_deposit(ins, system, level1=level1, **cda_changes)
    if metadata_change is not None:
        metadata_change(resource)
    response = api.publish("dr_medioni", resource)
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [e for i in outcome["issue"] for e in i.get("expression", [])] == [where], outcome
    assert outcome["issue"][0]["code"] == "business-rule"
    assert "CDA" in outcome["issue"][0]["diagnostics"] or "masterIdentifier" in outcome["issue"][0]["diagnostics"]
    assert api.search("dr_medioni", patient=patient_id)["total"] == 0
    assert stored_rows(api, patient_id)["document_entries"] == 0
