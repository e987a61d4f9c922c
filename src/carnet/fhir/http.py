"""HTTP helpers of the FHIR interface: content negotiation, bounded body reading, FHIR responses."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from starlette.responses import Response

from carnet.auth.actor import Actor
from carnet.auth.authenticate import actor_for
from carnet.errors import TooLarge
from carnet.fhir.outcomes import FHIR_JSON
from carnet.runtime import Work

XML_FORMATS = ("xml", "text/xml", "application/xml", "application/fhir+xml")


def negotiate(request: Request) -> None:
    """Carnet speaks FHIR JSON only: a client that accepts nothing else gets 406."""
    fmt = request.query_params.get("_format")
    if fmt and fmt.lower() in XML_FORMATS:
        raise HTTPException(406, "only FHIR JSON is supported (_format=json)")
    accept = request.headers.get("accept", "")
    if not accept:
        return
    kinds = [a.split(";", 1)[0].strip().lower() for a in accept.split(",")]
    if any(
        k in ("*/*", "application/*", "application/fhir+json", "application/json", "application/json-patch+json")
        for k in kinds
    ):
        return
    if kinds:
        raise HTTPException(406, "only FHIR JSON (application/fhir+json) is supported")


def lenient(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return "handling=lenient" in prefer.replace(" ", "").lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request is {declared} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def body_limit(work_limit: int) -> int:
    """Largest request accepted: a document at the size limit, base64-encoded, plus its metadata."""
    return work_limit * 4 // 3 + 1024 * 1024


def fhir_response(body: bytes, status: int = 200, *, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def resource_headers(
    base: str, kind: str, rid: str, version: int | str, last_modified: str | None = None, *, location: bool = False
) -> dict[str, str]:
    headers = {"ETag": f'W/"{version}"'}
    if location:
        headers["Location"] = f"{base}/{kind}/{rid}/_history/{version}"
    if last_modified:
        headers["Last-Modified"] = last_modified
    return headers


def authenticate(work: Work, claims: dict[str, Any]) -> Actor:
    return actor_for(work, claims)
