"""Password-reset codes reach the person: by e-mail and/or SMS to their own account's contacts, through the
outbox and the real worker, sealed at rest, never logged, and the answer to the request is unchanged."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher, profiles
from starlette.testclient import TestClient

import carnet.logging
from carnet.accounts.models import OneTimeCode
from carnet.auth import patients
from carnet.notifications import reset_code
from carnet.notifications.kinds import Kind
from carnet.notifications.models import DeliveryStatus, NotificationDelivery, NotificationEvent
from carnet.notifications.worker import Worker
from carnet.runtime import Runtime
from tests import factories
from tests.auth.patient_support import (
    OTHER_PASSWORD,
    Person,
    activated,
    browser,
    make_app,
    new_patient,
    new_representative,
    sign_in,
)
from tests.conftest import Api
from tests.notifications.support import (
    SmsGateway,
    SmtpSink,
    set_preferences,
    sms_settings,
    smtp_settings,
    unique_email,
    variant,
)
from tests.portal.patient_support import post

CODE = re.compile(r"\b[A-HJ-NP-Z2-9]{5}-[A-HJ-NP-Z2-9]{5}\b")  # patients.format_code, CODE_ALPHABET
# Every table a reset request may write to: the code must be in none of them in clear.
SCANNED = (
    "notification_events",
    "notification_deliveries",
    "notification_inbox",
    "notification_preferences",
    "one_time_codes",
    "login_attempts",
    "audit_entries",
)


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patients, "hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


class Recorder:
    """Stands in for ``carnet.logging.log`` in every module: records each call, whatever its level (the
    tests' log level would hide INFO and DEBUG lines otherwise)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __getattr__(self, level: str) -> Any:
        def record(event: str, *args: Any, **fields: Any) -> None:
            self.lines.append(f"{level} {event} {args} {fields}")

        return record


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder, original = Recorder(), carnet.logging.log
    for name, module in list(sys.modules.items()):
        if name.startswith("carnet") and getattr(module, "log", None) is original:
            monkeypatch.setattr(module, "log", recorder)
    return recorder


@pytest.fixture
def api(outbox: Runtime) -> Iterator[Api]:
    """The app on the worker tests' database (so a worker drains only what these tests enqueue)."""
    with TestClient(make_app(outbox), base_url="http://testserver") as client:
        yield Api(client, outbox)


@pytest.fixture
def client(api: Api) -> Iterator[TestClient]:
    with browser(api.client.app) as c:  # type: ignore[arg-type]  # the app behind the shared client
        yield c


def contacts(runtime: Runtime, person: Person, **prefs: Any) -> None:
    assert person.account_id is not None
    with runtime.work() as work:
        set_preferences(
            work,
            person.account_id,
            email=prefs.get("email"),
            phone=prefs.get("phone"),
            language=prefs.get("language"),
            channels=prefs.get("channels"),
            topics=prefs.get("topics"),
        )


def ask(client: TestClient, person: Person) -> Any:
    return client.post("/auth/patient/reset/request", json={**person.ident, "birth_date": person.birth_date})


def reset_events(runtime: Runtime, account_id: uuid.UUID | None = None) -> list[NotificationDelivery]:
    with runtime.work() as work:
        query = (
            sa.select(NotificationDelivery)
            .join(
                NotificationEvent,
                sa.and_(
                    NotificationEvent.record_id == NotificationDelivery.record_id,
                    NotificationEvent.id == NotificationDelivery.event_id,
                ),
            )
            .where(NotificationEvent.kind == Kind.RESET_CODE.value)
        )
        if account_id is not None:
            query = query.where(NotificationDelivery.recipient == f"account:{account_id}")
        rows = list(work.session.scalars(query).all())
        for row in rows:
            work.session.expunge(row)
    return rows


def assert_nowhere_in_clear(runtime: Runtime, code: str) -> None:
    """Neither the code as printed nor as typed without its dash is in any row of the tables it could
    reach (text or binary columns)."""
    forms = {code, patients.normalise_code(code)}
    with runtime.engine.connect() as connection:
        for table in SCANNED:
            for row in connection.execute(sa.text(f"SELECT * FROM {table}")):  # noqa: S608 - constant names
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        data = bytes(value)
                        assert not any(form.encode() in data for form in forms), table
                    elif value is not None:
                        assert not any(form in str(value) for form in forms), table


def confirm(client: TestClient, person: Person, code: str) -> Any:
    return client.post(
        "/auth/patient/reset/confirm",
        json={"code": code, **person.ident, "new_password": OTHER_PASSWORD, "totp": person.totp()},
    )


# ---------------------------------------------------------------------------------------- e-mail
def test_a_reset_code_arrives_by_email_and_works(
    api: Api, client: TestClient, smtp: SmtpSink, logged: Recorder
) -> None:
    person = activated(api, new_patient(api), client)
    address = unique_email("reset")
    # The e-mail channel and a topic turned off: a reset code is not a notice one can turn off.
    contacts(api.runtime, person, email=address, language="en", channels={"email": False}, topics={"documents": False})

    asked = ask(client, person)
    assert asked.status_code == 202, asked.text
    [staged] = reset_events(api.runtime, person.account_id)
    assert (staged.channel, staged.status, staged.record_id) == ("email", "pending", uuid.UUID(str(person.record_id)))

    tally = Worker(variant(api.runtime, **smtp_settings(smtp))).drain()
    assert tally.delivered >= 1
    [received] = smtp.to(address)
    text = received.text()
    [code] = CODE.findall(text)
    assert code not in asked.text
    assert received.mail["Subject"] == "Your Carnet reset code"
    assert code not in str(received.mail["Subject"])
    assert received.mail["Content-Language"] == "en"
    assert "valid for 15 minutes" in text  # CARNET_RESET_CODE_SECONDS = 900
    assert "If you did not ask for a reset, ignore this message" in text
    assert "no medical information" in text
    assert code in received.html()
    [delivered] = reset_events(api.runtime, person.account_id)
    assert (delivered.status, delivered.last_error) == (DeliveryStatus.DELIVERED.value, None)

    assert_nowhere_in_clear(api.runtime, code)
    lines = "\n".join(logged.lines)
    assert "notification_delivered" in lines  # the recorder did see the worker's and the request's lines
    assert "patient_reset_code" in lines
    assert code not in lines
    assert patients.normalise_code(code) not in lines

    # The code from the e-mail resets the password (with the authenticator), once.
    done = confirm(client, person, code)
    assert done.status_code == 200, done.text
    assert confirm(client, person, code).status_code == 401
    person.password = OTHER_PASSWORD
    assert sign_in(client, person).status_code == 200


# ---------------------------------------------------------------------------------------- SMS
def test_a_representative_receives_the_code_by_sms(api: Api, client: TestClient, sms: SmsGateway) -> None:
    child = new_patient(api, birth_date="2015-04-02")
    parent = activated(api, new_representative(api, child), client)
    contacts(api.runtime, parent, phone="06 12 34 56 78")  # SMS never chosen: the code goes anyway

    asked = ask(client, parent)  # the login and the child's birth date
    assert asked.status_code == 202, asked.text
    [staged] = reset_events(api.runtime, parent.account_id)
    # A representative has no record: the event is filed under the (first) record they represent.
    assert (staged.channel, staged.role, staged.language) == ("sms", "representative", "fr")
    assert staged.record_id == uuid.UUID(str(child.record_id))

    assert Worker(variant(api.runtime, **sms_settings(sms))).drain().delivered >= 1
    [request] = [r for r in sms.requests if r.body["to"] == "+33612345678"]
    text = request.body["text"]
    [code] = CODE.findall(text)
    assert text.startswith(f"Carnet : votre code de réinitialisation est {code}, valable 15 min.")
    assert "Si vous ne l'avez pas demandé, ignorez ce message." in text
    assert len(text) <= 160
    assert_nowhere_in_clear(api.runtime, code)

    assert confirm(client, parent, code).status_code == 200


def test_the_code_goes_to_both_addresses_and_only_to_that_account(
    api: Api, client: TestClient, smtp: SmtpSink, sms: SmsGateway
) -> None:
    person = activated(api, new_patient(api), client)
    parent = activated(api, new_representative(api, person), client)
    mine, theirs = unique_email("me"), unique_email("rep")
    contacts(api.runtime, person, email=mine, phone="+33698765401")
    contacts(api.runtime, parent, email=theirs, phone="+33698765402")

    assert ask(client, person).status_code == 202
    staged = reset_events(api.runtime, person.account_id)
    assert sorted(d.channel for d in staged) == ["email", "sms"]
    assert reset_events(api.runtime, parent.account_id) == []

    Worker(variant(api.runtime, **smtp_settings(smtp), **sms_settings(sms))).drain()
    [mail] = smtp.to(mine)
    [request] = [r for r in sms.requests if r.body["to"] == "+33698765401"]
    assert CODE.findall(mail.text()) == CODE.findall(request.body["text"])  # one code, two channels
    assert smtp.to(theirs) == []
    assert not [r for r in sms.requests if r.body["to"] == "+33698765402"]


# ---------------------------------------------------------------------------------------- nothing sent
def test_unknown_people_and_accounts_without_contacts_get_the_same_answer_and_nothing_is_sent(
    api: Api, client: TestClient, smtp: SmtpSink
) -> None:
    with_contacts = activated(api, new_patient(api), client)
    contacts(api.runtime, with_contacts, email=unique_email("known"))
    without = activated(api, new_patient(api), client)
    before = len(reset_events(api.runtime))

    unknown = client.post(
        "/auth/patient/reset/request", json={"ins": factories.random_ins()[0], "birth_date": "1984-11-23"}
    )
    wrong_birth = client.post("/auth/patient/reset/request", json={**without.ident, "birth_date": "1999-01-01"})
    no_contacts = ask(client, without)
    assert len(reset_events(api.runtime)) == before  # nothing staged for any of them
    sent = ask(client, with_contacts)
    assert len(reset_events(api.runtime)) == before + 1

    answers = [unknown, wrong_birth, no_contacts, sent]
    assert {a.status_code for a in answers} == {202}
    assert len({a.content for a in answers}) == 1
    assert len({tuple(sorted(a.headers.keys())) for a in answers}) == 1

    # The account without contacts still has its code issued (an operator can help), but no message.
    with api.runtime.work() as work:
        issued = work.session.scalar(
            sa.select(sa.func.count())
            .select_from(OneTimeCode)
            .where(OneTimeCode.account_id == without.account_id, OneTimeCode.purpose == "reset")
        )
    assert issued == 1
    assert reset_events(api.runtime, without.account_id) == []
    Worker(variant(api.runtime, **smtp_settings(smtp))).drain()
    assert smtp.count() == 1


# ---------------------------------------------------------------------------------------- the portal
def test_the_portal_reset_page_sends_the_code_it_announces(api: Api, smtp: SmtpSink) -> None:
    client = browser(api.client.app)  # type: ignore[arg-type]
    person = activated(api, new_patient(api), client)
    address = unique_email("portal")
    contacts(api.runtime, person, email=address)

    asked = post(
        client, "/patient/mot-de-passe-oublie", {"identifiant": person.ins, "date_naissance": person.birth_date}
    )
    assert asked.status_code == 200, asked.text
    assert "un code de réinitialisation est en route" in asked.text
    Worker(variant(api.runtime, **smtp_settings(smtp))).drain()
    [received] = smtp.to(address)
    assert received.mail["Subject"] == "Votre code de réinitialisation Carnet"
    text = received.text()
    assert "Il est valable 15 minutes." in text
    assert "Si vous n'avez pas demandé de réinitialisation, ignorez ce message" in text
    [code] = CODE.findall(text)

    new_password = "Brand-New-Phrase-77"
    done = post(
        client,
        "/patient/mot-de-passe-oublie/nouveau",
        {
            "identifiant": person.ins,
            "code_reinitialisation": code,
            "mot_de_passe": new_password,
            "confirmation": new_password,
            "code": person.totp(),
        },
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/patient/connexion?ok=mot-de-passe"


# ---------------------------------------------------------------------------------------- the sealed code
def test_a_sealed_code_opens_only_for_its_event_and_recipient(api: Api, client: TestClient, smtp: SmtpSink) -> None:
    person = activated(api, new_patient(api), client)
    address = unique_email("sealed")
    contacts(api.runtime, person, email=address)
    assert ask(client, person).status_code == 202
    [delivery] = reset_events(api.runtime, person.account_id)
    with api.runtime.work() as work:
        params = work.session.scalar(
            sa.select(NotificationEvent.params).where(
                NotificationEvent.record_id == delivery.record_id, NotificationEvent.id == delivery.event_id
            )
        )
    assert params is not None
    settings = api.settings
    stored = orjson.loads(params)
    assert set(stored) == {reset_code.SEALED_PARAM, "minutes"}
    opened = reset_code.reveal(
        settings, kind=Kind.RESET_CODE, event_id=delivery.event_id, recipient=delivery.recipient, params=stored
    )
    assert CODE.fullmatch(opened["code"])
    for event_id, recipient in (
        (uuid.uuid4(), delivery.recipient),
        (delivery.event_id, "account:" + str(uuid.uuid4())),
    ):
        with pytest.raises(reset_code.SecretUnreadable):
            reset_code.reveal(settings, kind=Kind.RESET_CODE, event_id=event_id, recipient=recipient, params=stored)

    # The development mailbox shows the message as it is sent (with its code), not the sealed value.
    mailbox = api.client.get("/dev/mailbox")
    assert mailbox.status_code == 200
    assert opened["code"] in mailbox.text
    assert stored[reset_code.SEALED_PARAM] not in mailbox.text

    # A code that cannot be opened (tampered) is dead-lettered at once with a code, never sent.
    with api.runtime.work() as work:
        work.session.execute(
            sa.update(NotificationEvent)
            .where(NotificationEvent.record_id == delivery.record_id, NotificationEvent.id == delivery.event_id)
            .values(params=orjson.dumps({**stored, reset_code.SEALED_PARAM: "AAAA"}).decode())
        )
    tally = Worker(variant(api.runtime, **smtp_settings(smtp))).drain()
    assert tally.dead >= 1
    assert smtp.to(address) == []
    [dead] = reset_events(api.runtime, person.account_id)
    assert (dead.status, dead.last_error) == (DeliveryStatus.DEAD.value, "secret-unreadable")
