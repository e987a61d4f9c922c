"""Production rules through the FHIR API (CARNET_ENV=production): test and demo INS refused, only a
qualified identity (QUAL) opens a record; the same requests pass outside production."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from carnet import dbadmin
from carnet.app import create_app
from carnet.auth import tokens
from carnet.config import Environment
from carnet.demo.loader import load_demo_directory_and_people
from carnet.demo.personas import BY_KEY, token_claims
from carnet.identifiers.ins import INS_NIR_DEMO_OID, INS_NIR_OID, INS_NIR_TEST_OID
from carnet.runtime import Runtime
from tests import factories
from tests.conftest import BACKENDS, Api, drop_pg_database, fresh_database, issue_at, make_settings


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


class ProductionApi(Api):
    """Production refuses development tokens: these are signed like the ones sign-in issues."""

    def token(self, persona: str, **extra: Any) -> str:
        subject, claims = token_claims(BY_KEY[persona])
        return tokens.issue(self.settings, subject, extra={**claims, **extra})


@pytest.fixture(scope="module", params=BACKENDS)
def production(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionApi]:
    url, pg_name = fresh_database(str(request.param), tmp_path_factory.mktemp("prod"), "prod")
    keys = {
        "kek": f"k1:{_key()}",
        "index_key": _key(),
        "signing_keys": factories.signing_keys("k1"),
        "audit_signing_key": _key(),
        "base_url": "https://carnet.example",
    }
    # The demo directory holds fictitious identifiers (some fail the production Luhn checks): it is
    # loaded by a test-mode process with the same keys, then the production app serves that database.
    loader = Runtime(make_settings(url, **keys))
    dbadmin.upgrade(loader.engine)
    load_demo_directory_and_people(loader)
    loader.dispose()
    settings = make_settings(url, env=Environment.PRODUCTION, **keys)
    assert settings.is_production
    runtime = Runtime(settings)
    with TestClient(create_app(settings, runtime), base_url="https://carnet.example") as client:
        yield ProductionApi(client, runtime)
    runtime.dispose()
    if pg_name:
        drop_pg_database(pg_name)


@pytest.mark.parametrize("oid", [INS_NIR_TEST_OID, INS_NIR_DEMO_OID], ids=["test-ins", "demo-ins"])
def test_test_and_demo_ins_are_refused_when_opening_a_record(production: ProductionApi, oid: str) -> None:
    ins, system = factories.random_ins(oid)
    response = production.post("/fhir/Patient", "dr_medioni", factories.patient_resource(ins, system))
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert issue_at(outcome, "Patient.identifier[0].value"), outcome
    assert "refused in production" in outcome["issue"][0]["diagnostics"]
    lookup = production.get("/fhir/Patient", "dr_medioni", params={"identifier": f"{system}|{ins}"})
    assert lookup.status_code == 400, lookup.text
    assert issue_at(lookup.json(), "identifier")
    assert "refused in production" in lookup.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("status", ["PROV", "RECUP", "VALI"])
def test_only_a_qualified_identity_opens_a_record(production: ProductionApi, status: str) -> None:
    ins, system = factories.random_ins(INS_NIR_OID)
    refused = production.post("/fhir/Patient", "dr_medioni", factories.patient_resource(ins, system, status=status))
    assert refused.status_code == 422, refused.text
    outcome = refused.json()
    assert issue_at(outcome, "Patient.extension"), outcome
    assert "QUAL" in outcome["issue"][0]["diagnostics"]
    assert production.get("/fhir/Patient", "dr_medioni", params={"identifier": f"{system}|{ins}"}).json()["total"] == 0

    opened = production.post("/fhir/Patient", "dr_medioni", factories.patient_resource(ins, system, status="QUAL"))
    assert opened.status_code == 201, opened.text
    found = production.get("/fhir/Patient", "dr_medioni", params={"identifier": f"{system}|{ins}"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [opened.json()["id"]]


def test_a_deposit_naming_a_test_ins_is_refused(production: ProductionApi) -> None:
    ins, system = factories.random_ins(INS_NIR_TEST_OID)
    response = production.publish("dr_medioni", factories.docref(ins, system))
    assert response.status_code == 400, response.text
    assert issue_at(response.json(), "DocumentReference.subject"), response.json()
    assert "refused in production" in response.text


def test_development_tokens_do_not_authenticate_in_production(production: ProductionApi) -> None:
    dev_claims = {"dev": True}
    token = production.token("dr_medioni", **dev_claims)
    response = production.as_token(token, "GET", "/fhir/Practitioner")
    assert response.status_code == 401, response.text
    assert production.get("/fhir/Practitioner", "dr_medioni").status_code == 200  # the same token, not dev


@pytest.mark.parametrize("oid", [INS_NIR_TEST_OID, INS_NIR_DEMO_OID])
def test_the_same_requests_pass_outside_production(api: Api, oid: str) -> None:
    """The control: what production refuses is accepted in test mode."""
    ins, system = factories.random_ins(oid)
    response = api.post("/fhir/Patient", "dr_medioni", factories.patient_resource(ins, system, status="VALI"))
    assert response.status_code == 201, response.text


def test_the_api_description_pages_are_not_served_in_production(production: ProductionApi, api: Api) -> None:
    for path in ("/docs", "/openapi.json", "/docs/oauth2-redirect"):
        assert production.client.get(path).status_code == 404, path
        assert api.client.get(path).status_code == 200, path
    # The FHIR CapabilityStatement still describes the API, to anyone.
    metadata = production.client.get("/fhir/metadata")
    assert metadata.status_code == 200
    assert metadata.json()["resourceType"] == "CapabilityStatement"
