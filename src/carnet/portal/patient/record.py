"""A record's home page, its access history, its closure and its full export.

* ``GET /patient/dossiers/<id>``: what is new since the last visit — documents deposited since
  (``documents.overview``), accesses by professionals (``audit.service.history``), unread notifications
  (``notifications.centre``).
* ``GET /patient/dossiers/<id>/historique``: "Historique des accès", filtered by dates and actor type.
* ``GET /patient/dossiers/<id>/dossier``: the record's page (its state, closing, reopening, export);
  ``POST …/fermeture`` closes the record and ``POST …/reouverture`` reopens it (``records.service``).
* ``POST /patient/dossiers/<id>/export``: the ZIP of everything (``records.export``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import Response, StreamingResponse

from carnet.audit import labels
from carnet.auth import sessions
from carnet.deps import RuntimeDep
from carnet.documents import overview
from carnet.errors import Conflict
from carnet.notifications import centre, preferences
from carnet.portal import i18n, web
from carnet.portal.patient import common, history_view
from carnet.portal.patient.documents import category_labels
from carnet.records import export
from carnet.records import service as records
from carnet.records.models import ClosureReason

router = APIRouter(prefix=f"{common.PREFIX}/dossiers", include_in_schema=False)
HISTORY_PAGE = 20
CHUNK = 64 * 1024


@router.get("/{record_id}")
def home(request: Request, runtime: RuntimeDep, record_id: str) -> Response:
    language = i18n.negotiate(request)
    with runtime.read() as work:
        space = common.open_space(work, request, record_id)
        since = sessions.previous_visit(work, space.account_id, current=space.token)
        documents = overview.list_documents(
            work, actor=space.actor, patient_id=record_id, filters=overview.Filters(since=since), page_size=5
        )
        accesses = history_view.history(
            work,
            actor=space.actor,
            record_id=record_id,
            language=language,
            start=since,
            actor_types=list(history_view.PROFESSIONAL_TYPES),
            limit=5,
        )
        lang = preferences.get(work, account_id=space.account_id).language
        notices = centre.list_notices(work, recipient=space.recipient, language=lang, unread_only=True, limit=5)
    return common.page(
        request,
        runtime,
        "patient/home.html",
        space,
        {
            "since": since,
            "documents": documents,
            "accesses": accesses,
            "notices": notices,
            "categories": category_labels(web.gettext(request)),
        },
        section="accueil",
    )


@router.get("/{record_id}/historique")
def history(request: Request, runtime: RuntimeDep, record_id: str) -> Response:
    _ = web.gettext(request)
    params = request.query_params
    errors: dict[str, str] = {}
    start = end = None
    try:
        start = common.parse_date(params.get("du"))
    except ValueError:
        errors["du"] = _("Indiquez une date valide.")
    try:
        end = common.parse_date(params.get("au"))
    except ValueError:
        errors["au"] = _("Indiquez une date valide.")
    if start and end and end < start:
        errors["au"] = _("La date de fin doit suivre la date de début.")
    actor_type = params.get("acteur") or ""
    if actor_type and actor_type not in history_view.ACTOR_FILTERS:
        actor_type = ""
    try:
        page_number = max(1, min(int(params.get("page") or 1), 10_000))
    except ValueError:
        page_number = 1
    with runtime.read() as work:
        space = common.open_space(work, request, record_id)
        found = history_view.history(
            work,
            actor=space.actor,
            record_id=record_id,
            language=i18n.negotiate(request),
            start=dt.datetime.combine(start, dt.time(), tzinfo=web.PARIS) if start and not errors else None,
            end=dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), tzinfo=web.PARIS)
            if end and not errors
            else None,
            actor_types=[actor_type] if actor_type else [],
            limit=HISTORY_PAGE,
            offset=(page_number - 1) * HISTORY_PAGE,
        )
    pages = max(1, -(-found.total // HISTORY_PAGE))
    return common.page(
        request,
        runtime,
        "patient/history.html",
        space,
        {
            "history": found,
            "filters": {"du": params.get("du", "")[:10], "au": params.get("au", "")[:10], "acteur": actor_type},
            "errors": errors,
            "page_number": page_number,
            "pages": pages,
            "actor_filters": history_view.ACTOR_FILTERS,
            "labels": labels,
        },
        section="historique",
        status=422 if errors else 200,
    )


@router.get("/{record_id}/dossier")
def manage(request: Request, runtime: RuntimeDep, record_id: str) -> Response:
    with runtime.read() as work:
        space = common.open_space(work, request, record_id)
    return common.page(request, runtime, "patient/record.html", space, {"errors": {}}, section="dossier")


@router.post("/{record_id}/fermeture")
def close(
    request: Request,
    runtime: RuntimeDep,
    record_id: str,
    confirmation: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form(alias="csrf")] = "",
) -> Response:
    common.check_form(request, csrf_token)
    _ = web.gettext(request)
    with runtime.work() as work:
        space = common.open_space(work, request, record_id)
        if confirmation != "oui":
            errors = {"confirmation": _("Cochez la case pour confirmer que vous avez compris les conséquences.")}
            return common.page(
                request, runtime, "patient/record.html", space, {"errors": errors}, section="dossier", status=422
            )
        with contextlib.suppress(Conflict):  # already closed: the page says so
            records.close_record(work, actor=space.actor, patient_id=record_id, reason=ClosureReason.PATIENT_REQUEST)
    return common.redirect(f"{common.PREFIX}/dossiers/{record_id}/dossier", "ferme")


@router.post("/{record_id}/reouverture")
def reopen(
    request: Request, runtime: RuntimeDep, record_id: str, csrf_token: Annotated[str, Form(alias="csrf")] = ""
) -> Response:
    common.check_form(request, csrf_token)
    with runtime.work() as work:
        space = common.open_space(work, request, record_id)
        with contextlib.suppress(Conflict):
            records.reopen_record(work, actor=space.actor, patient_id=record_id)
    return common.redirect(f"{common.PREFIX}/dossiers/{record_id}/dossier", "rouvert")


@router.post("/{record_id}/export")
def download_export(
    request: Request, runtime: RuntimeDep, record_id: str, csrf_token: Annotated[str, Form(alias="csrf")] = ""
) -> Response:
    common.check_form(request, csrf_token)
    spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 - closed by the response
    try:
        with runtime.read() as work:
            space = common.open_space(work, request, record_id)
            export.export_record(work, actor=space.actor, patient_id=record_id, out=spool)
            name = export.export_name(work.now)
    except BaseException:
        spool.close()
        raise
    size = spool.tell()
    spool.seek(0)

    def chunks() -> Iterator[bytes]:
        try:
            while block := spool.read(CHUNK):
                yield block
        finally:
            spool.close()

    return StreamingResponse(
        chunks(),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Content-Length": str(size),
            "Cache-Control": "no-store",
        },
    )
