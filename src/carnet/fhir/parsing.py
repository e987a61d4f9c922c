"""Request bodies: JSON parsing and FHIR structure validation (fhir.resources R4B models).

R4B is the FHIR 4.3 model set; for the resources Carnet accepts (Patient, DocumentReference, List,
Bundle, Parameters, Practitioner, PractitionerRole, Organization) it is identical to R4 4.0.1.
Structure errors name the element at fault as a FHIRPath expression.
"""

from __future__ import annotations

import importlib
from typing import Any

import orjson
from pydantic import ValidationError

from carnet.errors import Invalid, IssueCode, Problem, UnsupportedMediaType
from carnet.fhirtypes import JSON

JSON_MEDIA = ("application/fhir+json", "application/json")
PATCH_MEDIA = ("application/json-patch+json",)

_MODELS = {
    "Patient": "patient",
    "DocumentReference": "documentreference",
    "List": "list",
    "Parameters": "parameters",
    "Practitioner": "practitioner",
    "PractitionerRole": "practitionerrole",
    "Organization": "organization",
    "Consent": "consent",
}


def check_content_type(content_type: str | None, accepted: tuple[str, ...] = JSON_MEDIA) -> None:
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base not in accepted:
        raise UnsupportedMediaType(f"Content-Type {base or '(none)'} is not accepted; send {' or '.join(accepted)}")


def parse_json(body: bytes, what: str = "the request body") -> Any:
    if not body:
        raise Invalid(f"{what} is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"{what} is not valid JSON: {exc}") from exc


def parse_resource(body: bytes, expected: str | tuple[str, ...]) -> JSON:
    data = parse_json(body)
    kinds = (expected,) if isinstance(expected, str) else expected
    if not isinstance(data, dict) or data.get("resourceType") not in kinds:
        found = data.get("resourceType") if isinstance(data, dict) else type(data).__name__
        raise Invalid.at("resourceType", f"expected a {' or '.join(kinds)} resource, got {found!r}")
    return data


def _expression(path: str, loc: tuple[int | str, ...]) -> str:
    parts = [path]
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        elif item and not str(item).startswith(("function-", "union[")):
            parts.append(str(item))
    return ".".join(parts)


def validate_structure(resource: JSON, path: str | None = None) -> None:
    """Check a resource against the FHIR structure definitions; raise ``Invalid`` naming each fault."""
    kind = str(resource.get("resourceType"))
    module_name = _MODELS.get(kind)
    if module_name is None:
        raise Invalid.at(path or kind, f"{kind} resources are not accepted here", IssueCode.NOT_SUPPORTED)
    module = importlib.import_module(f"fhir.resources.R4B.{module_name}")
    model = getattr(module, kind)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        problems = [
            Problem(f"{error['msg']}", _expression(path or kind, tuple(error["loc"])), IssueCode.STRUCTURE)
            for error in exc.errors(include_url=False)[:50]
        ]
        raise Invalid(f"the {kind} is not valid FHIR R4", problems=problems) from None
