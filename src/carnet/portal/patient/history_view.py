"""The access history as the patient pages show it: a thin adapter over ``carnet.audit.service.history``
and the sentences of ``carnet.audit.labels`` (who, profession, organisation, when, what, how).

The audit service reads the trail through the access policy and resolves names at display time; this
module only shapes one line per trace for the templates (and adds the profession's display from the
DMP value sets, which the history service gives as a code).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from carnet.audit import labels
from carnet.audit import service as trail
from carnet.auth.actor import Actor
from carnet.records.models import Record
from carnet.runtime import Work
from carnet.terminology import terminology

PROFESSIONAL_TYPES = (labels.HEALTHCARE_PROFESSIONAL, labels.HEALTHCARE_FACILITY)
# What the portal offers to filter on (the history service knows more).
ACTOR_FILTERS = (
    labels.HEALTHCARE_PROFESSIONAL,
    labels.HEALTHCARE_FACILITY,
    labels.PATIENT,
    labels.SYSTEM,
    labels.SUPPORT,
)


@dataclass(frozen=True, slots=True)
class Line:
    at: dt.datetime
    actor: str
    actor_type: str
    profession: str | None
    organization: str | None
    description: str
    mode: str  # normal | break-glass | regulation
    reason: str | None
    denied: bool
    document_id: str | None
    professional: str | None  # IdNat_PS of the professional behind the action

    @property
    def emergency(self) -> bool:
        return self.mode in ("break-glass", "regulation")


@dataclass(slots=True)
class HistoryPage:
    record: Record
    lines: list[Line]
    total: int
    offset: int
    limit: int


def _line(item: trail.TraceView, page: trail.TracePage, language: str) -> Line:
    trace = item.trace
    kind, ident = trace.get("resource_type"), trace.get("resource_id")
    document = page.names.document_types.get((str(kind), str(ident))) if kind and ident else None
    you = trace.get("actor_key") == page.reader.actor.key
    actor = labels.actor_name(trace, page.names, labels.Viewer(page.reader.actor.key), language)
    description = labels.describe(
        trace, page.names, language, you=you, document_display=document[1] if document else None
    )
    profession_code = trace.get("profession")
    coding = terminology().professions.codes.get(str(profession_code)) if profession_code else None
    organization = page.names.organizations.get(str(trace.get("organization"))) if trace.get("organization") else None
    document_id = None
    if document:
        document_id = (
            str(ident) if kind == "DocumentReference" else str(trace.get("detail") or "").removeprefix("document:")
        )
    return Line(
        at=item.at,
        actor=actor,
        actor_type=labels.actor_type_of(str(trace.get("actor_kind") or ""), item.action),
        profession=coding.display if coding else None,
        organization=organization,
        description=description,
        mode=str(trace.get("access_mode") or "normal"),
        reason=item.reason,
        denied=trace.get("outcome") == "denied",
        document_id=document_id,
        professional=str(trace["professional"]) if trace.get("professional") else None,
    )


def history(
    work: Work,
    *,
    actor: Actor,
    record_id: str,
    language: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    actor_types: list[str] | None = None,
    limit: int = 20,
    offset: int = 0,
) -> HistoryPage:
    """One page of the record's history, newest first (``NotFound`` for anyone but its holders)."""
    record, page = trail.history(
        work,
        actor=actor,
        query=trail.HistoryQuery(
            record_id=record_id,
            start=start,
            end=end,
            actor_types=list(actor_types or []),
            limit=limit,
            offset=offset,
        ),
    )
    lang = language if language in labels.LANGUAGES else labels.FR
    return HistoryPage(record, [_line(item, page, lang) for item in page.items], page.total, offset, limit)
