"""SMS through an HTTP gateway started by the tests: body, bearer token, Idempotency-Key, failures."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa

from carnet.audit.trace import TraceAction
from carnet.notifications.models import NotificationDelivery
from carnet.notifications.rules import NotificationRules
from carnet.notifications.worker import Worker
from carnet.runtime import Runtime
from tests.notifications.support import (
    SMS_TOKEN,
    Clock,
    SmsGateway,
    apply,
    holder,
    new_record,
    pro_trace,
    sms_settings,
    variant,
)


def _emergency_by_sms(outbox: Runtime, phone: str = "06 98 76 54 32") -> str:
    patient_id = new_record(outbox)
    holder(outbox, patient_id, phone=phone, channels={"sms": True}, language="fr")
    apply(
        outbox,
        NotificationRules(outbox.settings),
        pro_trace(TraceAction.EMERGENCY_ACCESS, uuid.UUID(patient_id), "dr_haddad", access_mode="break-glass"),
    )
    return patient_id


def _delivery(outbox: Runtime, patient_id: str) -> NotificationDelivery:
    with outbox.work() as work:
        row = work.session.scalars(
            sa.select(NotificationDelivery).where(NotificationDelivery.record_id == uuid.UUID(patient_id))
        ).one()
        work.session.expunge(row)
    return row


def test_sms_are_posted_with_an_idempotency_key(outbox: Runtime, sms: SmsGateway) -> None:
    patient_id = _emergency_by_sms(outbox)
    tally = Worker(variant(outbox, **sms_settings(sms))).drain()
    assert tally.delivered == 1
    [request] = sms.requests
    delivery = _delivery(outbox, patient_id)
    assert request.path == "/v1/messages"
    assert request.headers["authorization"] == f"Bearer {SMS_TOKEN}"
    assert request.headers["idempotency-key"] == delivery.idempotency_key
    assert request.headers["content-type"] == "application/json"
    assert request.body["to"] == "+33698765432"
    assert request.body["from"] == "Carnet"
    assert request.body["reference"] == delivery.idempotency_key
    assert request.body["text"].startswith("Carnet : accès en urgence à votre dossier le ")
    assert delivery.status == "delivered"


def test_a_retried_sms_keeps_its_idempotency_key(outbox: Runtime, sms: SmsGateway) -> None:
    """The gateway fails (503, Retry-After), then accepts: both requests carry the same key, so a gateway
    that had in fact accepted the first one does not send the message twice."""
    patient_id = _emergency_by_sms(outbox)
    sms.replies.append((503, {"Retry-After": "120"}))
    clock = Clock()
    worker = Worker(variant(outbox, **sms_settings(sms)), clock=clock)
    first = worker.drain()
    assert (first.delivered, first.retried) == (0, 1)
    delivery = _delivery(outbox, patient_id)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, "http-503")
    assert delivery.next_attempt_at >= clock.now + dt.timedelta(seconds=120)  # Retry-After honoured
    assert worker.drain().handled == 0  # not due yet
    clock.advance(121)
    assert worker.drain().delivered == 1
    assert [r.headers["idempotency-key"] for r in sms.requests] == [delivery.idempotency_key] * 2


def test_a_refused_sms_is_dead_lettered(outbox: Runtime, sms: SmsGateway) -> None:
    patient_id = _emergency_by_sms(outbox)
    sms.replies.append((422, {}))  # e.g. not a mobile number
    tally = Worker(variant(outbox, **sms_settings(sms))).drain()
    assert tally.dead == 1
    delivery = _delivery(outbox, patient_id)
    assert (delivery.status, delivery.last_error) == ("dead", "http-422")


def test_an_unreachable_gateway_is_retried(outbox: Runtime, sms: SmsGateway) -> None:
    patient_id = _emergency_by_sms(outbox)
    settings = sms_settings(sms) | {"notify_sms_url": "http://127.0.0.1:9/v1/messages"}  # discard port: refused
    tally = Worker(variant(outbox, **settings)).drain()
    assert tally.retried == 1
    assert _delivery(outbox, patient_id).last_error == "ConnectError"
