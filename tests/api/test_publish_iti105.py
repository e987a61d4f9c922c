"""ITI-105 Simplified Publish: a DocumentReference with the document inline, and every way it can be wrong."""

from __future__ import annotations

import base64

import pytest

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
