"""The record lifecycle's notices through the outbox and the real worker (docs/records.md): the announcement
(with the provisional code, sealed at rest), the receipt of an objection (sent after the record's content
is destroyed), the opening when the window ends; e-mail through a real SMTP server, SMS through the gateway;
French by default, English when the Patient prefers it; no medical content, no name."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carnet.config import Environment, Settings
from carnet.notifications.kinds import Kind, Language, Role
from carnet.notifications.messages import format_day, render
from carnet.notifications.models import NotificationDelivery, NotificationEvent
from carnet.notifications.worker import Worker
from carnet.records import lifecycle
from carnet.runtime import Runtime
from tests import factories
from tests.api.lifecycle_support import BIRTH_DATE, Announced, announce, later, notices, rows_of
from tests.auth.patient_support import browser, make_app
from tests.conftest import Api
from tests.notifications.support import SmsGateway, SmtpSink, sms_settings, smtp_settings, unique_email, variant

FAMILY = "TESTEUR"  # factories.patient_resource's default birth name: never in a message
LIFECYCLE = (Kind.RECORD_ANNOUNCED, Kind.RECORD_OPENED, Kind.RECORD_OPPOSED)


@pytest.fixture
def api(outbox: Runtime) -> Iterator[Api]:
    """The app on the worker tests' database (so a worker drains only what these tests enqueue)."""
    with TestClient(make_app(outbox), base_url="http://testserver") as client:
        yield Api(client, outbox)


def _received(smtp: SmtpSink, address: str) -> list[Any]:
    return [r for r in smtp.received if address in r.rcpt]


def _no_content(text: str, announced: Announced) -> None:
    assert FAMILY not in text
    assert "Camille" not in text
    assert announced.ins not in text
    assert BIRTH_DATE not in text
    assert "15/06/1980" not in text


def test_the_announcement_reaches_the_patient_with_the_provisional_code(
    api: Api, smtp: SmtpSink, sms: SmsGateway
) -> None:
    email = unique_email("annonce")
    by_mail = announce(api, email=email)
    by_sms = announce(api, mobile="06 12 34 56 71", language="en")
    assert by_mail.notified
    assert by_sms.notified
    assert notices(api.runtime, by_sms.patient_id) == [("record-announced", f"patient:{by_sms.patient_id}", "sms")]
    # the code is sealed at rest: in no table in clear, nor in the trail
    with api.runtime.engine.connect() as connection:
        for table in ("notification_events", "notification_deliveries", "one_time_codes", "audit_entries"):
            for row in connection.execute(sa.text(f"SELECT * FROM {table}")):  # noqa: S608 - fixed names
                assert by_mail.code not in repr(row)
                assert by_mail.code.replace("-", "") not in repr(row)

    tally = Worker(variant(api.runtime, **smtp_settings(smtp), **sms_settings(sms))).drain()
    assert tally.delivered >= 2
    [message] = _received(smtp, email)
    assert message.mail["Subject"] == "Votre dossier médical partagé va être ouvert"
    text = message.text()
    opens = format_day(by_mail.opens_at.isoformat(), Language.FR, "Europe/Paris")
    assert f"sera ouvert le {opens}" in text
    assert by_mail.code in text
    assert "https://portail.carnet.test/patient/opposition" in text
    assert "R1111-28" in text
    _no_content(text, by_mail)
    [request] = [r for r in sms.requests if r.body["to"] == "+33612345671"]
    english = request.body["text"]
    assert english.startswith("Carnet: your shared health record opens on ")
    assert by_sms.code in english
    assert english.endswith("https://portail.carnet.test/patient/opposition")
    _no_content(english, by_sms)


def test_the_receipt_of_an_objection_arrives_after_the_record_is_destroyed(api: Api, smtp: SmtpSink) -> None:
    email = unique_email("recu")
    announced = announce(api, email=email)
    with browser(api.client.app) as client:  # type: ignore[arg-type]
        objected = client.post(
            "/auth/patient/oppose", json={"ins": announced.ins, "code": announced.code, "birth_date": BIRTH_DATE}
        )
    assert objected.status_code == 200, objected.text
    # the announcement not sent yet is dropped with the record; the receipt waits for the worker
    assert notices(api.runtime, announced.patient_id) == [
        ("record-opposed", f"patient:{announced.patient_id}", "email")
    ]
    Worker(variant(api.runtime, **smtp_settings(smtp))).drain()
    [message] = _received(smtp, email)
    assert message.mail["Subject"] == "Votre opposition à l'ouverture du dossier médical partagé est enregistrée"
    text = message.text()
    assert "a été détruit" in text
    assert "Conservez ce message" in text
    assert announced.code not in text
    _no_content(text, announced)
    # once sent, what is left of it (a sealed address) goes too: the row and the trail are the proof
    assert lifecycle.tidy_receipts(api.runtime, now=dt.datetime.now(dt.UTC)) >= 1
    assert {table: n for table, n in rows_of(api.runtime, announced.patient_id).items() if n} == {}


def test_the_patient_is_told_when_the_window_ends_and_the_record_opens(api: Api, smtp: SmtpSink) -> None:
    email = unique_email("ouvert")
    announced = announce(api, email=email)
    worker = Worker(variant(api.runtime, **smtp_settings(smtp)), clock=later(days=43), audit_jobs=False)
    report = worker.lifecycle_pass()
    assert report is not None
    assert announced.record_id in report.opened
    worker.drain()
    subjects = sorted(str(m.mail["Subject"]) for m in _received(smtp, email))
    assert subjects == ["Votre dossier médical partagé est ouvert", "Votre dossier médical partagé va être ouvert"]
    [opened] = [m for m in _received(smtp, email) if m.mail["Subject"] == "Votre dossier médical partagé est ouvert"]
    assert "le délai d'opposition a pris fin" in opened.text()
    _no_content(opened.text(), announced)


def test_a_professional_opening_it_with_consent_is_told_as_such(api: Api) -> None:
    announced = announce(api, email=unique_email("accord"))
    opened = api.post("/fhir/Patient", "dr_medioni", factories.patient_resource(announced.ins, announced.system))
    assert opened.status_code == 201, opened.text
    with api.runtime.read_sessions() as session:
        params = session.scalar(
            sa.select(NotificationEvent.params).where(
                NotificationEvent.record_id == uuid.UUID(announced.patient_id),
                NotificationEvent.kind == Kind.RECORD_OPENED.value,
            )
        )
    assert params is not None
    assert '"actor":"professional"' in params
    message = render(
        Settings(env=Environment.TEST),
        kind=Kind.RECORD_OPENED,
        language=Language.FR,
        role=Role.HOLDER,
        occurred_at=dt.datetime.now(dt.UTC),
        params={"actor": "professional"},
    )
    assert "avec votre accord" in message.summary


def test_every_lifecycle_notice_renders_in_both_languages_without_content() -> None:
    settings = Settings(env=Environment.TEST, notify_portal_url="https://portail.carnet.test")
    when = dt.datetime(2026, 9, 30, 8, 0, tzinfo=dt.UTC)
    params = {"opens": "2026-11-11T08:00:00+00:00", "code": "ABCDE-FGHJK", "actor": "operator"}
    for kind in LIFECYCLE:
        for language in Language:
            for role in Role:
                message = render(settings, kind=kind, language=language, role=role, occurred_at=when, params=params)
                assert message.subject
                assert len(message.sms) <= 200, (kind, language, role, message.sms)
                assert not re.search(r"{{|}}|{%|%}|Undefined|None", message.text + message.sms)
                if kind is Kind.RECORD_ANNOUNCED:
                    assert "ABCDE-FGHJK" in message.text
                    assert "ABCDE-FGHJK" in message.sms
                    assert ("11 novembre 2026" if language is Language.FR else "11 November 2026") in message.text
                else:
                    assert "ABCDE-FGHJK" not in message.text
    # without the dates and the code (the in-app centre, a resource without them), the text still reads
    bare = render(
        settings, kind=Kind.RECORD_ANNOUNCED, language=Language.FR, role=Role.HOLDER, occurred_at=when, params={}
    )
    assert "à la fin du délai d'opposition" in bare.summary
    assert "le code provisoire reçu" in bare.summary


def test_deliveries_left_for_a_destroyed_record_are_not_sent(api: Api, smtp: SmtpSink) -> None:
    """The operator records an objection while the announcement is still in the outbox: it is never sent."""
    email = unique_email("retire")
    announced = announce(api, email=email)
    done = api.post(f"/fhir/Patient/{announced.patient_id}/$oppose", "ops_admin")
    assert done.status_code == 200, done.text
    Worker(variant(api.runtime, **smtp_settings(smtp))).drain()
    subjects = [str(m.mail["Subject"]) for m in _received(smtp, email)]
    assert subjects == ["Votre opposition à l'ouverture du dossier médical partagé est enregistrée"]
    with api.runtime.read_sessions() as session:
        kinds = session.scalars(
            sa.select(NotificationEvent.kind).where(NotificationEvent.record_id == uuid.UUID(announced.patient_id))
        ).all()
        delivered = session.scalars(
            sa.select(NotificationDelivery.status).where(
                NotificationDelivery.record_id == uuid.UUID(announced.patient_id)
            )
        ).all()
    assert kinds == [Kind.RECORD_OPPOSED.value]
    assert delivered == ["delivered"]
