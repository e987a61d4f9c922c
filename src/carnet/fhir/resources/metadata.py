"""``GET /fhir/metadata``: the CapabilityStatement, listing exactly what this server does."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from carnet import __version__
from carnet.deps import RuntimeDep
from carnet.fhir.http import fhir_response, negotiate
from carnet.fhir.search_params import DOCUMENT_PARAMS, LIST_PARAMS
from carnet.fhirtypes import JSON

router = APIRouter(tags=["Capability"])
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"

# Result parameters: declared through searchInclude / searchRevInclude and the documentation (_sort),
# not as searchParam entries.
RESULT_PARAMS = frozenset({"_sort", "_include", "_revinclude"})
_KINDS = {
    "date": "date",
    "period": "date",
    "patient": "reference",
    "subject": "reference",
    "author": "reference",
    "practitioner": "reference",
    "organization": "reference",
    "name": "string",
}

# What each resource's search accepts besides DocumentReference and List (whose parameters are those of
# carnet.fhir.search_params): tests/api/test_capability.py checks these against the routes.
PATIENT_PARAMS = ("identifier", "_id")
CONSENT_PARAMS = ("patient", "category", "status")
DIRECTORY_PARAMS = {
    "Practitioner": ("identifier", "name", "_id"),
    "PractitionerRole": ("practitioner", "organization"),
    "Organization": ("identifier", "name", "_id"),
}
AUDIT_PARAMS: tuple[JSON, ...] = (
    {"name": "patient", "type": "reference"},
    {"name": "date", "type": "date"},
    {"name": "type", "type": "token"},
    {"name": "subtype", "type": "token"},
    {"name": "action", "type": "token"},
    {"name": "agent", "type": "token", "documentation": "IdNat_PS of the agent"},
    {"name": "outcome", "type": "token"},
)
CONDITIONAL_PATCH = (
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-CapabilityStatement.rest.resource.conditionalPatch"
)


def _param(name: str) -> JSON:
    entry: JSON = {"name": name, "type": _KINDS.get(name, "token")}
    if "." in name:
        target, _, chained = name.partition(".")
        entry["documentation"] = f"chained search: the {target} by its {chained}"
    return entry


def _params(names: Iterable[str]) -> list[JSON]:
    return [_param(name) for name in sorted(set(names) - RESULT_PARAMS)]


def _interactions(*codes: str, **documentation: str) -> list[JSON]:
    out: list[JSON] = []
    for code in codes:
        entry: JSON = {"code": code}
        if code.replace("-", "_") in documentation:
            entry["documentation"] = documentation[code.replace("-", "_")]
        out.append(entry)
    return out


def _parameter(name: str, use: str, kind: str, *, required: bool, doc: str) -> JSON:
    return {"name": name, "use": use, "min": 1 if required else 0, "max": "1", "type": kind, "documentation": doc}


def _operation(code: str, title: str, description: str, parameters: list[JSON], *, instance: bool = True) -> JSON:
    """An operation on Patient (on one record, or on the type), defined inside the statement: nothing
    else serves OperationDefinitions."""
    return {
        "resourceType": "OperationDefinition",
        "id": f"Patient-{code}",
        "name": "".join(part.capitalize() for part in f"patient-{code}".split("-")),
        "title": title,
        "status": "active",
        "kind": "operation",
        "code": code,
        "description": description,
        "affectsState": True,
        "resource": ["Patient"],
        "system": False,
        "type": not instance,
        "instance": instance,
        "parameter": parameters,
    }


def _patient_return() -> JSON:
    return {"name": "return", "use": "out", "min": 1, "max": "1", "type": "Patient", "documentation": "the record"}


def _lifecycle_out(*extra: JSON) -> list[JSON]:
    return [
        {"name": "patient", "use": "out", "min": 1, "max": "1", "type": "Reference", "documentation": "the record"},
        _parameter("status", "out", "code", required=True, doc="the record status"),
        *extra,
    ]


OPERATIONS: tuple[JSON, ...] = (
    _operation(
        "close",
        "Close a record",
        "The holder or the operator closes the record: it stays readable by no professional.",
        [
            _parameter(
                "reason",
                "in",
                "code",
                required=False,
                doc="FERMETURE_DEMANDE_PATIENT (default), DECES, FERMETURE_OPERATEUR or OPPOSITION",
            ),
            _patient_return(),
        ],
    ),
    _operation("reopen", "Reopen a closed record", "The holder or the operator reopens a record.", [_patient_return()]),
    _operation(
        "emergency-access",
        "Emergency access (break the glass, regulation centre)",
        "A professional opens a read-only, time-limited access to the record, with a reason; refused when the "
        "patient opposed it.",
        [
            _parameter("mode", "in", "code", required=True, doc="break-glass or regulation"),
            _parameter("reason", "in", "string", required=True, doc="why the access is needed"),
            _parameter("mode", "out", "code", required=True, doc="the mode granted"),
            _parameter("start", "out", "instant", required=True, doc="when the access began"),
            _parameter("end", "out", "instant", required=True, doc="when it expires"),
            _parameter("readOnly", "out", "boolean", required=True, doc="always true"),
        ],
    ),
    _operation(
        "announce",
        "Announce a record",
        "The operator or the insurer announces a record (the body is the Patient): it opens when the opposition "
        "window ends unless the patient objects.",
        [
            {"name": "resource", "use": "in", "min": 1, "max": "1", "type": "Patient", "documentation": "the patient"},
            *_lifecycle_out(
                _parameter("infoSentAt", "out", "dateTime", required=False, doc="when the patient was informed"),
                _parameter("opensAt", "out", "dateTime", required=False, doc="when the record opens"),
                _parameter("activationCode", "out", "string", required=False, doc="the provisional code (letter)"),
                _parameter("activationCodeExpiresAt", "out", "dateTime", required=False, doc="its expiry"),
                _parameter("notified", "out", "boolean", required=False, doc="whether a message was sent"),
            ),
        ],
        instance=False,
    ),
    _operation(
        "oppose",
        "Object to an announced record",
        "The holder, a legal representative or the operator objects: the record is closed (OPPOSITION) and its "
        "content destroyed.",
        _lifecycle_out(
            _parameter("reason", "out", "string", required=False, doc="the closure reason"),
            _parameter("closedAt", "out", "dateTime", required=False, doc="when it was closed"),
        ),
    ),
)


@cache
def capability(base: str) -> bytes:
    statement = {
        "resourceType": "CapabilityStatement",
        "contained": list(OPERATIONS),
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
                        {"coding": [{"system": SECURITY_SERVICE, "code": code}]}
                        for code in ("OAuth", "SMART-on-FHIR", "Certificates")
                    ],
                    "description": "Bearer tokens: SMART Backend Services (POST /auth/token, private_key_jwt), "
                    "Pro Santé Connect sign-in, patient sign-in; or a client certificate (mutual TLS). "
                    "In development, tokens also come from `carnet token --as <persona>`.",
                },
                "interaction": [{"code": "transaction", "documentation": "ITI-65 Provide Document Bundle"}],
                "resource": [
                    {
                        "type": "Patient",
                        "interaction": _interactions(
                            "read",
                            "vread",
                            "history-instance",
                            "search-type",
                            "create",
                            search_type="PDSm TD0.2: Patient?identifier=<INS system>|<INS>",
                        ),
                        "searchParam": _params(PATIENT_PARAMS),
                        "operation": [
                            {"name": op["code"], "definition": f"#{op['id']}", "documentation": op["title"]}
                            for op in OPERATIONS
                        ],
                    },
                    {
                        "type": "DocumentReference",
                        "extension": [{"url": CONDITIONAL_PATCH, "valueBoolean": True}],
                        "interaction": _interactions(
                            "read",
                            "vread",
                            "history-instance",
                            "search-type",
                            "create",
                            "patch",
                            "delete",
                            search_type="ITI-67: GET DocumentReference?… or POST DocumentReference/_search "
                            "(form-encoded); _sort=-date (default) or date",
                            create="ITI-105 Simplified Publish (attachment.data inline)",
                            patch="status, securityLabel and the isArchived extension only; also conditional: "
                            "PATCH DocumentReference?identifier=system|value",
                            delete="logical deletion (entered-in-error) by the author",
                        ),
                        "conditionalCreate": False,
                        "conditionalUpdate": False,
                        "conditionalDelete": "not-supported",
                        "searchInclude": ["DocumentReference:subject", "DocumentReference:patient"],
                        "searchRevInclude": ["List:item"],
                        "searchParam": _params(DOCUMENT_PARAMS),
                    },
                    {
                        "type": "List",
                        "interaction": _interactions(
                            "read", "vread", "history-instance", "search-type", search_type="ITI-66"
                        ),
                        "searchInclude": ["List:item"],
                        "searchParam": _params(LIST_PARAMS),
                    },
                    {
                        "type": "Binary",
                        "interaction": _interactions("read", read="ITI-68: the bytes, or a Binary resource"),
                    },
                    {
                        "type": "Consent",
                        "interaction": _interactions(
                            "read",
                            "vread",
                            "history-instance",
                            "search-type",
                            "create",
                            "delete",
                            delete="withdraws the decision (the Consent becomes inactive)",
                        ),
                        "searchParam": _params(CONSENT_PARAMS),
                        "documentation": "The patient's decisions (authorizations, blocks, administrators, "
                        "preferences) and professionals' declarations (care team, médecin traitant).",
                    },
                    *(
                        {
                            "type": kind,
                            "interaction": _interactions("read", "search-type"),
                            "searchParam": _params(names),
                        }
                        for kind, names in DIRECTORY_PARAMS.items()
                    ),
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
                        "interaction": _interactions("read", "search-type"),
                        "searchParam": list(AUDIT_PARAMS),
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
