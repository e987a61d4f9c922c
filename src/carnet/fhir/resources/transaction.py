"""``POST /fhir``: ITI-65 Provide Document Bundle, a transaction applied all or nothing."""

from __future__ import annotations

import base64
import binascii
import datetime as dt

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from carnet.deps import ClaimsDep, RuntimeDep
from carnet.documents import service as documents
from carnet.documents.schemas import BinaryInput, DocumentInput, ListInput, PatchInput, Submission
from carnet.errors import Invalid, IssueCode
from carnet.fhir import bundles
from carnet.fhir.http import authenticate, body_limit, fhir_response, negotiate, read_body
from carnet.fhir.parsing import check_content_type, parse_resource, validate_structure
from carnet.fhir.resources.documents import _fhirpath_patch_ops
from carnet.fhirtypes import JSON, MHD_LIST_TYPES, codings

router = APIRouter(tags=["Transaction"])


def _list_kind(resource: JSON) -> str | None:
    for coding in codings(resource.get("code")):
        if coding.get("system") == MHD_LIST_TYPES and coding.get("code") in ("submissionset", "folder"):
            return str(coding["code"])
    return None


def unpack(bundle: JSON) -> tuple[Submission, list[tuple[str, str]]]:
    """Split an ITI-65 bundle into the submission and the (kind, key) of each entry, in order."""
    if bundle.get("type") != "transaction":
        raise Invalid.at("Bundle.type", "ITI-65 Provide Document Bundle is a 'transaction' Bundle", IssueCode.VALUE)
    entries = bundle.get("entry") or []
    if not entries:
        raise Invalid.at("Bundle.entry", "the bundle is empty", IssueCode.REQUIRED)
    submission = Submission(submission_set=None, documents=[], binaries=[])
    order: list[tuple[str, str]] = []
    full_urls: set[str] = set()
    for index, entry in enumerate(entries):
        path = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict):
            raise Invalid.at(path, "each entry is an object")
        request = entry.get("request") or {}
        method = str(request.get("method", "")).upper()
        url = str(request.get("url", ""))
        resource = entry.get("resource")
        full_url = entry.get("fullUrl")
        if full_url:
            if full_url in full_urls:
                raise Invalid.at(f"{path}.fullUrl", f"fullUrl {full_url} is used twice")
            full_urls.add(full_url)
        if not isinstance(resource, dict):
            raise Invalid.at(f"{path}.resource", "each entry carries a resource", IssueCode.REQUIRED)
        kind = resource.get("resourceType")
        rpath = f"{path}.resource"
        if method == "POST" and kind == "Binary" and url.startswith("Binary"):
            if not full_url:
                raise Invalid.at(
                    f"{path}.fullUrl",
                    "a Binary needs a fullUrl for its DocumentReference to point to",
                    IssueCode.REQUIRED,
                )
            try:
                data = base64.b64decode(str(resource.get("data") or ""), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise Invalid.at(f"{rpath}.data", "Binary.data is not valid base64") from exc
            if not resource.get("contentType"):
                raise Invalid.at(f"{rpath}.contentType", "Binary.contentType is required", IssueCode.REQUIRED)
            submission.binaries.append(BinaryInput(full_url, str(resource["contentType"]), data, rpath))
            order.append(("Binary", full_url))
        elif method == "POST" and kind == "DocumentReference" and url.startswith("DocumentReference"):
            validate_structure(resource, rpath)
            submission.documents.append(DocumentInput(resource, rpath, full_url))
            order.append(("DocumentReference", full_url or f"#{index}"))
        elif method == "POST" and kind == "List" and url.startswith("List"):
            validate_structure(resource, rpath)
            list_kind = _list_kind(resource)
            if list_kind == "submissionset":
                if submission.submission_set is not None:
                    raise Invalid.at(path, "a bundle carries exactly one SubmissionSet")
                submission.submission_set = ListInput(resource, rpath, full_url)
            elif list_kind == "folder":
                submission.folders.append(ListInput(resource, rpath, full_url))
            else:
                raise Invalid.at(
                    f"{rpath}.code",
                    f"List.code must be {MHD_LIST_TYPES}|submissionset or |folder",
                    IssueCode.CODE_INVALID,
                )
            order.append(("List", full_url or f"#{index}"))
        elif method == "PATCH" and url.startswith("DocumentReference/") and kind == "Parameters":
            validate_structure(resource, rpath)
            target = url.split("/", 1)[1].split("?", 1)[0]
            submission.patches.append(PatchInput(target, _fhirpath_patch_ops(resource), rpath))
            order.append(("PATCH", target))
        else:
            raise Invalid.at(
                f"{path}.request", f"{method} {url} ({kind}) is not part of ITI-65", IssueCode.NOT_SUPPORTED
            )
    return submission, order


@router.post("")
@router.post("/")
async def transaction(request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """ITI-65: SubmissionSet + DocumentReference(s) + Binary(s) (+ Folder, + PATCH of replaced documents)."""
    negotiate(request)
    check_content_type(request.headers.get("content-type"))
    bundle = parse_resource(await read_body(request, body_limit(runtime.settings.max_document_bytes) * 4), "Bundle")
    submission, order = unpack(bundle)

    def work() -> bytes:
        with runtime.work() as w:
            result = documents.provide(w, actor=authenticate(w, claims), submission=submission)
        responses: list[tuple[str, str | None, dt.datetime | None]] = []
        patched = iter(result.patched)
        for kind, key in order:
            if kind == "PATCH":
                done = next(patched)
                responses.append(
                    (done.status, f"DocumentReference/{done.id}/_history/{done.version}", done.last_updated)
                )
                continue
            created = result.by_full_url.get(key)
            if created is None and kind == "List":
                created = result.submission_set
            if created is None:  # pragma: no cover - every entry was written or the transaction failed
                responses.append(("201 Created", None, None))
                continue
            location = f"{created.resource_type}/{created.id}"
            if created.resource_type != "Binary":
                location += f"/_history/{created.version}"
            responses.append((created.status, location, created.last_updated))
        return bundles.transaction_response(responses)

    return fhir_response(await run_in_threadpool(work))
