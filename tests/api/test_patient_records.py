"""Patient records: opening (one per INS), PDSm TD0.2 lookup, who sees what of the Patient, closure, reopening."""

from __future__ import annotations

import pytest

from carnet.fhirtypes import EXT_RECORD_CLOSURE
from carnet.identifiers import nir_key
from tests import factories
from tests.conftest import Api, issue_at


def _closure(patient: dict[str, object]) -> dict[str, object]:
    ext = next(e for e in patient["extension"] if e["url"] == EXT_RECORD_CLOSURE)  # type: ignore[attr-defined]
    return {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in ext["extension"]}


def test_professional_opens_a_record_with_the_patients_consent(api: Api) -> None:
    ins, system = factories.random_ins()
    response = api.post("/fhir/Patient", "dr_medioni", factories.patient_resource(ins, system))
    assert response.status_code == 201, response.text
    patient = response.json()
    assert response.headers["Location"].endswith(f"/Patient/{patient['id']}/_history/1")
    assert patient["active"] is True
    assert _closure(patient) == {"status": "active"}
    assert patient["identifier"][0]["value"] == ins
    lookup = api.get("/fhir/Patient", "dr_lambert", params={"identifier": f"{system}|{ins}"}).json()
    assert lookup["total"] == 1
    assert lookup["entry"][0]["resource"]["id"] == patient["id"]


def test_opening_without_attesting_consent_is_refused(api: Api) -> None:
    ins, system = factories.random_ins()
    response = api.post("/fhir/Patient", "dr_medioni", factories.patient_resource(ins, system, attest=False))
    assert response.status_code == 422
    assert api.get("/fhir/Patient", "dr_medioni", params={"identifier": f"{system}|{ins}"}).json()["total"] == 0


def test_the_operator_opens_records_without_attestation(api: Api) -> None:
    ins, system = factories.random_ins()
    response = api.post("/fhir/Patient", "ops_admin", factories.patient_resource(ins, system, attest=False))
    assert response.status_code == 201, response.text


def test_one_record_per_ins(api: Api) -> None:
    ins, system = factories.random_ins()
    assert api.post("/fhir/Patient", "dr_medioni", factories.patient_resource(ins, system)).status_code == 201
    again = api.post("/fhir/Patient", "dr_lambert", factories.patient_resource(ins, system, family="AUTRE"))
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (
            lambda p: p["identifier"][0].update(value=p["identifier"][0]["value"][:13] + "00"),
            "Patient.identifier[0].value",
        ),
        (lambda p: p["identifier"][0].update(system="urn:oid:1.2.250.1.213.1.4.2"), "Patient.identifier[0].value"),
        (lambda p: p.pop("identifier"), "Patient.identifier"),
        (lambda p: p.pop("birthDate"), "Patient.birthDate"),
        (lambda p: p["extension"].pop(0), "Patient.extension"),
        (lambda p: p.update(gender="féminin"), "Patient.gender"),
    ],
    ids=["wrong-key", "legacy-ins-c", "no-ins", "no-birth-date", "no-identity-status", "bad-gender"],
)
def test_invalid_patients_are_refused_naming_the_element(api: Api, mutate: object, where: str) -> None:
    ins, system = factories.random_ins()
    patient = factories.patient_resource(ins, system)
    mutate(patient)  # type: ignore[operator]
    response = api.post("/fhir/Patient", "dr_medioni", patient)
    assert response.status_code in (400, 422), response.text
    assert issue_at(response.json(), where), response.json()


def test_lookup_of_an_unknown_ins_is_an_empty_bundle_and_a_wrong_key_is_400(api: Api) -> None:
    ins, system = factories.random_ins()
    assert api.get("/fhir/Patient", "dr_medioni", params={"identifier": f"{system}|{ins}"}).json()["total"] == 0
    wrong_key = f"{nir_key(ins[:13]) % 97 + 1:02d}"  # always another key in 1..97, never the right one
    assert wrong_key != ins[13:]
    bad = api.get("/fhir/Patient", "dr_medioni", params={"identifier": f"{system}|{ins[:13]}{wrong_key}"})
    assert bad.status_code == 400, bad.text
    assert "key" in bad.json()["issue"][0]["diagnostics"]
    assert issue_at(bad.json(), "identifier")


def test_what_each_actor_sees_of_a_patient(api: Api) -> None:
    patient_id, ins, system = api.new_patient(family="SECRETNAME")
    query = {"identifier": f"{system}|{ins}"}
    pro = api.get("/fhir/Patient", "dr_lambert", params=query).json()
    assert pro["entry"][0]["resource"]["name"][0]["family"] == "SECRETNAME"
    operator = api.get("/fhir/Patient", "ops_admin", params=query).json()["entry"][0]["resource"]
    assert "name" not in operator
    assert "birthDate" not in operator
    assert operator["active"] is True
    # another patient and the insurer cannot read identity traits; the same answer as "no such record"
    assert api.get(f"/fhir/Patient/{patient_id}", "jean_patient").status_code == 404
    assert api.get("/fhir/Patient", "jean_patient", params=query).json()["total"] == 0
    insurer = api.get("/fhir/Patient", "cnam_feed", params=query).json()["entry"][0]["resource"]
    assert "name" not in insurer


def test_the_patient_reads_their_own_record(api: Api) -> None:
    lookup = api.get(
        "/fhir/Patient", "jean_patient", params={"identifier": "urn:oid:1.2.250.1.213.1.4.11|155037511223327"}
    ).json()
    assert lookup["total"] == 1
    assert lookup["entry"][0]["resource"]["name"][0]["family"] == "LEFÈVRE"


def test_closing_and_reopening(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    assert api.post(f"/fhir/Patient/{patient_id}/$close", "dr_medioni").status_code == 403
    body = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueCode": "DECES"}]}
    closed = api.post(f"/fhir/Patient/{patient_id}/$close", "ops_admin", body)
    assert closed.status_code == 200, closed.text
    patient = closed.json()
    assert patient["active"] is False
    closure = _closure(patient)
    assert closure["status"] == "closed"
    assert closure["reason"] == "DECES"
    assert "date" in closure
    # deposits stop on a closed record
    refused = api.publish("dr_medioni", factories.docref(ins, system))
    assert refused.status_code in (403, 404)
    assert api.post(f"/fhir/Patient/{patient_id}/$close", "ops_admin").status_code == 409
    history = api.get(f"/fhir/Patient/{patient_id}/_history", "dr_medioni").json()
    assert [e["resource"]["active"] for e in history["entry"]] == [False, True]
    reopened = api.post(f"/fhir/Patient/{patient_id}/$reopen", "ops_admin")
    assert reopened.status_code == 200
    assert reopened.json()["active"] is True
    assert api.publish("dr_medioni", factories.docref(ins, system)).status_code == 201


def test_closure_reason_must_be_known(api: Api) -> None:
    patient_id, _, _ = api.new_patient()
    body = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueCode": "PARCE_QUE"}]}
    response = api.post(f"/fhir/Patient/{patient_id}/$close", "ops_admin", body)
    assert response.status_code == 422
