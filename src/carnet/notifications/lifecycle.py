"""The two record-lifecycle notices the rules cannot stage from traces (docs/records.md, docs/notifications.md).

* ``record-announced``: a record was announced; it opens when the opposition window ends unless the
  patient objects, and here is how to object. It carries the provisional code the patient objects (or
  activates their space) with: a secret, which traces never hold (they go to the audit trail). So the
  announcing service stages it itself, in its transaction, with the code sealed like a reset code
  (``reset_code.seal_code``: bound to the event and the recipient; the worker opens it only to render the
  message). It goes to the Patient resource's e-mail address, else its mobile number
  (``rules.patient_contacts``), in the language the resource prefers: the patient has no account yet.
* ``record-opposed``: the receipt of an objection. The objection destroys the Patient resource whose
  contacts it goes to, so the recipients are read first (``opposition_recipients``) and the notice is
  staged after the destruction (``stage_opposition``). It is sent to whoever objected too: it is their
  proof. No in-app notice (the record's space is gone); e-mail and SMS to every address known.

Neither carries medical content or a name: what happened, when, the opening date, the code, the link.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

import sqlalchemy as sa

from carnet.accounts.models import Account, Representation
from carnet.notifications import outbox, preferences, reset_code
from carnet.notifications.kinds import Kind, Role
from carnet.notifications.rules import patient_contacts

if TYPE_CHECKING:  # the runtime imports the rules, which import the outbox
    from carnet.records.models import Record
    from carnet.runtime import Work


def _actor_word(actor_kind: str) -> str:
    return "insurer" if actor_kind == "insurer" else "operator"


def announce(work: Work, *, record: Record, code: str, opens_at: dt.datetime, actor_kind: str) -> uuid.UUID | None:
    """Stage the information of an announced record, with its provisional ``code`` (as the patient types it),
    to the Patient resource's contacts. Returns the event id, or None when the resource gives no address."""
    recipient = patient_contacts(work, record.id)
    if recipient is None:
        return None
    event_id = uuid.uuid4()
    params = {
        "actor": _actor_word(actor_kind),
        "opens": opens_at.isoformat(),
        reset_code.SEALED_PARAM: reset_code.seal_code(work.settings, event_id, recipient.key, code),
    }
    return outbox.enqueue(
        work,
        record_id=record.id,
        kind=Kind.RECORD_ANNOUNCED,
        occurred_at=work.now,
        actor_kind=actor_kind,
        professional=None,
        params=params,
        recipients=[recipient],
        event_id=event_id,
    )


def opposition_recipients(work: Work, record: Record) -> list[outbox.Recipient]:
    """Who receives an objection's receipt: the Patient resource's contacts, and the addresses of the
    accounts of the record (holder, legal representatives) — read before the objection destroys them."""
    found: list[outbox.Recipient] = []
    contacts = patient_contacts(work, record.id)
    if contacts is not None:
        found.append(contacts)
    accounts = work.session.execute(
        sa.select(Account.id, sa.literal(Role.HOLDER.value).label("role"))
        .where(Account.record_id == record.id, Account.active.is_(True))
        .union_all(
            sa.select(Account.id, sa.literal(Role.REPRESENTATIVE.value).label("role"))
            .join(Representation, Representation.account_id == Account.id)
            .where(Representation.record_id == record.id, Account.active.is_(True))
        )
    ).all()
    for account_id, role in sorted(accounts, key=lambda row: str(row[0])):
        prefs = preferences.get(work, account_id=account_id)
        if prefs.email or prefs.phone:
            found.append(
                outbox.Recipient(
                    key=f"account:{account_id}",
                    role=Role(role),
                    language=prefs.language,
                    in_app=False,
                    email=prefs.email,
                    phone=prefs.phone,
                )
            )
    return found


def stage_opposition(
    work: Work, *, record: Record, recipients: list[outbox.Recipient], actor_kind: str
) -> uuid.UUID | None:
    """Stage the receipt of an objection to ``recipients`` (``opposition_recipients``, read beforehand)."""
    return outbox.enqueue(
        work,
        record_id=record.id,
        kind=Kind.RECORD_OPPOSED,
        occurred_at=work.now,
        actor_kind=actor_kind,
        professional=None,
        params={"actor": "patient" if actor_kind in ("patient", "legal-representative") else "operator"},
        recipients=[outbox.Recipient(r.key, r.role, r.language, False, r.email, r.phone) for r in recipients],
    )
