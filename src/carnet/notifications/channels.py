"""Channels: how a rendered message leaves Carnet (SMTP e-mail, an HTTP SMS gateway, or nowhere).

Every sender takes the delivery (for its idempotency key) and the rendered message, and either
returns (the channel accepted the message) or raises ``DeliveryFailed``: *transient* failures are
retried with backoff, *permanent* ones (the address is refused for good) dead-letter the delivery.
Errors carry a short code (``smtp-550``, ``http-503``, ``ConnectionRefusedError``), never an address or
the server's free text, which may quote one.

* ``SmtpSender`` (``smtplib``): one connection per batch, STARTTLS (default) or implicit TLS, optional
  login. Each e-mail carries ``Message-ID: <idempotency-key@domain>``: a message sent twice after a
  crash is the same message for the receiving system, which collapses it.
* ``SmsGatewaySender`` (httpx2): ``POST`` JSON ``{"to", "from", "text", "reference"}`` with
  ``Authorization: Bearer`` and ``Idempotency-Key`` headers; 2xx accepted, 408/409/425/429/5xx and
  network errors transient (``Retry-After`` honoured), other 4xx permanent.
* ``NullSender``: accepts and discards (development); the development mailbox page shows what would
  have been sent.
"""

from __future__ import annotations

import contextlib
import email.charset
import email.header
import email.policy
import email.utils
import smtplib
import ssl
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Protocol

import httpx2

from carnet.config import EmailBackend, Settings, SmsBackend
from carnet.logging import log
from carnet.notifications.kinds import Channel
from carnet.notifications.messages import Message
from carnet.notifications.outbox import Claimed

TRANSIENT_HTTP = frozenset({408, 409, 425, 429})


class DeliveryFailed(Exception):
    """A channel did not accept a message."""

    def __init__(self, code: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.permanent = permanent
        self.retry_after = retry_after


class Sender(Protocol):
    """One channel's way out."""

    def send(self, delivery: Claimed, destination: str, message: Message) -> None: ...

    def close(self) -> None:
        """The batch is over (an SMTP connection is closed, to be opened again by the next batch)."""

    def shutdown(self) -> None:
        """The worker stops."""


class NullSender:
    """Accepts everything, sends nothing (development and tests)."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def send(self, delivery: Claimed, destination: str, message: Message) -> None:
        log.debug("notification_discarded", channel=self.channel.value, delivery=str(delivery.id))

    def close(self) -> None:
        return None

    def shutdown(self) -> None:
        return None


_UTF8 = email.charset.Charset("utf-8")
_UTF8.header_encoding = email.charset.QP
_UTF8.body_encoding = email.charset.QP
_WIRE = email.policy.compat32.clone(linesep="\r\n")


def email_bytes(settings: Settings, delivery: Claimed, destination: str, message: Message) -> bytes:
    """The e-mail for one delivery, as sent: plain text with an HTML alternative (UTF-8,
    quoted-printable), ``Message-ID: <idempotency-key@domain>``, ``Auto-Submitted`` (RFC 3834).

    Built with the ``email.mime`` classes, about three times cheaper than ``EmailMessage``; every header
    value is either encoded (the subject) or checked to hold no line break (no header injection)."""
    mail = MIMEMultipart("alternative")
    headers = {
        "From": settings.notify_smtp_from,
        "To": destination,
        "Subject": message.subject,
        "Date": email.utils.format_datetime(delivery.occurred_at),
        "Message-ID": f"<{delivery.idempotency_key}@{settings.message_id_domain}>",
        "Content-Language": delivery.language.value,
        "Auto-Submitted": "auto-generated",  # no auto-replies, please
        "X-Auto-Response-Suppress": "All",
    }
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise DeliveryFailed(f"header-{name.lower()}", permanent=True)
        mail[name] = email.header.Header(value, _UTF8, header_name=name) if name == "Subject" else value  # type: ignore[assignment]
    mail.attach(MIMEText(message.text, "plain", _UTF8))  # type: ignore[arg-type]  # a Charset is accepted
    mail.attach(MIMEText(message.html, "html", _UTF8))  # type: ignore[arg-type]
    return mail.as_bytes(policy=_WIRE)


class SmtpSender:
    """E-mail through an SMTP relay; the connection is opened at the first message and kept for the batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sender = email.utils.parseaddr(settings.notify_smtp_from)[1]  # the envelope's MAIL FROM
        self._smtp: smtplib.SMTP | None = None
        self._context: ssl.SSLContext | None = None

    def _tls(self) -> ssl.SSLContext:
        # Loading the system's CA certificates takes tens of milliseconds: once per sender, and only for TLS.
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        timeout = s.notify_smtp_timeout_seconds
        smtp: smtplib.SMTP
        if s.notify_smtp_ssl:
            smtp = smtplib.SMTP_SSL(s.notify_smtp_host, s.notify_smtp_port, timeout=timeout, context=self._tls())
        else:
            smtp = smtplib.SMTP(s.notify_smtp_host, s.notify_smtp_port, timeout=timeout)
        try:
            smtp.ehlo()
            if s.notify_smtp_starttls and not s.notify_smtp_ssl:
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if s.notify_smtp_user:
                password = s.notify_smtp_password.get_secret_value() if s.notify_smtp_password else ""
                smtp.login(s.notify_smtp_user, password)
        except BaseException:
            _quietly_close(smtp)
            raise
        return smtp

    def send(self, delivery: Claimed, destination: str, message: Message) -> None:
        mail = email_bytes(self.settings, delivery, destination, message)
        # A connection kept from the previous message may have been dropped by the server meanwhile
        # (idle timeout): then once more, on a new connection.
        tries = 2 if self._smtp is not None else 1
        for attempt in range(tries):
            try:
                self._send(mail, destination)
                return
            except smtplib.SMTPServerDisconnected as exc:
                self.close()
                if attempt + 1 == tries:
                    raise _smtp_failure(exc) from None
            except (smtplib.SMTPException, OSError) as exc:
                self.close()
                raise _smtp_failure(exc) from None

    def _send(self, mail: bytes, destination: str) -> None:
        if self._smtp is None:
            self._smtp = self._connect()
        refused = self._smtp.sendmail(self.sender, [destination], mail)
        if refused:  # one recipient per message: refused means refused
            code = next(iter(refused.values()))[0]
            raise DeliveryFailed(f"smtp-{code}", permanent=500 <= code < 600)

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                _quietly_close(smtp)

    def shutdown(self) -> None:
        self.close()


def _quietly_close(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        smtp.close()


def _smtp_failure(exc: BaseException) -> DeliveryFailed:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        code = codes[0] if codes else 550
        return DeliveryFailed(f"smtp-{code}", permanent=500 <= code < 600)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryFailed("smtp-auth")  # a configuration problem: retried once it is fixed
    if isinstance(exc, smtplib.SMTPResponseException):
        # 5xx about this message (too large, content refused) will not change; 4xx is "try later".
        return DeliveryFailed(f"smtp-{exc.smtp_code}", permanent=500 <= exc.smtp_code < 600)
    return DeliveryFailed(type(exc).__name__)


class SmsGatewaySender:
    """SMS through an HTTP gateway that honours ``Idempotency-Key``."""

    def __init__(self, settings: Settings, transport: httpx2.BaseTransport | None = None) -> None:
        assert settings.notify_sms_url is not None and settings.notify_sms_token is not None
        self.settings = settings
        self.url = settings.notify_sms_url
        self._client = httpx2.Client(
            timeout=settings.notify_sms_timeout_seconds,
            transport=transport,
            headers={"Authorization": f"Bearer {settings.notify_sms_token.get_secret_value()}"},
        )

    def send(self, delivery: Claimed, destination: str, message: Message) -> None:
        body = {
            "to": destination,
            "from": self.settings.notify_sms_sender,
            "text": message.sms,
            "reference": delivery.idempotency_key,
        }
        try:
            response = self._client.post(self.url, json=body, headers={"Idempotency-Key": delivery.idempotency_key})
        except httpx2.HTTPError as exc:
            raise DeliveryFailed(type(exc).__name__) from None
        if 200 <= response.status_code < 300:
            return
        status = response.status_code
        transient = status in TRANSIENT_HTTP or status >= 500
        raise DeliveryFailed(f"http-{status}", permanent=not transient, retry_after=_retry_after(response))

    def close(self) -> None:
        return None

    def shutdown(self) -> None:
        self._client.close()


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: the backoff decides


def senders_for(settings: Settings) -> dict[Channel, Sender]:
    """The senders the settings choose, per outbox channel."""
    email_sender: Sender = (
        SmtpSender(settings) if settings.notify_email_backend is EmailBackend.SMTP else NullSender(Channel.EMAIL)
    )
    sms_sender: Sender = (
        SmsGatewaySender(settings) if settings.notify_sms_backend is SmsBackend.HTTP else NullSender(Channel.SMS)
    )
    return {Channel.EMAIL: email_sender, Channel.SMS: sms_sender}
