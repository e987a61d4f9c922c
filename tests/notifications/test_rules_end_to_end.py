"""The notification rules through the real services, on both databases: nothing is hand-built here.

A professional reads, a patient decides through the Consent API, the operator closes a record, an author
lifts INVISIBLE_PATIENT with a PATCH, a professional breaks the glass: each goes through the FHIR API, and
what it caused is read back twice — the outbox (events and deliveries, from the database) and the
notification centre of each person told (``GET /notifications``, as they see it).
"""

from __future__ import annotations

import collections
from typing import Any

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from carnet.app import create_app
from carnet.auth import tokens
from carnet.runtime import Runtime
from tests import factories
from tests.api.test_consents import consent
from tests.conftest import Api
from tests.notifications.support import (
    idnat,
    representative,
    set_practitioner_email,
    unique_email,
    variant,
    written,
)

FIRST = "professional-first-access"
EMERGENCY = "emergency-access"
ADDED = "document-added"
CONSENT = "consent-changed"
CLOSED = "record-closed"
JSON = {"Accept": "application/json"}


# ---------------------------------------------------------------------------------------- people
class Person:
    """Someone told about a record, seen through their own token: the centre and their preferences."""

    def __init__(self, api: Api, token: str, key: str) -> None:
        self.api, self.token, self.key = api, token, key

    def call(self, method: str, url: str, body: Any = None) -> httpx.Response:
        headers = {**JSON, "Authorization": f"Bearer {self.token}"}
        return self.api.client.request(method, url, headers=headers, json=body)

    def notices(self, patient_id: str) -> list[dict[str, Any]]:
        """This person's notices about ``patient_id``, newest first, from the notification centre."""
        page = self.call("GET", "/notifications?limit=100")
        assert page.status_code == 200, page.text
        return [n for n in page.json()["notifications"] if n["patient"] == patient_id]

    def kinds(self, patient_id: str) -> list[str]:
        return sorted(n["kind"] for n in self.notices(patient_id))

    def prefer(self, **body: Any) -> None:
        saved = self.call("PUT", "/notifications/preferences", body)
        assert saved.status_code == 200, saved.text


def patient_of(api: Api, patient_id: str, *, email: str | None = None) -> Person:
    token = api.patient_token(patient_id)
    subject = tokens.verify(api.settings, token)["sub"]
    person = Person(api, token, str(subject))
    if email:
        person.prefer(email=email)  # the e-mail channel comes on with the address
    return person


def parent_of(api: Api, patient_id: str) -> Person:
    account_id = representative(api.runtime, patient_id)
    return Person(api, tokens.issue_dev(api.settings, f"account:{account_id}"), f"account:{account_id}")


def professional(api: Api, persona: str) -> Person:
    return Person(api, api.token(persona), f"pro:{idnat(persona)}")


def kinds_of_events(runtime: Runtime, patient_id: str) -> collections.Counter[str]:
    return collections.Counter(kind for kind, _ in written(runtime, patient_id).events)


# ---------------------------------------------------------------------------------------- first access
def test_a_professionals_first_read_notifies_once_and_the_next_ones_do_not(api: Api) -> None:
    patient_id, _, _ = api.new_patient(team=())
    patient = patient_of(api, patient_id, email=unique_email("first"))
    parent = parent_of(api, patient_id)
    allowed = api.as_token(
        patient.token, "POST", "/fhir/Consent", consent(patient_id, "authorization", idnat=idnat("dr_blanc"))
    )
    assert allowed.status_code == 201, allowed.text
    before = kinds_of_events(api.runtime, patient_id)
    assert patient.kinds(patient_id) == []  # the patient's own decision: told to the representative only

    read = api.get(f"/fhir/Patient/{patient_id}", "dr_blanc")
    assert read.status_code == 200, read.text
    assert kinds_of_events(api.runtime, patient_id) - before == {FIRST: 1}
    (notice,) = patient.notices(patient_id)
    assert (notice["kind"], notice["topic"], notice["role"], notice["read"]) == (
        FIRST,
        "professional-access",
        "holder",
        False,
    )
    assert notice["professional"] == {"idnat": idnat("dr_blanc"), "name": "Marc BLANC"}
    assert [n["kind"] for n in parent.notices(patient_id) if n["kind"] == FIRST] == [FIRST]
    sent = written(api.runtime, patient_id)
    assert sent.sent(patient.key) == [("email", FIRST)]  # the patient gave an address
    assert sent.sent(parent.key) == []  # the representative did not: in-app only

    # Later accesses by the same professional — through this process, or another one that never saw the
    # first (its memory of known accesses is empty: the database's says no) — notify nobody.
    assert api.search("dr_blanc", patient=patient_id)["total"] == 0
    fresh = variant(api.runtime)
    with TestClient(create_app(fresh.settings, fresh), base_url="http://testserver") as other_process:
        again = Api(other_process, fresh).get(f"/fhir/Patient/{patient_id}", "dr_blanc")
        assert again.status_code == 200
    assert kinds_of_events(api.runtime, patient_id) - before == {FIRST: 1}
    assert [n["kind"] for n in patient.notices(patient_id)] == [FIRST]

    # Another professional's first access is news again.
    assert api.get(f"/fhir/Patient/{patient_id}", "dr_medioni").status_code == 200  # opened it: told by that
    allowed = api.as_token(
        patient.token, "POST", "/fhir/Consent", consent(patient_id, "authorization", idnat=idnat("dr_girard"))
    )
    assert allowed.status_code == 201
    assert api.get(f"/fhir/Patient/{patient_id}", "dr_girard").status_code == 200
    firsts = [n["professional"]["name"] for n in patient.notices(patient_id) if n["kind"] == FIRST]
    assert firsts == ["Paul GIRARD", "Marc BLANC"]


# ---------------------------------------------------------------------------------------- consents
def test_consent_changes_through_the_consent_api_are_told_to_the_others(api: Api) -> None:
    patient_id, _, _ = api.new_patient(team=())
    patient = patient_of(api, patient_id)
    parent = parent_of(api, patient_id)
    baseline = {who.key: len(who.notices(patient_id)) for who in (patient, parent)}

    def news(who: Person) -> list[tuple[str, str]]:
        """(kind, text) of what ``who`` was told since the baseline, oldest first."""
        fresh = who.notices(patient_id)[: len(who.notices(patient_id)) - baseline[who.key]]
        return [(n["kind"], n["text"]) for n in reversed(fresh)]

    # A professional declares themselves in the care team: the patient and the representative are told.
    api.declare("dr_camparini", patient_id, "care-team")
    assert [k for k, _ in news(patient)] == [CONSENT]
    assert [k for k, _ in news(parent)] == [CONSENT]

    # The patient authorizes, blocks, opposes break-glass, then withdraws the authorization: told to the
    # representative, one notice per decision, never to the patient who decided.
    decisions = [
        consent(patient_id, "authorization", idnat=idnat("dr_blanc")),
        consent(patient_id, "block", provision="deny", idnat=idnat("dr_noir")),
        consent(patient_id, "emergency-break-glass", provision="deny"),
    ]
    ids = []
    for resource in decisions:
        created = api.as_token(patient.token, "POST", "/fhir/Consent", resource)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    assert api.as_token(patient.token, "DELETE", f"/fhir/Consent/{ids[0]}").status_code == 200
    assert [k for k, _ in news(patient)] == [CONSENT]  # still only the professional's declaration
    assert [k for k, _ in news(parent)] == [CONSENT] * 5

    events = [p for kind, p in written(api.runtime, patient_id).events if kind == CONSENT]
    assert sorted((p["consent"], p["change"], p["actor"]) for p in events) == sorted(
        [
            ("care-team", "create", "professional"),
            ("authorization", "create", "patient"),
            ("block", "create", "patient"),
            ("emergency-break-glass", "create", "patient"),
            ("authorization", "revoke", "patient"),
        ]
    )

    # The representative's own decision is told to the patient, not to the representative.
    by_parent = api.as_token(
        parent.token, "POST", "/fhir/Consent", consent(patient_id, "emergency-regulation", provision="deny")
    )
    assert by_parent.status_code == 201, by_parent.text
    assert [k for k, _ in news(patient)] == [CONSENT, CONSENT]
    assert len(news(parent)) == 5


# ---------------------------------------------------------------------------------------- the record
def test_closing_a_record_tells_the_patient_and_the_representatives(api: Api) -> None:
    patient_id, _, _ = api.new_patient(team=())
    patient = patient_of(api, patient_id, email=unique_email("closed"))
    parent = parent_of(api, patient_id)
    before = kinds_of_events(api.runtime, patient_id)
    body = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueCode": "DECES"}]}
    closed = api.post(f"/fhir/Patient/{patient_id}/$close", "ops_admin", body)
    assert closed.status_code == 200, closed.text
    assert kinds_of_events(api.runtime, patient_id) - before == {CLOSED: 1}
    assert patient.kinds(patient_id) == [CLOSED]
    assert parent.kinds(patient_id) == [CLOSED]
    assert written(api.runtime, patient_id).sent(patient.key) == [("email", CLOSED)]
    # Reopening is no notice.
    assert api.post(f"/fhir/Patient/{patient_id}/$reopen", "ops_admin").status_code == 200
    assert kinds_of_events(api.runtime, patient_id) - before == {CLOSED: 1}


# ---------------------------------------------------------------------------------------- documents
def test_lifting_invisible_patient_makes_the_document_news_to_the_patient(api: Api) -> None:
    patient_id, ins, system = api.new_patient(team=("dr_lambert",))
    patient = patient_of(api, patient_id, email=unique_email("lifted"))
    parent = parent_of(api, patient_id)
    before = kinds_of_events(api.runtime, patient_id)
    hidden = factories.docref(ins, system, author_idnat=idnat("dr_lambert"), flags=("INVISIBLE_PATIENT",))
    created = api.publish("dr_lambert", hidden)
    assert created.status_code == 201, created.text
    doc_id = created.json()["id"]
    # Deposited hidden from the patient (until the announcement): nobody is told of it.
    assert patient.kinds(patient_id) == []
    assert parent.kinds(patient_id) == []
    assert written(api.runtime, patient_id).sent(patient.key) == []

    labels = created.json()["securityLabel"]
    position = next(i for i, label in enumerate(labels) if label["coding"][0]["code"] == "INVISIBLE_PATIENT")
    lifted = api.patch(
        f"/fhir/DocumentReference/{doc_id}", "dr_lambert", [{"op": "remove", "path": f"/securityLabel/{position}"}]
    )
    assert lifted.status_code == 200, lifted.text
    # One event: the lift (the deposit told nobody, so it left no event, nor a first-access notice).
    assert kinds_of_events(api.runtime, patient_id) - before == {ADDED: 1}
    (notice,) = patient.notices(patient_id)
    assert (notice["kind"], notice["topic"], notice["professional"]["idnat"]) == (
        ADDED,
        "documents",
        idnat("dr_lambert"),
    )
    assert [n["kind"] for n in parent.notices(patient_id)] == [ADDED]
    assert written(api.runtime, patient_id).sent(patient.key) == [("email", ADDED)]
    # The patient now sees it, as the notice says.
    assert api.as_token(patient.token, "GET", f"/fhir/DocumentReference/{doc_id}").status_code == 200

    # Masking it from professionals is no news to anyone.
    label = {"coding": [{"system": factories.A07, "code": "MASQUE_PS"}]}
    masked = api.patch(
        f"/fhir/DocumentReference/{doc_id}", "dr_lambert", [{"op": "add", "path": "/securityLabel/-", "value": label}]
    )
    assert masked.status_code == 200, masked.text
    assert len(patient.notices(patient_id)) == 1


# ---------------------------------------------------------------------------------------- emergencies
@pytest.mark.parametrize(
    ("mode", "persona", "name"),
    [("break-glass", "dr_blanc", "Marc BLANC"), ("regulation", "dr_regul", "Yanis MERCIER")],
)
def test_an_emergency_access_tells_the_patient_and_the_medecin_traitant(
    api: Api, mode: str, persona: str, name: str
) -> None:
    patient_id, _, _ = api.new_patient(team=())
    api.declare("dr_medioni", patient_id, "medecin-traitant")
    address = unique_email("urgence")
    patient = patient_of(api, patient_id, email=address)
    patient.prefer(email=address, topics={"professional-access": False, "consents": False, "record": False})
    doctor = professional(api, "dr_medioni")
    emergency_doctor = professional(api, persona)
    before = kinds_of_events(api.runtime, patient_id)
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "mode", "valueCode": mode}, {"name": "reason", "valueString": "patient inconscient"}],
    }
    set_practitioner_email(api.runtime, "dr_medioni", "stephane.medioni@medecin.mssante.fr")
    try:
        opened = api.post(f"/fhir/Patient/{patient_id}/$emergency-access", persona, body)
    finally:
        set_practitioner_email(api.runtime, "dr_medioni", None)
    assert opened.status_code == 200, opened.text

    # One event (the access; the professional's first access is told by it), for the patient and the doctor.
    assert kinds_of_events(api.runtime, patient_id) - before == {EMERGENCY: 1}
    (params,) = [p for kind, p in written(api.runtime, patient_id).events if kind == EMERGENCY]
    assert params["mode"] == mode
    (notice,) = patient.notices(patient_id)  # every other topic is off; emergencies cannot be
    assert (notice["kind"], notice["role"], notice["professional"]["idnat"]) == (EMERGENCY, "holder", idnat(persona))
    (told,) = doctor.notices(patient_id)[:1]
    assert [n["kind"] for n in doctor.notices(patient_id)] == [EMERGENCY]
    assert (told["role"], told["professional"]["name"]) == ("medecin-traitant", name)
    assert emergency_doctor.notices(patient_id) == []  # not told of their own access
    sent = written(api.runtime, patient_id)
    assert sent.sent(patient.key) == [("email", EMERGENCY)]
    assert sent.sent(doctor.key) == [("email", EMERGENCY)]  # at the directory's secure address
    assert sent.sent(emergency_doctor.key) == []
