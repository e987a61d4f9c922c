"""``GET /api/patient/history``, "qui a consulté mon dossier": the patient's and their legal
representatives' view of the trail, grouped and filtered, in French (English on request), with names
resolved when it is shown (the trail holds identifiers only); nobody else sees it."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import httpx2 as httpx
import orjson
import sqlalchemy as sa

from carnet.accounts import service as accounts
from carnet.accounts.models import AccountKind
from carnet.audit.models import AuditEntry
from carnet.auth import tokens
from carnet.directory.models import Practitioner
from tests.audit.conftest import Trail
from tests.audit.support import deposit
from tests.conftest import Api, issue_at

HISTORY = "/api/patient/history"


def get(api: Api, token: str, language: str | None = None, **params: Any) -> httpx.Response:
    headers = {"Accept": "application/json", "Authorization": f"Bearer {token}"}
    if language:
        headers["Accept-Language"] = language
    return api.client.get(HISTORY, params=params, headers=headers)


def history(api: Api, token: str, language: str | None = None, **params: Any) -> dict[str, Any]:
    params.setdefault("limit", 100)
    response = get(api, token, language, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def representative_token(api: Api, child_id: str) -> str:
    with api.runtime.work() as work:
        account = accounts.create_account(work, kind=AccountKind.REPRESENTATIVE, label=f"rep-{uuid.uuid4().hex[:12]}")
        accounts.add_representation(work, account_id=account.id, record_id=uuid.UUID(child_id), relationship="MTH")
    return tokens.issue_dev(api.settings, f"account:{account.id}")


def a_record_with_activity(api: Api) -> tuple[str, str]:
    """A record opened by dr_medioni, a document deposited by dr_lambert and read by dr_medioni: (id, doc)."""
    patient_id, ins, system = api.new_patient()
    doc = deposit(api, ins, system)
    assert api.get(f"/fhir/DocumentReference/{doc}", "dr_medioni").status_code == 200
    return patient_id, doc


# ----------------------------------------------------------------------------------- the lines


def test_the_patient_sees_who_did_what_in_french(api: Api) -> None:
    patient_id, doc = a_record_with_activity(api)
    body = history(api, api.patient_token(patient_id))
    assert body["record"] == patient_id
    assert body["language"] == "fr"
    items = body["items"]
    assert body["total"] == len(items) > 0
    dates = [i["actionDate"] for i in items]
    assert dates == sorted(dates, reverse=True)  # newest first

    added = [i for i in items if i["action"] == "document.create"]
    assert len(added) == 1
    line = added[0]
    assert line["group"] == "MEDICAL_DOCUMENT"
    assert line["actorType"] == "HEALTHCARE_PROFESSIONAL"
    assert line["actorDisplayName"] == "Dr Claire LAMBERT"
    assert line["document"]["id"] == doc
    display = line["document"]["typeDisplay"]
    assert display
    assert line["actionDescription"] == f"a ajouté le document « {display} »"
    assert line["label"] == f"Dr Claire LAMBERT a ajouté le document « {display} »"
    assert re.fullmatch(r"\d{1,2} [a-zéû]+ \d{4} à \d{2}:\d{2}", line["actionDateLabel"]), line["actionDateLabel"]
    # The deposit's echo read is folded into the deposit: the only read is dr_medioni's.
    reads = [i for i in items if i["action"] == "document.read"]
    assert [(r["actorDisplayName"], r["actionDescription"]) for r in reads] == [
        ("Dr Stéphane MEDIONI", f"a consulté le document « {display} »")
    ]
    opened = next(i for i in items if i["action"] == "record.create")
    assert (opened["group"], opened["actionDescription"]) == ("GENERAL", "a ouvert le dossier")
    assert any(
        i["action"] == "consent.create" and i["actionDescription"] == "s'est déclaré(e) dans l'équipe de soins"
        for i in items
    )
    # The events the history shows are the patient's to read in full as AuditEvents.
    assert api.as_token(api.patient_token(patient_id), "GET", f"/fhir/AuditEvent/{line['id']}").status_code == 200


def test_english_on_request(api: Api) -> None:
    patient_id, _ = a_record_with_activity(api)
    body = history(api, api.patient_token(patient_id), "en-GB,en;q=0.9,fr;q=0.5")
    assert body["language"] == "en"
    added = next(i for i in body["items"] if i["action"] == "document.create")
    assert added["actionDescription"] == f"added the document “{added['document']['typeDisplay']}”"
    assert re.fullmatch(r"[A-Z][a-z]+ \d{1,2}, \d{4} at \d{1,2}:\d{2}\s?[ap]m", added["actionDateLabel"]), added
    response = get(api, api.patient_token(patient_id), "de-DE")
    assert response.json()["language"] == "fr"  # neither French nor English asked: French
    assert response.headers["Content-Language"] == "fr"


def test_the_patient_s_own_actions_read_as_vous(api: Api) -> None:
    patient_id, _ = a_record_with_activity(api)
    token = api.patient_token(patient_id)
    history(api, token)  # reading the history is traced, as the patient's own action
    mine = [i for i in history(api, token)["items"] if i["action"] == "audit.read"]
    assert mine
    assert {i["actorDisplayName"] for i in mine} == {"Vous"}
    assert {i["actorType"] for i in mine} == {"PATIENT"}
    assert mine[0]["actionDescription"] == "avez consulté l'historique des accès au dossier"


def test_names_are_resolved_when_shown_never_stored(trail: Trail) -> None:
    api = trail.api
    patient_id, _ = a_record_with_activity(api)
    with trail.runtime.read() as work:
        payloads = list(
            work.session.execute(
                sa.select(AuditEntry.payload).where(AuditEntry.chain == uuid.UUID(patient_id))
            ).scalars()
        )
    stored = b"\n".join(payloads).decode()
    assert "810001745206" in stored  # dr_lambert, by IdNat_PS
    for name in ("LAMBERT", "Claire", "MEDIONI", "Saint-Roch", "Compte rendu"):
        assert name not in stored
    # The directory changes the name: the history shows the new one.
    with trail.runtime.work() as work:
        work.session.execute(
            sa.update(Practitioner).where(Practitioner.idnat_ps == "810001745206").values(family="LAMBERT-DURAND")
        )
    added = next(i for i in history(api, api.patient_token(patient_id))["items"] if i["action"] == "document.create")
    assert added["actorDisplayName"] == "Dr Claire LAMBERT-DURAND"


# ----------------------------------------------------------------------------------- filters


def test_filter_by_actor_type_group_and_action(api: Api) -> None:
    patient_id, _ = a_record_with_activity(api)
    token = api.patient_token(patient_id)
    history(api, token)  # a patient's own line
    everything = history(api, token)["items"]

    pros = history(api, token, actorType="HEALTHCARE_PROFESSIONAL")["items"]
    assert pros
    assert {i["actorType"] for i in pros} == {"HEALTHCARE_PROFESSIONAL"}
    assert {i["id"] for i in pros} == {i["id"] for i in everything if i["actorType"] == "HEALTHCARE_PROFESSIONAL"}
    patient = history(api, token, actorType="PATIENT")["items"]
    assert patient
    assert {i["actorType"] for i in patient} == {"PATIENT"}
    both = history(api, token, actorType="PATIENT,HEALTHCARE_PROFESSIONAL")["items"]
    assert {i["id"] for i in both} >= {i["id"] for i in pros} | {i["id"] for i in patient}
    assert history(api, token, actorType="SERVICE_TIERS")["total"] == 0

    documents = history(api, token, group="MEDICAL_DOCUMENT")["items"]
    assert documents
    assert {i["group"] for i in documents} == {"MEDICAL_DOCUMENT"}
    general = history(api, token, group="GENERAL")["items"]
    assert general
    assert {i["group"] for i in general} == {"GENERAL"}

    reads = history(api, token, action="document.read")["items"]
    assert reads
    assert {i["action"] for i in reads} == {"document.read"}
    two = history(api, token, action=["document.read", "document.create"])["items"]
    assert {i["action"] for i in two} == {"document.read", "document.create"}
    # Filters combine.
    assert history(api, token, group="GENERAL", action="document.read")["total"] == 0
    combined = history(api, token, actorType="HEALTHCARE_PROFESSIONAL", group="MEDICAL_DOCUMENT")["items"]
    assert combined
    assert all(i["actorType"] == "HEALTHCARE_PROFESSIONAL" and i["group"] == "MEDICAL_DOCUMENT" for i in combined)


def test_filter_by_date_range_sort_and_paging(api: Api) -> None:
    patient_id, _ = a_record_with_activity(api)
    token = api.patient_token(patient_id)
    everything = history(api, token)["items"]
    today = dt.datetime.now(dt.UTC).date()
    yesterday, tomorrow = today - dt.timedelta(days=1), today + dt.timedelta(days=1)
    assert history(api, token, **{"from": today.isoformat(), "to": today.isoformat()})["total"] >= len(everything)
    assert history(api, token, **{"from": tomorrow.isoformat()})["total"] == 0
    assert history(api, token, to=yesterday.isoformat())["total"] == 0

    ordered = sorted(i["actionDate"] for i in everything)
    middle = ordered[len(ordered) // 2]
    assert ordered[0] < middle
    later = history(api, token, **{"from": middle})["items"]
    assert later
    assert all(i["actionDate"] >= middle for i in later)
    before = history(api, token, to=middle)["items"]
    assert before
    assert all(i["actionDate"] < middle for i in before)
    assert {i["id"] for i in everything} <= {i["id"] for i in later} | {i["id"] for i in before}

    ascending = history(api, token, sort="asc", to=middle)["items"]
    assert [i["actionDate"] for i in ascending] == sorted(i["actionDate"] for i in ascending)
    page = history(api, token, limit=2, offset=1, to=middle)
    assert page["limit"] == 2
    assert page["offset"] == 1
    assert page["total"] == len(before)
    assert [i["id"] for i in page["items"]] == [i["id"] for i in before[1:3]]


def test_bad_input_is_refused_naming_the_parameter(api: Api) -> None:
    patient_id, _ = a_record_with_activity(api)
    token = api.patient_token(patient_id)
    for params, name in (
        ({"actorType": "ALIEN"}, "actorType"),
        ({"group": "NOPE"}, "group"),
        ({"action": "document.eat"}, "action"),
        ({"from": "last tuesday"}, "from"),
        ({"to": "2026-13-45"}, "to"),
    ):
        response = get(api, token, **params)
        assert response.status_code == 400, (params, response.text)
        assert issue_at(response.json(), name), (params, response.text)
    for params in ({"sort": "sideways"}, {"limit": "0"}, {"limit": "1000"}, {"offset": "-1"}):
        response = get(api, token, **params)
        assert response.status_code == 400, (params, response.text)
        assert issue_at(response.json(), next(iter(params))), (params, response.text)


# ----------------------------------------------------------------------------------- who sees it


def test_a_legal_representative_sees_their_child_s_history(api: Api) -> None:
    child_id, _ = a_record_with_activity(api)
    token = representative_token(api, child_id)
    body = history(api, token)  # their only child's record, by default
    assert body["record"] == child_id
    assert any(i["action"] == "document.create" for i in body["items"])
    assert history(api, token, record=child_id)["total"] == body["total"] + 1  # (+ their first reading)
    # The child's own patient sees the representative's reading, as a legal representative's.
    seen = history(api, api.patient_token(child_id), actorType="PATIENT")["items"]
    assert any(i["actorDisplayName"] == "Un représentant légal" for i in seen)
    # Another record is not theirs.
    other, _, _ = api.new_patient()
    assert get(api, token, record=other).status_code == 404


def test_nobody_else_sees_the_history(api: Api) -> None:
    patient_id, _ = a_record_with_activity(api)
    api.declare("dr_medioni", patient_id, "medecin-traitant")
    other, _, _ = api.new_patient()
    before = history(api, api.patient_token(patient_id))["total"]
    unknown = get(api, api.patient_token(other), record=str(uuid.uuid4()))
    assert unknown.status_code == 404
    refused = get(api, api.patient_token(other), record=patient_id)
    assert refused.status_code == 404
    assert refused.json() == unknown.json()  # not theirs looks exactly like missing
    for persona in ("dr_medioni", "dr_lambert", "auditeur", "ops_admin", "cnam_feed", "dpi_saint_roch"):
        response = api.client.get(
            HISTORY, params={"record": patient_id}, headers={"Authorization": f"Bearer {api.token(persona)}"}
        )
        assert response.status_code == 404, (persona, response.text)
        assert patient_id not in response.text
    assert api.client.get(HISTORY, params={"record": patient_id}).status_code == 401
    # None of them read anything: the patient's history shows no reading of it but their own.
    after = history(api, api.patient_token(patient_id))["items"]
    readers = {i["actorDisplayName"] for i in after if i["action"] == "audit.read" and i["outcome"] == "success"}
    assert readers <= {"Vous"}
    assert len(after) >= before


def test_the_history_never_shows_what_the_patient_may_not_see(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    hidden = deposit(api, ins, system, flags=("INVISIBLE_PATIENT",))
    assert api.get(f"/fhir/DocumentReference/{hidden}", "dr_medioni").status_code == 200
    items = history(api, api.patient_token(patient_id))["items"]
    assert all((i["document"] or {}).get("id") != hidden for i in items)
    assert hidden not in orjson.dumps(items).decode()
