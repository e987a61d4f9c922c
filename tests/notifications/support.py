"""Helpers for the notification tests: hand-built traces, people with contacts, what was written, and
two real servers on the loopback interface — an SMTP server (aiosmtpd) and an SMS gateway (HTTP)."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import http.server
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from carnet.accounts import service as accounts
from carnet.accounts.models import Account, AccountKind
from carnet.audit.trace import Outcome, Trace, TraceAction
from carnet.config import EmailBackend, SmsBackend
from carnet.db import utcnow
from carnet.demo.personas import BY_KEY
from carnet.notifications import preferences
from carnet.notifications.models import InboxNotification, NotificationDelivery, NotificationEvent
from carnet.notifications.rules import NotificationRules
from carnet.runtime import Runtime

SMS_TOKEN = "test-sms-gateway-token"


def idnat(persona: str) -> str:
    value = BY_KEY[persona].idnat
    assert value is not None
    return value


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def unique_email(label: str = "p") -> str:
    return f"{label}.{uuid.uuid4().hex[:12]}@example.org"


# ---------------------------------------------------------------------------------------- traces
def pro_trace(
    action: TraceAction,
    record_id: uuid.UUID,
    persona: str = "dr_blanc",
    *,
    outcome: Outcome = Outcome.SUCCESS,
    resource_id: str | None = None,
    detail: str | None = None,
    access_mode: str | None = None,
    kind: str = "professional",
) -> Trace:
    """A trace of ``action`` by a professional persona (or their software, ``kind="software"``)."""
    pro = idnat(persona)
    return Trace(
        action=action,
        at=utcnow(),
        actor_kind=kind,
        actor_key=f"pro:{pro}" if kind == "professional" else "client:dpi",
        outcome=outcome,
        record_id=record_id,
        resource_type="DocumentReference" if action.value.startswith("document") else None,
        resource_id=resource_id,
        professional=pro,
        access_mode=access_mode,
        detail=detail,
    )


def account_trace(
    action: TraceAction,
    record_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    kind: str = "patient",
    resource_id: str | None = None,
    detail: str | None = None,
) -> Trace:
    """A trace of ``action`` by a patient's or a representative's account."""
    return Trace(
        action=action,
        at=utcnow(),
        actor_kind=kind,
        actor_key=f"account:{account_id}",
        record_id=record_id,
        resource_id=resource_id,
        detail=detail,
    )


def other_trace(action: TraceAction, record_id: uuid.UUID, *, kind: str, key: str) -> Trace:
    return Trace(action=action, at=utcnow(), actor_kind=kind, actor_key=key, record_id=record_id)


def apply(runtime: Runtime, rules: NotificationRules, *traces: Trace) -> None:
    """Apply the rules to hand-built traces inside a unit of work (as the runtime does)."""
    with runtime.work() as work:
        rules.apply(work, list(traces))


# ---------------------------------------------------------------------------------------- people
def holder(
    runtime: Runtime,
    patient_id: str,
    *,
    email: str | None = None,
    phone: str | None = None,
    language: str | None = None,
    channels: dict[str, bool] | None = None,
    topics: dict[str, bool] | None = None,
) -> uuid.UUID:
    """The patient's account (created on first use), with these preferences."""
    record_id = uuid.UUID(patient_id)
    with runtime.work() as work:
        account_id = work.session.scalar(sa.select(Account.id).where(Account.record_id == record_id))
        if account_id is None:
            account_id = accounts.create_account(
                work, kind=AccountKind.PATIENT, label=f"patient-{patient_id[:8]}", record_id=record_id
            ).id
        set_preferences(work, account_id, email=email, phone=phone, language=language, channels=channels, topics=topics)
    return account_id


def representative(
    runtime: Runtime,
    patient_id: str,
    *,
    email: str | None = None,
    phone: str | None = None,
    language: str | None = None,
    channels: dict[str, bool] | None = None,
    topics: dict[str, bool] | None = None,
) -> uuid.UUID:
    """A new legal representative of the patient, with these preferences."""
    with runtime.work() as work:
        account = accounts.create_account(work, kind=AccountKind.REPRESENTATIVE, label=f"rep-{uuid.uuid4().hex[:8]}")
        accounts.add_representation(work, account_id=account.id, record_id=uuid.UUID(patient_id), relationship="MTH")
        set_preferences(work, account.id, email=email, phone=phone, language=language, channels=channels, topics=topics)
    return account.id


def set_preferences(
    work: Any,
    account_id: uuid.UUID,
    *,
    email: str | None,
    phone: str | None,
    language: str | None,
    channels: dict[str, bool] | None,
    topics: dict[str, bool] | None,
) -> None:
    if email is None and phone is None and language is None and channels is None and topics is None:
        return
    preferences.put(
        work,
        account_id=account_id,
        change=preferences.Change(language=language, email=email, phone=phone, channels=channels, topics=topics),
    )


# ---------------------------------------------------------------------------------------- what was written
@dataclass(frozen=True)
class Written:
    """The notices and deliveries of one record, by recipient."""

    inbox: list[tuple[str, str, str]]  # (recipient, role, kind)
    deliveries: list[tuple[str, str, str, str]]  # (recipient, channel, kind, status)
    events: list[tuple[str, dict[str, Any]]]  # (kind, params)

    def told(self, recipient: str) -> list[str]:
        """Kinds told to ``recipient`` in the notification centre."""
        return sorted(kind for who, _, kind in self.inbox if who == recipient)

    def sent(self, recipient: str) -> list[tuple[str, str]]:
        """(channel, kind) of the deliveries to ``recipient``."""
        return sorted((channel, kind) for who, channel, kind, _ in self.deliveries if who == recipient)

    @property
    def recipients(self) -> set[str]:
        return {who for who, _, _ in self.inbox} | {who for who, _, _, _ in self.deliveries}


def written(runtime: Runtime, patient_id: str | uuid.UUID) -> Written:
    record_id = uuid.UUID(str(patient_id))
    with runtime.work() as work:
        s = work.session
        inbox = s.execute(
            sa.select(InboxNotification.recipient, InboxNotification.role, NotificationEvent.kind)
            .join(
                NotificationEvent,
                sa.and_(
                    NotificationEvent.record_id == InboxNotification.record_id,
                    NotificationEvent.id == InboxNotification.event_id,
                ),
            )
            .where(InboxNotification.record_id == record_id)
        ).all()
        deliveries = s.execute(
            sa.select(
                NotificationDelivery.recipient,
                NotificationDelivery.channel,
                NotificationEvent.kind,
                NotificationDelivery.status,
            )
            .join(
                NotificationEvent,
                sa.and_(
                    NotificationEvent.record_id == NotificationDelivery.record_id,
                    NotificationEvent.id == NotificationDelivery.event_id,
                ),
            )
            .where(NotificationDelivery.record_id == record_id)
        ).all()
        events = s.execute(
            sa.select(NotificationEvent.kind, NotificationEvent.params).where(NotificationEvent.record_id == record_id)
        ).all()
    return Written(
        inbox=[(r, role, k) for r, role, k in inbox],
        deliveries=[(r, c, k, st) for r, c, k, st in deliveries],
        events=[(k, json.loads(p)) for k, p in events],
    )


def account_key(account_id: uuid.UUID) -> str:
    return f"account:{account_id}"


def set_practitioner_email(runtime: Runtime, persona: str, email_address: str | None) -> None:
    table = sa.table("practitioners", sa.column("idnat_ps"), sa.column("email"))
    with runtime.work() as work:
        work.session.execute(sa.update(table).where(table.c.idnat_ps == idnat(persona)).values(email=email_address))


# ---------------------------------------------------------------------------------------- SMTP server
@dataclass
class Received:
    mail: EmailMessage
    rcpt: list[str]

    @property
    def message_id(self) -> str:
        return str(self.mail["Message-ID"])

    def text(self) -> str:
        body = self.mail.get_body(preferencelist=("plain",))
        assert body is not None
        return str(body.get_content())

    def html(self) -> str:
        body = self.mail.get_body(preferencelist=("html",))
        assert body is not None
        return str(body.get_content())


@dataclass
class SmtpSink:
    """A real SMTP server on the loopback interface, recording what it accepts. It can refuse, fail for a
    while (4xx) or slow down, to exercise the worker's retries and crashes."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    refuse: dict[str, int] = field(default_factory=dict)  # recipient → SMTP code at RCPT
    failures: deque[str] = field(default_factory=deque)  # replies to the next DATA commands instead of 250
    fail_always: str | None = None
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        code = self.refuse.get(address)
        if code is not None:
            return f"{code} 5.1.1 refused by the test" if code >= 500 else f"{code} 4.2.0 try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            if self.fail_always:
                return self.fail_always
            if self.failures:
                return self.failures.popleft()
            content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
            mail = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(mail, EmailMessage)
            self.received.append(Received(mail, list(envelope.rcpt_tos)))
        return "250 OK queued"

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if address in r.rcpt]

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"the SMTP server did not receive what was expected (got {self.count()})")
            time.sleep(0.02)


@contextmanager
def smtp_server() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    for _ in range(5):
        sink.port = free_port()
        controller = Controller(sink, hostname="127.0.0.1", port=sink.port, ready_timeout=10)
        try:
            controller.start()
        except (OSError, RuntimeError):
            continue
        break
    else:
        raise RuntimeError("could not start the test SMTP server")
    try:
        yield sink
    finally:
        controller.stop()


def smtp_settings(sink: SmtpSink) -> dict[str, Any]:
    return {
        "notify_email_backend": EmailBackend.SMTP,
        "notify_smtp_host": "127.0.0.1",
        "notify_smtp_port": sink.port,
        "notify_smtp_starttls": False,
        "notify_smtp_timeout_seconds": 5.0,
        "notify_smtp_from": "Carnet <notifications@carnet.test>",
        "notify_message_id_domain": "carnet.test",
        "notify_portal_url": "https://portail.carnet.test",
    }


# ---------------------------------------------------------------------------------------- SMS gateway
@dataclass
class SmsRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class SmsGateway:
    """An HTTP SMS gateway on the loopback interface: records requests, answers from a script (default 202)."""

    port: int = 0
    requests: list[SmsRequest] = field(default_factory=list)
    replies: deque[tuple[int, dict[str, str]]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/messages"

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with gateway.lock:
                    gateway.requests.append(
                        SmsRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status, headers = gateway.replies.popleft() if gateway.replies else (202, {})
                payload = json.dumps({"id": uuid.uuid4().hex, "status": "queued"}).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler


@contextmanager
def sms_server() -> Iterator[SmsGateway]:
    gateway = SmsGateway()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), gateway.handler())
    gateway.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def sms_settings(gateway: SmsGateway) -> dict[str, Any]:
    from pydantic import SecretStr

    return {
        "notify_sms_backend": SmsBackend.HTTP,
        "notify_sms_url": gateway.url,
        "notify_sms_token": SecretStr(SMS_TOKEN),
        "notify_sms_timeout_seconds": 5.0,
    }


class NoRules:
    """Rules that never notify: a runtime whose own notifications stay out of a test's way."""

    def pending(self, traces: Any) -> bool:
        return False

    def apply(self, work: Any, traces: Any) -> None:
        return None

    def remember_access(self, record_id: Any, professional: str) -> None:
        return None


def without_rules(runtime: Runtime) -> Runtime:
    """A runtime on the same database that writes traces but applies no notification rule itself (the
    test applies its own, to the traces it chooses)."""
    quiet = Runtime(runtime.settings, engine=runtime.engine)
    quiet.notification_rules = NoRules()  # type: ignore[assignment]
    return quiet


def variant(runtime: Runtime, **overrides: Any) -> Runtime:
    """A runtime on the same database with notification settings changed."""
    return Runtime(runtime.settings.model_copy(update=overrides), engine=runtime.engine)


class Clock:
    """A clock the tests move (the worker's notion of now)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def new_record(runtime: Runtime, **patient: Any) -> str:
    """Open a record directly (as the operator would), for tests without the HTTP app; its Patient id."""
    from carnet.auth.actor import SYSTEM_ACTOR
    from carnet.records import service as records
    from tests import factories

    ins, system = factories.random_ins()
    resource = factories.patient_resource(ins, system, attest=False)
    resource.update(patient)
    with runtime.work() as work:
        record = records.create_record(work, actor=SYSTEM_ACTOR, patient=resource)
    return str(record.id)
