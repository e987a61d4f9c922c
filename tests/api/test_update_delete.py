"""Metadata PATCH (status, securityLabel, isArchived only), logical deletion by the author, history and vread."""

from __future__ import annotations

from typing import Any

import pytest

from tests import factories
from tests.conftest import Api, match_ids

ARCHIVED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
MASK = {"coding": [{"system": factories.A07, "code": "MASQUE_PS"}]}


def _doc(api: Api, persona: str = "dr_medioni", **kwargs: Any) -> tuple[str, str, str, str]:
    patient_id, ins, system = api.new_patient()
    response = api.publish(persona, factories.docref(ins, system, **kwargs))
    assert response.status_code == 201, response.text
    return patient_id, ins, system, response.json()["id"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/type", {"coding": [{"system": factories.LOINC, "code": "11502-2"}]}),
        ("/subject", {"reference": "Patient/other"}),
        ("/content/0/attachment/title", "Nouveau titre"),
        ("/description", "ajout"),
    ],
)
def test_patch_of_any_other_element_is_405(api: Api, path: str, value: Any) -> None:
    _, _, _, doc_id = _doc(api)
    response = api.patch(
        f"/fhir/DocumentReference/{doc_id}", "dr_medioni", [{"op": "replace", "path": path, "value": value}]
    )
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_medioni").json()["meta"]["versionId"] == "1"


def test_a_patch_that_changes_nothing_meaningful_stores_nothing_and_needs_the_right_to_change(api: Api) -> None:
    patient_id, _, _, doc_id = _doc(api)
    url = f"/fhir/DocumentReference/{doc_id}"
    masked = api.patch(url, "dr_medioni", [{"op": "add", "path": "/securityLabel/-", "value": MASK}])
    assert masked.status_code == 200, masked.text
    assert masked.json()["meta"]["versionId"] == "2"
    again = [{"op": "add", "path": "/securityLabel/-", "value": MASK}]  # already masked: the label repeated
    patient = api.patient_token(patient_id)
    for response in (
        api.patch(url, "dr_medioni", again),  # the author
        api.as_token(patient, "PATCH", url, again, headers={"Content-Type": "application/json-patch+json"}),
    ):
        assert response.status_code == 200, response.text
        assert response.json()["meta"]["versionId"] == "2"  # nothing stored: it already was so
        assert [c["coding"][0]["code"] for c in response.json()["securityLabel"]].count("MASQUE_PS") == 1
    # (A reader who may change no label is refused the same PATCH: test_access_matrix.py.)
    history = api.get(f"{url}/_history", "dr_medioni").json()
    assert history["total"] == 2


def test_author_masks_and_patient_unmasks(api: Api) -> None:
    _, _, _, doc_id = _doc(api)
    masked = api.patch(
        f"/fhir/DocumentReference/{doc_id}", "dr_medioni", [{"op": "add", "path": "/securityLabel/-", "value": MASK}]
    )
    assert masked.status_code == 200, masked.text
    body = masked.json()
    assert body["meta"]["versionId"] == "2"
    assert {c["coding"][0]["code"] for c in body["securityLabel"]} == {"N", "MASQUE_PS"}
    # another professional no longer sees it: same answer as a missing document
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "ph_didot").status_code == 404
    # the author removes the mask again
    unmasked = api.patch(
        f"/fhir/DocumentReference/{doc_id}", "dr_medioni", [{"op": "remove", "path": "/securityLabel/1"}]
    )
    assert unmasked.status_code == 200
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "ph_didot").status_code == 200


def test_patient_masks_own_document_from_professionals(api: Api) -> None:
    lookup = api.get(
        "/fhir/Patient", "dr_medioni", params={"identifier": "urn:oid:1.2.250.1.213.1.4.11|155037511223327"}
    ).json()
    patient_id = lookup["entry"][0]["resource"]["id"]
    doc_id = api.publish("dr_medioni", factories.docref("155037511223327", "urn:oid:1.2.250.1.213.1.4.11")).json()["id"]
    response = api.patch(
        f"/fhir/DocumentReference/{doc_id}", "jean_patient", [{"op": "add", "path": "/securityLabel/-", "value": MASK}]
    )
    assert response.status_code == 200, response.text
    assert doc_id not in match_ids(api.search("dr_lambert", patient=patient_id, _id=doc_id))
    assert doc_id in match_ids(api.search("dr_medioni", patient=patient_id, _id=doc_id))  # the author still sees it
    assert doc_id in match_ids(api.search("jean_patient", patient=patient_id, _id=doc_id))


def test_fhirpath_patch_archives_and_unarchives(api: Api) -> None:
    patient_id, _, _, doc_id = _doc(api)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "DocumentReference.extension"},
                    {"name": "value", "valueExtension": {"url": ARCHIVED, "valueBoolean": True}},
                ],
            }
        ],
    }
    response = api.patch(f"/fhir/DocumentReference/{doc_id}", "dr_medioni", body, content_type="application/fhir+json")
    assert response.status_code == 200, response.text
    assert match_ids(api.search("dr_medioni", patient=patient_id, isArchived="true")) == [doc_id]
    assert api.search("dr_medioni", patient=patient_id, isArchived="false")["total"] == 0
    # archiving belongs to the author (or their organisation)
    other = api.patch(
        f"/fhir/DocumentReference/{doc_id}", "ph_didot", [{"op": "replace", "path": "/extension", "value": []}]
    )
    assert other.status_code == 403


def test_deletion_by_a_non_author_is_403_and_by_the_author_removes_it(api: Api) -> None:
    patient_id, _, _, doc_id = _doc(api)
    assert api.delete(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 403
    assert api.delete(f"/fhir/DocumentReference/{doc_id}", "jean_patient").status_code == 404  # not his record
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200
    deleted = api.delete(f"/fhir/DocumentReference/{doc_id}", "dr_medioni")
    assert deleted.status_code == 200
    assert deleted.json()["resourceType"] == "OperationOutcome"
    for persona in ("dr_medioni", "dr_lambert"):
        assert api.get(f"/fhir/DocumentReference/{doc_id}", persona).status_code == 404
        assert api.search(persona, patient=patient_id, status="entered-in-error")["total"] == 0


def test_deletion_by_status_patch_follows_the_same_rule(api: Api) -> None:
    _, _, _, doc_id = _doc(api)
    patch = [{"op": "replace", "path": "/status", "value": "entered-in-error"}]
    assert api.patch(f"/fhir/DocumentReference/{doc_id}", "inf_moreau", patch).status_code == 403
    assert api.patch(f"/fhir/DocumentReference/{doc_id}", "dr_medioni", patch).status_code == 200


def test_superseded_only_through_a_replacement(api: Api) -> None:
    _, _, _, doc_id = _doc(api)
    response = api.patch(
        f"/fhir/DocumentReference/{doc_id}", "dr_medioni", [{"op": "replace", "path": "/status", "value": "superseded"}]
    )
    assert response.status_code == 422


def test_history_and_vread(api: Api) -> None:
    _, _, _, doc_id = _doc(api)
    api.patch(
        f"/fhir/DocumentReference/{doc_id}", "dr_medioni", [{"op": "add", "path": "/securityLabel/-", "value": MASK}]
    )
    history = api.get(f"/fhir/DocumentReference/{doc_id}/_history", "dr_medioni").json()
    assert history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    v1 = api.get(f"/fhir/DocumentReference/{doc_id}/_history/1", "dr_medioni")
    assert v1.status_code == 200
    assert len(v1.json()["securityLabel"]) == 1
    assert v1.headers["ETag"] == 'W/"1"'
    assert api.get(f"/fhir/DocumentReference/{doc_id}/_history/9", "dr_medioni").status_code == 404
    assert api.get(f"/fhir/DocumentReference/{doc_id}/_history", "ph_didot").status_code == 404  # masked now


def test_conditional_patch_by_identifier(api: Api) -> None:
    unique = "urn:oid:1.2.250.1.999.77." + factories.random_ins()[0]
    _, _, _, doc_id = _doc(api, unique_id=unique)
    response = api.client.patch(
        "/fhir/DocumentReference",
        params={"identifier": f"urn:ietf:rfc:3986|{unique}"},
        content=b'[{"op": "add", "path": "/securityLabel/-", "value": {"coding": [{"system": "'
        + factories.A07.encode()
        + b'", "code": "MASQUE_PS"}]}}]',
        headers=api.headers("dr_medioni", **{"Content-Type": "application/json-patch+json"}),
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == doc_id
    missing = api.client.patch(
        "/fhir/DocumentReference",
        params={"identifier": "urn:ietf:rfc:3986|urn:oid:9.9.9"},
        content=b"[]",
        headers=api.headers("dr_medioni", **{"Content-Type": "application/json-patch+json"}),
    )
    assert missing.status_code in (400, 404)


def test_put_is_not_allowed(api: Api) -> None:
    _, _, _, doc_id = _doc(api)
    response = api.client.put(
        f"/fhir/DocumentReference/{doc_id}",
        content=b"{}",
        headers=api.headers("dr_medioni", **{"Content-Type": "application/fhir+json"}),
    )
    assert response.status_code == 405


def test_invisible_patient_is_lifted_by_the_author_after_the_announcement(api: Api) -> None:
    lookup = api.get(
        "/fhir/Patient", "dr_medioni", params={"identifier": "urn:oid:1.2.250.1.213.1.4.11|155037511223327"}
    ).json()
    patient_id = lookup["entry"][0]["resource"]["id"]
    doc = factories.docref("155037511223327", "urn:oid:1.2.250.1.213.1.4.11", flags=("INVISIBLE_PATIENT",))
    doc_id = api.publish("dr_lambert", doc).json()["id"]
    assert doc_id not in match_ids(api.search("jean_patient", patient=patient_id, _id=doc_id))
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "jean_patient").status_code == 404
    # neither the patient nor another professional may lift it
    lift = [{"op": "remove", "path": "/securityLabel/1"}]
    assert api.patch(f"/fhir/DocumentReference/{doc_id}", "jean_patient", lift).status_code == 404
    assert api.patch(f"/fhir/DocumentReference/{doc_id}", "dr_medioni", lift).status_code == 403
    assert api.patch(f"/fhir/DocumentReference/{doc_id}", "dr_lambert", lift).status_code == 200
    assert doc_id in match_ids(api.search("jean_patient", patient=patient_id, _id=doc_id))
