"""``GET /fhir/metadata``: the CapabilityStatement, listing exactly what this server does."""

from __future__ import annotations

from functools import cache

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from carnet import __version__
from carnet.deps import RuntimeDep
from carnet.fhir.http import fhir_response, negotiate
from carnet.fhir.search_params import DOCUMENT_PARAMS, LIST_PARAMS

router = APIRouter(tags=["Capability"])

_TYPES = {
    "date": ("date", "period"),
    "reference": ("patient", "subject", "author"),
    "special": (),
}


def _param(name: str) -> dict[str, str]:
    if name in ("date", "period"):
        kind = "date"
    elif name in ("patient", "subject", "author", "practitioner", "organization"):
        kind = "reference"
    elif name == "_id":
        kind = "token"
    elif name in ("name",):
        kind = "string"
    else:
        kind = "token"
    return {"name": name, "type": kind}


@cache
def capability(base: str) -> bytes:
    doc_params = sorted(p for p in DOCUMENT_PARAMS if not p.startswith("_") or p == "_id")
    list_params = sorted(p for p in LIST_PARAMS if not p.startswith("_") or p == "_id")
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-23",
        "publisher": "Carnet",
        "kind": "instance",
        "software": {"name": "Carnet", "version": __version__},
        "implementation": {"description": "Carnet shared health record (DMP / Mon espace santé)", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "instantiates": [
            "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentRecipient",
            "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentResponder",
        ],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "Bearer tokens. In development, tokens come from `carnet token --as <persona>`.",
                },
                "interaction": [{"code": "transaction", "documentation": "ITI-65 Provide Document Bundle"}],
                "resource": [
                    {
                        "type": "Patient",
                        "interaction": [
                            {"code": c} for c in ("read", "vread", "history-instance", "search-type", "create")
                        ],
                        "searchParam": [_param("identifier"), _param("_id")],
                        "operation": [
                            {"name": "close", "definition": f"{base}/OperationDefinition/Patient-close"},
                            {"name": "reopen", "definition": f"{base}/OperationDefinition/Patient-reopen"},
                        ],
                    },
                    {
                        "type": "DocumentReference",
                        "interaction": [
                            {"code": c}
                            for c in ("read", "vread", "history-instance", "search-type", "create", "patch", "delete")
                        ],
                        "conditionalDelete": "not-supported",
                        "conditionalUpdate": False,
                        "searchInclude": ["DocumentReference:subject", "DocumentReference:patient"],
                        "searchRevInclude": ["List:item"],
                        "searchParam": [_param(p) for p in doc_params],
                    },
                    {
                        "type": "List",
                        "interaction": [{"code": c} for c in ("read", "vread", "history-instance", "search-type")],
                        "searchInclude": ["List:item"],
                        "searchParam": [_param(p) for p in list_params],
                    },
                    {"type": "Binary", "interaction": [{"code": "read"}]},
                    {
                        "type": "Practitioner",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [_param("identifier"), _param("name"), _param("_id")],
                    },
                    {
                        "type": "PractitionerRole",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [_param("practitioner"), _param("organization")],
                    },
                    {
                        "type": "Organization",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [_param("identifier"), _param("name"), _param("_id")],
                    },
                    {
                        "type": "AuditEvent",
                        "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
                        "supportedProfile": [
                            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead",
                            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery",
                            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientCreate",
                            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientUpdate",
                            "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientDelete",
                        ],
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {"name": "patient", "type": "reference"},
                            {"name": "date", "type": "date"},
                            {"name": "type", "type": "token"},
                            {"name": "subtype", "type": "token"},
                            {"name": "action", "type": "token"},
                            {"name": "agent", "type": "token", "documentation": "IdNat_PS of the agent"},
                            {"name": "outcome", "type": "token"},
                        ],
                        "documentation": "The audit trail (IHE BALP shapes): the patient and their legal "
                        "representatives, the médecin traitant, the professional who acted and auditors; "
                        "_sort=-date (default) or date.",
                    },
                ],
            }
        ],
    }
    return orjson.dumps(statement)


@router.get("/metadata")
async def metadata(request: Request, runtime: RuntimeDep) -> Response:
    negotiate(request)
    return fhir_response(capability(runtime.settings.fhir_base))
