"""The trail is written by the unit of work, through the real API, on both databases: what each access
records, that the chain links verify, that refusals are kept, and "no audit, no access"."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carnet.audit import writer
from carnet.audit.models import GENESIS, AuditEntry, AuditHead
from carnet.demo.personas import BY_KEY
from carnet.runtime import Runtime
from tests import factories
from tests.conftest import Api


def entries(runtime: Runtime, record_id: str) -> list[dict[str, Any]]:
    """The record's chain, in order, as the stored payloads (plus seq and the stored hash)."""
    with runtime.read() as work:
        rows = work.session.execute(
            sa.select(AuditEntry.seq, AuditEntry.payload, AuditEntry.hash)
            .where(AuditEntry.chain == uuid.UUID(record_id))
            .order_by(AuditEntry.seq)
        ).all()
    return [{"seq": seq, "hash": digest, **orjson.loads(payload)} for seq, payload, digest in rows]


def since(runtime: Runtime, record_id: str, seq: int) -> list[dict[str, Any]]:
    return [e for e in entries(runtime, record_id) if e["seq"] > seq]


def last_seq(runtime: Runtime, record_id: str) -> int:
    chain = entries(runtime, record_id)
    return chain[-1]["seq"] if chain else 0


@pytest.fixture
def patient(api: Api) -> tuple[str, str, str]:
    return api.new_patient()


def deposit(api: Api, ins: str, system: str, persona: str = "dr_lambert", **kwargs: Any) -> str:
    response = api.publish(persona, factories.docref(ins, system, author_idnat="810001745206", **kwargs))
    assert response.status_code == 201, response.text
    doc_id: str = response.json()["id"]
    return doc_id


def test_the_chain_links_every_entry_of_a_record(api: Api, patient: tuple[str, str, str]) -> None:
    patient_id, ins, system = patient
    deposit(api, ins, system)
    chain = entries(api.runtime, patient_id)
    assert [e["seq"] for e in chain] == list(range(1, len(chain) + 1))
    previous = GENESIS
    for entry in chain:
        payload = orjson.dumps(
            {k: v for k, v in entry.items() if k not in ("seq", "hash")}, option=orjson.OPT_SORT_KEYS
        )
        previous = writer.link(previous, uuid.UUID(patient_id), entry["seq"], payload)
        assert entry["hash"] == previous
    with api.runtime.read() as work:
        head = work.session.get(AuditHead, uuid.UUID(patient_id))
    assert head is not None
    assert (head.seq, head.hash) == (chain[-1]["seq"], chain[-1]["hash"])


def test_opening_a_record_and_declaring_the_care_team_are_traced(api: Api, patient: tuple[str, str, str]) -> None:
    patient_id, _, _ = patient
    chain = entries(api.runtime, patient_id)
    assert chain[0]["action"] == "record.create"
    assert chain[0]["actor_key"] == "pro:801234567897"
    assert chain[0]["profession"] == "10"
    assert chain[0]["interface"] == "fhir"
    assert chain[0]["request_id"]
    consents = [e for e in chain if e["action"] == "consent.create"]
    assert {e["actor_key"] for e in consents} >= {"pro:801234567897", "pro:810001745206"}
    assert all("care-team permit" in e["detail"] for e in consents)


def test_a_search_traces_the_query_and_each_document_returned(api: Api, patient: tuple[str, str, str]) -> None:
    patient_id, ins, system = patient
    docs = {deposit(api, ins, system), deposit(api, ins, system, type_code="34133-9", class_code="11")}
    mark = last_seq(api.runtime, patient_id)
    bundle = api.search("dr_camparini", patient=patient_id, status="current")
    assert bundle["total"] == 2
    new = since(api.runtime, patient_id, mark)
    query = [e for e in new if e["action"] == "document.search"]
    assert len(query) == 1
    assert query[0]["actor_key"] == f"pro:{BY_KEY['dr_camparini'].idnat}"
    assert query[0]["basis"] == "care-team"
    assert query[0]["access_mode"] == "normal"
    assert "statuses=current" in query[0]["query"]
    assert ins not in query[0]["query"]
    reads = [e for e in new if e["action"] == "document.read"]
    assert {e["resource_id"] for e in reads} == docs
    assert all(e["detail"] == "search" and e["resource_type"] == "DocumentReference" for e in reads)


def test_read_and_retrieve_are_traced_with_the_version(api: Api, patient: tuple[str, str, str]) -> None:
    patient_id, ins, system = patient
    doc_id = deposit(api, ins, system)
    mark = last_seq(api.runtime, patient_id)
    document = api.get(f"/fhir/DocumentReference/{doc_id}", "dr_medioni")
    assert document.status_code == 200
    binary_url = document.json()["content"][0]["attachment"]["url"]
    binary_id = binary_url.rsplit("/", 1)[1]
    assert api.get(f"/fhir/Binary/{binary_id}", "dr_medioni", headers={"Accept": "application/pdf"}).status_code == 200
    new = since(api.runtime, patient_id, mark)
    assert [(e["action"], e["resource_id"]) for e in new] == [
        ("document.read", doc_id),
        ("document.retrieve", binary_id),
    ]
    assert new[0]["resource_version"] == 1
    assert new[1]["detail"] == f"document:{doc_id}"


def test_a_deposit_and_a_deletion_are_traced_with_their_author(api: Api, patient: tuple[str, str, str]) -> None:
    patient_id, ins, system = patient
    mark = last_seq(api.runtime, patient_id)
    doc_id = deposit(api, ins, system)
    assert api.delete(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code in (200, 204)
    new = since(api.runtime, patient_id, mark)
    actions = [
        (e["action"], e.get("resource_id"), e.get("detail"))
        for e in new
        if e.get("resource_type") == "DocumentReference"
    ]
    # The deposit, the stored document returned in its response (an "echo"), the deletion.
    assert actions == [
        ("document.create", doc_id, None),
        ("document.read", doc_id, "echo"),
        ("document.delete", doc_id, "status:entered-in-error"),
    ]


def test_a_refusal_is_traced_although_the_caller_sees_not_found(api: Api, patient: tuple[str, str, str]) -> None:
    patient_id, ins, system = patient
    doc_id = deposit(api, ins, system)
    mark = last_seq(api.runtime, patient_id)
    refused = api.get(f"/fhir/DocumentReference/{doc_id}", "dr_blanc")  # no relationship with the record
    missing = api.get(f"/fhir/DocumentReference/{uuid.uuid4()}", "dr_blanc")
    assert refused.status_code == missing.status_code == 404
    assert refused.json() == missing.json()
    new = since(api.runtime, patient_id, mark)
    assert len(new) == 1
    assert new[0]["action"] == "document.read"
    assert new[0]["outcome"] == "denied"
    assert new[0]["actor_key"] == f"pro:{BY_KEY['dr_blanc'].idnat}"
    assert "relationship" in new[0]["detail"] or "authorization" in new[0]["detail"]


def test_the_trail_holds_no_names_and_no_medical_content(api: Api, patient: tuple[str, str, str]) -> None:
    patient_id, ins, system = patient
    deposit(api, ins, system, title="Compte rendu de chimiothérapie")
    api.search("dr_medioni", patient=patient_id)
    raw = b"".join(orjson.dumps(e, default=str) for e in entries(api.runtime, patient_id))
    for forbidden in (b"chimioth", b"Medioni", b"MEDIONI", b"Lambert", ins.encode()):
        assert forbidden not in raw


def test_no_audit_no_access(api: Api, patient: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """If the trail cannot be written, the read fails and nothing of the document leaves the server."""
    patient_id, ins, system = patient
    doc_id = deposit(api, ins, system, title="Secret title 7f3a")

    def broken(session: Any, traces: Any) -> None:
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(writer, "write", broken)
    client = TestClient(api.client.app, base_url="http://testserver", raise_server_exceptions=False)
    api = Api(client, api.runtime)
    response = api.get(f"/fhir/DocumentReference/{doc_id}", "dr_medioni")
    assert response.status_code == 500
    assert "7f3a" not in response.text
    search = api.get("/fhir/DocumentReference", "dr_medioni", params={"patient": patient_id})
    assert search.status_code == 500
    assert doc_id not in search.text
    # A change whose trace cannot be written does not happen either.
    failed = api.publish("dr_lambert", factories.docref(ins, system, author_idnat="810001745206"))
    assert failed.status_code == 500
    monkeypatch.undo()
    bundle = api.search("dr_medioni", patient=patient_id)
    assert bundle["total"] == 1


def test_a_masked_document_opened_only_by_an_emergency_is_traced_in_that_mode(api: Api) -> None:
    """A care-team professional who breaks the glass reads ordinary documents under their care-team access
    (mode normal) and the documents masked from professionals under the emergency (mode break-glass): the
    patient's history must show which reads only the emergency allowed, through a read or a search."""
    from tests.api.test_consents import consent

    patient_id, ins, system = api.new_patient(team=("dr_lambert", "dr_blanc"))
    token = api.patient_token(patient_id)
    allowed = api.as_token(
        token, "POST", "/fhir/Consent", consent(patient_id, "emergency-masked", provision="permit", masked_label=True)
    )
    assert allowed.status_code == 201, allowed.text
    ordinary = deposit(api, ins, system, persona="dr_medioni")
    masked = deposit(api, ins, system, persona="dr_medioni", flags=("MASQUE_PS",))
    assert api.get(f"/fhir/DocumentReference/{masked}", "dr_blanc").status_code == 404  # care team: masked stays hidden
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "mode", "valueCode": "break-glass"}, {"name": "reason", "valueString": "inconscient"}],
    }
    assert api.post(f"/fhir/Patient/{patient_id}/$emergency-access", "dr_blanc", body).status_code == 200
    mark = last_seq(api.runtime, patient_id)
    for doc in (ordinary, masked):
        assert api.get(f"/fhir/DocumentReference/{doc}", "dr_blanc").status_code == 200
    found = api.search("dr_blanc", patient=patient_id)
    assert {e["resource"]["id"] for e in found["entry"] if e["resource"]["resourceType"] == "DocumentReference"} >= {
        ordinary,
        masked,
    }
    reads = [
        (e["resource_id"], e.get("detail"), e.get("access_mode"))
        for e in since(api.runtime, patient_id, mark)
        if e["action"] == "document.read" and e["resource_id"] in (ordinary, masked)
    ]
    assert sorted(reads, key=str) == sorted(
        [
            (ordinary, None, "normal"),
            (masked, None, "break-glass"),
            (ordinary, "search", "normal"),
            (masked, "search", "break-glass"),
        ],
        key=str,
    )
