"""``carnet --help``, ``carnet personas``, ``carnet token`` and the production guards, run as a user runs them."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from carnet.identifiers import parse_idnat_struct
from tests.cli.support import carnet_env, free_port, production_keys, run_carnet


def _jwt_part(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def test_help_lists_every_command(workdir: Path) -> None:
    result = run_carnet("--help", env=carnet_env(None), cwd=workdir)
    assert result.code == 0, result.describe()
    for command in ("serve", "db", "demo", "personas", "token", "import"):
        assert f" {command} " in f" {result.output} ", f"{command} missing from --help:\n{result.stdout}"


def test_personas_json_describes_the_cast(workdir: Path) -> None:
    result = run_carnet("personas", "--json", env=carnet_env(None), cwd=workdir)
    assert result.code == 0, result.describe()
    personas: list[dict[str, Any]] = json.loads(result.stdout)
    assert isinstance(personas, list)
    by_key = {p["key"]: p for p in personas}
    assert len(by_key) == len(personas), "persona keys are unique"

    for persona in personas:
        assert {"key", "kind", "role", "identifiers"} <= persona.keys(), persona
        assert isinstance(persona["identifiers"], dict), persona
        if persona["kind"] == "patient":
            assert persona["identifiers"].get("INS"), persona
            assert str(persona["identifiers"].get("INS-system", "")).startswith("urn:oid:1.2.250.1.213.1.4."), persona
        if persona["kind"] == "professional":
            assert persona["identifiers"].get("IdNat_PS"), persona

    patients = [p for p in personas if p["kind"] == "patient"]
    assert len(patients) >= 3
    # The minor: Léa, born in 2012 (the INS matricule carries the year of birth in characters 2-3).
    lea = by_key["lea_minor"]
    assert lea["kind"] == "patient"
    assert "minor" in lea["role"]
    assert lea["identifiers"]["INS"][1:3] == "12"
    assert any(p["kind"] == "legal-representative" for p in personas)

    roles = {p["key"]: p["role"].lower() for p in personas if p["kind"] == "professional"}
    assert "médecin traitant" in roles["dr_medioni"]
    assert by_key["dr_medioni"]["identifiers"]["IdNat_PS"] == "801234567897"
    for wanted in ("hospital doctor", "pharmacist", "nurse", "emergency doctor"):
        assert any(wanted in role for role in roles.values()), f"no {wanted} among {roles}"

    kinds = {p["kind"] for p in personas}
    assert {"patient", "legal-representative", "professional", "software", "insurer", "operator"} <= kinds

    # The demo organisations, with their IdNat_Struct, and each professional's organisation among them.
    organisations = {p["key"]: p for p in personas if p["kind"] == "organisation"}
    org_roles = {p["role"] for p in organisations.values()}
    assert {"hospital", "pharmacy"} <= org_roles, org_roles
    for org in organisations.values():
        parse_idnat_struct(org["identifiers"]["IdNat_Struct"], check_luhn=False)
        assert org["name"], org
    for persona in personas:
        if persona["kind"] == "professional":
            assert persona.get("organization") in organisations, persona
    assert by_key["dr_lambert"]["organization"] == "hopital_saint_roch"
    assert by_key["ph_didot"]["organization"] == "pharmacie_4_cantons"
    assert organisations["hopital_saint_roch"]["identifiers"] == {"IdNat_Struct": "1440000289"}
    assert by_key["dpi_saint_roch"]["organization"] == "hopital_saint_roch"  # the software, for its hospital


def test_personas_table_shows_organisations_and_who_works_where(workdir: Path) -> None:
    result = run_carnet("personas", env=carnet_env(None), cwd=workdir)
    assert result.code == 0, result.describe()
    assert "demo organisations" in result.output
    assert "IdNat_Struct=2801234567" in result.output  # the pharmacy
    didot = next(line for line in result.stdout.splitlines() if "ph_didot" in line)
    assert "Pharmacie des 4 cantons" in didot, didot


def test_token_prints_a_jwt_in_development(workdir: Path, sqlite_url: str) -> None:
    result = run_carnet("token", "--as", "dr_medioni", env=carnet_env(sqlite_url, env="development"), cwd=workdir)
    assert result.code == 0, result.describe()
    token = result.stdout.strip()
    parts = token.split(".")
    assert len(parts) == 3, token
    assert all(parts), token
    header = _jwt_part(parts[0])
    assert header["alg"] == "Ed25519"  # signed with the server's key, verifiable against its JWKS
    assert header["kid"]
    claims = _jwt_part(parts[1])
    assert claims["sub"] == "pro:801234567897"
    assert claims["persona"] == "dr_medioni"


def test_token_is_refused_in_production(workdir: Path, sqlite_url: str) -> None:
    env = carnet_env(sqlite_url, env="production", **production_keys())
    result = run_carnet("token", "--as", "dr_medioni", env=env, cwd=workdir)
    assert result.code != 0, result.describe()
    assert result.stdout.strip() == "", "no token may be printed"
    assert "refused" in result.output
    assert "production" in result.output


def test_token_for_an_unknown_persona_fails(workdir: Path, sqlite_url: str) -> None:
    result = run_carnet("token", "--as", "nobody", env=carnet_env(sqlite_url), cwd=workdir)
    assert result.code != 0, result.describe()
    assert result.stdout.strip() == ""
    assert "unknown persona" in result.output
    assert "nobody" in result.output


def test_demo_is_refused_in_production(workdir: Path, tmp_path: Path) -> None:
    database = tmp_path / "prod.db"
    env = carnet_env(f"sqlite:///{database}", env="production", **production_keys())
    result = run_carnet("demo", env=env, cwd=workdir)
    assert result.code != 0, result.describe()
    assert "refused" in result.output
    assert "production" in result.output
    assert not database.exists(), "the refusal comes before anything touches the database"


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("serve", "--port", "{port}"), id="serve"),
        pytest.param(("db", "upgrade"), id="db-upgrade"),
        pytest.param(("demo",), id="demo"),
    ],
)
def test_production_with_default_keys_fails_at_start_up(
    workdir: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    database = tmp_path / "prod.db"
    args = [part.format(port=free_port()) for part in command]
    env = carnet_env(f"sqlite:///{database}", env="production", base_url="https://carnet.example")
    result = run_carnet(*args, env=env, cwd=workdir, timeout=60)
    assert result.code == 2, result.describe()
    assert "configuration error" in result.output
    for setting in ("CARNET_KEK", "CARNET_INDEX_KEY", "CARNET_SIGNING_KEYS"):
        assert setting in result.output, result.describe()
    assert not database.exists()
