"""A person's notification preferences and contacts: language, channels, topics, e-mail and mobile number.

The e-mail address and the phone number are sealed at rest (``carnet.crypto.sealed``: AES-256-GCM under
a key derived from the active key-encryption key, bound to the account), like the TOTP secrets. Without
a row an account has the defaults: French, in-app notices only, every topic on.

Emergency-access notices cannot be turned off (R1111-48): asking to is refused (422), and they go on
every channel the person gave an address for, whatever the channel switches say.

Every change is traced (reference/dmp.md §4, ``MODIF_PARAM_NOTIF``): an ``admin`` trace by the account,
``detail`` ``notification-preferences …`` (the language, the channel switches and the topics turned off, as
codes: never the address or the number), on the patient's own record so that it shows in their history
(a legal representative's, in their own chain, like their sign-ins).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from carnet import audit
from carnet.accounts.models import Account, AccountKind
from carnet.audit.trace import TraceAction
from carnet.auth.actor import Actor, ActorKind
from carnet.config import Settings
from carnet.crypto import sealed
from carnet.errors import Invalid, IssueCode, Problem
from carnet.notifications.kinds import MANDATORY, Channel, Language, Topic
from carnet.notifications.models import NotificationPreference

if TYPE_CHECKING:  # the runtime imports the rules, which import this module
    from carnet.runtime import Work

CONTACT_CONTEXT = b"carnet-contact"
EMAIL_MAX = 254
# Deliberately plain: one @, no whitespace or control characters (which would let a value inject mail
# headers), a dotted domain. Whether the mailbox exists, only sending tells.
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_PHONE_NOISE = re.compile(r"[\s.\-()/]")


@dataclass(frozen=True, slots=True)
class Preferences:
    """What an account chose (or the defaults)."""

    language: Language = Language.FR
    email: str | None = None
    phone: str | None = None
    email_channel: bool = False
    sms_channel: bool = False
    topics_off: frozenset[Topic] = field(default_factory=frozenset)

    def wants(self, topic: Topic) -> bool:
        return topic in MANDATORY or topic not in self.topics_off

    def channels(self, topic: Topic) -> list[Channel]:
        """Where a notice of ``topic`` goes (in-app first). Mandatory topics use every known address."""
        if not self.wants(topic):
            return []
        mandatory = topic in MANDATORY
        found = [Channel.IN_APP]
        if self.email and (self.email_channel or mandatory):
            found.append(Channel.EMAIL)
        if self.phone and (self.sms_channel or mandatory):
            found.append(Channel.SMS)
        return found

    def as_json(self) -> dict[str, object]:
        return {
            "language": self.language.value,
            "email": self.email,
            "phone": self.phone,
            "channels": {"in-app": True, "email": self.email_channel, "sms": self.sms_channel},
            "topics": {topic.value: self.wants(topic) for topic in Topic},
            "mandatory_topics": sorted(t.value for t in MANDATORY),
        }


DEFAULTS = Preferences()


# ---------------------------------------------------------------------------------------- contacts at rest
def _aad(account_id: uuid.UUID, what: str) -> bytes:
    return f"carnet:contact:v1|{account_id}|{what}".encode()


def seal_contact(settings: Settings, account_id: uuid.UUID, what: str, value: str) -> bytes:
    """Seal an account's e-mail address (``what="email"``) or phone number (``"phone"``)."""
    return sealed.seal(
        settings.key_encryption_keys(), value.encode(), context=CONTACT_CONTEXT, aad=_aad(account_id, what)
    )


def open_contact(settings: Settings, account_id: uuid.UUID, what: str, blob: bytes | None) -> str | None:
    if blob is None:
        return None
    plain = sealed.open_sealed(
        settings.key_encryption_keys(), blob, context=CONTACT_CONTEXT, aad=_aad(account_id, what)
    )
    return plain.decode() if plain is not None else None


def from_row(settings: Settings, row: NotificationPreference | None, account_id: uuid.UUID) -> Preferences:
    """The preferences a row holds (the defaults without one)."""
    if row is None:
        return DEFAULTS
    return from_values(
        settings,
        account_id,
        language=row.language,
        email=row.email,
        phone=row.phone,
        email_channel=row.email_channel,
        sms_channel=row.sms_channel,
        topics_off=row.topics_off,
    )


def from_values(
    settings: Settings,
    account_id: uuid.UUID,
    *,
    language: str | None,
    email: bytes | None,
    phone: bytes | None,
    email_channel: bool | None,
    sms_channel: bool | None,
    topics_off: str | None,
) -> Preferences:
    """Preferences from stored column values (a joined query's, possibly all None: no row)."""
    if language is None:
        return DEFAULTS
    known = {t.value for t in Topic}
    return Preferences(
        language=Language(language) if language in {lang.value for lang in Language} else Language.FR,
        email=open_contact(settings, account_id, "email", email),
        phone=open_contact(settings, account_id, "phone", phone),
        email_channel=bool(email_channel),
        sms_channel=bool(sms_channel),
        topics_off=frozenset(Topic(t) for t in (topics_off or "").split() if t in known),
    )


# ---------------------------------------------------------------------------------------- validation
def normalise_email(value: str) -> str | None:
    """The address with its domain in lower case, or None if it is not one."""
    value = value.strip()
    if len(value) > EMAIL_MAX or not _EMAIL.fullmatch(value):
        return None
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def normalise_phone(value: str) -> str | None:
    """The number in E.164 (``+33612345678``); French national numbers (``06 12 34 56 78``) are accepted."""
    compact = _PHONE_NOISE.sub("", value.strip())
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    elif re.fullmatch(r"0[1-9][0-9]{8}", compact):
        compact = "+33" + compact[1:]
    return compact if _E164.fullmatch(compact) else None


@dataclass(frozen=True, slots=True)
class Change:
    """A requested replacement of the preferences (PUT): omitted members take their defaults."""

    language: str | None = None
    email: str | None = None
    phone: str | None = None
    channels: Mapping[str, bool] | None = None
    topics: Mapping[str, bool] | None = None


def validate(change: Change) -> Preferences:
    """The preferences ``change`` asks for, or ``Invalid`` (422) naming every faulty member."""
    problems: list[Problem] = []
    language = Language.FR
    if change.language is not None:
        try:
            language = Language(change.language.strip().lower())
        except ValueError:
            choices = ", ".join(lang.value for lang in Language)
            problems.append(Problem(f"language must be one of {choices}", "language", IssueCode.VALUE))
    email = None
    if change.email is not None and change.email.strip():
        email = normalise_email(change.email)
        if email is None:
            problems.append(Problem("email is not an e-mail address (name@domain.example)", "email", IssueCode.VALUE))
    phone = None
    if change.phone is not None and change.phone.strip():
        phone = normalise_phone(change.phone)
        if phone is None:
            problems.append(
                Problem(
                    "phone is not a phone number: give it in international form (+33612345678) or as a French "
                    "number (06 12 34 56 78)",
                    "phone",
                    IssueCode.VALUE,
                )
            )
    channels = dict(change.channels or {})
    for name in channels:
        if name not in {c.value for c in Channel}:
            known = ", ".join(c.value for c in Channel)
            problems.append(Problem(f"unknown channel {name!r} (channels: {known})", f"channels.{name}"))
    if channels.get(Channel.IN_APP.value) is False:
        problems.append(
            Problem(
                "the in-app notification centre cannot be turned off (turn topics off instead)",
                "channels.in-app",
                IssueCode.BUSINESS_RULE,
            )
        )
    # E-mail is the default channel once an address is given; SMS is chosen explicitly.
    email_given = bool(change.email and change.email.strip())
    phone_given = bool(change.phone and change.phone.strip())
    email_channel = channels.get(Channel.EMAIL.value, email_given)
    sms_channel = channels.get(Channel.SMS.value, False)
    if email_channel and not email_given:
        problems.append(
            Problem("give an e-mail address to receive notifications by e-mail", "channels.email", IssueCode.REQUIRED)
        )
    if sms_channel and not phone_given:
        problems.append(
            Problem("give a mobile phone number to receive notifications by SMS", "channels.sms", IssueCode.REQUIRED)
        )
    topics_off: set[Topic] = set()
    for name, wanted in (change.topics or {}).items():
        try:
            topic = Topic(name)
        except ValueError:
            known = ", ".join(t.value for t in Topic)
            problems.append(Problem(f"unknown topic {name!r} (topics: {known})", f"topics.{name}"))
            continue
        if not wanted and topic in MANDATORY:
            problems.append(
                Problem(
                    "emergency-access notices cannot be turned off: the law requires that you are told of every "
                    "emergency access to your record",
                    f"topics.{name}",
                    IssueCode.BUSINESS_RULE,
                )
            )
        elif not wanted:
            topics_off.add(topic)
    if problems:
        raise Invalid("the notification preferences are invalid", problems=problems, unprocessable=True)
    return Preferences(
        language=language,
        email=email,
        phone=phone,
        email_channel=bool(email_channel),
        sms_channel=bool(sms_channel),
        topics_off=frozenset(topics_off),
    )


# ---------------------------------------------------------------------------------------- service
def get(work: Work, *, account_id: uuid.UUID) -> Preferences:
    """An account's preferences (the defaults if it never set any)."""
    return from_row(work.settings, work.session.get(NotificationPreference, account_id), account_id)


def put(work: Work, *, account_id: uuid.UUID, change: Change) -> Preferences:
    """Replace an account's preferences; ``Invalid`` (422) when the change is not acceptable."""
    wanted = validate(change)
    row = work.session.get(NotificationPreference, account_id)
    if row is None:
        row = NotificationPreference(account_id=account_id, updated_at=work.now)
        work.session.add(row)
    settings = work.settings
    row.language = wanted.language.value
    row.email = seal_contact(settings, account_id, "email", wanted.email) if wanted.email else None
    row.phone = seal_contact(settings, account_id, "phone", wanted.phone) if wanted.phone else None
    row.email_channel = wanted.email_channel
    row.sms_channel = wanted.sms_channel
    row.topics_off = " ".join(sorted(t.value for t in wanted.topics_off))
    row.updated_at = work.now
    work.session.flush()
    _trace_change(work, account_id, wanted)
    return wanted


TRACE_DETAIL = "notification-preferences"


def change_summary(saved: Preferences) -> str:
    """What a change set, as codes (``notification-preferences lang=fr email=on sms=off topics-off=…``):
    never an address or a number."""
    off = ",".join(sorted(t.value for t in saved.topics_off)) or "-"
    return (
        f"{TRACE_DETAIL} lang={saved.language.value} email={'on' if saved.email_channel else 'off'} "
        f"sms={'on' if saved.sms_channel else 'off'} topics-off={off}"
    )


def _trace_change(work: Work, account_id: uuid.UUID, saved: Preferences) -> None:
    """Trace the change by the account itself (only its holder changes an account's preferences): on a
    patient's own record (their history shows it), else in the account's own chain."""
    account = work.session.get(Account, account_id)
    representative = account is not None and account.kind == AccountKind.REPRESENTATIVE.value
    actor = Actor(
        kind=ActorKind.REPRESENTATIVE if representative else ActorKind.PATIENT, key=f"account:{account_id}", display=""
    )
    record = account.record_id if account is not None and not representative else None
    audit.trace(work, TraceAction.ADMIN, actor, record=record, detail=change_summary(saved))
