"""HTTP: the notification centre and preferences (JSON), and the development mailbox page (HTML).

Routes (authentication as for ``/auth/patient``: a bearer access token or the session cookie, whose
state-changing requests carry ``X-Carnet-CSRF: 1``; errors are OperationOutcomes):

* ``GET /notifications[?unread=true&limit=20&offset=0]`` → ``{"total", "unread", "notifications": […]}``
* ``GET /notifications/unread-count`` → ``{"unread": n}``
* ``GET /notifications/{id}``; ``POST /notifications/{id}/read``; ``POST /notifications/{id}/unread``;
  ``DELETE /notifications/{id}`` (204); ``POST /notifications/read-all`` → ``{"updated": n}``
* ``GET /notifications/preferences``; ``PUT /notifications/preferences`` (patients and legal
  representatives): language, e-mail, mobile phone, channels, topics; 422 names every faulty member.
  Each saved change is traced in the same transaction (``preferences.put``: an ``admin`` trace,
  ``notification-preferences …``, shown in the patient's history).
* ``GET /dev/mailbox`` (development and test only, 404 otherwise): what e-mails and SMS were or would
  have been sent, newest first.

Patients and legal representatives see their notices; professionals (the médecin traitant, told of
emergency accesses) see theirs and have no preferences here (they are told at their directory address).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import HTMLResponse, JSONResponse, Response

from carnet.auth.actor import Actor, ActorKind
from carnet.auth.authenticate import actor_for
from carnet.config import Environment
from carnet.deps import ClaimsDep, RuntimeDep
from carnet.errors import Forbidden, NotFound
from carnet.notifications import centre, outbox, preferences, reset_code
from carnet.notifications.kinds import Channel, Kind, Language, Role
from carnet.notifications.messages import environment, render
from carnet.notifications.models import NotificationDelivery, NotificationEvent
from carnet.runtime import Runtime, Work

router = APIRouter(tags=["Notifications"])

MAILBOX_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


class PreferencesBody(BaseModel):
    """A PUT replaces the preferences; omitted members take their defaults."""

    model_config = ConfigDict(extra="forbid")

    language: Annotated[str, Field(max_length=16)] | None = None
    email: Annotated[str, Field(max_length=320)] | None = None
    phone: Annotated[str, Field(max_length=40)] | None = None
    channels: dict[Annotated[str, Field(max_length=32)], bool] | None = Field(default=None, max_length=8)
    topics: dict[Annotated[str, Field(max_length=64)], bool] | None = Field(default=None, max_length=32)


def _recipient(work: Work, actor: Actor) -> tuple[str, Language]:
    if actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE) and actor.account_id is not None:
        return f"account:{actor.account_id}", preferences.get(work, account_id=actor.account_id).language
    if actor.kind is ActorKind.PROFESSIONAL and actor.professional is not None:
        return f"pro:{actor.professional.idnat}", Language.FR
    raise Forbidden("the notification centre is for patients, legal representatives and professionals")


def _account(actor: Actor) -> uuid.UUID:
    if actor.kind not in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE) or actor.account_id is None:
        raise Forbidden(
            "notification preferences are for patients and legal representatives; professionals are told at "
            "the address of the professional directory"
        )
    return actor.account_id


# ---------------------------------------------------------------------------------------- preferences
@router.get("/notifications/preferences")
def get_preferences(runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """The caller's notification preferences and contacts (the defaults if never set)."""
    with runtime.read() as work:
        account_id = _account(actor_for(work, claims))
        found = preferences.get(work, account_id=account_id)
    return JSONResponse(found.as_json())


@router.put("/notifications/preferences")
def put_preferences(body: PreferencesBody, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """Replace the caller's preferences; 422 when a value is not acceptable (every fault is named)."""
    change = preferences.Change(
        language=body.language, email=body.email, phone=body.phone, channels=body.channels, topics=body.topics
    )
    with runtime.work() as work:
        account_id = _account(actor_for(work, claims))
        saved = preferences.put(work, account_id=account_id, change=change)
    return JSONResponse(saved.as_json())


# ---------------------------------------------------------------------------------------- the centre
@router.get("/notifications")
def list_notifications(
    runtime: RuntimeDep,
    claims: ClaimsDep,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=centre.MAX_PAGE)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The caller's notices, newest first."""
    with runtime.read() as work:
        recipient, language = _recipient(work, actor_for(work, claims))
        page = centre.list_notices(
            work, recipient=recipient, language=language, unread_only=unread, limit=limit, offset=offset
        )
    return JSONResponse(
        {"total": page.total, "unread": page.unread, "notifications": [n.as_json() for n in page.notices]}
    )


@router.get("/notifications/unread-count")
def unread_count(runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    with runtime.read() as work:
        recipient, _ = _recipient(work, actor_for(work, claims))
        count = centre.unread_count(work, recipient=recipient)
    return JSONResponse({"unread": count})


@router.post("/notifications/read-all")
def read_all(runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    with runtime.work() as work:
        recipient, _ = _recipient(work, actor_for(work, claims))
        updated = centre.mark_all_read(work, recipient=recipient)
    return JSONResponse({"updated": updated})


@router.get("/notifications/{notice_id}")
def get_notification(notice_id: str, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    with runtime.read() as work:
        recipient, language = _recipient(work, actor_for(work, claims))
        notice = centre.get(work, recipient=recipient, notice_id=notice_id, language=language)
    return JSONResponse(notice.as_json())


def _mark(runtime: Runtime, claims: dict[str, Any], notice_id: str, *, read: bool) -> Response:
    with runtime.work() as work:
        recipient, language = _recipient(work, actor_for(work, claims))
        notice = centre.set_read(work, recipient=recipient, notice_id=notice_id, read=read, language=language)
    return JSONResponse(notice.as_json())


@router.post("/notifications/{notice_id}/read")
def mark_read(notice_id: str, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    return _mark(runtime, claims, notice_id, read=True)


@router.post("/notifications/{notice_id}/unread")
def mark_unread(notice_id: str, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    return _mark(runtime, claims, notice_id, read=False)


@router.delete("/notifications/{notice_id}", status_code=204)
def delete_notification(notice_id: str, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    with runtime.work() as work:
        recipient, _ = _recipient(work, actor_for(work, claims))
        centre.delete(work, recipient=recipient, notice_id=notice_id)
    return Response(status_code=204)


# ---------------------------------------------------------------------------------------- dev mailbox
@router.get("/dev/mailbox", include_in_schema=False)
def mailbox(runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> Response:
    """What the outbox sent or would have sent (development and test only): e-mails and SMS, rendered."""
    settings = runtime.settings
    if settings.env not in (Environment.DEVELOPMENT, Environment.TEST):
        raise NotFound("no such endpoint")
    d, e = NotificationDelivery, NotificationEvent
    with runtime.read() as work:
        rows = work.session.execute(
            sa.select(d, e.kind, e.occurred_at, e.params)
            .join(e, sa.and_(e.record_id == d.record_id, e.id == d.event_id))
            .order_by(d.created_at.desc(), d.id)
            .limit(limit)
        ).all()
    messages = []
    for delivery, kind, occurred_at, params in rows:
        try:  # shown as sent: a reset code's message carries the code, opened for this page only
            shown = reset_code.reveal(
                settings,
                kind=Kind(kind),
                event_id=delivery.event_id,
                recipient=delivery.recipient,
                params=orjson.loads(params),
            )
        except reset_code.SecretUnreadable:
            shown = {**orjson.loads(params), "code": "(unreadable)"}
        message = render(
            settings,
            kind=Kind(kind),
            language=Language(delivery.language),
            role=Role(delivery.role),
            occurred_at=occurred_at,
            params=shown,
        )
        to = outbox.open_destination(settings, delivery.idempotency_key, delivery.destination)
        messages.append(
            {
                "channel": delivery.channel,
                "is_email": delivery.channel == Channel.EMAIL.value,
                "to": to or "(unreadable)",
                "status": delivery.status,
                "attempts": delivery.attempts,
                "last_error": delivery.last_error,
                "created_at": delivery.created_at,
                "delivered_at": delivery.delivered_at,
                "message_id": f"<{delivery.idempotency_key}@{settings.message_id_domain}>",
                "idempotency_key": delivery.idempotency_key,
                "kind": kind,
                "language": delivery.language,
                "subject": message.subject,
                "text": message.text,
                "sms": message.sms,
            }
        )
    html = (
        environment()
        .get_template("mailbox.html")
        .render(
            messages=messages,
            email_backend=settings.notify_email_backend.value,
            sms_backend=settings.notify_sms_backend.value,
            env=settings.env.value,
        )
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": MAILBOX_CSP})
