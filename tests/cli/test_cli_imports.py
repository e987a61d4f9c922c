"""``carnet import directory`` and ``carnet import patients``: run from the command line on a migrated
database, then checked through the FHIR API with a ``carnet token``."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from carnet.demo.loader import load_demo_directory_and_people
from carnet.identifiers import nir_key
from carnet.identifiers.ins import INS_NIR_DEMO_OID, INS_NIR_OID, INS_NIR_TEST_OID
from carnet.runtime import Runtime
from tests import factories
from tests.cli.support import (
    DATA,
    IDNAT_PS_SYSTEM,
    IDNAT_STRUCT_SYSTEM,
    Result,
    auth,
    carnet_env,
    cli_token,
    fhir_client,
    production_keys,
    run_carnet,
)
from tests.conftest import BACKENDS, drop_pg_database, fresh_database, make_settings

# tests/data/cli/directory.csv: lines 2, 3 and 5 are valid; line 4 carries an IdNat_PS with prefix 7.
VALID_ROWS = {
    # idnat_ps: (family, profession, specialty, organisation IdNat_Struct)
    "810001234565": ("ROUSSEAU", "10", "SM26", "1750001234"),
    "810007654329": ("BERTIN", "21", None, "2800000012"),
    "0751234567": ("NGUYEN", "60", None, "1750001234"),
}
BAD_IDNAT, BAD_LINE, BAD_ROW_ORGANIZATION = "710009999999", 4, "1750005678"


@dataclass(frozen=True)
class Workspace:
    """A migrated database holding the demo directory and accounts, and where to run ``carnet``."""

    url: str
    cwd: Path
    env: dict[str, str]
    token: str


@pytest.fixture(params=BACKENDS)
def migrated(request: pytest.FixtureRequest, tmp_path: Path, workdir: Path) -> Iterator[str]:
    """A fresh database of each backend, brought to the head revision by ``carnet db upgrade``."""
    url, pg_name = fresh_database(str(request.param), tmp_path, "imports")
    try:
        result = run_carnet("db", "upgrade", env=carnet_env(url), cwd=workdir)
        assert result.code == 0, result.describe()
        yield url
    finally:
        if pg_name:
            drop_pg_database(pg_name)


@pytest.fixture
def workspace(migrated: str, workdir: Path) -> Workspace:
    runtime = Runtime(make_settings(migrated))
    try:
        load_demo_directory_and_people(runtime)  # so that dr_medioni's token authenticates
    finally:
        runtime.dispose()
    env = carnet_env(migrated)
    return Workspace(migrated, workdir, env, cli_token("dr_medioni", env=env, cwd=workdir))


def _summary(result: Result) -> tuple[int, int, int, int, int]:
    """(organisations, practitioners, roles, unchanged, rejected) from the directory import summary."""
    match = re.search(
        r"organisations (\d+), practitioners (\d+), roles (\d+) created or updated; (\d+) unchanged; (\d+) rejected",
        result.output,
    )
    assert match is not None, result.describe()
    organizations, practitioners, roles, unchanged, rejected = (int(g) for g in match.groups())
    return organizations, practitioners, roles, unchanged, rejected


def _rejected_lines(result: Result) -> list[int]:
    return [int(n) for n in re.findall(r"line (\d+):", result.stderr)]


def _search(client: TestClient, token: str, path: str, **params: str) -> list[dict[str, Any]]:
    response = client.get(path, params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]


def _practitioner(client: TestClient, token: str, idnat: str) -> dict[str, Any]:
    found = _search(client, token, "/fhir/Practitioner", identifier=f"{IDNAT_PS_SYSTEM}|{idnat}")
    assert len(found) == 1, found
    return found[0]


def _codes(concepts: list[dict[str, Any]]) -> set[str]:
    return {c["code"] for concept in concepts for c in concept.get("coding", [])}


# ------------------------------------------------------------------------------------- directory


@pytest.mark.slow
def test_import_directory_csv_reports_the_bad_row_and_keeps_the_others(workspace: Workspace, tmp_path: Path) -> None:
    extract = tmp_path / "annuaire.csv"
    shutil.copy(DATA / "directory.csv", extract)

    result = run_carnet("import", "directory", str(extract), env=workspace.env, cwd=workspace.cwd)
    assert result.code == 1, result.describe()
    assert _summary(result)[4] == 1, result.describe()  # 1 rejected
    assert _rejected_lines(result) == [BAD_LINE], result.describe()
    assert BAD_IDNAT in result.output

    with fhir_client(workspace.url) as client:
        for idnat, (family, profession, specialty, organization_idnat) in VALID_ROWS.items():
            practitioner = _practitioner(client, workspace.token, idnat)
            assert practitioner["name"][0]["family"] == family
            assert practitioner["meta"]["versionId"] == "1"
            roles = _search(
                client, workspace.token, "/fhir/PractitionerRole", practitioner=f"Practitioner/{practitioner['id']}"
            )
            assert len(roles) == 1, roles
            assert _codes(roles[0]["code"]) == {profession}
            assert _codes(roles[0].get("specialty", [])) == ({specialty} if specialty else set())
            organization = client.get(f"/fhir/{roles[0]['organization']['reference']}", headers=auth(workspace.token))
            assert organization.status_code == 200, organization.text
            assert organization.json()["identifier"][0] == {"system": IDNAT_STRUCT_SYSTEM, "value": organization_idnat}
        assert _search(client, workspace.token, "/fhir/Practitioner", identifier=f"{IDNAT_PS_SYSTEM}|{BAD_IDNAT}") == []
        assert (
            _search(
                client,
                workspace.token,
                "/fhir/Organization",
                identifier=f"{IDNAT_STRUCT_SYSTEM}|{BAD_ROW_ORGANIZATION}",
            )
            == []
        )
    # The summary counts what was written: two organisations (the nurse's, line 5, is line 2's, hence
    # 1 unchanged), three practitioners, three roles. Line 4 was rolled back whole, its organisation included.
    assert _summary(result) == (2, 3, 3, 1, 1), result.describe()


@pytest.mark.slow
def test_import_directory_csv_twice_changes_nothing(workspace: Workspace, tmp_path: Path) -> None:
    extract = tmp_path / "annuaire.csv"
    shutil.copy(DATA / "directory.csv", extract)
    first = run_carnet("import", "directory", str(extract), env=workspace.env, cwd=workspace.cwd)
    assert first.code == 1, first.describe()

    again = run_carnet("import", "directory", str(extract), env=workspace.env, cwd=workspace.cwd)
    assert again.code == 1, again.describe()  # line 4 is still wrong
    assert _rejected_lines(again) == [BAD_LINE], again.describe()
    assert _summary(again)[1:] == (0, 0, 9, 1), again.describe()  # practitioners, roles, unchanged, rejected

    with fhir_client(workspace.url) as client:
        for idnat in VALID_ROWS:
            assert _practitioner(client, workspace.token, idnat)["meta"]["versionId"] == "1"
        assert (
            _search(
                client,
                workspace.token,
                "/fhir/Organization",
                identifier=f"{IDNAT_STRUCT_SYSTEM}|{BAD_ROW_ORGANIZATION}",
            )
            == []
        )
    # Lines 2, 3 and 5: organisation, practitioner and role each, all unchanged; nothing was written.
    assert _summary(again) == (0, 0, 0, 9, 1), again.describe()


@pytest.mark.slow
def test_import_directory_fhir_bundle(workspace: Workspace, tmp_path: Path) -> None:
    extract = tmp_path / "annuaire.json"
    shutil.copy(DATA / "directory_bundle.json", extract)

    result = run_carnet("import", "directory", str(extract), env=workspace.env, cwd=workspace.cwd)
    assert result.code == 0, result.describe()
    assert _summary(result) == (1, 1, 1, 0, 0)

    with fhir_client(workspace.url) as client:
        practitioner = _practitioner(client, workspace.token, "810002345675")
        assert practitioner["id"] == "pr-cli-garnier"
        assert practitioner["name"][0]["family"] == "GARNIER"
        roles = _search(client, workspace.token, "/fhir/PractitionerRole", practitioner="Practitioner/pr-cli-garnier")
        assert len(roles) == 1, roles
        assert roles[0]["practitioner"]["reference"] == "Practitioner/pr-cli-garnier"
        assert roles[0]["organization"]["reference"] == "Organization/org-cli-hopital-nord"
        assert _codes(roles[0]["code"]) == {"10"}
        assert _codes(roles[0]["specialty"]) == {"SM04"}
        organization = client.get("/fhir/Organization/org-cli-hopital-nord", headers=auth(workspace.token))
        assert organization.status_code == 200, organization.text
        assert organization.json()["name"] == "Hôpital Nord (test CLI)"

    again = run_carnet("import", "directory", str(extract), env=workspace.env, cwd=workspace.cwd)
    assert again.code == 0, again.describe()
    assert _summary(again) == (0, 0, 0, 3, 0)


def test_import_directory_csv_without_the_required_columns(migrated: str, workdir: Path, tmp_path: Path) -> None:
    extract = tmp_path / "annuaire.csv"
    extract.write_text("idnat_ps,family\n810001234565,ROUSSEAU\n", encoding="utf-8")
    result = run_carnet("import", "directory", str(extract), env=carnet_env(migrated), cwd=workdir)
    assert result.code == 1, result.describe()
    assert "cannot read" in result.output
    assert "profession_code" in result.output


# ------------------------------------------------------------------------------------- patients


def _wrong_key_ins() -> tuple[str, str]:
    ins, system = factories.random_ins()
    key = nir_key(ins[:13])
    return f"{ins[:13]}{key % 97 + 1:02d}", system


@pytest.mark.slow
def test_import_patients_ndjson(workspace: Workspace, tmp_path: Path) -> None:
    patients = [factories.random_ins() for _ in range(3)]
    wrong_ins, wrong_system = _wrong_key_ins()
    lines = [
        orjson.dumps(factories.patient_resource(*patients[0], attest=False)).decode(),  # line 1
        orjson.dumps(factories.patient_resource(*patients[1], family="MARTIN", attest=False)).decode(),  # 2
        orjson.dumps(factories.patient_resource(wrong_ins, wrong_system, attest=False)).decode(),  # 3: wrong key
        "",  # 4: blank lines are skipped but still counted
        orjson.dumps(factories.patient_resource(*patients[2], gender="male", attest=False)).decode(),  # 5
        '{"resourceType": "Patient", "identifier": [',  # 6: malformed JSON
    ]
    extract = tmp_path / "patients.ndjson"
    extract.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = run_carnet("import", "patients", str(extract), env=workspace.env, cwd=workspace.cwd)
    assert result.code == 1, result.describe()
    assert "3 records opened, 0 already existed, 2 rejected" in result.output, result.describe()
    faults = {int(m.group(1)): m.group(2) for m in re.finditer(r"line (\d+): (.*)", result.stderr)}
    assert sorted(faults) == [3, 6], result.describe()
    assert "key" in faults[3].lower()
    assert "identifier" in faults[3]
    assert "JSON" in faults[6]

    again = run_carnet("import", "patients", str(extract), env=workspace.env, cwd=workspace.cwd)
    assert again.code == 1, again.describe()
    assert "0 records opened, 3 already existed, 2 rejected" in again.output, again.describe()

    with fhir_client(workspace.url) as client:
        for ins, system in patients:
            found = _search(client, workspace.token, "/fhir/Patient", identifier=f"{system}|{ins}")
            assert len(found) == 1, found
            assert {"system": system, "value": ins}.items() <= found[0]["identifier"][0].items()


# ------------------------------------------------------------------------------------- production rules


@dataclass(frozen=True)
class ProductionWorkspace:
    cwd: Path
    env: dict[str, str]


@pytest.fixture(params=BACKENDS)
def production(request: pytest.FixtureRequest, tmp_path: Path, workdir: Path) -> Iterator[ProductionWorkspace]:
    """A database migrated by ``carnet db upgrade`` with CARNET_ENV=production (and production keys)."""
    url, pg_name = fresh_database(str(request.param), tmp_path, "prodimport")
    env = carnet_env(url, env="production", **production_keys())
    try:
        result = run_carnet("db", "upgrade", env=env, cwd=workdir)
        assert result.code == 0, result.describe()
        yield ProductionWorkspace(workdir, env)
    finally:
        if pg_name:
            drop_pg_database(pg_name)


def _faults(result: Result) -> dict[int, str]:
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"line (\d+): (.*)", result.stderr)}


PRODUCTION_DIRECTORY = """idnat_ps,family,given,profession_code,specialty_code,organization_idnat,organization_name,facility_type,practice_setting
810001234565,ROUSSEAU,Anne,10,SM26,1440000289,Hôpital (test CLI),SA01,ETABLISSEMENT
810001234566,LUHN,Faux,10,SM26,1440000289,Hôpital (test CLI),SA01,ETABLISSEMENT
810002345675,GARNIER,Inconnue,99,,1440000289,Hôpital (test CLI),SA01,ETABLISSEMENT
810007654329,BERTIN,Inconnu,10,SM999,1440000289,Hôpital (test CLI),SA01,ETABLISSEMENT
"""


@pytest.mark.slow
def test_production_directory_import_checks_rpps_luhn_and_the_codes(
    production: ProductionWorkspace, tmp_path: Path
) -> None:
    extract = tmp_path / "annuaire.csv"
    extract.write_text(PRODUCTION_DIRECTORY, encoding="utf-8")
    result = run_carnet("import", "directory", str(extract), env=production.env, cwd=production.cwd)
    assert result.code == 1, result.describe()
    assert _summary(result) == (1, 1, 1, 0, 3), result.describe()  # line 2 written, lines 3-5 rejected
    faults = _faults(result)
    assert sorted(faults) == [3, 4, 5], result.describe()
    assert "Luhn" in faults[3]
    assert "10001234566" in faults[3]  # the RPPS at fault
    assert "'99' is not in TRE_G15" in faults[4]  # the unknown profession code is named
    assert "SM999" in faults[5]
    assert "TRE_R01" in faults[5]


@pytest.mark.slow
def test_the_same_rpps_passes_the_import_outside_production(workspace: Workspace, tmp_path: Path) -> None:
    """The control: the RPPS production refuses for its Luhn key is accepted in test mode."""
    extract = tmp_path / "annuaire.csv"
    extract.write_text("\n".join(PRODUCTION_DIRECTORY.splitlines()[:3]) + "\n", encoding="utf-8")
    result = run_carnet("import", "directory", str(extract), env=workspace.env, cwd=workspace.cwd)
    assert result.code == 0, result.describe()
    assert _summary(result)[4] == 0, result.describe()


@pytest.mark.slow
def test_production_patient_import_refuses_test_ins_unqualified_and_unknown_statuses(
    production: ProductionWorkspace, tmp_path: Path
) -> None:
    real, real_system = factories.random_ins(INS_NIR_OID)
    unqualified, unqualified_system = factories.random_ins(INS_NIR_OID)
    unknown_status, unknown_system = factories.random_ins(INS_NIR_OID)
    test_ins, test_system = factories.random_ins(INS_NIR_TEST_OID)
    demo_ins, demo_system = factories.random_ins(INS_NIR_DEMO_OID)
    lines = [
        factories.patient_resource(real, real_system, attest=False),  # 1: a qualified real INS
        factories.patient_resource(test_ins, test_system, attest=False),  # 2: test OID
        factories.patient_resource(demo_ins, demo_system, attest=False),  # 3: demo OID
        factories.patient_resource(unqualified, unqualified_system, attest=False, status="VALI"),  # 4
        factories.patient_resource(unknown_status, unknown_system, attest=False, status="QUALIFIEE"),  # 5
    ]
    extract = tmp_path / "patients.ndjson"
    extract.write_text("\n".join(orjson.dumps(line).decode() for line in lines) + "\n", encoding="utf-8")

    result = run_carnet("import", "patients", str(extract), env=production.env, cwd=production.cwd)
    assert result.code == 1, result.describe()
    assert "1 records opened, 0 already existed, 4 rejected" in result.output, result.describe()
    faults = _faults(result)
    assert sorted(faults) == [2, 3, 4, 5], result.describe()
    for line in (2, 3):
        assert "refused in production" in faults[line]
        assert "identifier" in faults[line]
    assert "QUAL" in faults[4]
    assert "'QUALIFIEE'" in faults[5]
    assert "PROV, RECUP, VALI, QUAL" in faults[5]
