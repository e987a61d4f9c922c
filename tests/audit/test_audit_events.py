"""FHIR ``AuditEvent`` (IHE BALP shapes) on both databases: who reads which traces, the shapes of each
kind of access, the search parameters and their errors.

Who may read: the patient (their record only), the médecin traitant (the record's), a professional (the
traces of their own actions only), the auditor (all); operators, insurers and anyone else nothing. A
record the caller may not read is answered exactly like one that does not exist.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import orjson
import sqlalchemy as sa

from carnet.audit.models import AuditEntry
from carnet.demo.personas import BY_KEY
from tests import factories
from tests.audit.support import deposit
from tests.conftest import Api, issue_at

IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SID_CLIENT = "https://carnet.health/fhir/sid/client"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition"
REASON = "patient inconscient, arrêt cardio-respiratoire"


def idnat(persona: str) -> str:
    value = BY_KEY[persona].idnat
    assert value is not None
    return value


def search(api: Api, persona: str | None, token: str | None = None, **params: str) -> dict[str, Any]:
    params.setdefault("_count", "100")
    if token is not None:
        response = api.as_token(token, "GET", "/fhir/AuditEvent", params=params)
    else:
        response = api.get("/fhir/AuditEvent", persona, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    return body


def events(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])]


def patient_of(event: dict[str, Any]) -> str | None:
    for entity in event.get("entity", []):
        reference = entity.get("what", {}).get("reference", "")
        if reference.startswith("Patient/") and entity.get("role", {}).get("code") == "1":
            return str(reference.removeprefix("Patient/"))
    return None


def requestor(event: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [a for a in event["agent"] if a["requestor"]]
    assert len(found) == 1, event["agent"]
    return found[0]


def agent_idnat(event: dict[str, Any]) -> str | None:
    identifier = requestor(event)["who"].get("identifier", {})
    return identifier.get("value") if identifier.get("system") == IDNAT_PS else None


def subtype_codes(event: dict[str, Any]) -> set[str]:
    return {c["code"] for c in event["subtype"]}


def what(event: dict[str, Any]) -> list[str]:
    return [e["what"]["reference"] for e in event.get("entity", []) if "reference" in e.get("what", {})]


def stored_count(api: Api, patient_id: str) -> int:
    with api.runtime.read() as work:
        count = work.session.scalar(
            sa.select(sa.func.count()).select_from(AuditEntry).where(AuditEntry.chain == uuid.UUID(patient_id))
        )
    return int(count or 0)


def started() -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------- who reads what


def test_the_patient_reads_their_record_s_traces_and_nobody_else_s(api: Api) -> None:
    mine, ins, system = api.new_patient()
    other, other_ins, other_system = api.new_patient()
    deposit(api, ins, system)
    deposit(api, other_ins, other_system)
    token = api.patient_token(mine)

    everything = events(search(api, None, token))
    assert everything, "the patient sees their record's traces"
    assert {patient_of(e) for e in everything} == {mine}
    actors = {agent_idnat(e) for e in everything}
    assert {idnat("dr_medioni"), idnat("dr_lambert")} <= actors  # everyone's actions on the record

    named = events(search(api, None, token, patient=mine))
    assert {patient_of(e) for e in named} == {mine}
    assert {e["id"] for e in everything} <= {e["id"] for e in named}  # (named also holds the first search's trace)

    # Another record: exactly the answer for a record that does not exist.
    theirs = search(api, None, token, patient=other)
    unknown = search(api, None, token, patient=str(uuid.uuid4()))
    assert theirs["total"] == unknown["total"] == 0
    assert events(theirs) == events(unknown) == []

    # Reading one event: theirs by id, not the other record's.
    assert api.as_token(token, "GET", f"/fhir/AuditEvent/{everything[0]['id']}").status_code == 200
    other_event = events(search(api, "auditeur", patient=other))[0]["id"]
    refused = api.as_token(token, "GET", f"/fhir/AuditEvent/{other_event}")
    missing = api.as_token(token, "GET", f"/fhir/AuditEvent/{'a' * 64}")
    assert refused.status_code == missing.status_code == 404
    assert refused.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]


def test_reading_traces_is_itself_traced(api: Api) -> None:
    patient_id, _, _ = api.new_patient()
    before = stored_count(api, patient_id)
    search(api, None, api.patient_token(patient_id), patient=patient_id)
    with api.runtime.read() as work:
        last = work.session.execute(
            sa.select(AuditEntry.payload)
            .where(AuditEntry.chain == uuid.UUID(patient_id))
            .order_by(AuditEntry.seq.desc())
            .limit(1)
        ).scalar_one()
    assert stored_count(api, patient_id) == before + 1
    assert orjson.loads(last)["action"] == "audit.read"


def test_the_medecin_traitant_reads_the_record_s_traces(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    deposit(api, ins, system)  # by dr_lambert
    # Before being declared médecin traitant, dr_medioni reads only their own actions.
    own = events(search(api, "dr_medioni", patient=patient_id))
    assert own
    assert {agent_idnat(e) for e in own} == {idnat("dr_medioni")}
    api.declare("dr_medioni", patient_id, "medecin-traitant")
    found = events(search(api, "dr_medioni", patient=patient_id))
    assert {patient_of(e) for e in found} == {patient_id}
    assert idnat("dr_lambert") in {agent_idnat(e) for e in found}
    creates = [e for e in found if e["action"] == "C" and agent_idnat(e) == idnat("dr_lambert")]
    assert creates, "the deposit by another professional is shown to the médecin traitant"
    assert api.get(f"/fhir/AuditEvent/{creates[0]['id']}", "dr_medioni").status_code == 200


def test_a_professional_never_reads_another_professional_s_traces(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    doc = deposit(api, ins, system)  # dr_lambert
    assert api.get(f"/fhir/DocumentReference/{doc}", "dr_camparini").status_code == 200

    # dr_camparini is authorized on the record (care team) and acted on it: their own traces only.
    theirs = events(search(api, "dr_camparini", patient=patient_id))
    assert theirs
    assert {agent_idnat(e) for e in theirs} == {idnat("dr_camparini")}
    lambert_event = next(
        e["id"] for e in events(search(api, "auditeur", patient=patient_id)) if agent_idnat(e) == idnat("dr_lambert")
    )
    refused = api.get(f"/fhir/AuditEvent/{lambert_event}", "dr_camparini")
    assert refused.status_code == 404
    assert refused.json() == api.get(f"/fhir/AuditEvent/{'b' * 64}", "dr_camparini").json()

    # Searching by agent does not help either.
    by_agent = search(api, "dr_camparini", patient=patient_id, agent=f"{IDNAT_PS}|{idnat('dr_lambert')}")
    assert by_agent["total"] == 0

    # A professional who never acted on the record: the same answer as for a record that does not exist.
    stranger = search(api, "dr_blanc", patient=patient_id)
    nowhere = search(api, "dr_blanc", patient=str(uuid.uuid4()))
    assert stranger["total"] == nowhere["total"] == 0
    assert events(stranger) == events(nowhere) == []


def test_software_reads_the_traces_of_the_professional_it_acts_for(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    deposit(api, ins, system, persona="dr_medioni")
    deposit(api, ins, system, persona="dpi_saint_roch")  # for dr_lambert
    found = events(search(api, "dpi_saint_roch", patient=patient_id))
    assert found
    assert {agent_idnat(e) for e in found} == {idnat("dr_lambert")}


def test_the_auditor_reads_every_record_s_traces(api: Api) -> None:
    since = started()
    first, ins, system = api.new_patient()
    second, _, _ = api.new_patient(persona="dr_lambert")
    deposit(api, ins, system)
    found = events(search(api, "auditeur", date=f"ge{since}"))
    assert {first, second} <= {patient_of(e) for e in found}
    one = events(search(api, "auditeur", patient=first))
    assert {patient_of(e) for e in one} == {first}
    assert len(one) >= stored_count(api, first) - 1  # all of the chain (less the trace of this very search)
    assert api.get(f"/fhir/AuditEvent/{one[-1]['id']}", "auditeur").status_code == 200


def test_operators_insurers_and_anonymous_callers_read_no_traces(api: Api) -> None:
    since = started()
    patient_id, ins, system = api.new_patient()
    deposit(api, ins, system)
    event_id = events(search(api, "auditeur", patient=patient_id))[0]["id"]
    for persona in ("ops_admin", "cnam_feed"):
        assert search(api, persona, patient=patient_id)["total"] == 0
        assert search(api, persona, date=f"ge{since}")["total"] == 0
        assert search(api, persona)["total"] == 0
        assert api.get(f"/fhir/AuditEvent/{event_id}", persona).status_code == 404
    assert api.get("/fhir/AuditEvent", None).status_code == 401


# ----------------------------------------------------------------------------------- BALP shapes


def test_each_kind_of_access_has_its_balp_shape(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    doc = deposit(api, ins, system)
    assert api.get(f"/fhir/DocumentReference/{doc}", "dr_medioni").status_code == 200
    assert api.search("dr_medioni", patient=patient_id, status="current")["total"] == 1
    label = {"coding": [{"system": factories.A07, "code": "MASQUE_PS"}]}
    patched = api.patch(
        f"/fhir/DocumentReference/{doc}", "dr_lambert", [{"op": "add", "path": "/securityLabel/-", "value": label}]
    )
    assert patched.status_code == 200, patched.text
    assert api.delete(f"/fhir/DocumentReference/{doc}", "dr_lambert").status_code == 200

    found = events(search(api, "auditeur", patient=patient_id, _sort="date"))
    shapes = {(e["action"], frozenset(subtype_codes(e))) for e in found}
    for action, subtype in (("C", "create"), ("R", "read"), ("E", "search-type"), ("U", "update"), ("D", "delete")):
        assert any(a == action and subtype in s for a, s in shapes), (action, subtype, shapes)

    def one(action: str, subtype: str) -> dict[str, Any]:
        return next(
            e
            for e in found
            if e["action"] == action
            and subtype in subtype_codes(e)
            and any(ref.startswith(f"DocumentReference/{doc}") for ref in what(e))
        )

    create = one("C", "create")
    assert create["type"]["code"] == "rest"
    assert {c["system"] for c in create["subtype"]} == {RESTFUL}
    assert create["outcome"] == "0"
    assert create["meta"]["profile"] == [f"{BALP}/IHE.BasicAudit.PatientCreate"]
    assert agent_idnat(create) == idnat("dr_lambert")
    assert f"DocumentReference/{doc}/_history/1" in what(create)
    assert f"Patient/{patient_id}" in what(create)

    read = next(e for e in found if e["action"] == "R" and agent_idnat(e) == idnat("dr_medioni") and what(e)[1:])
    assert read["meta"]["profile"] == [f"{BALP}/IHE.BasicAudit.PatientRead"]
    assert any(ref.startswith(f"DocumentReference/{doc}") for ref in what(read))
    assert requestor(read)["type"]["coding"][0]["code"] == "IRCP"  # the information recipient

    query = next(
        e
        for e in found
        if "search-type" in subtype_codes(e)
        and agent_idnat(e) == idnat("dr_medioni")
        and any(x.get("role", {}).get("code") == "24" for x in e["entity"])
    )
    assert query["meta"]["profile"] == [f"{BALP}/IHE.BasicAudit.PatientQuery"]
    queries = [x for x in query["entity"] if x.get("role", {}).get("code") == "24"]
    assert "statuses=current" in base64.b64decode(queries[0]["query"]).decode()  # the query, as codes and ids
    # BALP: the search is followed by one read per document it returned.
    assert any(e["action"] == "R" and e["recorded"] == query["recorded"] and what(e)[1:] for e in found)

    update = one("U", "update")
    assert update["meta"]["profile"] == [f"{BALP}/IHE.BasicAudit.PatientUpdate"]
    assert f"DocumentReference/{doc}/_history/2" in what(update)
    delete = one("D", "delete")
    assert delete["meta"]["profile"] == [f"{BALP}/IHE.BasicAudit.PatientDelete"]
    assert agent_idnat(delete) == idnat("dr_lambert")
    for event in found:
        assert event["resourceType"] == "AuditEvent"
        assert event["recorded"]
        assert event["source"]["observer"]["display"] == "Carnet"
        assert "purposeOfEvent" not in event  # no emergency here


def test_software_acting_for_a_professional_names_both(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    doc = deposit(api, ins, system, persona="dpi_saint_roch")
    create = next(
        e
        for e in events(search(api, "auditeur", patient=patient_id))
        if e["action"] == "C" and f"DocumentReference/{doc}/_history/1" in what(e)
    )
    user = requestor(create)
    assert user["who"]["identifier"] == {"system": IDNAT_PS, "value": idnat("dr_lambert")}
    assert user["who"]["display"] == "Dr Claire LAMBERT"  # resolved from the directory, now
    assert {c["coding"][0]["code"] for c in user["role"]} >= {"10"}
    software = [a for a in create["agent"] if a["type"]["coding"][0]["code"] == "110153"]
    assert software[0]["who"]["identifier"] == {"system": SID_CLIENT, "value": "dpi-saint-roch"}
    assert software[0]["requestor"] is False


def test_a_break_glass_access_carries_its_purpose_and_no_clear_reason_for_the_auditor(api: Api) -> None:
    patient_id, _, _ = api.new_patient()
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "mode", "valueCode": "break-glass"}, {"name": "reason", "valueString": REASON}],
    }
    assert api.post(f"/fhir/Patient/{patient_id}/$emergency-access", "dr_blanc", body).status_code == 200

    def emergency(found: list[dict[str, Any]]) -> dict[str, Any]:
        return next(e for e in found if "emergency-access" in subtype_codes(e))

    audited = emergency(events(search(api, "auditeur", patient=patient_id)))
    assert audited["action"] == "E"
    purpose = audited["purposeOfEvent"][0]
    assert purpose["coding"] == [{"system": ACT_REASON, "code": "BTG", "display": "break the glass"}]
    assert "text" not in purpose  # the reason may be medical: not for the auditor
    assert REASON not in orjson.dumps(audited).decode()
    assert agent_idnat(audited) == idnat("dr_blanc")
    access_mode = {x["url"].rsplit("/", 1)[-1]: x.get("valueCode") for x in requestor(audited)["extension"]}
    assert access_mode["audit-access-mode"] == "break-glass"

    # The trail itself keeps a digest, never the text.
    with api.runtime.read() as work:
        stored = [
            orjson.loads(p)
            for p in work.session.execute(
                sa.select(AuditEntry.payload).where(
                    AuditEntry.chain == uuid.UUID(patient_id), AuditEntry.action == "emergency.access"
                )
            ).scalars()
        ]
    assert stored
    assert all(str(s["reason"]).startswith("sha256:") for s in stored)
    assert all(REASON not in orjson.dumps(s).decode() for s in stored)

    # The patient reads the reason given for breaking into their record.
    mine = emergency(events(search(api, None, api.patient_token(patient_id))))
    assert mine["purposeOfEvent"][0]["text"] == REASON
    # Reads made during the emergency carry the purpose too.
    assert api.get(f"/fhir/Patient/{patient_id}", "dr_blanc").status_code == 200
    during = [e for e in events(search(api, "auditeur", patient=patient_id)) if agent_idnat(e) == idnat("dr_blanc")]
    reads = [e for e in during if e["action"] == "R"]
    assert reads
    assert all(e["purposeOfEvent"][0]["coding"][0]["code"] == "BTG" for e in reads)


# ----------------------------------------------------------------------------------- search parameters


def test_search_by_date_subtype_action_agent_and_outcome(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    doc = deposit(api, ins, system)
    assert api.get(f"/fhir/DocumentReference/{doc}", "dr_medioni").status_code == 200
    assert api.get(f"/fhir/DocumentReference/{doc}", "dr_blanc").status_code == 404  # refused, traced
    every = events(search(api, "auditeur", patient=patient_id))
    assert len(every) >= 5

    reads = events(search(api, "auditeur", patient=patient_id, subtype=f"{RESTFUL}|read"))
    assert reads
    assert all("read" in subtype_codes(e) for e in reads)
    assert {e["id"] for e in reads} == {e["id"] for e in every if "read" in subtype_codes(e)}

    creates = events(search(api, "auditeur", patient=patient_id, action="C"))
    assert creates
    assert all(e["action"] == "C" for e in creates)
    assert {e["id"] for e in creates} == {e["id"] for e in every if e["action"] == "C"}
    both = events(search(api, "auditeur", patient=patient_id, action="C,D"))
    assert {e["id"] for e in both} == {e["id"] for e in every if e["action"] in ("C", "D")}

    by_lambert = events(search(api, "auditeur", patient=patient_id, agent=f"{IDNAT_PS}|{idnat('dr_lambert')}"))
    assert by_lambert
    assert {agent_idnat(e) for e in by_lambert} == {idnat("dr_lambert")}
    assert events(search(api, "auditeur", patient=patient_id, agent=idnat("dr_lambert"))) == by_lambert

    refused = events(search(api, "auditeur", patient=patient_id, outcome="4"))
    assert refused
    assert all(e["outcome"] == "4" for e in refused)
    assert idnat("dr_blanc") in {agent_idnat(e) for e in refused}
    assert all(e["outcome"] == "0" for e in events(search(api, "auditeur", patient=patient_id, outcome="0")))

    rest = events(search(api, "auditeur", patient=patient_id, type="rest"))
    assert rest
    assert all(e["type"]["code"] == "rest" for e in rest)
    assert {e["id"] for e in every if e["type"]["code"] == "rest"} <= {e["id"] for e in rest}

    # Dates: every event is today; none tomorrow; ordering by date both ways.
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    assert search(api, "auditeur", patient=patient_id, date=f"ge{tomorrow}")["total"] == 0
    middle = sorted(e["recorded"] for e in every)[len(every) // 2]
    later = events(search(api, "auditeur", patient=patient_id, date=f"ge{middle}"))
    assert later
    assert all(e["recorded"] >= middle for e in later)
    earlier = events(search(api, "auditeur", patient=patient_id, date=f"lt{middle}"))
    assert all(e["recorded"] < middle for e in earlier)
    ascending = [e["recorded"] for e in events(search(api, "auditeur", patient=patient_id, _sort="date"))]
    assert ascending == sorted(ascending)
    descending = [e["recorded"] for e in events(search(api, "auditeur", patient=patient_id))]
    assert descending == sorted(descending, reverse=True)

    # Paging.
    page = search(api, "auditeur", patient=patient_id, _count="2", _offset="1")
    assert len(page["entry"]) == 2
    assert page["total"] >= len(every)


def test_bad_search_input_is_a_400_naming_the_parameter(api: Api) -> None:
    patient_id, _, _ = api.new_patient()
    before = stored_count(api, patient_id)
    for params, name in (
        ({"date": "yesterday"}, "date"),
        ({"action": "X"}, "action"),
        ({"outcome": "2"}, "outcome"),
        ({"agent": "urn:oid:1.2.3|810001745206"}, "agent"),
        ({"_sort": "agent"}, "_sort"),
        ({"_count": "many"}, "_count"),
        ({"subtype": "|"}, "subtype"),
        ({"colour": "blue"}, "colour"),
    ):
        response = api.get("/fhir/AuditEvent", "auditeur", params={"patient": patient_id, **params})
        assert response.status_code == 400, (params, response.text)
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert issue_at(outcome, name), (params, outcome)
    assert stored_count(api, patient_id) == before  # a refused query reads nothing and traces nothing
