"""Consent: the patient's decisions and professionals' declarations (IHE PCF shapes); the emergency operation."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from carnet.access import emergency
from carnet.access.models import EmergencyMode
from carnet.consents import service as consents
from carnet.deps import ClaimsDep, RuntimeDep
from carnet.errors import Invalid, IssueCode, NotFound
from carnet.fhir import bundles
from carnet.fhir.http import authenticate, fhir_response, lenient, negotiate, read_body, resource_headers
from carnet.fhir.parsing import check_content_type, parse_json, parse_resource, validate_structure
from carnet.fhirtypes import format_instant, split_token

router = APIRouter(tags=["Consent"])


def _headers(base: str, body: bytes, *, location: bool = False) -> dict[str, str]:
    resource = orjson.loads(body)
    meta = resource.get("meta") or {}
    return resource_headers(
        base, "Consent", resource["id"], meta.get("versionId", "1"), meta.get("lastUpdated"), location=location
    )


@router.post("/Consent", status_code=201)
async def create_consent(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """A patient authorizes, blocks, designates an administrator, sets emergency or confidentiality
    preferences; a professional declares care-team consent or becoming médecin traitant."""
    negotiate(request)
    check_content_type(request.headers.get("content-type"))
    resource = parse_resource(await read_body(request, 256 * 1024), "Consent")
    validate_structure(resource)

    def work() -> bytes:
        with runtime.work() as w:
            _, body = consents.create(w, actor=authenticate(w, claims), resource=resource)
            return body

    body = await run_in_threadpool(work)
    return fhir_response(body, 201, headers=_headers(runtime.settings.fhir_base, body, location=True))


@router.get("/Consent")
def search_consents(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    params = request.query_params
    known = {"patient", "category", "status", "_format", "_count"}
    unknown = sorted(k for k in params if k not in known)
    if unknown and not lenient(request):
        raise Invalid.at(unknown[0], f"unsupported search parameter(s): {', '.join(unknown)}", IssueCode.NOT_SUPPORTED)
    patient = params.get("patient")
    if not patient:
        raise Invalid.at("patient", "search Consent by patient", IssueCode.REQUIRED)
    kinds = [split_token(v)[1] for value in params.getlist("category") for v in value.split(",")]
    statuses = [v for value in params.getlist("status") for v in value.split(",")]
    with runtime.read() as w:
        bodies = consents.search(
            w, actor=authenticate(w, claims), patient_id=patient.rsplit("/", 1)[-1], kinds=kinds, statuses=statuses
        )
    return fhir_response(
        bundles.searchset(runtime.settings.fhir_base, request.url, len(bodies), bodies, [], count=max(len(bodies), 1))
    )


@router.get("/Consent/{consent_id}")
def read_consent(consent_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    with runtime.read() as w:
        body = consents.read(w, actor=authenticate(w, claims), consent_id=consent_id)
    return fhir_response(body, headers=_headers(runtime.settings.fhir_base, body))


@router.get("/Consent/{consent_id}/_history")
def consent_history(consent_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    with runtime.read() as w:
        versions = consents.history(w, actor=authenticate(w, claims), consent_id=consent_id)
    return fhir_response(bundles.history(runtime.settings.fhir_base, request.url, versions))


@router.get("/Consent/{consent_id}/_history/{version}")
def vread_consent(consent_id: str, version: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    if not version.isdigit():
        raise NotFound()
    with runtime.read() as w:
        body = consents.read(w, actor=authenticate(w, claims), consent_id=consent_id, version=int(version))
    return fhir_response(body, headers=_headers(runtime.settings.fhir_base, body))


@router.delete("/Consent/{consent_id}")
def revoke_consent(consent_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """Withdraw a decision: the Consent becomes inactive (its history is kept)."""
    negotiate(request)
    with runtime.work() as w:
        body = consents.revoke(w, actor=authenticate(w, claims), consent_id=consent_id)
    return fhir_response(body, headers=_headers(runtime.settings.fhir_base, body))


def _parameter(params: dict[str, object], name: str) -> str | None:
    for param in params.get("parameter") or []:  # type: ignore[attr-defined]
        if isinstance(param, dict) and param.get("name") == name:
            value = next((v for k, v in param.items() if k.startswith("value")), None)
            return None if value is None else str(value)
    return None


@router.post("/Patient/{patient_id}/$emergency-access")
async def emergency_access(patient_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """Break the glass (mode ``break-glass``) or access as the regulation centre (``regulation``), with a
    reason. Read-only, time-limited, refused when the patient opposed."""
    negotiate(request)
    check_content_type(request.headers.get("content-type"))
    params = parse_json(await read_body(request, 64 * 1024))
    if not isinstance(params, dict) or params.get("resourceType") != "Parameters":
        raise Invalid("send a Parameters resource with 'mode' and 'reason'")
    mode_value = _parameter(params, "mode") or ""
    try:
        mode = EmergencyMode(mode_value)
    except ValueError as exc:
        raise Invalid.at(
            "Parameters.parameter('mode')", "mode is break-glass or regulation", IssueCode.CODE_INVALID
        ) from exc
    reason = _parameter(params, "reason") or ""

    def work() -> emergency.Granted:
        with runtime.work() as w:
            return emergency.open_access(
                w, actor=authenticate(w, claims), patient_id=patient_id, mode=mode, reason=reason
            )

    granted = await run_in_threadpool(work)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "mode", "valueCode": granted.mode.value},
            {"name": "start", "valueInstant": format_instant(granted.started_at)},
            {"name": "end", "valueInstant": format_instant(granted.expires_at)},
            {"name": "readOnly", "valueBoolean": True},
        ],
    }
    return fhir_response(orjson.dumps(body))
