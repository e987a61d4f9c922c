"""Software has the rights of the professional it acts for, narrowed to its SMART scopes (docs/access.md).

The software of Hôpital Saint-Roch acts for dr_lambert, who is in the care team of a new patient and the
author of the documents it works on: with every scope it may do everything below. Each token narrows
that to its scopes, obtained through SMART Backend Services (``POST /auth/token``) or, for what the token
endpoint never grants (SMART v1 scopes, patient or user context, no scope at all), written into a
development token's ``scope`` claim, which is where the policy reads them. The scope each operation
needs is the SMART meaning of the request (``r`` read, ``s`` search, ``c`` create, ``u`` update, ``d``
delete; ``read`` = ``rs``, ``write`` = ``cud``); returning documents in a search is reading them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from starlette.testclient import TestClient

from carnet.auth import tokens
from carnet.runtime import Runtime
from tests import factories
from tests.auth.smart_support import LAMBERT, assertion, make_key, register, request_token
from tests.conftest import Api

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
OPERATIONS = ("search", "read", "retrieve", "deposit", "mask", "delete", "patient-read", "declare")
EVERYTHING = frozenset(OPERATIONS)
NOTHING: frozenset[str] = frozenset()
DOCUMENT_READ = frozenset({"search", "read"})

# (how the token is obtained, its scope, what it may do).
SCOPES: dict[str, tuple[str, str | None, frozenset[str]]] = {
    "unscoped": ("dev", None, EVERYTHING),
    "all-v2": ("smart", "system/*.cruds", EVERYTHING),
    "each-type-v2": (
        "smart",
        "system/DocumentReference.cruds system/Binary.r system/Patient.rs system/Consent.c",
        EVERYTHING,
    ),
    "documents-rs": ("smart", "system/DocumentReference.rs", DOCUMENT_READ),
    "documents-and-bytes": ("smart", "system/DocumentReference.rs system/Binary.r", DOCUMENT_READ | {"retrieve"}),
    "documents-read-only": ("smart", "system/DocumentReference.r", frozenset({"read"})),
    "documents-search-only": ("smart", "system/DocumentReference.s", NOTHING),  # a search returns resources: read
    "documents-create": ("smart", "system/DocumentReference.c", frozenset({"deposit"})),
    "documents-crus": (
        "smart",
        "system/DocumentReference.crus system/Binary.r",
        EVERYTHING - {"delete", "patient-read", "declare"},
    ),
    "documents-rd": ("smart", "system/DocumentReference.rd", frozenset({"read", "delete"})),
    "patient-only": ("smart", "system/Patient.rs", frozenset({"patient-read"})),
    "consent-only": ("smart", "system/Consent.crus", frozenset({"declare"})),
    "all-v1": ("dev", "system/*.*", EVERYTHING),
    "read-v1": ("dev", "system/*.read", DOCUMENT_READ | {"retrieve", "patient-read"}),
    "documents-v1": (
        "dev",
        "system/DocumentReference.read system/DocumentReference.write",
        EVERYTHING - {"retrieve", "patient-read", "declare"},
    ),
    "user-context": ("dev", "user/DocumentReference.rs user/Binary.r", DOCUMENT_READ | {"retrieve"}),
    "patient-context": ("dev", "patient/*.cruds patient/DocumentReference.rs patient/Binary.r", NOTHING),
    "launch-and-openid": ("dev", "openid fhirUser launch/patient", NOTHING),
    "empty": ("dev", "", NOTHING),
}


@dataclass
class Stage:
    api: Api
    patient_id: str
    ins: str
    system: str
    client_id: str
    key: Any
    author: str  # a development token of dr_lambert, to check what happened

    def deposit(self, token: str, flags: tuple[str, ...] = ()) -> tuple[httpx.Response, dict[str, Any]]:
        doc = factories.docref(self.ins, self.system, flags=flags, author_idnat=LAMBERT)
        return self.api.as_token(token, "POST", "/fhir/DocumentReference", doc), doc

    def fresh(self) -> tuple[str, str]:
        response, _ = self.deposit(self.author)
        assert response.status_code == 201, response.text
        body = response.json()
        return str(body["id"]), "Binary/" + str(body["content"][0]["attachment"]["url"]).rsplit("/", 1)[1]

    def current(self, doc_id: str) -> dict[str, Any]:
        response = self.api.as_token(self.author, "GET", f"/fhir/DocumentReference/{doc_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def stage(app_client: TestClient, runtime: Runtime) -> Stage:
    api = Api(app_client, runtime)
    patient_id, ins, system = api.new_patient()  # dr_lambert declares care-team consent
    key = make_key()
    client_id = register(runtime, key, scopes="system/*.cruds")  # Saint-Roch's software, acting for dr_lambert
    return Stage(api, patient_id, ins, system, client_id, key, api.token("dr_lambert"))


def _token(stage: Stage, how: str, scope: str | None) -> str:
    if how == "smart":
        response = request_token(stage.api, assertion(stage.key, stage.client_id), scope=scope)
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == scope  # granted as asked: narrower than the registration
        return str(response.json()["access_token"])
    claims: dict[str, Any] = {"act": {"sub": f"pro:{LAMBERT}"}}
    if scope is not None:
        claims["scope"] = scope
    return tokens.issue_dev(stage.api.settings, f"client:{stage.client_id}", extra=claims)


def _fhir(stage: Stage, token: str, method: str, url: str, body: Any = None, **headers: str) -> httpx.Response:
    all_headers = {"Accept": "application/fhir+json", "Authorization": f"Bearer {token}", **headers}
    if body is not None:
        all_headers.setdefault("Content-Type", "application/fhir+json")
    return stage.api.client.request(
        method, url, headers=all_headers, content=None if body is None else orjson.dumps(body)
    )


def _refused(response: httpx.Response) -> bool:
    """False for a refusal (403, or 404 when the token may not even see the resource); anything else fails."""
    assert response.status_code in (403, 404), response.text
    return False


def _search(stage: Stage, token: str) -> bool:
    doc_id, _ = stage.fresh()
    params = {"patient": stage.patient_id, "_id": doc_id}
    response = stage.api.client.get(
        "/fhir/DocumentReference",
        params=params,
        headers={"Accept": "application/fhir+json", "Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    return doc_id in {e["resource"]["id"] for e in response.json().get("entry", [])}


def _read(stage: Stage, token: str) -> bool:
    doc_id, _ = stage.fresh()
    response = _fhir(stage, token, "GET", f"/fhir/DocumentReference/{doc_id}")
    return response.status_code == 200 or _refused(response)


def _retrieve(stage: Stage, token: str) -> bool:
    _, binary = stage.fresh()
    response = _fhir(stage, token, "GET", f"/fhir/{binary}", Accept="application/pdf")
    return response.status_code == 200 or _refused(response)


def _deposit(stage: Stage, token: str) -> bool:
    response, doc = stage.deposit(token)
    if response.status_code == 201:
        return True
    _refused(response)
    # Nothing was stored: the same document (same uniqueId) is not a duplicate for the author.
    again = stage.api.as_token(stage.author, "POST", "/fhir/DocumentReference", doc)
    assert again.status_code == 201, again.text
    return False


def _mask(stage: Stage, token: str) -> bool:
    doc_id, _ = stage.fresh()
    labels = [
        {"coding": [{"system": CONFIDENTIALITY, "code": "N"}]},
        {"coding": [{"system": factories.A07, "code": "MASQUE_PS"}]},
    ]
    patch = [{"op": "replace", "path": "/securityLabel", "value": labels}]
    response = _fhir(
        stage,
        token,
        "PATCH",
        f"/fhir/DocumentReference/{doc_id}",
        patch,
        **{"Content-Type": "application/json-patch+json"},
    )
    codes = {c["code"] for label in stage.current(doc_id)["securityLabel"] for c in label["coding"]}
    if response.status_code == 200:
        assert "MASQUE_PS" in codes
        return True
    assert "MASQUE_PS" not in codes
    return _refused(response)


def _delete(stage: Stage, token: str) -> bool:
    doc_id, _ = stage.fresh()
    response = _fhir(stage, token, "DELETE", f"/fhir/DocumentReference/{doc_id}")
    if response.status_code == 200:
        assert stage.api.as_token(stage.author, "GET", f"/fhir/DocumentReference/{doc_id}").status_code == 404
        return True
    assert stage.current(doc_id)["status"] == "current"
    return _refused(response)


def _patient_read(stage: Stage, token: str) -> bool:
    response = _fhir(stage, token, "GET", f"/fhir/Patient/{stage.patient_id}")
    return response.status_code == 200 or _refused(response)


def _declare(stage: Stage, token: str) -> bool:
    consent = factories.consent(stage.patient_id, "care-team", idnat=LAMBERT)
    response = _fhir(stage, token, "POST", "/fhir/Consent", consent)
    return response.status_code == 201 or _refused(response)


CHECKS: dict[str, Callable[[Stage, str], bool]] = {
    "search": _search,
    "read": _read,
    "retrieve": _retrieve,
    "deposit": _deposit,
    "mask": _mask,
    "delete": _delete,
    "patient-read": _patient_read,
    "declare": _declare,
}


@pytest.mark.parametrize("case", list(SCOPES))
def test_a_token_does_what_its_scopes_allow_and_nothing_else(stage: Stage, case: str) -> None:
    how, scope, allowed = SCOPES[case]
    token = _token(stage, how, scope)
    observed = {operation: CHECKS[operation](stage, token) for operation in OPERATIONS}
    assert observed == {operation: operation in allowed for operation in OPERATIONS}


@pytest.mark.parametrize(
    "scope", ["patient/DocumentReference.rs", "user/DocumentReference.rs", "system/DocumentReference.read"]
)
def test_the_token_endpoint_grants_system_v2_scopes_only(stage: Stage, scope: str) -> None:
    response = request_token(stage.api, assertion(stage.key, stage.client_id), scope=scope)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_scope"


def test_a_token_cannot_widen_its_registration(stage: Stage, runtime: Runtime) -> None:
    key = make_key()
    client_id = register(runtime, key, scopes="system/DocumentReference.rs")
    response = request_token(
        stage.api, assertion(key, client_id), scope="system/DocumentReference.rs system/DocumentReference.c"
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/DocumentReference.rs"  # the write scope is not granted
    token = str(response.json()["access_token"])
    assert CHECKS["read"](stage, token)
    assert not CHECKS["deposit"](stage, token)
