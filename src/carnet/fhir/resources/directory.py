"""Practitioner, PractitionerRole and Organization: the professional directory, read-only over FHIR."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from carnet.deps import ClaimsDep, RuntimeDep
from carnet.directory import service as directory
from carnet.errors import Invalid, IssueCode, NotFound
from carnet.fhir import bundles
from carnet.fhir.http import authenticate, fhir_response, lenient, negotiate
from carnet.fhir.search_params import _paging
from carnet.fhirtypes import split_token

router = APIRouter(tags=["Directory"])
_PARAMS = {
    "Practitioner": {"identifier", "name", "_id"},
    "Organization": {"identifier", "name", "_id"},
    "PractitionerRole": {"practitioner", "organization"},
}


def _search(kind: str, request: Request, runtime: RuntimeDep, claims: dict[str, object]) -> Response:
    negotiate(request)
    params = request.query_params
    unknown = sorted(k for k in params if k not in _PARAMS[kind] | {"_count", "_offset", "_format"})
    if unknown and not lenient(request):
        raise Invalid.at(unknown[0], f"unsupported search parameter(s): {', '.join(unknown)}", IssueCode.NOT_SUPPORTED)
    count, offset = _paging(params, runtime.settings)
    identifier = split_token(params["identifier"]) if "identifier" in params else None
    with runtime.read() as w:
        authenticate(w, dict(claims))
        if "_id" in params:
            try:
                matches, total = [directory.read(w, kind, params["_id"])], 1
            except NotFound:
                matches, total = [], 0
        else:
            total, matches = directory.search(
                w,
                kind,
                identifier=identifier,
                name=params.get("name"),
                practitioner=params.get("practitioner"),
                organization=params.get("organization"),
                count=count,
                offset=offset,
            )
    return fhir_response(
        bundles.searchset(runtime.settings.fhir_base, request.url, total, matches, [], offset=offset, count=count)
    )


def _read(kind: str, rid: str, request: Request, runtime: RuntimeDep, claims: dict[str, object]) -> Response:
    negotiate(request)
    with runtime.read() as w:
        authenticate(w, dict(claims))
        body = directory.read(w, kind, rid)
    return fhir_response(body)


@router.get("/Practitioner")
def search_practitioners(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    return _search("Practitioner", request, runtime, claims)


@router.get("/Practitioner/{rid}")
def read_practitioner(rid: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    return _read("Practitioner", rid, request, runtime, claims)


@router.get("/PractitionerRole")
def search_roles(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    return _search("PractitionerRole", request, runtime, claims)


@router.get("/PractitionerRole/{rid}")
def read_role(rid: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    return _read("PractitionerRole", rid, request, runtime, claims)


@router.get("/Organization")
def search_organizations(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    return _search("Organization", request, runtime, claims)


@router.get("/Organization/{rid}")
def read_organization(rid: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    return _read("Organization", rid, request, runtime, claims)
