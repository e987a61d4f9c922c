"""Patient decisions and professional declarations as FHIR Consents, and the emergency flow."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa

from carnet.access.models import AccessGrant, EmergencyAccess
from carnet.demo.personas import BY_KEY
from carnet.fhirtypes import EXT_ACCESS_STATUS
from tests import factories
from tests.conftest import PARTICIPATION, Api, Clock, match_ids

KIND = "https://carnet.health/fhir/CodeSystem/consent-kind"
IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
IDNAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"


def consent(
    patient_id: str,
    kind: str,
    *,
    provision: str = "permit",
    idnat: str | None = None,
    system: str = IDNAT_PS,
    end: str | None = None,
    masked_label: bool = False,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": KIND, "code": kind}]}],
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
    if end:
        resource["provision"]["period"] = {"end": end}
    if masked_label:
        resource["provision"]["securityLabel"] = [{"system": factories.A07, "code": "MASQUE_PS"}]
    return resource


def idnat(persona: str) -> str:
    value = BY_KEY[persona].idnat
    assert value is not None
    return value


def can_read(api: Api, persona: str, doc_id: str) -> bool:
    return api.get(f"/fhir/DocumentReference/{doc_id}", persona).status_code == 200


def status_of(api: Api, persona: str, patient_id: str) -> str:
    bundle = api.get("/fhir/Patient", persona, params={"_id": patient_id}).json()
    resource = bundle["entry"][0]["resource"]
    return str(next(e["valueCode"] for e in resource["extension"] if e["url"] == EXT_ACCESS_STATUS))


def test_patient_authorizes_then_revokes_a_doctor(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    token = api.patient_token(patient_id)
    doc = api.publish("dr_medioni", factories.docref(ins, system)).json()["id"]
    assert not can_read(api, "dr_blanc", doc)
    created = api.as_token(
        token, "POST", "/fhir/Consent", consent(patient_id, "authorization", idnat=idnat("dr_blanc"))
    )
    assert created.status_code == 201, created.text
    consent_id = created.json()["id"]
    assert created.json()["status"] == "active"
    assert can_read(api, "dr_blanc", doc)
    assert status_of(api, "dr_blanc", patient_id) == "authorization"
    revoked = api.as_token(token, "DELETE", f"/fhir/Consent/{consent_id}")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "inactive"
    assert not can_read(api, "dr_blanc", doc)
    history = api.as_token(token, "GET", f"/fhir/Consent/{consent_id}/_history").json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["inactive", "active"]


def test_an_expired_authorization_opens_nothing(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    token = api.patient_token(patient_id)
    doc = api.publish("dr_medioni", factories.docref(ins, system)).json()["id"]
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
    consent_id = api.as_token(
        token, "POST", "/fhir/Consent", consent(patient_id, "authorization", idnat=idnat("dr_blanc"), end=soon)
    ).json()["id"]
    assert can_read(api, "dr_blanc", doc)
    with api.runtime.work() as work:  # thirty days later
        grant = work.session.get(AccessGrant, (uuid.UUID(patient_id), consent_id))
        assert grant is not None
        grant.end = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    assert not can_read(api, "dr_blanc", doc)


def _period_consent(
    patient_id: str, start: dt.datetime | None, end: dt.datetime | None, *, idnat: str, system: str = IDNAT_PS
) -> dict[str, Any]:
    """An authorization of ``idnat`` (a professional, or with IDNAT_STRUCT an organisation) for a period."""
    return factories.consent(
        patient_id,
        "authorization",
        idnat=idnat,
        system=system,
        start=start.isoformat() if start else None,
        end=end.isoformat() if end else None,
    )


def test_an_authorization_opens_the_record_only_within_its_period(api: Api, work_clock: Clock) -> None:
    """``provision.period``: nothing before ``start``, nothing from ``end`` on (the units of work's clock)."""
    patient_id, ins, system = api.new_patient()
    token = api.patient_token(patient_id)
    doc = api.publish("dr_medioni", factories.docref(ins, system)).json()["id"]
    opens, closes = work_clock.now + dt.timedelta(days=1), work_clock.now + dt.timedelta(days=3)
    created = api.as_token(
        token, "POST", "/fhir/Consent", _period_consent(patient_id, opens, closes, idnat=idnat("dr_blanc"))
    )
    assert created.status_code == 201, created.text
    period = created.json()["provision"]["period"]
    assert dt.datetime.fromisoformat(period["start"]) == opens
    assert dt.datetime.fromisoformat(period["end"]) == closes

    def access() -> tuple[bool, int, str]:
        return (
            can_read(api, "dr_blanc", doc),
            api.search("dr_blanc", patient=patient_id)["total"],
            status_of(api, "dr_blanc", patient_id),
        )

    assert access() == (False, 0, "none")  # granted, not yet in force
    work_clock.advance(days=1, seconds=-1)
    assert access() == (False, 0, "none")  # one second before it opens
    work_clock.advance(seconds=1)
    assert access() == (True, 1, "authorization")
    work_clock.advance(days=2, seconds=-1)
    assert access() == (True, 1, "authorization")  # its last second
    work_clock.advance(seconds=1)
    assert access() == (False, 0, "none")  # ended


def test_an_organisation_authorization_starting_later_opens_nothing_until_then(api: Api, work_clock: Clock) -> None:
    patient_id, ins, system = api.new_patient()
    token = api.patient_token(patient_id)
    doc = api.publish("dr_medioni", factories.docref(ins, system)).json()["id"]
    later = work_clock.now + dt.timedelta(hours=2)
    resource = _period_consent(patient_id, later, None, idnat="1440000289", system=IDNAT_STRUCT)  # Saint-Roch
    assert api.as_token(token, "POST", "/fhir/Consent", resource).status_code == 201
    assert not can_read(api, "dr_haddad", doc)
    work_clock.advance(hours=2)
    assert can_read(api, "dr_haddad", doc)


def test_an_authorization_whose_period_has_already_ended_opens_nothing(api: Api, work_clock: Clock) -> None:
    patient_id, ins, system = api.new_patient()
    token = api.patient_token(patient_id)
    doc = api.publish("dr_medioni", factories.docref(ins, system)).json()["id"]
    started, ended = work_clock.now - dt.timedelta(days=10), work_clock.now - dt.timedelta(days=1)
    for start in (started, None):  # a past period, or only an end in the past (the start is then "now")
        response = api.as_token(
            token, "POST", "/fhir/Consent", _period_consent(patient_id, start, ended, idnat=idnat("dr_blanc"))
        )
        assert response.status_code == 201, response.text  # recorded, as the patient wrote it
        assert not can_read(api, "dr_blanc", doc)
        assert api.search("dr_blanc", patient=patient_id)["total"] == 0
        assert status_of(api, "dr_blanc", patient_id) == "none"
    # Within the past period it opened the record: what is checked is the period against the clock.
    work_clock.advance(days=-5)
    assert can_read(api, "dr_blanc", doc)


def test_a_block_overrides_care_team_and_authorization(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    token = api.patient_token(patient_id)
    doc = api.publish("dr_medioni", factories.docref(ins, system)).json()["id"]
    api.as_token(token, "POST", "/fhir/Consent", consent(patient_id, "authorization", idnat=idnat("dr_lambert")))
    assert can_read(api, "dr_lambert", doc)
    block = api.as_token(
        token, "POST", "/fhir/Consent", consent(patient_id, "block", provision="deny", idnat=idnat("dr_lambert"))
    )
    assert block.status_code == 201, block.text
    assert not can_read(api, "dr_lambert", doc)
    assert api.search("dr_lambert", patient=patient_id)["total"] == 0
    assert status_of(api, "dr_lambert", patient_id) == "none"  # a block is shown as "no access"
    # a blocked professional cannot declare themselves back into the care team
    assert (
        api.post("/fhir/Consent", "dr_lambert", consent(patient_id, "care-team", idnat=idnat("dr_lambert"))).status_code
        == 403
    )
    assert api.as_token(token, "DELETE", f"/fhir/Consent/{block.json()['id']}").status_code == 200
    assert can_read(api, "dr_lambert", doc)


def test_an_organisation_authorization_opens_the_record_to_its_staff(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    token = api.patient_token(patient_id)
    doc = api.publish("dr_medioni", factories.docref(ins, system)).json()["id"]
    assert not can_read(api, "dr_haddad", doc)
    response = api.as_token(
        token, "POST", "/fhir/Consent", consent(patient_id, "authorization", idnat="1440000289", system=IDNAT_STRUCT)
    )
    assert response.status_code == 201, response.text
    assert can_read(api, "dr_haddad", doc)
    # blocks name persons, not organisations
    bad = api.as_token(
        token,
        "POST",
        "/fhir/Consent",
        consent(patient_id, "block", provision="deny", idnat="1440000289", system=IDNAT_STRUCT),
    )
    assert bad.status_code == 422


def test_medecin_traitant_and_administrator_see_everything(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    token = api.patient_token(patient_id)
    masked = api.publish("dr_lambert", factories.docref(ins, system, flags=("MASQUE_PS",))).json()["id"]
    residence = api.publish(
        "dr_lambert",
        factories.docref(
            ins,
            system,
            type_code="ATTEST-RESID",
            class_code="95",
            type_system="https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire",
        ),
    ).json()["id"]
    # dr_medioni opened the record (care team): neither document
    assert not can_read(api, "dr_medioni", masked)
    assert not can_read(api, "dr_medioni", residence)
    declared = api.post(
        "/fhir/Consent", "dr_medioni", consent(patient_id, "medecin-traitant", idnat=idnat("dr_medioni"))
    )
    assert declared.status_code == 201, declared.text
    assert can_read(api, "dr_medioni", masked)
    assert can_read(api, "dr_medioni", residence)
    assert status_of(api, "dr_medioni", patient_id) == "medecin-traitant"
    # the patient designates an administrator, who then blocks another professional
    api.as_token(token, "POST", "/fhir/Consent", consent(patient_id, "administrator", idnat=idnat("dr_roux")))
    assert can_read(api, "dr_roux", masked)
    blocked = api.post(
        "/fhir/Consent", "dr_roux", consent(patient_id, "block", provision="deny", idnat=idnat("ph_didot"))
    )
    assert blocked.status_code == 201, blocked.text
    assert api.search("ph_didot", patient=patient_id)["total"] == 0
    # an ordinary professional may not block
    assert (
        api.post(
            "/fhir/Consent", "dr_lambert", consent(patient_id, "block", provision="deny", idnat=idnat("inf_moreau"))
        ).status_code
        == 403
    )


def test_professionals_declare_only_for_themselves(api: Api) -> None:
    patient_id, _, _ = api.new_patient()
    response = api.post("/fhir/Consent", "dr_blanc", consent(patient_id, "care-team", idnat=idnat("dr_girard")))
    assert response.status_code == 422
    assert (
        api.post("/fhir/Consent", "dr_blanc", consent(patient_id, "care-team", idnat=idnat("dr_blanc"))).status_code
        == 201
    )
    assert status_of(api, "dr_blanc", patient_id) == "care-team"
    # a professional may not authorize someone else on the patient's behalf
    assert (
        api.post("/fhir/Consent", "dr_blanc", consent(patient_id, "authorization", idnat=idnat("dr_noir"))).status_code
        == 403
    )


def test_who_sees_which_consents(api: Api) -> None:
    patient_id, _, _ = api.new_patient()
    token = api.patient_token(patient_id)
    api.as_token(token, "POST", "/fhir/Consent", consent(patient_id, "authorization", idnat=idnat("dr_girard")))
    all_ids = set(match_ids(api.as_token(token, "GET", "/fhir/Consent", params={"patient": patient_id}).json()))
    assert len(all_ids) == 6  # five care-team declarations and the authorization
    own = api.get("/fhir/Consent", "dr_girard", params={"patient": patient_id}).json()
    assert len(match_ids(own)) == 1  # only the Consent that names them
    assert api.get("/fhir/Consent", "dr_blanc", params={"patient": patient_id}).json()["total"] == 0
    assert api.get("/fhir/Consent", "cnam_feed", params={"patient": patient_id}).json()["total"] == 0
    authorizations = api.as_token(
        token, "GET", "/fhir/Consent", params={"patient": patient_id, "category": "authorization"}
    ).json()
    assert len(match_ids(authorizations)) == 1


def test_consents_are_validated(api: Api) -> None:
    patient_id, _, _ = api.new_patient()
    token = api.patient_token(patient_id)
    cases = [
        (consent(patient_id, "authorization"), "Consent.provision.actor"),  # no actor
        (consent(patient_id, "authorization", idnat="7123"), "Consent.provision.actor[0].reference.identifier.value"),
        (consent(patient_id, "authorization", idnat=idnat("dr_blanc"), provision="deny"), "Consent.provision.type"),
        ({**consent(patient_id, "authorization", idnat=idnat("dr_blanc")), "category": []}, "Consent.category"),
        (
            consent(patient_id, "block", provision="deny", idnat=idnat("dr_blanc"), end="2030-01-01"),
            "Consent.provision.period.end",
        ),
    ]
    for resource, where in cases:
        response = api.as_token(token, "POST", "/fhir/Consent", resource)
        assert response.status_code in (400, 422), response.text
        assert any(where in e for i in response.json()["issue"] for e in i.get("expression", [])), response.text


def _emergency(
    api: Api,
    persona: str,
    patient_id: str,
    mode: str = "break-glass",
    reason: str = "patient inconscient, arrêt cardio-respiratoire",
) -> Any:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "mode", "valueCode": mode}, {"name": "reason", "valueString": reason}],
    }
    return api.post(f"/fhir/Patient/{patient_id}/$emergency-access", persona, body)


def test_break_glass_opens_a_read_only_time_limited_access(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    doc = api.publish("dr_medioni", factories.docref(ins, system)).json()["id"]
    masked = api.publish("dr_medioni", factories.docref(ins, system, flags=("MASQUE_PS",))).json()["id"]
    assert not can_read(api, "dr_blanc", doc)
    assert _emergency(api, "dr_blanc", patient_id, reason="urgent").status_code == 400  # the reason is required
    granted = _emergency(api, "dr_blanc", patient_id)
    assert granted.status_code == 200, granted.text
    params = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in granted.json()["parameter"]}
    start, end = dt.datetime.fromisoformat(params["start"]), dt.datetime.fromisoformat(params["end"])
    assert end - start == dt.timedelta(hours=4)
    assert can_read(api, "dr_blanc", doc)
    assert not can_read(api, "dr_blanc", masked)  # masked stays masked unless the patient allowed it
    assert status_of(api, "dr_blanc", patient_id) == "break-glass"
    # read-only: no metadata change
    label = {"coding": [{"system": factories.A07, "code": "MASQUE_PS"}]}
    change = api.patch(
        f"/fhir/DocumentReference/{doc}", "dr_blanc", [{"op": "add", "path": "/securityLabel/-", "value": label}]
    )
    assert change.status_code == 403
    with api.runtime.work() as work:  # four hours later
        work.session.execute(
            sa.update(EmergencyAccess)
            .where(EmergencyAccess.record_id == uuid.UUID(patient_id))
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    assert not can_read(api, "dr_blanc", doc)


def test_the_patient_decides_about_emergencies(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    token = api.patient_token(patient_id)
    masked = api.publish("dr_medioni", factories.docref(ins, system, flags=("MASQUE_PS",))).json()["id"]
    opposed = api.as_token(
        token, "POST", "/fhir/Consent", consent(patient_id, "emergency-break-glass", provision="deny")
    )
    assert opposed.status_code == 201, opposed.text
    assert _emergency(api, "dr_blanc", patient_id).status_code == 403
    api.as_token(
        token, "POST", "/fhir/Consent", consent(patient_id, "emergency-masked", provision="permit", masked_label=True)
    )
    assert api.as_token(token, "DELETE", f"/fhir/Consent/{opposed.json()['id']}").status_code == 200
    assert _emergency(api, "dr_blanc", patient_id).status_code == 200
    assert can_read(api, "dr_blanc", masked)  # masked documents allowed in emergencies
    # the regulation centre: only a SAMU régulateur, and only if the patient did not oppose
    assert _emergency(api, "dr_girard", patient_id, mode="regulation").status_code == 403
    api.as_token(token, "POST", "/fhir/Consent", consent(patient_id, "emergency-regulation", provision="deny"))
    assert _emergency(api, "dr_regul", patient_id, mode="regulation").status_code == 403


def test_opposing_break_glass_leaves_a_live_regulation_access_open(api: Api) -> None:
    patient_id, ins, system = api.new_patient(team=())
    token = api.patient_token(patient_id)
    doc = api.publish("dr_medioni", factories.docref(ins, system)).json()["id"]
    assert _emergency(api, "dr_regul", patient_id, mode="regulation").status_code == 200
    assert _emergency(api, "dr_regul", patient_id, mode="break-glass").status_code == 200  # expires a bit later
    opposed = api.as_token(
        token, "POST", "/fhir/Consent", consent(patient_id, "emergency-break-glass", provision="deny")
    )
    assert opposed.status_code == 201, opposed.text
    # The patient opposed break-glass, not the regulation centre: the regulation access still opens the record.
    assert can_read(api, "dr_regul", doc)


def test_a_blocked_professional_cannot_break_the_glass(api: Api) -> None:
    patient_id, _, _ = api.new_patient()
    token = api.patient_token(patient_id)
    api.as_token(token, "POST", "/fhir/Consent", consent(patient_id, "block", provision="deny", idnat=idnat("dr_noir")))
    assert _emergency(api, "dr_noir", patient_id).status_code == 403


def test_software_declares_the_mode_it_uses(api: Api) -> None:
    patient_id, _, _ = api.new_patient(team=())
    normal = _emergency(api, "dpi_saint_roch", patient_id)
    assert normal.status_code == 403  # its token says "normal"
    token = api.token("dpi_saint_roch", access_mode="break-glass")
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "mode", "valueCode": "break-glass"},
            {"name": "reason", "valueString": "détresse respiratoire"},
        ],
    }
    response = api.as_token(token, "POST", f"/fhir/Patient/{patient_id}/$emergency-access", body)
    assert response.status_code == 200, response.text


def test_default_confidentiality_masks_new_documents_from_professionals(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    token = api.patient_token(patient_id)
    api.as_token(
        token,
        "POST",
        "/fhir/Consent",
        consent(patient_id, "default-confidentiality", provision="deny", masked_label=True),
    )
    doc = api.publish("dr_medioni", factories.docref(ins, system)).json()
    assert "MASQUE_PS" in {c["coding"][0]["code"] for c in doc["securityLabel"]}
    assert not can_read(api, "dr_lambert", doc["id"])
    assert api.as_token(token, "GET", f"/fhir/DocumentReference/{doc['id']}").status_code == 200


def test_secret_connection_hides_a_minors_document_from_the_representatives(api: Api) -> None:
    lea = api.get(
        "/fhir/Patient", "dr_medioni", params={"identifier": "urn:oid:1.2.250.1.213.1.4.11|212054410902154"}
    ).json()
    lea_id = lea["entry"][0]["resource"]["id"]
    token = api.token("dr_medioni", secret_connection=True)
    response = api.as_token(
        token, "POST", "/fhir/DocumentReference", factories.docref("212054410902154", "urn:oid:1.2.250.1.213.1.4.11")
    )
    assert response.status_code == 201, response.text
    doc = response.json()
    assert "INVISIBLE_REPRESENTANTS_LEGAUX" in {c["coding"][0]["code"] for c in doc["securityLabel"]}
    assert doc["id"] not in match_ids(api.search("marc_parent", patient=lea_id, _id=doc["id"]))
    assert doc["id"] in match_ids(api.search("lea_minor", patient=lea_id, _id=doc["id"]))
    # an adult's record is not affected by the secret connection
    _, ins, system = api.new_patient()
    adult = api.as_token(token, "POST", "/fhir/DocumentReference", factories.docref(ins, system)).json()
    assert "INVISIBLE_REPRESENTANTS_LEGAUX" not in {c["coding"][0]["code"] for c in adult["securityLabel"]}


def test_grants_are_indexed_without_the_patients_identity(api: Api) -> None:
    patient_id, _, _ = api.new_patient()
    with api.runtime.work() as work:
        kinds = set(
            work.session.scalars(sa.select(AccessGrant.kind).where(AccessGrant.record_id == uuid.UUID(patient_id)))
        )
    assert kinds == {"care-team"}
