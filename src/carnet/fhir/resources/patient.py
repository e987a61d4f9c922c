"""Patient: open a record (POST), PDSm TD0.2 lookup by INS, read, history, close and reopen; the
lifecycle: announce (``$announce``, opposition window) and object (``$oppose``)."""

from __future__ import annotations

import contextlib
import datetime as dt

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from carnet.deps import ClaimsDep, RuntimeDep
from carnet.errors import Invalid, IssueCode, NotFound
from carnet.fhir import bundles
from carnet.fhir.http import authenticate, fhir_response, lenient, negotiate, read_body, resource_headers
from carnet.fhir.parsing import check_content_type, parse_json, parse_resource, validate_structure
from carnet.fhirtypes import format_instant, split_token
from carnet.identifiers import IdentifierError, parse_ins
from carnet.records import lifecycle
from carnet.records import service as records
from carnet.records.models import ClosureReason, Record

router = APIRouter(tags=["Patient"])


def _version_headers(base: str, body: bytes, *, location: bool = False) -> dict[str, str]:
    meta = orjson.loads(body).get("meta") or {}
    rid = orjson.loads(body)["id"]
    return resource_headers(
        base, "Patient", rid, meta.get("versionId", "1"), meta.get("lastUpdated"), location=location
    )


@router.post("/Patient", status_code=201)
async def create_patient(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """Open the patient's record (a professional attests consent; the operator opens automatically)."""
    negotiate(request)
    check_content_type(request.headers.get("content-type"))
    resource = parse_resource(await read_body(request, 1024 * 1024), "Patient")
    validate_structure(resource)

    def work() -> bytes:
        with runtime.work() as w:
            actor = authenticate(w, claims)
            record = records.create_record(w, actor=actor, patient=resource)
            return records.read_patient(w, actor=actor, patient_id=str(record.id)).body

    body = await run_in_threadpool(work)
    base = runtime.settings.fhir_base
    return fhir_response(body, 201, headers=_version_headers(base, body, location=True))


@router.get("/Patient")
def search_patient(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """PDSm TD0.2: ``Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|<INS>`` → 0 or 1 Patient with its status."""
    negotiate(request)
    params = request.query_params
    unknown = sorted(k for k in params if k not in ("identifier", "_id", "_format", "_count"))
    if unknown and not lenient(request):
        raise Invalid.at(unknown[0], f"unsupported search parameter(s): {', '.join(unknown)}", IssueCode.NOT_SUPPORTED)
    identifier = params.get("identifier")
    patient_id = params.get("_id")
    if identifier is None and patient_id is None:
        raise Invalid.at("identifier", "search Patient by identifier (the INS) or _id", IssueCode.REQUIRED)
    matches: list[bytes] = []
    with runtime.read() as w:
        actor = authenticate(w, claims)
        if identifier is not None:
            system, value = split_token(identifier)
            try:
                ins = parse_ins(system, value, allow_test=not runtime.settings.is_production)
            except IdentifierError as exc:
                raise Invalid.at("identifier", str(exc), IssueCode.VALUE) from exc
            try:
                view = records.lookup_by_ins(w, actor=actor, ins=ins)
            except NotFound:
                view = None
            if view is not None and (patient_id is None or str(view.record.id) == patient_id):
                matches.append(view.body)
        elif patient_id is not None:
            with contextlib.suppress(NotFound):
                matches.append(records.read_patient(w, actor=actor, patient_id=patient_id).body)
    body = bundles.searchset(
        runtime.settings.fhir_base, request.url, len(matches), matches, [], count=max(1, len(matches))
    )
    return fhir_response(body)


@router.get("/Patient/{patient_id}")
def read_patient(patient_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    with runtime.read() as w:
        view = records.read_patient(w, actor=authenticate(w, claims), patient_id=patient_id)
    return fhir_response(view.body, headers=_version_headers(runtime.settings.fhir_base, view.body))


@router.get("/Patient/{patient_id}/_history")
def patient_history(patient_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    with runtime.read() as w:
        views = records.patient_history(w, actor=authenticate(w, claims), patient_id=patient_id)
    return fhir_response(bundles.history(runtime.settings.fhir_base, request.url, [v.body for v in views]))


@router.get("/Patient/{patient_id}/_history/{version}")
def vread_patient(patient_id: str, version: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    if not version.isdigit():
        raise NotFound()
    with runtime.read() as w:
        view = records.read_patient(w, actor=authenticate(w, claims), patient_id=patient_id, version=int(version))
    return fhir_response(view.body, headers=_version_headers(runtime.settings.fhir_base, view.body))


def _reason(body: bytes) -> ClosureReason:
    if not body:
        return ClosureReason.PATIENT_REQUEST
    params = parse_json(body)
    if not isinstance(params, dict) or params.get("resourceType") != "Parameters":
        raise Invalid.at("Parameters", "send a Parameters resource with a 'reason' code")
    for param in params.get("parameter") or []:
        if param.get("name") == "reason":
            code = param.get("valueCode")
            try:
                return ClosureReason(code)
            except ValueError as exc:
                allowed = ", ".join(r.value for r in ClosureReason)
                raise Invalid.at(
                    "Parameters.parameter('reason')", f"reason {code!r} is not one of {allowed}", IssueCode.CODE_INVALID
                ) from exc
    return ClosureReason.PATIENT_REQUEST


@router.post("/Patient/{patient_id}/$close")
async def close_patient(patient_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """Close the record (holder or operator). Optional Parameters ``reason`` (FERMETURE_DEMANDE_PATIENT, DECES…)."""
    negotiate(request)
    raw = await read_body(request, 64 * 1024)
    if raw:
        check_content_type(request.headers.get("content-type"))
    reason = _reason(raw)

    def work() -> bytes:
        with runtime.work() as w:
            actor = authenticate(w, claims)
            records.close_record(w, actor=actor, patient_id=patient_id, reason=reason)
            return records.read_patient(w, actor=actor, patient_id=patient_id).body

    body = await run_in_threadpool(work)
    return fhir_response(body, headers=_version_headers(runtime.settings.fhir_base, body))


@router.post("/Patient/{patient_id}/$reopen")
async def reopen_patient(patient_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)

    def work() -> bytes:
        with runtime.work() as w:
            actor = authenticate(w, claims)
            records.reopen_record(w, actor=actor, patient_id=patient_id)
            return records.read_patient(w, actor=actor, patient_id=patient_id).body

    body = await run_in_threadpool(work)
    return fhir_response(body, headers=_version_headers(runtime.settings.fhir_base, body))


# ---------------------------------------------------------------------------------------- lifecycle
def _parameters(record: Record, **values: object) -> bytes:
    """A Parameters resource about a record's lifecycle (the record, its status, dates, a code)."""
    parameters: list[dict[str, object]] = [
        {"name": "patient", "valueReference": {"reference": f"Patient/{record.id}"}},
        {"name": "status", "valueCode": record.status},
    ]
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            parameters.append({"name": name, "valueBoolean": value})
        elif isinstance(value, dt.datetime):
            parameters.append({"name": name, "valueDateTime": format_instant(value)})
        else:
            parameters.append({"name": name, "valueString": str(value)})
    return orjson.dumps({"resourceType": "Parameters", "parameter": parameters})


@router.post("/Patient/$announce", status_code=201)
async def announce_patient(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """Announce a record (the operator, the insurer): it opens when the opposition window ends unless the
    patient objects. Body: the Patient. Answer: Parameters with the record, its status, when the patient
    was informed, when it opens, the provisional code (for a letter when no address was given) and
    whether a message was sent."""
    negotiate(request)
    check_content_type(request.headers.get("content-type"))
    resource = parse_resource(await read_body(request, 1024 * 1024), "Patient")
    validate_structure(resource)

    def work() -> bytes:
        with runtime.work() as w:
            done = lifecycle.announce_record(w, actor=authenticate(w, claims), patient=resource)
            return _parameters(
                done.record,
                infoSentAt=done.record.info_sent_at,
                opensAt=done.opens_at,
                activationCode=done.code,
                activationCodeExpiresAt=done.code_expires_at,
                notified=done.notified,
            )

    body = await run_in_threadpool(work)
    record_id = orjson.loads(body)["parameter"][0]["valueReference"]["reference"].split("/", 1)[1]
    return fhir_response(body, 201, headers={"Location": f"{runtime.settings.fhir_base}/Patient/{record_id}"})


@router.post("/Patient/{patient_id}/$oppose")
async def oppose_patient(patient_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """Object to an announced record (its holder or legal representative, or the operator recording an
    objection made otherwise): closed with reason OPPOSITION, its content and data key destroyed."""
    negotiate(request)

    def work() -> bytes:
        with runtime.work() as w:
            record = lifecycle.object_to_record(w, actor=authenticate(w, claims), patient_id=patient_id)
            return _parameters(record, reason=record.closure_reason, closedAt=record.closed_at)

    return fhir_response(await run_in_threadpool(work))
