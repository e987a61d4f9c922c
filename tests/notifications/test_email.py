"""E-mail through a real SMTP server (aiosmtpd on the loopback interface): headers, languages, content."""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa

from carnet.audit.trace import TraceAction
from carnet.notifications.models import DeliveryStatus, NotificationDelivery
from carnet.notifications.rules import NotificationRules
from carnet.notifications.worker import Worker
from carnet.runtime import Runtime
from tests import factories
from tests.conftest import Api
from tests.notifications.support import (
    SmtpSink,
    apply,
    holder,
    new_record,
    pro_trace,
    representative,
    smtp_settings,
    unique_email,
    variant,
)

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def test_emails_carry_idempotent_message_ids_and_the_recipients_language(outbox: Runtime, smtp: SmtpSink) -> None:
    patient_id = new_record(outbox)
    patient_address, parent_address = unique_email("patient"), unique_email("parent")
    holder(outbox, patient_id, email=patient_address, language="en")
    representative(outbox, patient_id, email=parent_address)
    apply(
        outbox,
        NotificationRules(outbox.settings),
        pro_trace(TraceAction.EMERGENCY_ACCESS, uuid.UUID(patient_id), "dr_haddad", access_mode="break-glass"),
    )
    sending = variant(outbox, **smtp_settings(smtp))
    tally = Worker(sending).drain()
    assert (tally.delivered, tally.retried, tally.dead) == (2, 0, 0)

    [english] = smtp.to(patient_address)
    [french] = smtp.to(parent_address)
    with outbox.work() as work:
        keys = dict(
            work.session.execute(
                sa.select(NotificationDelivery.recipient, NotificationDelivery.idempotency_key).where(
                    NotificationDelivery.record_id == uuid.UUID(patient_id)
                )
            ).all()
        )
        statuses = set(
            work.session.scalars(
                sa.select(NotificationDelivery.status).where(NotificationDelivery.record_id == uuid.UUID(patient_id))
            )
        )
    assert statuses == {DeliveryStatus.DELIVERED.value}
    assert {english.message_id, french.message_id} == {f"<{key}@carnet.test>" for key in keys.values()}

    mail = english.mail
    assert mail["From"] == "Carnet <notifications@carnet.test>"
    assert mail["To"] == patient_address
    assert mail["Subject"] == "Emergency access to your record"
    assert mail["Content-Language"] == "en"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "multipart/alternative"
    assert "break-glass" in english.text()
    assert "https://portail.carnet.test" in english.text()
    assert 'href="https://portail.carnet.test"' in english.html()

    assert french.mail["Subject"] == "Accès en urgence au dossier d'une personne que vous représentez"
    assert french.mail["Content-Language"] == "fr"
    assert french.text().startswith("Bonjour,")
    assert "bris de glace" in french.text()


def test_emails_say_what_happened_and_nothing_of_the_content(api: Api, smtp: SmtpSink) -> None:
    """A real document (its title, type, author and the patient's name are in the record): the e-mail
    mentions none of them, only that a document was added, when, and where to look."""
    runtime = api.runtime
    patient_id, ins, system = api.new_patient(family="CONFIDENTIEL", given="Hortense", team=())
    resource = factories.docref(ins, system, title="Résultat VIH positif (titre confidentiel)")
    resource["description"] = "Sérologie VIH : confidentiel"
    response = api.publish("dr_medioni", resource)
    assert response.status_code == 201, response.text
    doc_id = response.json()["id"]
    address = unique_email("content")
    holder(runtime, patient_id, email=address)
    apply(
        runtime,
        NotificationRules(runtime.settings),
        pro_trace(TraceAction.DOCUMENT_CREATE, uuid.UUID(patient_id), "dr_medioni", resource_id=doc_id),
    )
    Worker(variant(runtime, **smtp_settings(smtp))).drain()
    [received] = smtp.to(address)
    everything = received.mail.as_string() + received.text() + received.html()
    for secret in ("VIH", "confidentiel", "CONFIDENTIEL", "Hortense", "MEDIONI", "Médioni", "11488-4", doc_id, ins):
        assert secret not in everything, secret
    assert received.mail["Subject"] == "Nouveau document dans votre dossier"
    assert "un professionnel de santé a ajouté un document à votre dossier" in received.text()


def test_a_refused_recipient_is_dead_lettered_at_once(outbox: Runtime, smtp: SmtpSink) -> None:
    patient_id = new_record(outbox)
    bad, good = unique_email("unknown"), unique_email("known")
    holder(outbox, patient_id, email=bad)
    representative(outbox, patient_id, email=good)
    smtp.refuse[bad] = 550
    apply(outbox, NotificationRules(outbox.settings), pro_trace(TraceAction.RECORD_READ, uuid.UUID(patient_id)))
    tally = Worker(variant(outbox, **smtp_settings(smtp))).drain()
    assert (tally.delivered, tally.dead) == (1, 1)
    assert len(smtp.to(good)) == 1
    with outbox.work() as work:
        dead = work.session.execute(
            sa.select(
                NotificationDelivery.status, NotificationDelivery.attempts, NotificationDelivery.last_error
            ).where(NotificationDelivery.record_id == uuid.UUID(patient_id), NotificationDelivery.status == "dead")
        ).one()
    assert tuple(dead) == ("dead", 1, "smtp-550")  # permanent: no retry; the error names no address
