"""``carnet db upgrade`` / ``carnet db current`` on both databases, and ``carnet demo`` end to end:
loaded twice from the command line, then read back through the FHIR API with a ``carnet token``."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from carnet.demo.personas import DEMO_PASSWORD
from tests.cli.support import (
    INS_TEST_SYSTEM,
    TEST_BASE_URL,
    Result,
    auth,
    carnet_env,
    cli_token,
    fhir_client,
    run_carnet,
)
from tests.conftest import BACKENDS, PG_URL, create_pg_database, drop_pg_database, fresh_database

DOMINIQUE_INS = "279035121518989"
DEMO_CDA = resources.files("carnet.demo").joinpath("data", "cda")
_CURRENT = re.compile(r"current: (\S+)\s+head: (\S+)")


def _revisions(result: Result) -> tuple[str, str]:
    match = _CURRENT.search(result.output)
    assert match is not None, result.describe()
    return match.group(1), match.group(2)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with no schema at all, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    if PG_URL is None:
        pytest.skip("no PostgreSQL server answers (set CARNET_TEST_DATABASE_URL to run the PostgreSQL case)")
    name = f"carnet_t_cli_{uuid.uuid4().hex[:8]}"
    url = create_pg_database(name)
    try:
        yield url
    finally:
        drop_pg_database(name)


def test_db_upgrade_is_idempotent_and_reaches_head(empty_database: str, workdir: Path) -> None:
    env = carnet_env(empty_database)

    before = run_carnet("db", "current", env=env, cwd=workdir)
    assert before.code == 0, before.describe()
    current, head = _revisions(before)
    assert current == "None"
    assert head != "None"

    first = run_carnet("db", "upgrade", env=env, cwd=workdir)
    assert first.code == 0, first.describe()
    assert f"at revision {head}" in first.output

    second = run_carnet("db", "upgrade", env=env, cwd=workdir)
    assert second.code == 0, second.describe()
    assert f"at revision {head}" in second.output

    after = run_carnet("db", "current", env=env, cwd=workdir)
    assert after.code == 0, after.describe()
    assert _revisions(after) == (head, head)


def test_db_current_never_prints_the_database_password(workdir: Path) -> None:
    url = "postgresql://carnet:s3cr3t-pw@127.0.0.1:1/carnet"
    result = run_carnet("db", "current", env=carnet_env(url), cwd=workdir, timeout=60)
    assert "s3cr3t-pw" not in f"{result.stdout}{result.stderr}"


# ------------------------------------------------------------------------------------- carnet demo


@dataclass(frozen=True)
class DemoDatabase:
    url: str
    first: Result
    second: Result
    token: str


@pytest.fixture(scope="module", params=BACKENDS)
def demo_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoDatabase]:
    """A fresh database of each backend loaded twice by ``carnet demo``, and a ``carnet token`` for dr_medioni."""
    base = tmp_path_factory.mktemp("demo")
    url, pg_name = fresh_database(str(request.param), base, "demo")
    try:
        env = carnet_env(url)
        upgrade = run_carnet("db", "upgrade", env=env, cwd=base)
        assert upgrade.code == 0, upgrade.describe()
        first = run_carnet("demo", env=env, cwd=base)
        second = run_carnet("demo", env=env, cwd=base)
        yield DemoDatabase(url, first, second, cli_token("dr_medioni", env=env, cwd=base))
    finally:
        if pg_name:
            drop_pg_database(pg_name)


def _counts(result: Result) -> tuple[int, int]:
    match = re.search(r"demo data: (\d+) created, (\d+) already there", result.output)
    assert match is not None, result.describe()
    return int(match.group(1)), int(match.group(2))


@pytest.mark.slow
def test_demo_twice_creates_nothing_the_second_time(demo_database: DemoDatabase) -> None:
    assert demo_database.first.code == 0, demo_database.first.describe()
    assert demo_database.second.code == 0, demo_database.second.describe()
    created, _ = _counts(demo_database.first)
    assert created > 0
    created_again, existing = _counts(demo_database.second)
    assert created_again == 0
    assert existing > 0


def _patient(client: Any, token: str, system: str, ins: str) -> dict[str, Any]:
    response = client.get("/fhir/Patient", params={"identifier": f"{system}|{ins}"}, headers=auth(token))
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    entries = [e for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]
    assert len(entries) == 1, bundle
    resource: dict[str, Any] = entries[0]["resource"]
    return resource


@pytest.mark.slow
def test_demo_records_are_served_through_the_fhir_api(demo_database: DemoDatabase) -> None:
    assert demo_database.first.code == 0, demo_database.first.describe()
    token = demo_database.token
    with fhir_client(demo_database.url) as client:
        dominique = _patient(client, token, INS_TEST_SYSTEM, DOMINIQUE_INS)
        assert any(i.get("value") == DOMINIQUE_INS for i in dominique.get("identifier", []))

        response = client.get(
            "/fhir/DocumentReference", params={"patient": dominique["id"], "_count": "100"}, headers=auth(token)
        )
        assert response.status_code == 200, response.text
        bundle = response.json()
        matches = [e for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]
        assert bundle["total"] == 12, [m["resource"].get("type") for m in matches]
        assert len(matches) == 12
        assert {m["resource"]["subject"]["reference"] for m in matches} == {f"Patient/{dominique['id']}"}

        # The CDA documents of the demo (copied from the ANS corpus) come back byte for byte.
        packaged = {p.name: p.read_bytes() for p in DEMO_CDA.iterdir() if p.name.endswith(".xml")}
        assert len(packaged) >= 8
        retrieved = set()
        for match in matches:
            attachment = match["resource"]["content"][0]["attachment"]
            if not attachment["contentType"].endswith("xml"):
                continue
            url = attachment["url"].replace(TEST_BASE_URL, "")
            content = client.get(url, headers={**auth(token), "Accept": "*/*"})
            assert content.status_code == 200, content.text
            assert content.headers["content-type"].startswith(attachment["contentType"])
            name = next((n for n, data in packaged.items() if data == content.content), None)
            assert name is not None, f"{url} is not one of the packaged CDA documents"
            retrieved.add(name)
        assert retrieved == set(packaged)


@pytest.mark.slow
def test_demo_opens_the_minor_record(demo_database: DemoDatabase, workdir: Path) -> None:
    assert demo_database.first.code == 0, demo_database.first.describe()
    personas = run_carnet("personas", "--json", env=carnet_env(None), cwd=workdir)
    assert personas.code == 0, personas.describe()
    lea = next(p for p in json.loads(personas.stdout) if p["key"] == "lea_minor")
    ins, system = lea["identifiers"]["INS"], lea["identifiers"]["INS-system"]
    with fhir_client(demo_database.url) as client:
        patient = _patient(client, demo_database.token, system, ins)
        assert patient["birthDate"].startswith("2012")
        assert patient["active"] is True


@pytest.mark.slow
def test_demo_patients_sign_in_with_the_printed_credentials(demo_database: DemoDatabase, workdir: Path) -> None:
    """What ``make run`` prints works: login = persona key, the demo password, the code of ``carnet totp``."""
    assert demo_database.first.code == 0, demo_database.first.describe()
    env = carnet_env(demo_database.url)
    code = run_carnet("totp", "--as", "dominique_patient", env=env, cwd=workdir)
    assert code.code == 0, code.describe()
    assert re.fullmatch(r"\d{6}", code.stdout.strip()), code.stdout
    with fhir_client(demo_database.url) as client:
        wrong = client.post(
            "/auth/patient/login",
            json={"login": "dominique_patient", "password": "not-the-demo-password", "totp": code.stdout.strip()},
        )
        assert wrong.status_code == 401
        response = client.post(
            "/auth/patient/login",
            json={"login": "dominique_patient", "password": DEMO_PASSWORD, "totp": code.stdout.strip()},
        )
        assert response.status_code == 200, response.text
        dominique = _patient(client, response.json()["access_token"], INS_TEST_SYSTEM, DOMINIQUE_INS)
        assert any(i.get("value") == DOMINIQUE_INS for i in dominique.get("identifier", []))
    # Professionals have no TOTP: the command names who it is for.
    refused = run_carnet("totp", "--as", "dr_medioni", env=env, cwd=workdir)
    assert refused.code == 2
    assert "not a demo patient" in refused.stderr
