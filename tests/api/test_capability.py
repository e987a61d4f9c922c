"""The CapabilityStatement lists exactly what the server does: every FHIR route is declared, every
declaration has a route, and the search parameters declared are those the searches accept."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from carnet.fhir.resources import audit, directory
from carnet.fhir.resources.metadata import CONDITIONAL_PATCH, RESULT_PARAMS
from carnet.fhir.search_params import DOCUMENT_PARAMS, LIST_PARAMS
from tests.conftest import Api

# Routes that exist only to refuse, with the status they answer: not interactions the server supports.
REFUSING = {("PUT", "/fhir/DocumentReference/{doc_id}"): 405}

Interaction = tuple[str, str]  # (resource type or "" for the system, interaction code or $operation)


def _interaction(method: str, parts: list[str]) -> Interaction | None:
    """What a FHIR route does, in CapabilityStatement terms (None for /metadata itself)."""
    if not parts:
        assert method == "POST", method
        return "", "transaction"
    if parts == ["metadata"]:
        return None
    kind, rest = parts[0], parts[1:]
    shapes: dict[tuple[str, int], str] = {
        ("GET", 0): "search-type",
        ("POST", 0): "create",
        ("PATCH", 0): "conditional-patch",
        ("GET", 1): "read",
        ("PATCH", 1): "patch",
        ("DELETE", 1): "delete",
        ("PUT", 1): "update",
        ("GET", 2): "history-instance",
        ("GET", 3): "vread",
    }
    if rest == ["_search"] and method == "POST":
        return kind, "search-type POST"
    if rest and rest[-1].startswith("$") and len(rest) <= 2 and method == "POST":
        return kind, rest[-1]  # an operation on the type (/T/$op) or on an instance (/T/{id}/$op)
    if len(rest) >= 2 and rest[1] != "_history":
        raise AssertionError(f"a FHIR route this test does not know how to declare: {method} /{'/'.join(parts)}")
    code = shapes.get((method, len(rest)))
    assert code is not None, f"a FHIR route this test does not know how to declare: {method} /{'/'.join(parts)}"
    return kind, code


def _fhir_paths(api: Api) -> set[tuple[str, str]]:
    return {
        (method, route.path or "")
        for route in iter_route_contexts(api.client.app.routes)  # type: ignore[attr-defined]
        for method in route.methods or set()
        if (route.path or "").startswith("/fhir")
    }


def _routed(api: Api) -> set[Interaction]:
    found: set[Interaction] = set()
    for route in iter_route_contexts(api.client.app.routes):  # type: ignore[attr-defined]
        path = route.path or ""
        if not (path == "/fhir" or path.startswith("/fhir/")):
            continue
        parts = [p for p in path.removeprefix("/fhir").split("/") if p]
        for method in (route.methods or set()) - {"HEAD"}:
            if (method, path) in REFUSING:
                continue
            interaction = _interaction(method, parts)
            if interaction is not None:
                found.add(interaction)
    return found


def _statement(api: Api) -> dict[str, Any]:
    response = api.client.get("/fhir/metadata")
    assert response.status_code == 200, response.text
    statement: dict[str, Any] = response.json()
    return statement


def _resources(statement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["type"]: r for r in statement["rest"][0]["resource"]}


def _declared(statement: dict[str, Any]) -> set[Interaction]:
    rest = statement["rest"][0]
    declared = {("", i["code"]) for i in rest.get("interaction", [])}
    for kind, resource in _resources(statement).items():
        for interaction in resource.get("interaction", []):
            declared.add((kind, interaction["code"]))
            if interaction["code"] == "search-type" and f"POST {kind}/_search" in interaction.get("documentation", ""):
                declared.add((kind, "search-type POST"))
        if any(e["url"] == CONDITIONAL_PATCH and e.get("valueBoolean") for e in resource.get("extension", [])):
            declared.add((kind, "conditional-patch"))
        for operation in resource.get("operation", []):
            declared.add((kind, f"${operation['name']}"))
    return declared


def test_the_statement_is_a_valid_r4_capability_statement(api: Api) -> None:
    statement = _statement(api)
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["implementation"]["url"] == api.settings.fhir_base


def test_every_fhir_route_is_declared_and_every_declaration_is_routed(api: Api) -> None:
    routed, declared = _routed(api), _declared(_statement(api))
    assert routed - declared == set(), "routes the CapabilityStatement does not declare"
    assert declared - routed == set(), "declared interactions no route serves"
    # What the audit found missing is there now (a guard against the comparison itself going blind).
    assert {
        ("Consent", "create"),
        ("Consent", "delete"),
        ("Patient", "$emergency-access"),
        ("DocumentReference", "search-type POST"),
        ("DocumentReference", "conditional-patch"),
        ("AuditEvent", "read"),
    } <= declared


@pytest.mark.parametrize(("method", "path"), sorted(REFUSING))
def test_routes_left_undeclared_only_refuse(api: Api, method: str, path: str) -> None:
    url = path.replace("{doc_id}", "any-id")
    response = api.client.request(
        method,
        url,
        content=b"{}",
        headers={**api.headers("dr_medioni"), "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == REFUSING[(method, path)], response.text
    assert response.json()["resourceType"] == "OperationOutcome"


def test_operations_are_defined_inside_the_statement(api: Api) -> None:
    """No definition points to an OperationDefinition that nothing serves: each is contained, and matches."""
    statement = _statement(api)
    paths = {path for method, path in _fhir_paths(api) if method == "POST"}
    contained = {c["id"]: c for c in statement.get("contained", [])}
    referenced = set()
    for kind, resource in _resources(statement).items():
        for operation in resource.get("operation", []):
            definition = operation["definition"]
            assert definition.startswith("#"), definition
            target = contained[definition[1:]]
            referenced.add(definition[1:])
            assert target["resourceType"] == "OperationDefinition"
            assert target["code"] == operation["name"]
            assert kind in target["resource"]
            code = f"${operation['name']}"
            on_instance = any(p.startswith(f"/fhir/{kind}/{{") and p.endswith(f"}}/{code}") for p in paths)
            assert target["instance"] is on_instance, operation
            assert target["type"] is (f"/fhir/{kind}/{code}" in paths), operation
            assert target["system"] is False
    assert referenced == set(contained), "contained resources nothing refers to"
    assert not any("/OperationDefinition/" in str(op) for op in statement.get("contained", []))


def _names(resource: dict[str, Any]) -> set[str]:
    return {p["name"] for p in resource.get("searchParam", [])}


def test_declared_search_parameters_are_those_the_searches_accept(api: Api) -> None:
    resources = _resources(_statement(api))
    assert _names(resources["DocumentReference"]) == DOCUMENT_PARAMS - RESULT_PARAMS
    assert _names(resources["List"]) == LIST_PARAMS - RESULT_PARAMS
    assert _names(resources["AuditEvent"]) == audit.PARAMS - RESULT_PARAMS
    for kind, accepted in directory._PARAMS.items():
        assert _names(resources[kind]) == accepted, kind
    assert {"_sort", "_include", "_revinclude"} <= DOCUMENT_PARAMS  # declared as searchInclude/RevInclude
    assert "_include" in LIST_PARAMS


def _outcome_names(response: Any, name: str, code: str) -> bool:
    if response.status_code != 400:
        return False
    return any(
        issue.get("code") == code and name in issue.get("expression", []) for issue in response.json().get("issue", [])
    )


def test_each_declared_parameter_is_accepted_and_others_are_refused(api: Api) -> None:
    """Through the API, for every resource type (including those whose parser is inline in the route):
    a declared parameter is never refused as unsupported, an undeclared one always is."""
    patient_id, _, _ = api.new_patient(team=())
    needs_patient = {"DocumentReference", "List", "Consent"}
    undeclared = {
        "Patient": ["name", "birthdate"],
        "Consent": ["date", "actor"],
        "DocumentReference": ["contenttype", "description"],
        "List": ["title", "item"],
        "Practitioner": ["family", "active"],
        "PractitionerRole": ["role", "specialty"],
        "Organization": ["type", "address"],
        "AuditEvent": ["entity", "site"],
    }
    for kind, resource in _resources(_statement(api)).items():
        if "search-type" not in {i["code"] for i in resource.get("interaction", [])}:
            continue
        base = {"patient": patient_id} if kind in needs_patient else {}
        for name in _names(resource):
            response = api.get(f"/fhir/{kind}", "dr_medioni", params={**base, name: "x"})
            assert not _outcome_names(response, name, "not-supported"), (kind, name, response.text)
        for name in undeclared[kind]:
            response = api.get(f"/fhir/{kind}", "dr_medioni", params={**base, name: "x"})
            assert _outcome_names(response, name, "not-supported"), (kind, name, response.text)


@pytest.mark.parametrize(
    ("params", "accepted"),
    [
        ({"_include": "DocumentReference:subject"}, True),
        ({"_include": "DocumentReference:patient"}, True),
        ({"_revinclude": "List:item"}, True),
        ({"_include": "DocumentReference:author"}, False),
        ({"_revinclude": "Provenance:target"}, False),
    ],
)
def test_declared_includes_are_the_accepted_ones(api: Api, params: dict[str, str], accepted: bool) -> None:
    resources = _resources(_statement(api))
    declared = resources["DocumentReference"]["searchInclude"] + resources["DocumentReference"]["searchRevInclude"]
    value = next(iter(params.values()))
    assert (value in declared) is accepted
    patient_id, _, _ = api.new_patient(team=())
    response = api.get("/fhir/DocumentReference", "dr_medioni", params={"patient": patient_id, **params})
    assert (response.status_code == 200) is accepted, response.text
