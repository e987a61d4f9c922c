"""The record lifecycle through the FHIR API (reference/dmp.md §5, docs/records.md): announcement and
opposition window, objection (crypto-shredding), opening by the worker's job, retention and destruction,
reopening within the retention; on SQLite and PostgreSQL, in a database of their own (the jobs act on every
due record and ``carnet audit verify`` checks the whole trail)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from argon2 import PasswordHasher, profiles
from starlette.testclient import TestClient

from carnet import dbadmin
from carnet.app import create_app
from carnet.audit import checkpoints, verify
from carnet.audit.models import AuditEntry
from carnet.auth import patients
from carnet.crypto.envelope import DecryptionFailed
from carnet.db import create_engine
from carnet.models import metadata
from carnet.notifications.worker import Worker
from carnet.records.models import RecordStatus
from carnet.runtime import Runtime
from carnet.storage.models import StoredBlob
from tests import factories
from tests.api.lifecycle_support import (
    BIRTH_DATE,
    announce,
    announced_patient,
    later,
    lifecycle_database,
    notices,
    parameters,
    record_row,
    rows_of,
)
from tests.auth.patient_support import browser
from tests.conftest import Api, drop_pg_database, fresh_database, make_settings
from tests.notifications.support import unique_email, variant
from tests.portal.patient_support import post


@pytest.fixture(scope="module")
def api(backend: str, tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Api]:
    with lifecycle_database(backend, tmp_path_factory.mktemp("lifecycle"), f"lc_{worker_id}") as lifecycle_api:
        yield lifecycle_api


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patients, "hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


def _oppose(api: Api, ins: str, code: str, birth_date: str = BIRTH_DATE) -> Any:
    with browser(api.client.app) as client:  # type: ignore[arg-type]  # its own source address
        return client.post("/auth/patient/oppose", json={"ins": ins, "code": code, "birth_date": birth_date})


def _lookup(api: Api, persona: str, identifier: str) -> dict[str, Any]:
    response = api.get("/fhir/Patient", persona, params={"identifier": identifier})
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    return bundle


def _closure(patient: dict[str, Any]) -> dict[str, Any]:
    ext = next(e for e in patient["extension"] if e["url"].endswith("record-closure"))
    return {part["url"]: next(v for k, v in part.items() if k.startswith("value")) for part in ext["extension"]}


def _actions(runtime: Runtime, record_id: uuid.UUID) -> list[tuple[str, str, str | None]]:
    with runtime.read_sessions() as session:
        rows = session.execute(
            sa.select(AuditEntry.action, AuditEntry.outcome, AuditEntry.actor_kind)
            .where(AuditEntry.chain == record_id)
            .order_by(AuditEntry.seq)
        ).all()
    return [(r.action, r.outcome, r.actor_kind) for r in rows]


# ---------------------------------------------------------------------------------------- announce
def test_the_operator_and_the_insurer_announce_records_nobody_else(api: Api) -> None:
    email = unique_email("annonce")
    announced = announce(api, email=email)
    assert announced.notified is True
    assert (announced.opens_at - announced.info_sent_at).days == 42
    assert len(announced.code) == 11
    assert announced.code[5] == "-"
    record = record_row(api.runtime, announced.patient_id)
    assert record.status == RecordStatus.OPPOSITION_PENDING.value
    assert record.info_sent_at is not None
    assert record.opened_at is None
    # the patient is told (e-mail to the Patient resource's address), with the sealed provisional code
    assert notices(api.runtime, announced.patient_id) == [
        ("record-announced", f"patient:{announced.patient_id}", "email")
    ]
    assert ("record.announce", "success", "operator") in _actions(api.runtime, announced.record_id)

    by_insurer = announce(api, "cnam_feed")
    assert by_insurer.notified is False  # no address in the resource: the code goes by letter
    assert notices(api.runtime, by_insurer.patient_id) == []

    for persona in ("dr_medioni", "jean_patient", "dpi_saint_roch"):
        resource, _, _ = announced_patient()
        assert api.post("/fhir/Patient/$announce", persona, resource).status_code in (403, 404), persona
    # one record per INS: announcing again is a conflict
    again = factories.patient_resource(announced.ins, announced.system, attest=False)
    assert api.post("/fhir/Patient/$announce", "ops_admin", again).status_code == 409
    # bad input is refused like on POST /fhir/Patient
    broken = factories.patient_resource(*factories.random_ins(), attest=False)
    del broken["birthDate"]
    assert api.post("/fhir/Patient/$announce", "ops_admin", broken).status_code == 422


def test_nobody_reads_or_feeds_an_announced_record(api: Api) -> None:
    announced = announce(api)
    # its status shows to whoever may look a record up (PDSm TD0.2), inactive, with no identity traits
    found = _lookup(api, "dr_medioni", announced.identifier)
    assert found["total"] == 1
    patient = found["entry"][0]["resource"]
    assert patient["active"] is False
    assert _closure(patient)["status"] == "opposition_pending"
    assert "infoSent" in _closure(patient)
    assert "name" not in patient
    assert "birthDate" not in patient
    read = api.get(f"/fhir/Patient/{announced.patient_id}", "ops_admin").json()
    assert "name" not in read
    # deposits are refused: the record does not exist yet for feeding (R1111-28)
    refused = api.publish("dr_medioni", factories.docref(announced.ins, announced.system))
    assert refused.status_code in (403, 404), refused.text
    # no care-team declaration, no emergency access, no consent change
    declared = api.post(
        "/fhir/Consent",
        "dr_lambert",
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
            },
            "category": [
                {"coding": [{"system": "https://carnet.health/fhir/CodeSystem/consent-kind", "code": "care-team"}]}
            ],
            "patient": {"reference": f"Patient/{announced.patient_id}"},
            "provision": {"type": "permit"},
        },
    )
    assert declared.status_code in (403, 404, 422), declared.text
    # even its holder (an account made for the test) reads no document and no identity
    token = api.patient_token(announced.patient_id)
    own = api.as_token(token, "GET", f"/fhir/Patient/{announced.patient_id}").json()
    assert "name" not in own
    search = api.as_token(token, "GET", "/fhir/DocumentReference", params={"patient": announced.patient_id})
    assert search.status_code in (200, 403, 404)
    if search.status_code == 200:
        assert search.json()["total"] == 0
    # closing is not objecting
    assert api.post(f"/fhir/Patient/{announced.patient_id}/$close", "ops_admin").status_code == 409
    reopen = api.post(f"/fhir/Patient/{announced.patient_id}/$reopen", "ops_admin")
    assert reopen.status_code == 403
    assert "not open yet" in reopen.text


# ---------------------------------------------------------------------------------------- object
def test_objection_closes_the_record_and_destroys_its_content(api: Api) -> None:
    email = unique_email("oppose")
    announced = announce(api, email=email)
    assert rows_of(api.runtime, announced.patient_id)["resource_versions"] == 1
    # a wrong birth date or code proves nothing and changes nothing
    assert _oppose(api, announced.ins, announced.code, "1970-01-01").status_code == 401
    assert _oppose(api, announced.ins, "ABCDE-FGHJK").status_code == 401
    assert record_row(api.runtime, announced.patient_id).status == RecordStatus.OPPOSITION_PENDING.value

    response = _oppose(api, announced.ins, announced.code)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "closed"
    assert response.json()["reason"] == "OPPOSITION"

    record = record_row(api.runtime, announced.patient_id)
    assert record.status == RecordStatus.CLOSED.value
    assert record.closure_reason == "OPPOSITION"
    assert record.key_destroyed_at is not None
    assert record.wrapped_key == b""
    assert record.info_sent_at is not None
    assert record.closed_at is not None
    # the data key is gone: nothing encrypted under it can be opened again
    with api.runtime.work() as work, pytest.raises(DecryptionFailed):
        work.store.cipher(record)
    # only the receipt is left of the record's rows, until it is sent (the announcement is dropped)
    left = {table: n for table, n in rows_of(api.runtime, announced.patient_id).items() if n}
    assert set(left) <= {"notification_events", "notification_deliveries"}, left
    assert notices(api.runtime, announced.patient_id) == [
        ("record-opposed", f"patient:{announced.patient_id}", "email")
    ]
    # the content is unreadable to everyone, the operator included; the status still answers
    assert api.get(f"/fhir/Patient/{announced.patient_id}", "ops_admin").status_code == 404
    assert api.get(f"/fhir/Patient/{announced.patient_id}/_history/1", "ops_admin").status_code == 404
    assert _lookup(api, "ops_admin", announced.identifier)["total"] == 0  # no Patient left to show
    # the code is spent; objecting again or announcing again is refused
    assert _oppose(api, announced.ins, announced.code).status_code == 401
    assert api.post(f"/fhir/Patient/{announced.patient_id}/$oppose", "ops_admin").status_code == 409
    again = factories.patient_resource(announced.ins, announced.system, attest=False)
    conflict = api.post("/fhir/Patient/$announce", "ops_admin", again)
    assert conflict.status_code == 409
    assert "objected" in conflict.text
    assert api.post("/fhir/Patient", "ops_admin", again).status_code == 409
    # the trail keeps the announcement and the objection, and still verifies
    actions = [a for a, outcome, _ in _actions(api.runtime, announced.record_id) if outcome == "success"]
    assert actions[:1] == ["record.announce"]
    assert "record.oppose" in actions
    report = verify.verify(api.runtime, record=announced.record_id)
    assert report.ok, report.as_json()

    # the patient changes their mind: a professional attesting their consent opens a new, empty record
    reopened = api.post("/fhir/Patient", "dr_medioni", factories.patient_resource(announced.ins, announced.system))
    assert reopened.status_code == 201, reopened.text
    assert reopened.json()["id"] == announced.patient_id
    assert reopened.json()["active"] is True
    assert int(reopened.json()["meta"]["versionId"]) >= 2  # versions go on; the destroyed ones stay gone
    assert api.get(f"/fhir/Patient/{announced.patient_id}/_history/1", "dr_medioni").status_code == 404
    fresh = record_row(api.runtime, announced.patient_id)
    assert fresh.status == "active"
    assert fresh.key_destroyed_at is None
    assert fresh.wrapped_key != b""
    assert api.publish("dr_medioni", factories.docref(announced.ins, announced.system)).status_code == 201


def test_the_holder_or_the_operator_object_through_the_api(api: Api) -> None:
    announced = announce(api)
    assert api.post(f"/fhir/Patient/{announced.patient_id}/$oppose", "dr_medioni").status_code == 403
    assert api.post(f"/fhir/Patient/{announced.patient_id}/$oppose", "jean_patient").status_code == 404
    token = api.patient_token(announced.patient_id)
    done = api.as_token(token, "POST", f"/fhir/Patient/{announced.patient_id}/$oppose")
    assert done.status_code == 200, done.text
    values = parameters(done.json())
    assert values["status"] == "closed"
    assert values["reason"] == "OPPOSITION"
    # the holder's account had nothing else: it is disabled with its record's content
    assert rows_of(api.runtime, announced.patient_id).get("resource_versions") == 0

    by_operator = announce(api)
    done = api.post(f"/fhir/Patient/{by_operator.patient_id}/$oppose", "ops_admin")
    assert done.status_code == 200, done.text
    assert record_row(api.runtime, by_operator.patient_id).is_destroyed
    # an open record is closed, not objected to
    open_id, _, _ = api.new_patient(team=())
    assert api.post(f"/fhir/Patient/{open_id}/$oppose", "ops_admin").status_code == 409


def test_the_patient_portal_takes_an_objection_with_the_code(api: Api) -> None:
    announced = announce(api)
    with browser(api.client.app) as client:  # type: ignore[arg-type]
        form = client.get("/patient/opposition")
        assert form.status_code == 200
        assert "code provisoire" in form.text.lower()
        assert "/patient/opposition" in client.get("/patient/connexion").text  # linked from the sign-in page
        fields = {"code_provisoire": announced.code, "ins": announced.ins, "date_naissance": BIRTH_DATE}
        unconfirmed = post(client, "/patient/opposition", fields)
        assert unconfirmed.status_code == 422  # the box that says the content will be destroyed
        wrong = post(client, "/patient/opposition", {**fields, "date_naissance": "1970-01-01", "confirmation": "1"})
        assert wrong.status_code == 401
        assert record_row(api.runtime, announced.patient_id).is_announced
        done = post(client, "/patient/opposition", {**fields, "confirmation": "1"})
        assert done.status_code == 200, done.text
        assert "Votre opposition est enregistrée" in done.text
        english = post(
            client, "/patient/opposition", {**fields, "confirmation": "1"}, headers={"Accept-Language": "en"}
        )
        assert english.status_code == 401
        assert "The objection failed" in english.text
    assert record_row(api.runtime, announced.patient_id).is_destroyed


# ---------------------------------------------------------------------------------------- open
def test_the_worker_opens_records_whose_window_elapsed(api: Api) -> None:
    email = unique_email("ouverture")
    announced = announce(api, email=email)
    early = Worker(api.runtime, clock=later(days=41), audit_jobs=False).lifecycle_pass()
    assert early is not None
    assert announced.record_id not in early.opened
    assert record_row(api.runtime, announced.patient_id).status == RecordStatus.OPPOSITION_PENDING.value

    report = Worker(api.runtime, clock=later(days=43), audit_jobs=False).lifecycle_pass()
    assert report is not None
    assert announced.record_id in report.opened
    assert report.failed == 0
    record = record_row(api.runtime, announced.patient_id)
    assert record.status == "active"
    assert record.opened_at is not None
    # traced as Carnet's worker, told to the patient's address
    entry = next(a for a in _actions(api.runtime, announced.record_id) if a[0] == "record.open")
    assert entry == ("record.open", "success", "system")
    assert ("record-opened", f"patient:{announced.patient_id}", "email") in notices(api.runtime, announced.patient_id)
    with api.runtime.read_sessions() as session:
        interface = session.execute(
            sa.select(AuditEntry.payload).where(
                AuditEntry.chain == announced.record_id, AuditEntry.action == "record.open"
            )
        ).scalar_one()
    assert b'"interface":"worker"' in interface
    # a second pass has nothing to do
    again = Worker(api.runtime, clock=later(days=43), audit_jobs=False).lifecycle_pass()
    assert again is not None
    assert announced.record_id not in again.opened
    # open: professionals feed it, the Patient shows as active
    assert api.publish("dr_medioni", factories.docref(announced.ins, announced.system)).status_code == 201
    patient = _lookup(api, "dr_medioni", announced.identifier)["entry"][0]["resource"]
    assert patient["active"] is True
    assert _closure(patient)["status"] == "active"
    # the provisional code now only activates the space; objecting is too late
    assert _oppose(api, announced.ins, announced.code).status_code == 409


def test_activating_during_the_window_or_a_professional_attesting_consent_opens_it(api: Api) -> None:
    announced = announce(api)
    with browser(api.client.app) as client:  # type: ignore[arg-type]
        activated = client.post(
            "/auth/patient/activate",
            json={
                "ins": announced.ins,
                "code": announced.code,
                "birth_date": BIRTH_DATE,
                "password": "Sel-de-Guérande-44",
            },
        )
    assert activated.status_code == 201, activated.text
    assert record_row(api.runtime, announced.patient_id).status == "active"
    assert ("record.open", "success", "patient") in _actions(api.runtime, announced.record_id)

    consented = announce(api)
    resource = factories.patient_resource(consented.ins, consented.system)
    assert api.post("/fhir/Patient", "ops_admin", resource).status_code == 409  # the operator does not skip it
    opened = api.post("/fhir/Patient", "dr_medioni", resource)
    assert opened.status_code == 201, opened.text
    assert opened.json()["id"] == consented.patient_id
    assert opened.json()["active"] is True


# ---------------------------------------------------------------------------------------- retention
def test_closed_records_are_destroyed_when_their_retention_ends_and_the_trail_still_verifies(api: Api) -> None:
    patient_id, ins, system = api.new_patient(team=())
    assert api.publish("dr_medioni", factories.docref(ins, system)).status_code == 201
    closed = api.post(f"/fhir/Patient/{patient_id}/$close", "ops_admin")
    assert closed.status_code == 200, closed.text
    assert rows_of(api.runtime, patient_id)["document_entries"] == 1
    checkpoints.checkpoint(api.runtime)  # the chain as it was is signed: destroying must not break it
    with api.runtime.read_sessions() as session:
        blobs = session.scalar(
            sa.select(sa.func.count()).select_from(StoredBlob).where(StoredBlob.record_id == uuid.UUID(patient_id))
        )
    assert blobs == 1

    kept = Worker(api.runtime, clock=later(years=10, days=-1), audit_jobs=False).lifecycle_pass()
    assert kept is not None
    assert uuid.UUID(patient_id) not in kept.purged
    report = Worker(api.runtime, clock=later(years=10, days=1), audit_jobs=False).lifecycle_pass()
    assert report is not None
    assert uuid.UUID(patient_id) in report.purged
    assert report.failed == 0

    record = record_row(api.runtime, patient_id)
    assert record.status == RecordStatus.DELETED.value
    assert record.wrapped_key == b""
    assert {table: n for table, n in rows_of(api.runtime, patient_id).items() if n} == {}
    assert api.get(f"/fhir/Patient/{patient_id}", "ops_admin").status_code == 404
    assert _lookup(api, "ops_admin", f"{system}|{ins}")["total"] == 0  # the INS is free again
    assert api.post(f"/fhir/Patient/{patient_id}/$reopen", "ops_admin").status_code == 403
    actions = [a for a, outcome, _ in _actions(api.runtime, uuid.UUID(patient_id)) if outcome == "success"]
    assert actions[-1] == "record.purge"
    # `carnet audit verify` on the whole trail (and on this chain) finds nothing wrong
    whole = verify.verify(api.runtime)
    assert whole.ok, whole.as_json()
    assert verify.verify(api.runtime, record=uuid.UUID(patient_id)).ok
    # and the person may have a record again (a new one)
    renewed = api.post("/fhir/Patient", "dr_medioni", factories.patient_resource(ins, system))
    assert renewed.status_code == 201
    assert renewed.json()["id"] != patient_id


def test_reopening_restores_the_archive_within_the_retention_only(api: Api) -> None:
    patient_id, ins, system = api.new_patient(team=())
    published = api.publish("dr_medioni", factories.docref(ins, system))
    assert published.status_code == 201
    doc_id = published.json()["id"]
    assert api.post(f"/fhir/Patient/{patient_id}/$close", "ops_admin").status_code == 200
    reopened = api.post(f"/fhir/Patient/{patient_id}/$reopen", "ops_admin")
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["active"] is True
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_medioni").status_code == 200

    # with the retention over (no years at all here), a closed record is no longer reopened
    assert api.post(f"/fhir/Patient/{patient_id}/$close", "ops_admin").status_code == 200
    expired = variant(api.runtime, record_retention_years=0)
    with TestClient(create_app(expired.settings, expired), base_url="http://testserver") as client:
        late = Api(client, expired).post(f"/fhir/Patient/{patient_id}/$reopen", "ops_admin")
    assert late.status_code == 409
    assert "retention" in late.text
    # within it, it is
    assert api.post(f"/fhir/Patient/{patient_id}/$reopen", "ops_admin").status_code == 200


# ---------------------------------------------------------------------------------------- migration
def test_the_migration_matches_the_models_and_goes_down_and_up(backend: str, tmp_path: Path) -> None:
    url, pg_name = fresh_database(backend, tmp_path, "lcmig")
    engine = create_engine(make_settings(url))
    try:
        dbadmin.upgrade(engine)
        assert dbadmin.current_revision(engine) == "5b8d2f4a9c61"
        columns = {c["name"] for c in sa.inspect(engine).get_columns("records")}
        assert {"info_sent_at", "opened_at", "key_destroyed_at"} <= columns
        with engine.connect() as connection:
            diffs = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata)
        records = [d for d in diffs if "records" in repr(d)[:300] and "ins_hash" not in repr(d)]
        if backend == "sqlite":  # SQLite ignores VARCHAR lengths: the status column is left VARCHAR(16)
            records = [
                d for d in records if not (isinstance(d, list) and d[0][0] == "modify_type" and d[0][3] == "status")
            ]
        assert records == []
        from alembic import command

        config = dbadmin.alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "7f4e2b9c1a30")
        assert "info_sent_at" not in {c["name"] for c in sa.inspect(engine).get_columns("records")}
        dbadmin.upgrade(engine)
        assert dbadmin.current_revision(engine) == "5b8d2f4a9c61"
    finally:
        engine.dispose()
        if pg_name:
            drop_pg_database(pg_name)
