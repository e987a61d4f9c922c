"""A professional's earlier access is learnt from the statement that loads the record: a process that has
never seen them (a restarted server, another worker) neither tells the patient again nor writes anything."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from carnet.app import create_app
from carnet.demo.personas import BY_KEY
from carnet.notifications.models import NotificationEvent, ProfessionalAccess
from carnet.notifications.rules import KnownAccesses
from carnet.runtime import Runtime
from tests.conftest import Api
from tests.factories import docref


def _accesses(runtime: Runtime, record_id: uuid.UUID) -> list[tuple[str, object]]:
    with runtime.work() as work:
        rows = work.session.execute(
            sa.select(ProfessionalAccess.professional, ProfessionalAccess.first_at).where(
                ProfessionalAccess.record_id == record_id
            )
        )
        return sorted((row[0], row[1]) for row in rows)


def _events(runtime: Runtime, record_id: uuid.UUID) -> int:
    with runtime.work() as work:
        return (
            work.session.scalar(
                sa.select(sa.func.count())
                .select_from(NotificationEvent)
                .where(NotificationEvent.record_id == record_id)
            )
            or 0
        )


def test_a_fresh_process_learns_known_accesses_from_the_record_it_loads(api: Api, runtime: Runtime) -> None:
    patient_id, ins, system = api.new_patient()
    record_id = uuid.UUID(patient_id)
    deposit = api.publish("dr_medioni", docref(ins, system))
    assert deposit.status_code == 201, deposit.text
    doc_id = deposit.json()["id"]
    binary = deposit.json()["content"][0]["attachment"]["url"].rsplit("/", 1)[1]
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200  # his first access
    accesses, events = _accesses(runtime, record_id), _events(runtime, record_id)
    lambert, didot = BY_KEY["dr_lambert"].idnat, BY_KEY["ph_didot"].idnat
    assert lambert is not None
    assert didot is not None
    assert lambert in [professional for professional, _ in accesses]

    # Another process: its own runtime and memory of known accesses, on the same database.
    fresh = Runtime(runtime.settings)
    statements: list[str] = []
    sa.event.listen(fresh.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        other = Api(api.client.__class__(create_app(fresh.settings, fresh), base_url="http://testserver"), fresh)
        with other.client:
            key = KnownAccesses.key(record_id, lambert)
            assert key not in fresh.notification_rules.known
            for url in (
                f"/fhir/DocumentReference?patient={patient_id}",  # search: the record statement
                f"/fhir/DocumentReference/{doc_id}",  # read: the document statement
                f"/fhir/Binary/{binary}",  # retrieve: the binary statement
            ):
                fresh.notification_rules.known = KnownAccesses(fresh.notification_rules.known.size)
                response = other.get(url, "dr_lambert", headers={"Accept": "*/*"})
                assert response.status_code == 200, (url, response.text)
                assert key in fresh.notification_rules.known, url  # learnt from the statement itself
            writes = [s for s in statements if "professional_accesses" in s and "INSERT" in s.upper()]
            assert writes == []  # … not by trying to write the access again
            # A professional who never accessed the record is not "known" by the same statements.
            assert KnownAccesses.key(record_id, didot) not in fresh.notification_rules.known
    finally:
        fresh.dispose()
    assert _accesses(runtime, record_id) == accesses  # nothing written again
    assert _events(runtime, record_id) == events  # and nobody told again
