"""A caller who may not know that a document exists gets exactly the 404 of a document that does not.

docs/access.md, *What "not found" means*: same status, same body, same headers. For each kind of hidden
document (masked from professionals, another patient's, one the caller is blocked from, one kept from
the patient until it is announced, one kept from a minor's representatives) and each request that names
a document (read, vread, _history, Binary retrieve as bytes and as FHIR, PATCH, DELETE), and for a
Consent of the record hidden from the caller (read, _history, revoke), the answer is compared with the
same request on a random id. Only the request id header may differ; ids are masked in bodies.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from starlette.testclient import TestClient

from carnet.demo.personas import BY_KEY
from carnet.runtime import Runtime
from tests import factories
from tests.conftest import Api

VARYING_HEADERS = {"x-request-id", "date"}
LEA = ("212054410902154", "urn:oid:1.2.250.1.213.1.4.11")


# Who asks, about which document of the stage, and whether a Consent of the record is hidden from them too.
CASES: dict[str, tuple[str, str, bool]] = {
    "masked-to-care-team-doctor": ("dr_camparini", "masked", True),
    "other-patients-to-doctor-without-relationship": ("dr_blanc", "ordinary", True),
    "to-the-blocked-professional": ("inf_moreau", "ordinary", True),
    "other-patients-to-a-patient": ("jean_patient", "ordinary", True),
    "unannounced-to-the-patient": ("patient", "unannounced", False),  # the patient sees every Consent
    "minors-secret-to-her-second-representative": ("marc_parent", "secret", True),
    "to-the-insurers-feed": ("cnam_feed", "ordinary", True),
    "to-the-operator": ("ops_admin", "ordinary", True),
    "masked-and-a-consent-naming-someone-else-to-a-pharmacist": ("ph_didot", "masked", True),
}


@dataclass(frozen=True)
class Stage:
    tokens: dict[str, str]
    docs: dict[str, tuple[str, str]]  # key → (DocumentReference id, Binary id)
    consent_id: str  # dr_girard's authorization: visible to the patient, dr_girard and the médecin traitant only


def _publish(api: Api, persona: str, ins: str, system: str, *flags: str) -> tuple[str, str]:
    doc = factories.docref(ins, system, flags=flags, author_idnat=BY_KEY[persona].idnat or "")
    response = api.publish(persona, doc)
    assert response.status_code == 201, response.text
    body = response.json()
    return str(body["id"]), str(body["content"][0]["attachment"]["url"]).rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def stage(app_client: TestClient, runtime: Runtime) -> Stage:
    api = Api(app_client, runtime)
    patient_id, ins, system = api.new_patient()  # dr_medioni opens it; the usual care team declares
    patient = api.patient_token(patient_id)
    for kind, persona in (("block", "inf_moreau"), ("authorization", "dr_girard")):
        resource = factories.consent(
            patient_id, kind, provision="deny" if kind == "block" else "permit", idnat=BY_KEY[persona].idnat
        )
        response = api.as_token(patient, "POST", "/fhir/Consent", resource)
        assert response.status_code == 201, response.text
    consent_id = str(response.json()["id"])
    docs = {
        "masked": _publish(api, "dr_medioni", ins, system, "MASQUE_PS"),
        "ordinary": _publish(api, "dr_medioni", ins, system),
        "unannounced": _publish(api, "dr_lambert", ins, system, "INVISIBLE_PATIENT"),
        "secret": _publish(api, "dr_medioni", *LEA, "INVISIBLE_REPRESENTANTS_LEGAUX"),
    }
    tokens = {persona: api.token(persona) for persona, _, _ in CASES.values() if persona != "patient"}
    tokens["patient"] = patient
    # The callers see other documents of these records: what they are refused is the document, not the record.
    assert (
        api.as_token(tokens["dr_camparini"], "GET", f"/fhir/DocumentReference/{docs['ordinary'][0]}").status_code == 200
    )
    assert api.as_token(tokens["ph_didot"], "GET", f"/fhir/DocumentReference/{docs['ordinary'][0]}").status_code == 200
    assert api.as_token(patient, "GET", f"/fhir/DocumentReference/{docs['ordinary'][0]}").status_code == 200
    assert api.as_token(patient, "GET", f"/fhir/Consent/{consent_id}").status_code == 200
    return Stage(tokens, docs, consent_id)


def _call(api: Api, token: str, method: str, url: str, body: Any = None, **headers: str) -> httpx.Response:
    all_headers = {"Accept": "application/fhir+json", "Authorization": f"Bearer {token}", **headers}
    if body is not None:
        all_headers["Content-Type"] = "application/json-patch+json"
    content = None if body is None else orjson.dumps(body)
    return api.client.request(method, url, headers=all_headers, content=content)


DELETED = [{"op": "replace", "path": "/status", "value": "entered-in-error"}]
# Each request naming a resource: (resource it names, method, path under /fhir/<Type>/<id>, body, extra headers).
REQUESTS: dict[str, tuple[str, str, str, Any, dict[str, str]]] = {
    "read": ("document", "GET", "", None, {}),
    "vread": ("document", "GET", "/_history/1", None, {}),
    "history": ("document", "GET", "/_history", None, {}),
    "retrieve": ("binary", "GET", "", None, {"Accept": "application/pdf"}),
    "retrieve-as-fhir": ("binary", "GET", "", None, {}),
    "patch": ("document", "PATCH", "", DELETED, {}),
    "delete": ("document", "DELETE", "", None, {}),
    "consent-read": ("consent", "GET", "", None, {}),
    "consent-history": ("consent", "GET", "/_history", None, {}),
    "consent-revoke": ("consent", "DELETE", "", None, {}),
}
TYPES = {"document": "DocumentReference", "binary": "Binary", "consent": "Consent"}
PAIRS = [
    (case, request)
    for case, (_, _, has_consent) in CASES.items()
    for request, (names, *_) in REQUESTS.items()
    if names != "consent" or has_consent
]


def _shape(response: httpx.Response, *ids: str) -> tuple[int, bytes, dict[str, str]]:
    body = response.content
    for ident in ids:
        body = body.replace(ident.encode(), b"<id>")
    headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in VARYING_HEADERS}
    return response.status_code, body, headers


@pytest.mark.parametrize(("case", "request_kind"), PAIRS, ids=[f"{c}-{r}" for c, r in PAIRS])
def test_a_hidden_resource_answers_as_a_missing_one(api: Api, stage: Stage, case: str, request_kind: str) -> None:
    persona, doc_key, _ = CASES[case]
    names, method, suffix, body, headers = REQUESTS[request_kind]
    doc_id, binary_id = stage.docs[doc_key]
    hidden_id = {"document": doc_id, "binary": binary_id, "consent": stage.consent_id}[names]
    missing = str(uuid.uuid4())
    token = stage.tokens[persona]
    concealed = _call(api, token, method, f"/fhir/{TYPES[names]}/{hidden_id}{suffix}", body, **headers)
    absent = _call(api, token, method, f"/fhir/{TYPES[names]}/{missing}{suffix}", body, **headers)
    assert absent.status_code == 404, absent.text
    assert _shape(concealed, hidden_id, missing) == _shape(absent, hidden_id, missing)
