"""List: ITI-66 Find Lists (SubmissionSets and Folders), read and history."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from carnet.deps import ClaimsDep, RuntimeDep
from carnet.documents import search as finder
from carnet.errors import NotFound
from carnet.fhir import bundles
from carnet.fhir.http import authenticate, fhir_response, lenient, negotiate
from carnet.fhir.search_params import list_query

router = APIRouter(tags=["List"])


@router.get("/List")
def find_lists(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    query = list_query(request.query_params, runtime.settings, lenient=lenient(request))
    with runtime.read() as w:
        page = finder.search_lists(w, actor=authenticate(w, claims), query=query)
    return fhir_response(
        bundles.searchset(
            runtime.settings.fhir_base,
            request.url,
            page.total,
            page.matches,
            page.included,
            offset=query.offset,
            count=query.count,
        )
    )


@router.get("/List/{list_id}")
def read_list(list_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    with runtime.read() as w:
        body = finder.read_list(w, actor=authenticate(w, claims), list_id=list_id)
    return fhir_response(body)


@router.get("/List/{list_id}/_history")
def list_history(list_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    with runtime.read() as w:
        versions = finder.list_history(w, actor=authenticate(w, claims), list_id=list_id)
    return fhir_response(bundles.history(runtime.settings.fhir_base, request.url, versions))


@router.get("/List/{list_id}/_history/{version}")
def vread_list(list_id: str, version: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    if not version.isdigit():
        raise NotFound()
    with runtime.read() as w:
        body = finder.read_list(w, actor=authenticate(w, claims), list_id=list_id, version=int(version))
    return fhir_response(body)
