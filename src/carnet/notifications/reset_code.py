"""The password-reset code notice: staged with the code, sealed, opened only to render the message.

When a patient or a legal representative asks for a password reset and the details match an activated
account (``carnet.auth.patients.request_reset``), the code is sent by e-mail and/or SMS to the addresses
that account has on file (its notification contacts, ``notifications.preferences``), whatever its channel
switches and topics say (``Kind.RESET_CODE`` is one of ``kinds.ACCOUNT_KINDS``: no topic, no in-app notice
— the person is signed out). Nothing is sent when the account has neither address; the HTTP answer is the
same either way.

The event is staged through ``outbox.enqueue`` in the request's transaction, like every notice, so a
code exists in the outbox if and only if it was issued. The code itself is a secret: ``params`` holds it
sealed (``carnet.crypto.sealed``, context ``carnet-notify-reset-code``, bound to the event id and the
recipient), never in clear; the worker (and the development mailbox, which shows messages as they are
sent) opens it only to render the message (``reveal``). Logs, ``last_error`` and the audit trail never see
it.

**Which record the event belongs to.** Outbox rows live in a record's partition (their ``record_id`` is a
foreign key to ``records``). A patient's code goes under their own record. A legal representative has no
record of their own here: their code goes under the first record they represent (the oldest
representation, then the smallest record id: stable from one request to the next). The event has no
in-app notice and names no one, so it shows nowhere in that record; it only gives the delivery a home. A
representative who represents no record cannot prove who they are (their proof is a child's birth date),
so never gets this far.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from carnet.accounts.models import Account, AccountKind, Representation
from carnet.config import Settings
from carnet.crypto import sealed
from carnet.logging import log
from carnet.notifications import outbox, preferences
from carnet.notifications.kinds import Kind, Role

if TYPE_CHECKING:  # the runtime imports the rules, which import the outbox
    from carnet.runtime import Work

CODE_CONTEXT = b"carnet-notify-reset-code"
SEALED_PARAM = "code_sealed"  # the sealed code in the event's params (base64)
CODE_PARAM = "code"  # the code in clear: only in the params handed to ``render``, never stored
# The kinds whose event carries a sealed code: the reset code, and the provisional code of an announced
# record (carnet.notifications.lifecycle), sealed the same way (bound to its own event and recipient).
SEALED_KINDS = frozenset({Kind.RESET_CODE, Kind.RECORD_ANNOUNCED})


class SecretUnreadable(Exception):
    """A sealed secret of an event that cannot be opened (unknown key, tampered, another event's)."""


def _aad(event_id: uuid.UUID, recipient: str) -> bytes:
    return f"carnet:notify-reset-code:v1|{event_id}|{recipient}".encode()


def seal_code(settings: Settings, event_id: uuid.UUID, recipient: str, code: str) -> str:
    blob = sealed.seal(
        settings.key_encryption_keys(), code.encode(), context=CODE_CONTEXT, aad=_aad(event_id, recipient)
    )
    return base64.b64encode(blob).decode("ascii")


def open_code(settings: Settings, event_id: uuid.UUID, recipient: str, value: str) -> str | None:
    try:
        blob = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        return None
    plain = sealed.open_sealed(
        settings.key_encryption_keys(), blob, context=CODE_CONTEXT, aad=_aad(event_id, recipient)
    )
    return plain.decode() if plain is not None else None


def reveal(
    settings: Settings, *, kind: Kind, event_id: uuid.UUID, recipient: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The params to render one delivery with: for a reset code (or an announced record's provisional code),
    the code opened (``SecretUnreadable`` if it cannot be). Other kinds' params are returned as they are."""
    found = dict(params)
    if kind not in SEALED_KINDS:
        return found
    code = open_code(settings, event_id, recipient, str(found.pop(SEALED_PARAM, "")))
    if code is None:
        raise SecretUnreadable("the code cannot be opened")
    found[CODE_PARAM] = code
    return found


def home_record(work: Work, account: Account) -> uuid.UUID | None:
    """The record a notice about ``account`` itself is filed under (see the module's docstring)."""
    if account.record_id is not None:
        return account.record_id
    return work.session.scalar(
        sa.select(Representation.record_id)
        .where(Representation.account_id == account.id)
        .order_by(Representation.since, Representation.record_id)
        .limit(1)
    )


def send(work: Work, *, account: Account, code: str, expires_at: dt.datetime) -> uuid.UUID | None:
    """Stage the message carrying ``code`` (as the person types it) to ``account``'s e-mail address and/or
    mobile number. Returns the event id, or None when the account has no address (nothing is staged)."""
    prefs = preferences.get(work, account_id=account.id)
    record_id = home_record(work, account)
    if not (prefs.email or prefs.phone) or record_id is None:
        return None
    event_id = uuid.uuid4()
    key = f"account:{account.id}"
    role = Role.REPRESENTATIVE if account.kind == AccountKind.REPRESENTATIVE.value else Role.HOLDER
    minutes = max(1, round((expires_at - work.now).total_seconds() / 60))
    outbox.enqueue(
        work,
        record_id=record_id,
        kind=Kind.RESET_CODE,
        occurred_at=work.now,
        actor_kind="patient" if role is Role.HOLDER else "representative",
        professional=None,
        params={SEALED_PARAM: seal_code(work.settings, event_id, key, code), "minutes": minutes},
        recipients=[
            outbox.Recipient(
                key=key, role=role, language=prefs.language, in_app=False, email=prefs.email, phone=prefs.phone
            )
        ],
        event_id=event_id,
    )
    log.debug("patient_reset_code_staged", account=str(account.id), email=bool(prefs.email), sms=bool(prefs.phone))
    return event_id
