"""Shared fixtures: one database per backend (SQLite and PostgreSQL) and xdist worker, migrated and
loaded with the demo personas once per session; an HTTP client on the real ASGI app; persona tokens.

Tests isolate themselves by data, not by truncation: each test that writes creates its own patients
(random valid INS), so tests never see each other's documents.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest
from starlette.testclient import TestClient

from carnet import dbadmin
from carnet.app import create_app
from carnet.auth import tokens
from carnet.config import BlobBackend, Environment, Settings
from carnet.db import utcnow
from carnet.demo.loader import load_demo_directory_and_people
from carnet.demo.personas import BY_KEY, token_claims
from carnet.runtime import Runtime
from tests import factories

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
# Professionals who declare care-team consent on every patient the tests open (see Api.new_patient).
CARE_TEAM = ("dr_lambert", "dr_camparini", "ph_didot", "inf_moreau")
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
DATA = Path(__file__).parent / "data"


def _pg_server_url() -> str | None:
    url = os.environ.get("CARNET_TEST_DATABASE_URL") or DEFAULT_PG
    try:
        with psycopg.connect(url, connect_timeout=2):
            return url
    except psycopg.OperationalError:
        if os.environ.get("CARNET_TEST_REQUIRE_POSTGRES"):
            raise
        return None


PG_URL = _pg_server_url()
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            PG_URL is None, reason="no PostgreSQL server answers (CI sets CARNET_TEST_DATABASE_URL)"
        ),
    ),
]


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def create_pg_database(name: str) -> str:
    assert PG_URL is not None
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_database(PG_URL, name)


def drop_pg_database(name: str) -> None:
    assert PG_URL is not None
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": Environment.TEST,
        "database_url": database_url,
        "base_url": "http://testserver",
        "db_pool_size": 4,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


def fresh_database(backend: str, tmp_path: Path, label: str) -> tuple[str, str | None]:
    """A new empty database: (url, PostgreSQL database name or None)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'{label}.db'}", None
    name = f"carnet_t_{label}_{uuid.uuid4().hex[:8]}"
    return create_pg_database(name), name


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def runtime(backend: str, tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Runtime]:
    """The session database of this backend: migrated, with the demo directory, accounts and records."""
    url, pg_name = fresh_database(backend, tmp_path_factory.mktemp("db"), f"s_{worker_id}")
    settings = make_settings(url, blob_backend=BlobBackend.DATABASE)
    rt = Runtime(settings)
    dbadmin.upgrade(rt.engine)
    load_demo_directory_and_people(rt)
    yield rt
    rt.dispose()
    if pg_name:
        drop_pg_database(pg_name)


@dataclass
class Api:
    """The real ASGI app behind an in-process HTTP client, with persona tokens."""

    client: TestClient
    runtime: Runtime

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def token(self, persona: str, **extra: Any) -> str:
        subject, claims = token_claims(BY_KEY[persona])
        return tokens.issue_dev(self.settings, subject, extra={**claims, **extra})

    def headers(self, persona: str | None, **more: str) -> dict[str, str]:
        headers = {"Accept": "application/fhir+json", **more}
        if persona:
            headers["Authorization"] = f"Bearer {self.token(persona)}"
        return headers

    def get(self, url: str, persona: str | None, **kwargs: Any) -> httpx.Response:
        return self.client.get(url, headers=self.headers(persona, **kwargs.pop("headers", {})), **kwargs)

    def post(
        self,
        url: str,
        persona: str | None,
        body: Any = None,
        *,
        content_type: str = "application/fhir+json",
        **kwargs: Any,
    ) -> httpx.Response:
        headers = self.headers(persona, **{"Content-Type": content_type}, **kwargs.pop("headers", {}))
        content = body if isinstance(body, bytes) else (None if body is None else __import__("orjson").dumps(body))
        return self.client.post(url, content=content, headers=headers, **kwargs)

    def patch(
        self, url: str, persona: str | None, body: Any, *, content_type: str = "application/json-patch+json"
    ) -> httpx.Response:
        import orjson

        return self.client.patch(
            url, content=orjson.dumps(body), headers=self.headers(persona, **{"Content-Type": content_type})
        )

    def delete(self, url: str, persona: str | None) -> httpx.Response:
        return self.client.delete(url, headers=self.headers(persona))

    # -------------------------------------------------------------- conveniences
    def new_patient(
        self, persona: str = "dr_medioni", team: tuple[str, ...] = CARE_TEAM, **kwargs: Any
    ) -> tuple[str, str, str]:
        """Open a record for a new random patient (``persona`` attests the consent and joins the care
        team); each professional of ``team`` declares care-team consent too. Return (id, INS, system)."""
        ins, system = factories.random_ins()
        response = self.post("/fhir/Patient", persona, factories.patient_resource(ins, system, **kwargs))
        assert response.status_code == 201, response.text
        patient_id: str = response.json()["id"]
        for member in team:
            self.declare(member, patient_id, "care-team")
        return patient_id, ins, system

    def declare(
        self, persona: str, patient_id: str, kind: str, *, about: str | None = None, provision: str = "permit"
    ) -> httpx.Response:
        """POST a Consent of ``kind`` for ``patient_id``; the actor is ``about`` (a persona key) or the caller."""
        idnat = BY_KEY[about or persona].idnat
        resource = {
            "resourceType": "Consent",
            "status": "active",
            "scope": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
            },
            "category": [{"coding": [{"system": "https://carnet.health/fhir/CodeSystem/consent-kind", "code": kind}]}],
            "patient": {"reference": f"Patient/{patient_id}"},
            "provision": {
                "type": provision,
                "actor": [
                    {
                        "role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
                        "reference": {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": idnat}},
                    }
                ],
            },
        }
        response = self.post("/fhir/Consent", persona, resource)
        assert response.status_code == 201, response.text
        return response

    def patient_token(self, patient_id: str) -> str:
        """A token for the holder of ``patient_id`` (creating their account on first use)."""
        import sqlalchemy as sa

        from carnet.accounts import service as accounts
        from carnet.accounts.models import Account, AccountKind

        record_id = uuid.UUID(patient_id)
        with self.runtime.work() as work:
            account_id = work.session.scalar(sa.select(Account.id).where(Account.record_id == record_id))
            if account_id is None:
                account_id = accounts.create_account(
                    work, kind=AccountKind.PATIENT, label=f"patient-{patient_id[:8]}", record_id=record_id
                ).id
        return tokens.issue_dev(self.settings, f"account:{account_id}")

    def as_token(self, token: str, method: str, url: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        """A request with an explicit bearer token (a test patient's, or one with extra claims)."""
        import orjson

        headers = {"Accept": "application/fhir+json", "Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        if body is not None:
            headers.setdefault("Content-Type", "application/fhir+json")
            kwargs["content"] = orjson.dumps(body)
        return self.client.request(method, url, headers=headers, **kwargs)

    def publish(self, persona: str, resource: dict[str, Any]) -> httpx.Response:
        return self.post("/fhir/DocumentReference", persona, resource)

    def search(self, persona: str, **params: str) -> dict[str, Any]:
        response = self.get("/fhir/DocumentReference", persona, params=params)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture(scope="session")
def app_client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime.settings, runtime), base_url="http://testserver") as client:
        yield client


@pytest.fixture
def api(app_client: TestClient, runtime: Runtime) -> Api:
    return Api(app_client, runtime)


def match_ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]


def issue_at(outcome: dict[str, Any], expression_part: str) -> bool:
    """Whether an OperationOutcome names an element containing ``expression_part``."""
    return any(expression_part in expr for issue in outcome.get("issue", []) for expr in issue.get("expression", []))


@dataclass
class Clock:
    """The time every unit of work sees (``Work.now``: what access decisions, grant periods and
    emergency expiries are checked against), moved by the test. Tokens keep the real time."""

    now: dt.datetime

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def set_clock(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> Clock:
    """Make the units of work of ``runtime`` (and of the app serving it) see ``Clock.now`` until the test ends."""
    clock = Clock(utcnow())
    original = runtime._work

    def clocked(session: Any) -> Any:
        work = original(session)
        work.now = clock.now
        return work

    monkeypatch.setattr(runtime, "_work", clocked)
    return clock


@pytest.fixture
def work_clock(monkeypatch: pytest.MonkeyPatch, runtime: Runtime) -> Clock:
    """The session runtime's clock, settable for this test (see ``set_clock``)."""
    return set_clock(monkeypatch, runtime)
