"""The notification centre and the notification preferences of the signed-in person.

Notices belong to the account (a legal representative gets those of each child's record in one
centre), so these pages live under ``/patient/notifications``. Everything is
``carnet.notifications.centre`` (list, mark read, delete) and ``carnet.notifications.preferences``
(channels, topics, contacts; emergency-access notices cannot be turned off: the service refuses it).
Marking a notice read answers an htmx request (``HX-Request``) with the notice and the page's unread
counts (``common.fragment``), any other request with a 303 to the centre.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response

from carnet.deps import RuntimeDep
from carnet.errors import Invalid
from carnet.notifications import centre, preferences
from carnet.notifications.kinds import MANDATORY, Channel, Topic
from carnet.portal import web
from carnet.portal.patient import common

router = APIRouter(prefix=f"{common.PREFIX}/notifications", include_in_schema=False)
PAGE_SIZE = 20
FormStr = Annotated[str, Form()]
# Topics offered (messaging, appointments and screening have no source yet in Carnet).
TOPICS = (Topic.PROFESSIONAL_ACCESS, Topic.EMERGENCY_ACCESS, Topic.DOCUMENTS, Topic.CONSENTS, Topic.RECORD)


def topic_labels(_: Callable[[str], str]) -> dict[Topic, tuple[str, str]]:
    return {
        Topic.PROFESSIONAL_ACCESS: (
            _("Accès des professionnels"),
            _("La première fois qu'un professionnel de santé consulte votre dossier."),
        ),
        Topic.EMERGENCY_ACCESS: (
            _("Accès en urgence"),
            _(
                "Chaque accès en urgence à votre dossier. La loi impose de vous prévenir : ce choix ne peut pas "
                "être désactivé."
            ),
        ),
        Topic.DOCUMENTS: (
            _("Documents"),
            _("Chaque fois qu'un professionnel de santé ajoute ou remplace un document."),
        ),
        Topic.CONSENTS: (_("Autorisations"), _("Les changements de qui peut accéder à votre dossier.")),
        Topic.RECORD: (_("Dossier"), _("L'ouverture et la fermeture de votre dossier.")),
    }


@router.get("")
def notices(request: Request, runtime: RuntimeDep) -> Response:
    try:
        page_number = max(1, min(int(request.query_params.get("page") or 1), 10_000))
    except ValueError:
        page_number = 1
    with runtime.read() as work:
        space = common.open_space(work, request)
        language = preferences.get(work, account_id=space.account_id).language
        found = centre.list_notices(
            work,
            recipient=space.recipient,
            language=language,
            limit=PAGE_SIZE,
            offset=(page_number - 1) * PAGE_SIZE,
        )
    names = {held.id: held.name for held in space.records}
    return common.page(
        request,
        runtime,
        "patient/notifications.html",
        space,
        {
            "found": found,
            "names": names,
            "page_number": page_number,
            "pages": max(1, -(-found.total // PAGE_SIZE)),
        },
        section="notifications",
    )


@router.post("/tout-lire")
def read_all(request: Request, runtime: RuntimeDep, csrf_token: Annotated[str, Form(alias="csrf")] = "") -> Response:
    common.check_form(request, csrf_token)
    with runtime.work() as work:
        space = common.open_space(work, request)
        centre.mark_all_read(work, recipient=space.recipient)
    return common.redirect(f"{common.PREFIX}/notifications", "tout-lu")


@router.post("/{notice_id}/lue")
def mark_read(
    request: Request, runtime: RuntimeDep, notice_id: str, csrf_token: Annotated[str, Form(alias="csrf")] = ""
) -> Response:
    common.check_form(request, csrf_token)
    with runtime.work() as work:
        space = common.open_space(work, request)
        language = preferences.get(work, account_id=space.account_id).language
        notice = centre.set_read(work, recipient=space.recipient, notice_id=notice_id, read=True, language=language)
        space.unread = centre.unread_count(work, recipient=space.recipient)
    if common.is_htmx(request):  # the notice as it now is, and the unread counts of the page
        names = {held.id: held.name for held in space.records}
        context = {"item": notice, "names": names, "focus": True}
        return common.fragment(request, runtime, "patient/_notice_item.html", space, context, notice="lue")
    return common.redirect(f"{common.PREFIX}/notifications", "lue")


@router.post("/{notice_id}/suppression")
def delete(
    request: Request, runtime: RuntimeDep, notice_id: str, csrf_token: Annotated[str, Form(alias="csrf")] = ""
) -> Response:
    common.check_form(request, csrf_token)
    with runtime.work() as work:
        space = common.open_space(work, request)
        centre.delete(work, recipient=space.recipient, notice_id=notice_id)
    return common.redirect(f"{common.PREFIX}/notifications", "notif-supprimee")


def _preferences_page(
    request: Request,
    runtime: RuntimeDep,
    space: common.Space,
    current: preferences.Preferences,
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    _ = web.gettext(request)
    return common.page(
        request,
        runtime,
        "patient/notification_preferences.html",
        space,
        {
            "prefs": current,
            "errors": errors,
            "topics": TOPICS,
            "topic_labels": topic_labels(_),
            "mandatory": MANDATORY,
        },
        section="notifications",
        status=status,
    )


@router.get("/preferences")
def preferences_form(request: Request, runtime: RuntimeDep) -> Response:
    with runtime.read() as work:
        space = common.open_space(work, request)
        current = preferences.get(work, account_id=space.account_id)
    return _preferences_page(request, runtime, space, current, {})


@router.post("/preferences")
async def save_preferences(request: Request, runtime: RuntimeDep) -> Response:
    form = await request.form()
    common.check_form(request, str(form.get("csrf") or ""))
    from starlette.concurrency import run_in_threadpool  # noqa: PLC0415

    values = {key: str(value) for key, value in form.multi_items() if isinstance(value, str)}
    topics_on = {str(v) for k, v in form.multi_items() if k == "theme" and isinstance(v, str)}
    return await run_in_threadpool(_save_preferences, request, runtime, values, topics_on)


def _save_preferences(request: Request, runtime: RuntimeDep, values: dict[str, str], topics_on: set[str]) -> Response:
    _ = web.gettext(request)
    change = preferences.Change(
        language=values.get("langue") or "fr",
        email=values.get("email", "")[:320],
        phone=values.get("telephone", "")[:40],
        channels={
            Channel.EMAIL.value: values.get("canal_email") == "1",
            Channel.SMS.value: values.get("canal_sms") == "1",
        },
        topics={topic.value: topic.value in topics_on or topic in MANDATORY for topic in TOPICS},
    )
    try:
        with runtime.work() as work:
            space = common.open_space(work, request)
            preferences.put(work, account_id=space.account_id, change=change)
    except Invalid as exc:
        errors: dict[str, str] = {}
        for problem in exc.problems:
            where = problem.expression or ""
            if where == "email":
                errors["email"] = _("Cette adresse e-mail n'est pas valide (exemple : nom@domaine.fr).")
            elif where == "phone":
                errors["telephone"] = _("Ce numéro n'est pas valide : 06 12 34 56 78 ou +33 6 12 34 56 78.")
            elif where == "channels.email":
                errors["canal_email"] = _("Indiquez une adresse e-mail pour recevoir les notifications par e-mail.")
            elif where == "channels.sms":
                errors["canal_sms"] = _("Indiquez un numéro de mobile pour recevoir les notifications par SMS.")
            else:
                errors["theme"] = _("Les notifications d'accès en urgence ne peuvent pas être désactivées.")
        with runtime.read() as work:
            space = common.open_space(work, request)
        shown = preferences.Preferences(
            email=values.get("email") or None,
            phone=values.get("telephone") or None,
            email_channel=values.get("canal_email") == "1",
            sms_channel=values.get("canal_sms") == "1",
            topics_off=frozenset(t for t in TOPICS if t.value not in topics_on and t not in MANDATORY),
        )
        return _preferences_page(request, runtime, space, shown, errors, status=422)
    return common.redirect(f"{common.PREFIX}/notifications/preferences", "preferences")
