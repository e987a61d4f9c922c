"""HTTP: the patient's history, "qui a consulté mon dossier" (JSON, for the portal and apps).

``GET /api/patient/history`` — authentication as for ``/auth/patient`` (a bearer access token or the
session cookie), for the patient of the record or one of their legal representatives; anyone else gets
the 404 of an unknown record. Parameters (each optional; lists comma-separated or repeated):

* ``record``: the Patient id (default: the caller's only record — their own, or their one child's);
* ``from``, ``to``: a date (``2026-11-01``, the whole day included) or an instant (``to`` exclusive);
* ``actorType``: ``HEALTHCARE_PROFESSIONAL``, ``HEALTHCARE_FACILITY``, ``SUPPORT``, ``PATIENT``,
  ``SERVICE_TIERS``, ``SYSTEM``, ``ENROLMENT``; ``group``: ``GENERAL``, ``MEDICAL_DOCUMENT``,
  ``SERVICE_TIERS``; ``action``: trace action codes (``document.read``, ``auth.login`` …);
* ``sort``: ``desc`` (newest first, the default) or ``asc``; ``limit`` (1–100, default 20), ``offset``.

Labels are French, or English when ``Accept-Language`` prefers it. The answer (stable; new members
may be added, none removed or renamed)::

    {"record": "<Patient id>", "language": "fr", "sort": "desc", "total": 42, "offset": 0, "limit": 20,
     "items": [{
        "id": "<AuditEvent id>",                     # GET /fhir/AuditEvent/{id} shows it in full
        "actionDate": "2026-11-23T18:32:23.806037+00:00",
        "actionDateLabel": "23 novembre 2026 à 19:32",
        "group": "MEDICAL_DOCUMENT", "actorType": "HEALTHCARE_PROFESSIONAL",
        "actorDisplayName": "Dr Stéphane MEDIONI",
        "actionDescription": "a consulté le document « Compte rendu de consultation »",
        "label": "Dr Stéphane MEDIONI a consulté le document « Compte rendu de consultation »",
        "action": "document.read", "outcome": "success", "accessMode": "normal",
        "document": {"id": "…", "typeCode": "11488-4", "typeDisplay": "Compte rendu de consultation"},
        "emergencyReason": null}]}

A document's read that answers its own deposit (the "echo") is folded into the deposit.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse, Response

from carnet.audit import labels
from carnet.audit import service as trail
from carnet.auth.authenticate import actor_for
from carnet.deps import ClaimsDep, RuntimeDep
from carnet.errors import Invalid, IssueCode
from carnet.fhirtypes import parse_datetime

router = APIRouter(tags=["Patient history"])


def _list(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def _instant(name: str, value: str | None, *, end: bool) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError as exc:
        raise Invalid.at(name, f"{name}={value!r}: {exc}", IssueCode.VALUE) from exc
    if end and "T" not in value:  # a date: the whole day is included
        parsed += dt.timedelta(days=1)
    return parsed


def item_json(item: trail.TraceView, page: trail.TracePage, language: str, timezone: str) -> dict[str, object]:
    """One history line."""
    trace = item.trace
    kind, ident = trace.get("resource_type"), trace.get("resource_id")
    document = page.names.document_types.get((str(kind), str(ident))) if kind and ident else None
    you = trace.get("actor_key") == page.reader.actor.key
    actor = labels.actor_name(trace, page.names, labels.Viewer(page.reader.actor.key), language)
    description = labels.describe(
        trace, page.names, language, you=you, document_display=document[1] if document else None
    )
    return {
        "id": item.id,
        "actionDate": item.at.isoformat(timespec="microseconds"),
        "actionDateLabel": labels.format_date(item.at, language, timezone),
        "group": labels.group_of(item.action),
        "actorType": labels.actor_type_of(str(trace.get("actor_kind") or ""), item.action),
        "actorDisplayName": actor,
        "actionDescription": description,
        "label": f"{actor} {description}",
        "action": item.action,
        "outcome": trace.get("outcome"),
        "accessMode": trace.get("access_mode"),
        "document": (
            {
                "id": ident
                if kind == "DocumentReference"
                else str(trace.get("detail") or "").removeprefix("document:"),
                "typeCode": document[0],
                "typeDisplay": document[1],
            }
            if document
            else None
        ),
        "emergencyReason": item.reason,
    }


@router.get("/api/patient/history")
def patient_history(
    request: Request,
    runtime: RuntimeDep,
    claims: ClaimsDep,
    record: str | None = None,
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    actor_type: Annotated[list[str] | None, Query(alias="actorType")] = None,
    action: Annotated[list[str] | None, Query()] = None,
    group: Annotated[list[str] | None, Query()] = None,
    sort: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Who accessed the record, and what they did: newest first, grouped as Mon espace santé does."""
    language = labels.negotiate(request.headers.get("accept-language"))
    query = trail.HistoryQuery(
        record_id=record,
        start=_instant("from", start, end=False),
        end=_instant("to", end, end=True),
        actor_types=_list(actor_type),
        actions=_list(action),
        groups=_list(group),
        ascending=sort == "asc",
        limit=limit,
        offset=offset,
    )
    timezone = runtime.settings.audit_timezone
    with runtime.read() as work:
        found, page = trail.history(work, actor=actor_for(work, claims), query=query)
        items = [item_json(item, page, language, timezone) for item in page.items]
    return JSONResponse(
        {
            "record": str(found.id),
            "language": language,
            "sort": sort,
            "total": page.total,
            "offset": offset,
            "limit": limit,
            "items": items,
        },
        headers={"Content-Language": language, "Vary": "Accept-Language"},
    )
