"""Client certificates: verification, the trusted-proxy header, organisation certificates and a real
mutual-TLS round trip through ``carnet serve``.

Certificates come from ``carnet.auth.pki`` (the test CA behind ``carnet pki``), generated once per
module into a temporary directory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import signal
import ssl
import string
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.testclient import TestClient
from typer.testing import CliRunner

from carnet.accounts import service as accounts
from carnet.accounts.models import ClientKind
from carnet.app import create_app
from carnet.auth import certificates, pki
from carnet.auth.actor import ActorKind
from carnet.auth.authenticate import resolve
from carnet.cli.main import app as cli_app
from carnet.config import Environment, Settings
from carnet.demo.loader import load_demo_directory_and_people
from carnet.directory import service as directory
from carnet.directory.models import Organization
from carnet.errors import Unauthenticated
from carnet.runtime import Runtime
from carnet.server import TLSH11Protocol, TLSHttpToolsProtocol
from tests.cli.support import carnet_command, carnet_env, free_port, log_text, run_carnet, wait_ready
from tests.conftest import Api, make_settings

MEDIONI = "801234567897"  # dr_medioni, cabinet_medioni
LAMBERT = "810001745206"  # dr_lambert, hopital_saint_roch
SAINT_ROCH = "1440000289"  # hopital_saint_roch, software client dpi-saint-roch
PRACTITIONER_SEARCH = f"/fhir/Practitioner?identifier=urn:oid:1.2.250.1.71.4.2.1|{MEDIONI}"
FHIR_JSON = {"Accept": "application/fhir+json"}
PROXY = ("10.0.0.5", 1234)
STRANGER = ("192.0.2.7", 4321)
HEADER = "x-ssl-client-cert"
READY_TIMEOUT = 60.0  # a loaded CI machine takes a while to import the app


@dataclass(frozen=True)
class Pki:
    """The files of the test PKI."""

    ca: Path
    medioni: pki.Issued
    lambert: pki.Issued
    saint_roch: pki.Issued
    server: pki.Issued
    expired: pki.Issued
    not_yet_valid: pki.Issued
    foreign: pki.Issued  # dr_medioni's IdNat, issued by another CA
    intermediate: Path  # an intermediate CA certificate issued by the test CA
    behind_intermediate: pki.Issued  # dr_medioni's certificate issued by the intermediate


def _intermediate(directory: Path, root: pki.Authority) -> pki.Authority:
    """An intermediate CA signed by ``root`` (as card certificates are: root → issuing CA → card)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    root_ski = root.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Carnet test issuing CA")]))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    (directory / "intermediate.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pki.Authority(cert, key)


@pytest.fixture(scope="module")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    ca_dir, other_dir = base / "ca", base / "other"
    pki.init_ca(ca_dir)
    pki.init_ca(other_dir, name="Another CA")
    authority = pki.load_ca(ca_dir)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    (base / "chain").mkdir()
    issuing = _intermediate(base / "chain", authority)
    return Pki(
        ca=ca_dir / pki.CA_CERT,
        medioni=pki.issue_professional(ca_dir, idnat=MEDIONI, name="Dr Stéphane MEDIONI", organization="Cabinet"),
        lambert=pki.issue_professional(ca_dir, idnat=LAMBERT, name="Dr Claire LAMBERT"),
        saint_roch=pki.issue_organization(ca_dir, idnat_struct=SAINT_ROCH, name="Hôpital Saint-Roch"),
        server=pki.issue_server(ca_dir, hosts=["127.0.0.1"], dns=["localhost"]),
        expired=pki.issue_professional(
            base / "expired", idnat=MEDIONI, name="Dr M", not_before=past, days=1, authority=authority
        ),
        not_yet_valid=pki.issue_professional(
            base / "future", idnat=MEDIONI, name="Dr M", not_before=future, days=10, authority=authority
        ),
        foreign=pki.issue_professional(other_dir, idnat=MEDIONI, name="Dr Stéphane MEDIONI"),
        intermediate=base / "chain" / "intermediate.crt",
        behind_intermediate=pki.issue_professional(base / "chain", idnat=MEDIONI, name="Dr M", authority=issuing),
    )


def _pem(issued: pki.Issued) -> str:
    return issued.certificate.read_text(encoding="ascii")


def _escaped(pem: str) -> str:
    """The certificate as nginx's $ssl_client_escaped_cert forwards it."""
    return urllib.parse.quote(pem, safe="")


def _settings(test_pki: Pki, database_url: str = "sqlite://", **overrides: Any) -> Settings:
    values: dict[str, Any] = {"tls_client_ca": test_pki.ca, "trusted_proxies": ["10.0.0.0/8", "::1"]}
    values.update(overrides)
    return make_settings(database_url, **values)


def _request(
    *,
    headers: dict[str, str] | None = None,
    client: tuple[str, int] | None = STRANGER,
    tls_chain: list[str] | None = None,
) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/fhir/Practitioner",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": client,
    }
    if tls_chain is not None:
        scope["extensions"] = {"tls": {"client_cert_chain": tls_chain}}
    return Request(scope)


# ---------------------------------------------------------------------------------- unit level
def test_direct_tls_professional_certificate_gives_pro_claims(test_pki: Pki) -> None:
    request = _request(tls_chain=[_pem(test_pki.medioni)])
    claims = certificates.claims_from_request(request, _settings(test_pki))
    assert claims == {"sub": f"pro:{MEDIONI}", "auth": "certificate"}


def test_forwarded_certificate_from_trusted_proxy_gives_pro_claims(test_pki: Pki) -> None:
    request = _request(headers={HEADER: _escaped(_pem(test_pki.medioni))}, client=PROXY)
    assert certificates.claims_from_request(request, _settings(test_pki)) == {
        "sub": f"pro:{MEDIONI}",
        "auth": "certificate",
    }


def test_no_certificate_means_no_claims(test_pki: Pki) -> None:
    settings = _settings(test_pki)
    assert certificates.claims_from_request(_request(), settings) is None
    assert certificates.claims_from_request(_request(tls_chain=[]), settings) is None
    # A proxy forwards an empty value when the client sent no certificate.
    assert certificates.claims_from_request(_request(headers={HEADER: ""}, client=PROXY), settings) is None


@pytest.mark.parametrize("peer", [STRANGER, ("127.0.0.1", 80), ("testclient", 50000), None])
def test_forwarded_certificate_from_untrusted_peer_is_refused(test_pki: Pki, peer: tuple[str, int] | None) -> None:
    request = _request(headers={HEADER: _escaped(_pem(test_pki.medioni))}, client=peer)
    with pytest.raises(Unauthenticated, match="trusted proxy"):
        certificates.claims_from_request(request, _settings(test_pki))


def test_forwarded_certificate_is_refused_even_alongside_a_valid_tls_certificate(test_pki: Pki) -> None:
    request = _request(
        headers={HEADER: _escaped(_pem(test_pki.lambert))}, client=STRANGER, tls_chain=[_pem(test_pki.medioni)]
    )
    with pytest.raises(Unauthenticated, match="trusted proxy"):
        certificates.claims_from_request(request, _settings(test_pki))


def test_tls_certificate_of_a_trusted_proxy_itself_is_ignored(test_pki: Pki) -> None:
    # A proxy that re-encrypts to Carnet with its own client certificate: that certificate is the
    # proxy's; without the header the request carries no professional's certificate.
    settings = _settings(test_pki)
    proxied = _request(client=PROXY, tls_chain=[_pem(test_pki.server)])
    assert certificates.claims_from_request(proxied, settings) is None
    with_header = _request(
        headers={HEADER: _escaped(_pem(test_pki.medioni))}, client=PROXY, tls_chain=[_pem(test_pki.server)]
    )
    assert certificates.claims_from_request(with_header, settings) == {"sub": f"pro:{MEDIONI}", "auth": "certificate"}


def test_trusted_proxies_match_addresses_networks_and_mapped_ipv4() -> None:
    trusted = ["10.0.0.0/8", "192.168.1.10", "::1"]
    assert certificates.is_trusted_proxy("10.1.2.3", trusted)
    assert certificates.is_trusted_proxy("192.168.1.10", trusted)
    assert certificates.is_trusted_proxy("::ffff:10.9.9.9", trusted)
    assert certificates.is_trusted_proxy("::1", trusted)
    assert not certificates.is_trusted_proxy("192.168.1.11", trusted)
    assert not certificates.is_trusted_proxy("11.0.0.1", trusted)
    assert not certificates.is_trusted_proxy("10.0.0.1", [])
    assert not certificates.is_trusted_proxy(None, trusted)
    # A misconfigured list trusts nobody (and `carnet serve` refuses to start with it).
    assert not certificates.is_trusted_proxy("10.0.0.1", ["10.0.0.0/8", "not-an-address"])
    with pytest.raises(ValueError, match="not-an-address"):
        certificates.parse_trusted_proxies(["not-an-address"])


def test_expired_certificate_is_refused(test_pki: Pki) -> None:
    with pytest.raises(Unauthenticated, match="expired"):
        certificates.claims_from_request(_request(tls_chain=[_pem(test_pki.expired)]), _settings(test_pki))


def test_not_yet_valid_certificate_is_refused(test_pki: Pki) -> None:
    with pytest.raises(Unauthenticated, match="not valid before"):
        certificates.claims_from_request(_request(tls_chain=[_pem(test_pki.not_yet_valid)]), _settings(test_pki))


def test_certificate_from_another_ca_is_refused(test_pki: Pki) -> None:
    request = _request(headers={HEADER: _escaped(_pem(test_pki.foreign))}, client=PROXY)
    with pytest.raises(Unauthenticated, match="not issued by an authority Carnet trusts"):
        certificates.claims_from_request(request, _settings(test_pki))


def test_server_certificate_used_as_client_certificate_is_refused(test_pki: Pki) -> None:
    with pytest.raises(Unauthenticated, match="clientAuth"):
        certificates.claims_from_request(_request(tls_chain=[_pem(test_pki.server)]), _settings(test_pki))


def test_ca_certificate_itself_is_not_a_client_certificate(test_pki: Pki) -> None:
    with pytest.raises(Unauthenticated):
        certificates.claims_from_request(
            _request(tls_chain=[test_pki.ca.read_text(encoding="ascii")]), _settings(test_pki)
        )


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        _escaped("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"),
        "%2D%2D%2D%2D%2DBEGIN",
    ],
)
def test_garbage_header_is_refused(test_pki: Pki, value: str) -> None:
    request = _request(headers={HEADER: value}, client=PROXY)
    with pytest.raises(Unauthenticated, match="certificate"):
        certificates.claims_from_request(request, _settings(test_pki))


def test_chain_through_an_intermediate_is_verified(test_pki: Pki) -> None:
    leaf, intermediate = _pem(test_pki.behind_intermediate), test_pki.intermediate.read_text(encoding="ascii")
    settings = _settings(test_pki)
    claims = certificates.claims_from_request(_request(tls_chain=[leaf, intermediate]), settings)
    assert claims == {"sub": f"pro:{MEDIONI}", "auth": "certificate"}
    forwarded = _request(headers={HEADER: _escaped(leaf + intermediate)}, client=PROXY)
    assert certificates.claims_from_request(forwarded, settings) == claims
    # Without the intermediate the leaf does not chain to the trusted root.
    with pytest.raises(Unauthenticated, match="not issued by an authority"):
        certificates.claims_from_request(_request(tls_chain=[leaf]), settings)


def test_certificates_are_refused_without_a_configured_ca(test_pki: Pki) -> None:
    request = _request(tls_chain=[_pem(test_pki.medioni)])
    with pytest.raises(Unauthenticated, match="no trusted authority"):
        certificates.claims_from_request(request, _settings(test_pki, tls_client_ca=None))


def test_configured_header_name_is_used(test_pki: Pki) -> None:
    settings = _settings(test_pki, client_cert_header="ssl-client-cert")
    request = _request(headers={"ssl-client-cert": _escaped(_pem(test_pki.medioni))}, client=PROXY)
    assert certificates.claims_from_request(request, settings) == {"sub": f"pro:{MEDIONI}", "auth": "certificate"}
    # The default header is now an ordinary header: ignored.
    ignored = _request(headers={HEADER: _escaped(_pem(test_pki.medioni))}, client=STRANGER)
    assert certificates.claims_from_request(ignored, settings) is None


def test_organisation_certificate_names_the_acting_professional(test_pki: Pki) -> None:
    settings = _settings(test_pki)
    request = _request(tls_chain=[_pem(test_pki.saint_roch)], headers={"X-Acting-Professional": LAMBERT})
    assert certificates.claims_from_request(request, settings) == {
        "sub": f"org-cert:{SAINT_ROCH}",
        "act": {"sub": f"pro:{LAMBERT}"},
        "auth": "certificate",
    }
    with pytest.raises(Unauthenticated, match="X-Acting-Professional"):
        certificates.claims_from_request(_request(tls_chain=[_pem(test_pki.saint_roch)]), settings)
    bad = _request(tls_chain=[_pem(test_pki.saint_roch)], headers={"X-Acting-Professional": "nobody"})
    with pytest.raises(Unauthenticated, match="X-Acting-Professional"):
        certificates.claims_from_request(bad, settings)


def test_production_checks_the_luhn_key_of_the_certificate_idnat(test_pki: Pki, tmp_path: Path) -> None:
    authority = pki.load_ca(test_pki.ca.parent)
    bad_luhn = pki.issue_professional(tmp_path, idnat="812345678901", name="Dr Luhn", authority=authority)
    identity = certificates.verify_chain(
        [x509.load_pem_x509_certificate(bad_luhn.certificate.read_bytes())], _settings(test_pki)
    )
    assert identity == certificates.CertificateIdentity("professional", "812345678901")
    production = Settings.model_construct(env=Environment.PRODUCTION)
    with pytest.raises(Unauthenticated, match="IdNat_PS"):
        certificates.claims_for(identity, None, production)
    assert certificates.claims_for(identity, None, _settings(test_pki))["sub"] == "pro:812345678901"


# ---------------------------------------------------------------------------------- through the API
@pytest.fixture
def cert_app(runtime: Runtime, test_pki: Pki) -> Iterator[tuple[Settings, Runtime]]:
    """The real app on the session database, trusting the test CA and the proxies in 10.0.0.0/8."""
    settings = _settings(test_pki, runtime.settings.database_url)
    own = Runtime(settings)
    try:
        yield settings, own
    finally:
        own.dispose()


def _client(cert_app: tuple[Settings, Runtime], peer: tuple[str, int]) -> TestClient:
    settings, runtime = cert_app
    return TestClient(create_app(settings, runtime), base_url="http://testserver", client=peer)


def test_api_trusted_proxy_certificate_authenticates_the_professional(
    cert_app: tuple[Settings, Runtime], test_pki: Pki
) -> None:
    with _client(cert_app, PROXY) as client:
        response = client.get(PRACTITIONER_SEARCH, headers={**FHIR_JSON, HEADER: _escaped(_pem(test_pki.medioni))})
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["total"] == 1
    identifiers = bundle["entry"][0]["resource"]["identifier"]
    assert any(i.get("value") == MEDIONI for i in identifiers)


def test_api_certificate_header_from_untrusted_address_is_401(
    cert_app: tuple[Settings, Runtime], test_pki: Pki
) -> None:
    with _client(cert_app, STRANGER) as client:
        response = client.get(PRACTITIONER_SEARCH, headers={**FHIR_JSON, HEADER: _escaped(_pem(test_pki.medioni))})
    assert response.status_code == 401, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "trusted proxy" in outcome["issue"][0]["diagnostics"]


def test_api_untrusted_chain_through_the_proxy_is_401(cert_app: tuple[Settings, Runtime], test_pki: Pki) -> None:
    with _client(cert_app, PROXY) as client:
        for issued in (test_pki.foreign, test_pki.expired, test_pki.server):
            response = client.get(PRACTITIONER_SEARCH, headers={**FHIR_JSON, HEADER: _escaped(_pem(issued))})
            assert response.status_code == 401, (issued.certificate, response.text)


def test_api_bearer_token_still_comes_first(cert_app: tuple[Settings, Runtime], test_pki: Pki, api: Api) -> None:
    # A valid bearer token is used as before; a certificate header beside it is not looked at.
    headers = {**api.headers("dr_lambert"), HEADER: _escaped(_pem(test_pki.foreign))}
    with _client(cert_app, STRANGER) as client:
        assert client.get(PRACTITIONER_SEARCH, headers=headers).status_code == 200
        assert client.get(PRACTITIONER_SEARCH, headers=FHIR_JSON).status_code == 401


def test_api_organisation_certificate_acts_as_the_hospital_software(
    cert_app: tuple[Settings, Runtime], test_pki: Pki
) -> None:
    # The hospital may have registered other software since the demo (SMART clients): name ours.
    headers = {
        **FHIR_JSON,
        HEADER: _escaped(_pem(test_pki.saint_roch)),
        "X-Acting-Professional": LAMBERT,
        "X-Carnet-Client": "dpi-saint-roch",
    }
    with _client(cert_app, PROXY) as client:
        response = client.get(PRACTITIONER_SEARCH, headers=headers)
    assert response.status_code == 200, response.text
    # The claims resolve to the hospital's software client acting for Dr Lambert in the hospital.
    settings, runtime = cert_app
    identity = certificates.CertificateIdentity("organization", SAINT_ROCH)
    claims = certificates.claims_for(identity, LAMBERT, settings, client="dpi-saint-roch")
    assert claims == {
        "sub": f"org-cert:{SAINT_ROCH}:dpi-saint-roch",
        "act": {"sub": f"pro:{LAMBERT}"},
        "auth": "certificate",
    }
    with runtime.read() as work:
        actor = resolve(work, claims)
    assert actor.kind is ActorKind.SOFTWARE
    assert actor.key == "client:dpi-saint-roch"
    assert actor.client_id == "dpi-saint-roch"
    assert actor.auth_method == "certificate"
    assert actor.professional is not None
    assert actor.professional.idnat == LAMBERT
    assert actor.professional.organization_idnat == SAINT_ROCH
    assert actor.author_key == f"pro:{LAMBERT}"


def test_api_organisation_certificate_for_a_professional_without_a_role_there_is_401(
    cert_app: tuple[Settings, Runtime], test_pki: Pki
) -> None:
    with _client(cert_app, PROXY) as client:
        base = {**FHIR_JSON, HEADER: _escaped(_pem(test_pki.saint_roch)), "X-Carnet-Client": "dpi-saint-roch"}
        outsider = client.get(PRACTITIONER_SEARCH, headers={**base, "X-Acting-Professional": MEDIONI})
        assert outsider.status_code == 401, outsider.text
        assert "no active role" in outsider.json()["issue"][0]["diagnostics"]
        missing = client.get(PRACTITIONER_SEARCH, headers=base)
        assert missing.status_code == 401, missing.text
        assert "X-Acting-Professional" in missing.json()["issue"][0]["diagnostics"]


def _new_organization(runtime: Runtime) -> tuple[str, str]:
    """A new organisation with one professional working there: (IdNat_Struct, IdNat_PS)."""
    struct = "1" + "".join(random.choices(string.digits, k=9))
    idnat = "8" + "".join(random.choices(string.digits, k=11))
    extract = (
        "idnat_ps,family,given,profession_code,specialty_code,organization_idnat,organization_name\n"
        f"{idnat},TESTEUR,Anne,10,SM26,{struct},Clinique de test {struct}\n"
    )
    with runtime.work() as work:
        for _, resources in directory.parse_extract(extract, "extract.csv"):
            directory.import_resources(work, resources, directory.ImportReport())
    return struct, idnat


def _add_client(runtime: Runtime, struct: str, client_id: str) -> None:
    with runtime.work() as work:
        organization = work.session.scalar(sa.select(Organization).where(Organization.idnat_struct == struct))
        assert organization is not None
        accounts.create_client(
            work, client_id=client_id, kind=ClientKind.SOFTWARE, name=client_id, organization_id=organization.id
        )


def test_organisation_certificate_maps_to_the_organisations_software_client(
    cert_app: tuple[Settings, Runtime],
) -> None:
    settings, runtime = cert_app
    struct, idnat = _new_organization(runtime)
    identity = certificates.CertificateIdentity("organization", struct)
    implicit = certificates.claims_for(identity, idnat, settings)

    with runtime.read() as work, pytest.raises(Unauthenticated, match="no active software client"):
        resolve(work, implicit)

    first = f"lgc-{struct}-a"
    _add_client(runtime, struct, first)
    with runtime.read() as work:
        actor = resolve(work, implicit)  # the organisation's only software client
    assert actor.kind is ActorKind.SOFTWARE
    assert actor.client_id == first
    assert actor.professional is not None
    assert actor.professional.organization_idnat == struct

    second = f"lgc-{struct}-b"
    _add_client(runtime, struct, second)
    with runtime.read() as work:
        with pytest.raises(Unauthenticated, match="X-Carnet-Client"):
            resolve(work, implicit)  # which of the two? the certificate cannot say
        named = resolve(work, certificates.claims_for(identity, idnat, settings, client=second))
        assert named.client_id == second
        # A client of another organisation cannot be borrowed with this organisation's certificate.
        with pytest.raises(Unauthenticated, match="not an active software client"):
            resolve(work, certificates.claims_for(identity, idnat, settings, client="dpi-saint-roch"))
        with pytest.raises(Unauthenticated, match="not in the directory"):
            resolve(work, {"sub": "org-cert:1999999999", "act": {"sub": f"pro:{idnat}"}, "auth": "certificate"})
        with pytest.raises(Unauthenticated, match="acts for"):
            resolve(work, {"sub": f"org-cert:{struct}", "auth": "certificate"})


# ---------------------------------------------------------------------------------- the server protocols
async def _echo_tls(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app answering with the TLS extension of its scope."""
    if scope["type"] != "http":
        return
    body = json.dumps((scope.get("extensions") or {}).get("tls")).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def _uvicorn(test_pki: Pki, protocol: type[asyncio.Protocol], *, tls: bool = True) -> Iterator[str]:
    """uvicorn in a thread with ``protocol``, serving :func:`_echo_tls`; yields the base URL."""
    port = free_port()
    options: dict[str, Any] = {}
    if tls:
        options = {
            "ssl_certfile": test_pki.server.certificate,
            "ssl_keyfile": test_pki.server.key,
            "ssl_ca_certs": test_pki.ca,
            "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        }
    config = uvicorn.Config(
        _echo_tls, host="127.0.0.1", port=port, http=protocol, lifespan="off", log_level="warning", **options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped before it started"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.05)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.mark.parametrize("protocol", [TLSHttpToolsProtocol, TLSH11Protocol], ids=["httptools", "h11"])
def test_server_protocols_put_the_client_chain_in_the_scope(
    test_pki: Pki, tmp_path: Path, protocol: type[asyncio.Protocol]
) -> None:
    chain_file = tmp_path / "chain.pem"
    chain_file.write_text(_pem(test_pki.behind_intermediate) + test_pki.intermediate.read_text(encoding="ascii"))
    card = pki.Issued(certificate=chain_file, key=test_pki.behind_intermediate.key)
    with _uvicorn(test_pki, protocol) as base:
        with httpx2.Client(base_url=base, verify=_context(test_pki, card), timeout=10) as client:
            tls = client.get("/").json()
            again = client.get("/").json()  # the next request on the same connection
        assert tls["client_cert_chain"] == [_pem(test_pki.behind_intermediate), test_pki.intermediate.read_text()]
        assert again == tls
        assert "UID=801234567897" in tls["client_cert_name"]
        assert tls["tls_version"] in (0x0303, 0x0304)
        with httpx2.Client(base_url=base, verify=_context(test_pki, None), timeout=10) as client:
            anonymous = client.get("/").json()
        assert anonymous["client_cert_chain"] == []
        assert anonymous["client_cert_name"] is None
    # The chain the protocol exposes is what claims_from_request verifies.
    request = _request(tls_chain=tls["client_cert_chain"])
    assert certificates.claims_from_request(request, _settings(test_pki)) == {
        "sub": f"pro:{MEDIONI}",
        "auth": "certificate",
    }


def test_server_protocol_leaves_plain_http_scopes_alone(test_pki: Pki) -> None:
    with _uvicorn(test_pki, TLSHttpToolsProtocol, tls=False) as base, httpx2.Client(base_url=base) as client:
        assert client.get("/").json() is None


def test_serve_refuses_unusable_tls_options(test_pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file to pick up
    for name in [n for n in os.environ if n.startswith("CARNET_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CARNET_ENV", "test")
    monkeypatch.setenv("CARNET_DATABASE_URL", f"sqlite:///{tmp_path / 'unused.db'}")
    runner = CliRunner()
    env = {"COLUMNS": "400", "NO_COLOR": "1"}

    def serve(*args: str) -> tuple[int, str]:
        """The exit code and the output without whitespace (Rich wraps long paths anywhere)."""
        result = runner.invoke(cli_app, ["serve", *args], env=env)
        return result.exit_code, "".join(result.output.split())

    code, output = serve("--tls-cert", str(tmp_path / "missing.crt"))
    assert code == 2, output
    assert "missing.crtdoesnotexist" in output
    code, output = serve("--tls-key", str(test_pki.server.key))
    assert code == 2, output
    assert "--tls-keyneeds--tls-cert" in output
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("hello")
    code, output = serve("--tls-cert", str(test_pki.server.certificate), "--tls-client-ca", str(not_pem))
    assert code == 2, output
    assert "notareadablePEMfile" in output
    monkeypatch.setenv("CARNET_TRUSTED_PROXIES", "10.0.0.0/8,proxy.example")
    code, output = serve()
    assert code == 2, output
    assert "'proxy.example'isnotanIPaddressornetwork" in output


# ---------------------------------------------------------------------------------- real mutual TLS
def _context(test_pki: Pki, client_cert: pki.Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(test_pki.ca))
    if client_cert is not None:
        context.load_cert_chain(str(client_cert.certificate), str(client_cert.key))
    return context


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])
def test_mutual_tls_round_trip_through_carnet_serve(test_pki: Pki, tmp_path: Path, workers: int) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    database_url = f"sqlite:///{tmp_path / 'carnet.db'}"
    migrated = run_carnet("db", "upgrade", env=carnet_env(database_url), cwd=workdir)
    assert migrated.code == 0, migrated.describe()
    loader = Runtime(make_settings(database_url))
    try:
        load_demo_directory_and_people(loader)
    finally:
        loader.dispose()

    port = free_port()
    base = f"https://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    command = [
        *carnet_command(),
        "serve",
        "--port",
        str(port),
        "--tls-cert",
        str(test_pki.server.certificate),
        "--tls-key",
        str(test_pki.server.key),
        "--tls-client-ca",
        str(test_pki.ca),
        "--workers",
        str(workers),
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - the command is this project's own console script
            command, env=carnet_env(database_url, base_url=base), cwd=workdir, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        with httpx2.Client(base_url=base, verify=_context(test_pki, test_pki.medioni), timeout=10) as client:
            wait_ready(client, process, log, READY_TIMEOUT)

            with_card = client.get(PRACTITIONER_SEARCH, headers=FHIR_JSON)
            assert with_card.status_code == 200, with_card.text
            assert with_card.json()["total"] == 1

        # No certificate: the TLS connection is accepted (patients, token clients) but the API says 401.
        with httpx2.Client(base_url=base, verify=_context(test_pki, None), timeout=10) as client:
            anonymous = client.get(PRACTITIONER_SEARCH, headers=FHIR_JSON)
            assert anonymous.status_code == 401, anonymous.text
            assert client.get("/health/ready").status_code == 200
            # A certificate header sent straight to the server (not from a trusted proxy) is refused.
            forged = client.get(PRACTITIONER_SEARCH, headers={**FHIR_JSON, HEADER: _escaped(_pem(test_pki.medioni))})
            assert forged.status_code == 401, forged.text

        # A certificate from a CA the server does not trust: the handshake fails, or the API says 401.
        with httpx2.Client(base_url=base, verify=_context(test_pki, test_pki.foreign), timeout=10) as client:
            try:
                foreign = client.get(PRACTITIONER_SEARCH, headers=FHIR_JSON)
            except httpx2.TransportError:
                pass
            else:
                assert foreign.status_code == 401, foreign.text

        process.terminate()
        assert process.wait(timeout=60) in (0, -signal.SIGTERM), log_text(log)
        output = " ".join(log_text(log).split())
        assert f"Carnet on https://127.0.0.1:{port}" in output, output
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
