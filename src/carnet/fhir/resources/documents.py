"""DocumentReference: ITI-105 publish, ITI-67 find, read, history, PATCH (metadata), logical DELETE."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.responses import Response

from carnet.deps import ClaimsDep, RuntimeDep
from carnet.documents import search as finder
from carnet.documents import service as documents
from carnet.documents.schemas import PatchOperation
from carnet.errors import Invalid, IssueCode, NotAllowed, NotFound
from carnet.fhir import bundles
from carnet.fhir.http import (
    authenticate,
    body_limit,
    fhir_response,
    lenient,
    negotiate,
    read_body,
    resource_headers,
)
from carnet.fhir.outcomes import information
from carnet.fhir.parsing import PATCH_MEDIA, check_content_type, parse_json, parse_resource, validate_structure
from carnet.fhir.search_params import document_query
from carnet.fhirtypes import split_token

router = APIRouter(tags=["DocumentReference"])
DOC = "DocumentReference"


def _headers(base: str, body: bytes, *, location: bool = False) -> dict[str, str]:
    resource = orjson.loads(body)
    meta = resource.get("meta") or {}
    return resource_headers(
        base, DOC, resource["id"], meta.get("versionId", "1"), meta.get("lastUpdated"), location=location
    )


@router.post("/DocumentReference", status_code=201)
async def publish(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """ITI-105 Simplified Publish: the DocumentReference with the document in ``attachment.data``.

    The response carries the stored DocumentReference, or an OperationOutcome when the depositor may
    not read what it deposited (the insurer's feed) or asked for it with ``Prefer: return=OperationOutcome``.
    """
    negotiate(request)
    check_content_type(request.headers.get("content-type"))
    raw = await read_body(request, body_limit(runtime.settings.max_document_bytes))
    resource = parse_resource(raw, DOC)
    data = documents.parse_inline_data(resource, DOC)
    validate_structure(resource)
    prefer = request.headers.get("prefer", "").replace(" ", "").lower()

    def work() -> tuple[str, int, bytes | None]:
        with runtime.work() as w:
            actor = authenticate(w, claims)
            created = documents.publish(w, actor=actor, resource=resource, data=data)
            readable = "return=operationoutcome" not in prefer and "return=minimal" not in prefer
            try:
                body = documents.read_document(w, actor=actor, doc_id=created.id, echo=True) if readable else None
            except NotFound:
                body = None
            return created.id, created.version, body

    doc_id, version, body = await run_in_threadpool(work)
    base = runtime.settings.fhir_base
    headers = resource_headers(base, DOC, doc_id, version, location=True)
    if body is None:
        return fhir_response(orjson.dumps(information(f"DocumentReference/{doc_id} created")), 201, headers=headers)
    return fhir_response(body, 201, headers=_headers(base, body, location=True))


def _search(request: Request, runtime: RuntimeDep, claims: dict[str, Any], params: QueryParams) -> Response:
    query = document_query(params, runtime.settings, lenient=lenient(request))
    with runtime.read() as w:
        page = finder.search_documents(w, actor=authenticate(w, claims), query=query)
    # Links are GET URLs carrying every parameter, whether it came in the query string or a POSTed form.
    url = request.url.replace(path=request.url.path.removesuffix("/_search"), query=str(params))
    return fhir_response(
        bundles.searchset(
            runtime.settings.fhir_base,
            url,
            page.total,
            page.matches,
            page.included,
            offset=query.offset,
            count=query.count,
        )
    )


@router.get("/DocumentReference")
def find(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """ITI-67 Find Document References (patient or patient.identifier required)."""
    negotiate(request)
    return _search(request, runtime, claims, request.query_params)


@router.post("/DocumentReference/_search")
async def find_post(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    form = await request.form()
    merged = QueryParams([*request.query_params.multi_items(), *((k, str(v)) for k, v in form.multi_items())])
    return await run_in_threadpool(_search, request, runtime, claims, merged)


@router.get("/DocumentReference/{doc_id}")
def read(doc_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    with runtime.read() as w:
        body = documents.read_document(w, actor=authenticate(w, claims), doc_id=doc_id)
    return fhir_response(body, headers=_headers(runtime.settings.fhir_base, body))


@router.get("/DocumentReference/{doc_id}/_history")
def history(doc_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    with runtime.read() as w:
        versions = documents.document_history(w, actor=authenticate(w, claims), doc_id=doc_id)
    return fhir_response(bundles.history(runtime.settings.fhir_base, request.url, versions))


@router.get("/DocumentReference/{doc_id}/_history/{version}")
def vread(doc_id: str, version: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    negotiate(request)
    if not version.isdigit():
        raise NotFound()
    with runtime.read() as w:
        body = documents.read_document(w, actor=authenticate(w, claims), doc_id=doc_id, version=int(version))
    return fhir_response(body, headers=_headers(runtime.settings.fhir_base, body))


# ------------------------------------------------------------------------------------------ PATCH

_FHIRPATH_ROOTS = {
    "DocumentReference.status": "/status",
    "DocumentReference.securityLabel": "/securityLabel",
    "DocumentReference.extension": "/extension",
}


def _json_patch_ops(data: Any) -> list[PatchOperation]:
    if not isinstance(data, list):
        raise Invalid("a JSON Patch document is an array of operations")
    ops = []
    for index, op in enumerate(data):
        if not isinstance(op, dict) or op.get("op") not in ("add", "remove", "replace", "test", "move", "copy"):
            raise Invalid.at(f"[{index}].op", "each operation has op add, remove or replace")
        if op["op"] in ("move", "copy", "test"):
            raise Invalid.at(f"[{index}].op", f"JSON Patch {op['op']!r} is not supported", IssueCode.NOT_SUPPORTED)
        if not isinstance(op.get("path"), str) or not op["path"].startswith("/"):
            raise Invalid.at(f"[{index}].path", "path is a JSON pointer starting with /")
        ops.append(PatchOperation(op["op"], op["path"], op.get("value"), f"[{index}]"))
    return ops


def _fhirpath_patch_ops(data: Any) -> list[PatchOperation]:
    """FHIRPath Patch (a Parameters resource) limited to the elements PDSm lets change."""
    if not isinstance(data, dict) or data.get("resourceType") != "Parameters":
        raise Invalid("a FHIRPath Patch is a Parameters resource")
    ops = []
    for index, param in enumerate(data.get("parameter") or []):
        where = f"Parameters.parameter[{index}]"
        if param.get("name") != "operation":
            raise Invalid.at(where, "each parameter is an 'operation'")
        parts = {p.get("name"): p for p in param.get("part") or []}
        kind = (parts.get("type") or {}).get("valueCode")
        path = (parts.get("path") or {}).get("valueString", "")
        value_part = parts.get("value") or {}
        value = next((v for k, v in value_part.items() if k.startswith("value")), None)
        root = _FHIRPATH_ROOTS.get(path)
        if root is None:
            base = path.split("(", 1)[0].split("[", 1)[0]
            if base in _FHIRPATH_ROOTS:
                raise Invalid.at(
                    f"{where}.part('path')",
                    f"FHIRPath {path!r} is not supported; target the element",
                    IssueCode.NOT_SUPPORTED,
                )
            raise NotAllowed(
                f"{path} cannot be changed: PDSm allows PATCH of status, securityLabel and isArchived only"
            )
        if kind == "replace":
            ops.append(PatchOperation("replace", root, value, where))
        elif kind == "add":
            ops.append(PatchOperation("add", f"{root}/-", value, where))
        elif kind == "delete" and root != "/status":
            raise Invalid.at(where, "delete of a whole element is not supported; replace it", IssueCode.NOT_SUPPORTED)
        else:
            raise Invalid.at(
                f"{where}.part('type')", f"FHIRPath Patch type {kind!r} is not supported", IssueCode.NOT_SUPPORTED
            )
    if not ops:
        raise Invalid("the patch has no operation")
    return ops


def patch_operations(content_type: str | None, raw: bytes) -> list[PatchOperation]:
    base = (content_type or "").split(";", 1)[0].strip().lower()
    check_content_type(base, (*PATCH_MEDIA, "application/fhir+json", "application/json"))
    data = parse_json(raw)
    return _json_patch_ops(data) if base in PATCH_MEDIA or isinstance(data, list) else _fhirpath_patch_ops(data)


@router.patch("/DocumentReference/{doc_id}")
async def patch(doc_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """PDSm metadata update: status, securityLabel or isArchived; anything else → 405."""
    negotiate(request)
    ops = patch_operations(request.headers.get("content-type"), await read_body(request, 256 * 1024))

    def work() -> bytes:
        with runtime.work() as w:
            return documents.patch_document(w, actor=authenticate(w, claims), doc_id=doc_id, operations=ops)

    body = await run_in_threadpool(work)
    return fhir_response(body, headers=_headers(runtime.settings.fhir_base, body))


@router.patch("/DocumentReference")
async def conditional_patch(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """Conditional PATCH ``DocumentReference?identifier=system|value`` (PDSm flux 03)."""
    negotiate(request)
    identifier = request.query_params.get("identifier")
    if not identifier or any(k not in ("identifier", "_format") for k in request.query_params):
        raise Invalid.at("identifier", "a conditional PATCH names the document by identifier only", IssueCode.REQUIRED)
    ops = patch_operations(request.headers.get("content-type"), await read_body(request, 256 * 1024))
    system, value = split_token(identifier)

    def work() -> bytes:
        with runtime.work() as w:
            actor = authenticate(w, claims)
            doc_id = documents.find_by_identifier(w, actor=actor, system=system, value=value)
            return documents.patch_document(w, actor=actor, doc_id=doc_id, operations=ops)

    body = await run_in_threadpool(work)
    return fhir_response(body, headers=_headers(runtime.settings.fhir_base, body))


@router.delete("/DocumentReference/{doc_id}")
def delete(doc_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """Logical deletion by the author (status entered-in-error); 403 for anyone else who can see it."""
    negotiate(request)
    with runtime.work() as w:
        documents.delete_document(w, actor=authenticate(w, claims), doc_id=doc_id)
    return fhir_response(orjson.dumps(information(f"DocumentReference/{doc_id} deleted")))


@router.put("/DocumentReference/{doc_id}")
def put_refused(doc_id: str, claims: ClaimsDep) -> Response:
    """Refused to everyone, once authenticated (an anonymous caller learns only that it must sign in)."""
    raise NotAllowed(
        "DocumentReference metadata is immutable: PATCH status, securityLabel or isArchived, or deposit a replacement"
    )
