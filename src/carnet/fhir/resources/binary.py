"""Binary: ITI-68 Retrieve Document, the bytes exactly as deposited with their media type."""

from __future__ import annotations

import base64

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from carnet.deps import ClaimsDep, RuntimeDep
from carnet.documents import service as documents
from carnet.fhir.http import authenticate, fhir_response

router = APIRouter(tags=["Binary"])


@router.get("/Binary/{binary_id}")
def retrieve(binary_id: str, request: Request, runtime: RuntimeDep, claims: ClaimsDep) -> Response:
    """Raw bytes by default; a Binary resource (base64) when the client asks for FHIR JSON only."""
    with runtime.read() as w:
        content = documents.retrieve(w, actor=authenticate(w, claims), binary_id=binary_id)
    accept = request.headers.get("accept", "")
    wants_fhir = request.query_params.get("_format") in ("json", "application/fhir+json") or (
        "application/fhir+json" in accept and content.content_type not in accept
    )
    if wants_fhir:
        body = orjson.dumps(
            {
                "resourceType": "Binary",
                "id": binary_id,
                "contentType": content.content_type,
                "securityContext": {"reference": f"DocumentReference/{content.document_id}"},
                "data": base64.b64encode(content.data).decode(),
            }
        )
        return fhir_response(body)
    return Response(
        content.data,
        media_type=content.content_type,
        headers={
            "Content-Disposition": f'inline; filename="{binary_id}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
