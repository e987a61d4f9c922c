"""AuditEvent: the audit trail as FHIR (IHE BALP shapes). Parse, ask ``audit.service``, map, bundle.

``GET /fhir/AuditEvent`` searches by ``patient``, ``date`` (with prefixes), ``type``, ``subtype``,
``action`` (C R U D E), ``agent`` (IdNat_PS), ``outcome`` (0, 4), ``_count``/``_offset`` and ``_sort``
(``-date``, the default, or ``date``); ``GET /fhir/AuditEvent/{id}`` reads one. Who sees what is the
policy's (``access.audit_visibility``); a trace the caller may not read is answered like a missing one.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.datastructures import QueryParams
from starlette.responses import Response

from carnet.audit import events
from carnet.audit import service as trail
from carnet.deps import ClaimsDep, RuntimeDep
from carnet.errors import Invalid, IssueCode, Problem
from carnet.fhir import bundles
from carnet.fhir.http import authenticate, fhir_response, lenient, negotiate, resource_headers
from carnet.fhir.search_params import parse_date
from carnet.fhirtypes import split_token

router = APIRouter(tags=["AuditEvent"])

PARAMS = {"patient", "date", "type", "subtype", "action", "agent", "outcome", "_sort"}
COMMON = {"_count", "_offset", "_format"}
ACTIONS = ("C", "R", "U", "D", "E")


def _values(params: QueryParams, name: str) -> list[str]:
    return [part.strip() for value in params.getlist(name) for part in value.split(",") if part.strip()]


def _tokens(params: QueryParams, name: str) -> list[tuple[str | None, str]]:
    tokens = [split_token(v) for v in _values(params, name)]
    if any(not code for _, code in tokens):
        raise Invalid.at(name, f"{name} needs a code (system|code or code)", IssueCode.VALUE)
    return tokens


def _query(params: QueryParams, request: Request, page_size: int, max_page: int) -> trail.AuditQuery:
    unknown = sorted(k for k in params if k not in PARAMS and k not in COMMON)
    if unknown and not lenient(request):
        raise Invalid(
            f"unsupported search parameter(s): {', '.join(unknown)}",
            problems=[Problem(f"search parameter {k!r} is not supported", k, IssueCode.NOT_SUPPORTED) for k in unknown],
        )
    try:
        count = int(params.get("_count", page_size))
        offset = int(params.get("_offset", 0))
    except ValueError as exc:
        raise Invalid.at("_count", "_count and _offset are whole numbers", IssueCode.VALUE) from exc
    if count < 0 or offset < 0:
        raise Invalid.at("_count", "_count and _offset cannot be negative", IssueCode.VALUE)
    sort = params.get("_sort", "-date")
    if sort not in ("date", "-date"):
        raise Invalid.at("_sort", "AuditEvent sorts by date or -date", IssueCode.NOT_SUPPORTED)
    codes = _values(params, "action")
    if any(c not in ACTIONS for c in codes):
        raise Invalid.at("action", "action is one of C, R, U, D, E", IssueCode.VALUE)
    outcomes: list[str] | None = None
    for _, code in _tokens(params, "outcome"):
        outcomes = outcomes or []
        if code not in events.OUTCOME_CODES:
            raise Invalid.at("outcome", "outcome is one of 0, 4, 8, 12", IssueCode.VALUE)
        outcomes.extend(events.OUTCOME_CODES[code])
    agents = []
    for system, code in _tokens(params, "agent"):
        if system not in (None, events.IDNAT_PS):
            raise Invalid.at("agent", f"agent is an IdNat_PS ({events.IDNAT_PS}|…)", IssueCode.VALUE)
        agents.append(code)
    return trail.AuditQuery(
        patient_ids=[v.rsplit("Patient/", 1)[-1] for v in _values(params, "patient")],
        dates=[parse_date("date", v) for v in params.getlist("date")],
        actions=events.actions_for(
            types=_tokens(params, "type"), subtypes=_tokens(params, "subtype"), codes=codes or None
        ),
        professionals=agents,
        outcomes=outcomes,
        ascending=sort == "date",
        count=min(count, max_page),
        offset=offset,
    )


@router.get("/AuditEvent")
def search_audit_events(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """Search the traces the caller may read."""
    negotiate(request)
    settings = runtime.settings
    query = _query(request.query_params, request, settings.default_page_size, settings.max_page_size)
    with runtime.read() as work:
        page = trail.search_events(work, actor=authenticate(work, claims), query=query)
    bodies = [
        orjson.dumps(events.to_resource(item, page.names, page.reader, settings.fhir_base)) for item in page.items
    ]
    return fhir_response(
        bundles.searchset(
            settings.fhir_base, request.url, page.total, bodies, [], offset=query.offset, count=query.count
        )
    )


@router.get("/AuditEvent/{event_id}")
def read_audit_event(event_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    with runtime.read() as work:
        page = trail.read_event(work, actor=authenticate(work, claims), event=event_id)
    resource = events.to_resource(page.items[0], page.names, page.reader, runtime.settings.fhir_base)
    headers = resource_headers(runtime.settings.fhir_base, "AuditEvent", event_id, 1, resource["meta"]["lastUpdated"])
    return fhir_response(orjson.dumps(resource), headers=headers)
