"""``carnet pki``: the test CA and the professional, organisation and server certificates it issues."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from carnet.auth import certificates, pki
from carnet.cli.main import app as cli_app
from tests.cli.support import carnet_env, production_keys, run_carnet
from tests.conftest import make_settings


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "cwd"
    path.mkdir()
    return path


@pytest.mark.slow
def test_pki_commands_write_the_ca_and_certificates(tmp_path: Path, workdir: Path) -> None:
    env = carnet_env(None)
    out = tmp_path / "pki"

    init = run_carnet("pki", "init", "--dir", str(out), env=env, cwd=workdir)
    assert init.code == 0, init.describe()
    assert str(out / "ca.crt") in init.output
    assert str(out / "ca.key") in init.output
    ca = _cert(out / "ca.crt")
    assert _attribute(ca, NameOID.COMMON_NAME) == ["Carnet test CA"]
    assert ca.subject == ca.issuer
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert dt.timedelta(days=3649) < lifetime < dt.timedelta(days=3651)

    professional = run_carnet(
        "pki",
        "professional",
        "--dir",
        str(out),
        "--idnat",
        "801234567897",
        "--name",
        "Dr Stéphane MEDIONI",
        "--organization",
        "Cabinet du Dr Medioni",
        "--days",
        "30",
        env=env,
        cwd=workdir,
    )
    assert professional.code == 0, professional.describe()
    for suffix in (".crt", ".key", ".p12"):
        assert str(out / f"801234567897{suffix}") in professional.output
    card = _cert(out / "801234567897.crt")
    assert _attribute(card, NameOID.USER_ID) == ["801234567897"]
    assert _attribute(card, NameOID.COMMON_NAME) == ["Dr Stéphane MEDIONI"]
    assert _attribute(card, NameOID.ORGANIZATION_NAME) == ["Cabinet du Dr Medioni"]
    assert _attribute(card, NameOID.ORGANIZATIONAL_UNIT_NAME) == []
    assert card.issuer == ca.subject
    assert _eku(card) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = card.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign
    assert dt.timedelta(days=29) < card.not_valid_after_utc - card.not_valid_before_utc < dt.timedelta(days=31)
    key, bundled, extra = pkcs12.load_key_and_certificates((out / "801234567897.p12").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert bundled == card
    assert extra == [ca]
    assert stat.S_IMODE((out / "801234567897.key").stat().st_mode) == 0o600

    organization = run_carnet(
        "pki",
        "organization",
        "--dir",
        str(out),
        "--idnat-struct",
        "1440000289",
        "--name",
        "Hôpital Saint-Roch",
        env=env,
        cwd=workdir,
    )
    assert organization.code == 0, organization.describe()
    assert str(out / "org-1440000289.p12") in organization.output
    org = _cert(out / "org-1440000289.crt")
    assert _attribute(org, NameOID.USER_ID) == ["1440000289"]
    assert _attribute(org, NameOID.ORGANIZATIONAL_UNIT_NAME) == [pki.ORGANIZATION_UNIT]
    assert _eku(org) == [ExtendedKeyUsageOID.CLIENT_AUTH]

    server = run_carnet(
        "pki", "server", "--dir", str(out), "--host", "127.0.0.1", "--dns", "localhost", env=env, cwd=workdir
    )
    assert server.code == 0, server.describe()
    assert str(out / "server.crt") in server.output
    served = _cert(out / "server.crt")
    assert _eku(served) == [ExtendedKeyUsageOID.SERVER_AUTH]
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    # What the CLI issues is what Carnet accepts.
    settings = make_settings("sqlite://", tls_client_ca=out / "ca.crt")
    assert certificates.verify_chain([card], settings) == certificates.CertificateIdentity(
        "professional", "801234567897"
    )
    assert certificates.verify_chain([org], settings) == certificates.CertificateIdentity("organization", "1440000289")


@pytest.mark.slow
def test_pki_refuses_to_run_in_production(tmp_path: Path, workdir: Path) -> None:
    env = carnet_env(None, env="production", **production_keys())
    out = tmp_path / "pki"
    for args in (("init",), ("professional", "--idnat", "801234567897", "--name", "Dr X")):
        result = run_carnet("pki", args[0], "--dir", str(out), *args[1:], env=env, cwd=workdir)
        assert result.code == 2, result.describe()
        assert "refused" in result.output
        assert "production" in result.output
    assert not out.exists()


def _invoke(*args: str) -> tuple[int, str]:
    """``carnet pki …`` in-process (the error paths; the subprocess tests above cover the real command)."""
    result = CliRunner().invoke(cli_app, ["pki", *args], env={"COLUMNS": "400", "NO_COLOR": "1"})
    return result.exit_code, " ".join(result.output.split())


def test_pki_errors_are_reported(tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)  # no .env file to pick up
    for name in [n for n in os.environ if n.startswith("CARNET_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CARNET_ENV", "test")
    out = str(tmp_path / "pki")
    code, output = _invoke("professional", "--dir", out, "--idnat", "801234567897", "--name", "X")
    assert code == 1, output
    assert "pki init" in output

    assert _invoke("init", "--dir", out)[0] == 0
    original = (tmp_path / "pki" / "ca.crt").read_bytes()
    code, output = _invoke("init", "--dir", out)
    assert code == 1, output
    assert "already exists" in output
    assert (tmp_path / "pki" / "ca.crt").read_bytes() == original
    assert _invoke("init", "--dir", out, "--force")[0] == 0
    assert (tmp_path / "pki" / "ca.crt").read_bytes() != original

    code, output = _invoke("professional", "--dir", out, "--idnat", "9XYZ", "--name", "X")
    assert code == 1, output
    assert "IdNat_PS" in output
    assert not list((tmp_path / "pki").glob("9XYZ*"))
    code, output = _invoke("server", "--dir", out, "--host", "localhost")
    assert code == 1, output
    assert "not an IP address" in output

    monkeypatch.setenv("CARNET_ENV", "production")
    code, output = _invoke("init", "--dir", str(tmp_path / "prod"))
    assert code == 2, output  # refused: here by the settings themselves (development keys in production)
    assert not (tmp_path / "prod").exists()


def test_pki_module_names_files_deterministically(tmp_path: Path) -> None:
    assert [p.name for p in pki.init_ca(tmp_path).files] == ["ca.crt", "ca.key"]
    assert [p.name for p in pki.issue_professional(tmp_path, idnat="810001745206", name="Dr L").files] == [
        "810001745206.crt",
        "810001745206.key",
        "810001745206.p12",
    ]
    assert [p.name for p in pki.issue_organization(tmp_path, idnat_struct="1440000289", name="H").files] == [
        "org-1440000289.crt",
        "org-1440000289.key",
        "org-1440000289.p12",
    ]
    assert [p.name for p in pki.issue_server(tmp_path).files] == ["server.crt", "server.key"]


def test_pki_p12_password_protects_the_bundle(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    issued = pki.issue_professional(tmp_path, idnat="810001745206", name="Dr L", p12_password="s3cret")
    assert issued.pkcs12 is not None
    with pytest.raises(ValueError, match="password"):
        pkcs12.load_key_and_certificates(issued.pkcs12.read_bytes(), None)
    key, cert, _ = pkcs12.load_key_and_certificates(issued.pkcs12.read_bytes(), b"s3cret")
    assert key is not None
    assert cert == _cert(issued.certificate)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"idnat": "", "name": "X"}, "empty"),
        ({"idnat": "801234567897", "name": "  "}, "name"),
        ({"idnat": "801234567897", "name": "X", "days": 0}, "one day"),
    ],
)
def test_pki_module_rejects_bad_requests(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    pki.init_ca(tmp_path)
    with pytest.raises(pki.PkiError, match=message):
        pki.issue_professional(tmp_path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(pki.PkiError, match="not an IP address"):
        pki.issue_server(tmp_path, hosts=["localhost"])
