"""The in-app notification centre: list, unread count, mark read or unread, delete.

A recipient is ``account:<uuid>`` (a patient or legal representative) or ``pro:<IdNat_PS>`` (a
professional: the médecin traitant told of emergency accesses). Everyone sees their own notices only;
someone else's notice answers as if it did not exist. Texts are rendered when listed, in the
recipient's current language; the professional who acted is named here (the person is signed in),
never in e-mails or SMS.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from carnet.directory.models import Practitioner
from carnet.errors import NotFound
from carnet.notifications.kinds import TOPIC_OF, Kind, Language, Role
from carnet.notifications.messages import render
from carnet.notifications.models import InboxNotification, NotificationEvent

if TYPE_CHECKING:
    from carnet.runtime import Work

MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class Notice:
    id: uuid.UUID
    record_id: uuid.UUID
    kind: Kind
    role: Role
    occurred_at: dt.datetime
    created_at: dt.datetime
    read_at: dt.datetime | None
    title: str
    text: str
    professional: dict[str, str] | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "kind": self.kind.value,
            "topic": TOPIC_OF[self.kind].value,
            "patient": str(self.record_id),
            "role": self.role.value,
            "occurred_at": self.occurred_at.isoformat(),
            "created_at": self.created_at.isoformat(),
            "read": self.read_at is not None,
            "read_at": self.read_at.isoformat() if self.read_at else None,
            "title": self.title,
            "text": self.text,
            "professional": self.professional,
        }


@dataclass(frozen=True, slots=True)
class Page:
    notices: list[Notice]
    total: int
    unread: int


Inbox = InboxNotification
Event = NotificationEvent


def _select() -> Any:
    return (
        sa.select(
            Inbox.id,
            Inbox.record_id,
            Inbox.role,
            Inbox.created_at,
            Inbox.read_at,
            Event.kind,
            Event.occurred_at,
            Event.params,
            Event.professional,
            Practitioner.given,
            Practitioner.family,
        )
        .join(Event, sa.and_(Event.record_id == Inbox.record_id, Event.id == Inbox.event_id))
        .outerjoin(Practitioner, Practitioner.idnat_ps == Event.professional)
    )


def _notice(work: Work, row: Any, language: Language) -> Notice:
    kind, role = Kind(row.kind), Role(row.role)
    message = render(
        work.settings,
        kind=kind,
        language=language,
        role=role,
        occurred_at=row.occurred_at,
        params=orjson.loads(row.params),
    )
    professional = None
    if row.professional:
        name = " ".join(part for part in (row.given, row.family) if part)
        professional = {"idnat": row.professional, "name": name} if name else {"idnat": row.professional}
    return Notice(
        id=row.id,
        record_id=row.record_id,
        kind=kind,
        role=role,
        occurred_at=row.occurred_at,
        created_at=row.created_at,
        read_at=row.read_at,
        title=message.subject,
        text=message.summary,
        professional=professional,
    )


def list_notices(
    work: Work, *, recipient: str, language: Language, unread_only: bool = False, limit: int = 20, offset: int = 0
) -> Page:
    """A page of the recipient's notices, newest first, with the total and the unread count."""
    limit = max(1, min(limit, MAX_PAGE))
    query = _select().where(Inbox.recipient == recipient)
    if unread_only:
        query = query.where(Inbox.read_at.is_(None))
    rows = work.session.execute(
        query.order_by(Inbox.created_at.desc(), Inbox.id.desc()).limit(limit).offset(max(0, offset))
    )
    notices = [_notice(work, row, language) for row in rows]
    totals = work.session.execute(
        sa.select(sa.func.count(), sa.func.count().filter(Inbox.read_at.is_(None))).where(Inbox.recipient == recipient)
    ).one()
    total, unread = int(totals[0]), int(totals[1])
    return Page(notices=notices, total=unread if unread_only else total, unread=unread)


def unread_count(work: Work, *, recipient: str) -> int:
    return int(
        work.session.scalar(sa.select(sa.func.count()).where(Inbox.recipient == recipient, Inbox.read_at.is_(None)))
        or 0
    )


def _parse(notice_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(notice_id)
    except ValueError:
        raise NotFound("no such notification") from None


def get(work: Work, *, recipient: str, notice_id: str, language: Language) -> Notice:
    row = work.session.execute(_select().where(Inbox.recipient == recipient, Inbox.id == _parse(notice_id))).first()
    if row is None:
        raise NotFound("no such notification")
    return _notice(work, row, language)


def set_read(work: Work, *, recipient: str, notice_id: str, read: bool, language: Language) -> Notice:
    """Mark one notice read (or unread again)."""
    ident = _parse(notice_id)
    row = work.session.scalar(sa.select(Inbox).where(Inbox.recipient == recipient, Inbox.id == ident))
    if row is None:
        raise NotFound("no such notification")
    if read and row.read_at is None:
        row.read_at = work.now
    elif not read:
        row.read_at = None
    work.session.flush()
    return get(work, recipient=recipient, notice_id=notice_id, language=language)


def mark_all_read(work: Work, *, recipient: str) -> int:
    """Mark every unread notice read; how many were."""
    result = work.session.execute(
        sa.update(Inbox)
        .where(Inbox.recipient == recipient, Inbox.read_at.is_(None))
        .values(read_at=work.now)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def delete(work: Work, *, recipient: str, notice_id: str) -> None:
    """Remove a notice from the recipient's centre (the event and other recipients' notices stay)."""
    result = work.session.execute(
        sa.delete(Inbox)
        .where(Inbox.recipient == recipient, Inbox.id == _parse(notice_id))
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        raise NotFound("no such notification")
