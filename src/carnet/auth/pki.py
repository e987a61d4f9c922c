"""A test public-key infrastructure: a certificate authority and card-like certificates.

For development and tests only (``carnet pki`` refuses to run in production). The certificates
mimic what Carnet reads from the French professional cards and organisation certificates:

* a **professional** certificate (like a CPS card): subject ``CN`` = the name, ``UID``
  (0.9.2342.19200300.100.1.1) = the IdNat_PS, optionally ``O`` = the organisation's name;
* an **organisation** ("personne morale") certificate for software: ``UID`` = the IdNat_Struct and
  ``OU`` = :data:`ORGANIZATION_UNIT`, which marks it as an organisation certificate;
* a **server** certificate with subject alternative names, for ``carnet serve --tls-cert``.

Client certificates carry the extended key usage ``clientAuth`` and the key usage
``digitalSignature``; the server certificate ``serverAuth``. Keys are ECDSA P-256. File names are
fixed: ``ca.crt``/``ca.key``, ``<IdNat_PS>.crt|.key|.p12``, ``org-<IdNat_Struct>.crt|.key|.p12``,
``server.crt``/``server.key``; the ``.p12`` (PKCS #12, with the CA certificate) is what browsers and
most HTTP clients import.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from carnet.identifiers import parse_idnat_ps, parse_idnat_struct

CA_NAME = "Carnet test CA"
CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"
# The organisational unit of an organisation ("personne morale") certificate.
ORGANIZATION_UNIT = "personne morale"

CA_DAYS = 3650
CLIENT_DAYS = 365
SERVER_DAYS = 365
# Certificates start a few minutes in the past: a client or server clock slightly behind still accepts them.
_BACKDATE = dt.timedelta(minutes=5)


class PkiError(Exception):
    """A request the test PKI cannot satisfy (missing CA, existing CA, invalid identifier …)."""


@dataclass(frozen=True, slots=True)
class Issued:
    """The files written for one certificate."""

    certificate: Path
    key: Path
    pkcs12: Path | None = None
    extra: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.certificate, self.key, self.pkcs12, *self.extra) if p is not None]


@dataclass(frozen=True, slots=True)
class Authority:
    """A loaded certificate authority: its certificate and private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


# ---------------------------------------------------------------------------------------- helpers
def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    """Write a file; private keys are created readable by their owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        path.chmod(0o600)
    else:
        path.write_bytes(data)
    return path


def _validity(not_before: dt.datetime | None, days: int) -> tuple[dt.datetime, dt.datetime]:
    if days < 1:
        raise PkiError("a certificate must be valid for at least one day")
    start = not_before if not_before is not None else _now() - _BACKDATE
    if start.tzinfo is None:
        raise PkiError("not_before must be an aware datetime")
    return start, start + dt.timedelta(days=days)


def _builder(
    subject: x509.Name,
    issuer: Authority | None,
    public_key: ec.EllipticCurvePublicKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer is not None:
        ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    return builder


def _end_entity_usage(builder: x509.CertificateBuilder, *, key_agreement: bool = False) -> x509.CertificateBuilder:
    return builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True).add_extension(
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=key_agreement,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )


# ---------------------------------------------------------------------------------------- the CA
def init_ca(directory: Path, *, days: int = CA_DAYS, name: str = CA_NAME, force: bool = False) -> Issued:
    """Create ``ca.key`` and the self-signed ``ca.crt`` in ``directory``.

    Refuses to replace an existing CA unless ``force``: every certificate it issued would stop verifying.
    """
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not force and (cert_path.exists() or key_path.exists()):
        raise PkiError(f"a CA already exists in {directory} (use --force to replace it)")
    key = _new_key()
    start, end = _validity(None, days)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Carnet (test)"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    cert = (
        _builder(subject, None, key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, _cert_pem(cert))
    return Issued(certificate=cert_path, key=key_path)


def load_ca(directory: Path) -> Authority:
    """The CA of ``directory`` (created by :func:`init_ca`)."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not cert_path.exists() or not key_path.exists():
        raise PkiError(f"no CA in {directory}: run `carnet pki init --dir {directory}` first")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path} is not an EC private key made by `carnet pki init`")
    return Authority(cert, key)


# ---------------------------------------------------------------------------------------- clients
def _client_files(
    directory: Path,
    stem: str,
    authority: Authority,
    subject: x509.Name,
    *,
    days: int,
    not_before: dt.datetime | None,
    friendly_name: str,
    p12_password: str | None,
) -> Issued:
    key = _new_key()
    start, end = _validity(not_before, days)
    cert = (
        _end_entity_usage(_builder(subject, authority, key.public_key(), start, end))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(p12_password.encode()) if p12_password else serialization.NoEncryption()
    )
    bundle = pkcs12.serialize_key_and_certificates(
        friendly_name.encode(), key, cert, [authority.certificate], encryption
    )
    return Issued(
        certificate=_write(directory / f"{stem}.crt", _cert_pem(cert)),
        key=_write(directory / f"{stem}.key", _key_pem(key), private=True),
        pkcs12=_write(directory / f"{stem}.p12", bundle, private=True),
    )


def issue_professional(
    directory: Path,
    *,
    idnat: str,
    name: str,
    organization: str | None = None,
    days: int = CLIENT_DAYS,
    not_before: dt.datetime | None = None,
    p12_password: str | None = None,
    authority: Authority | None = None,
) -> Issued:
    """A professional's client certificate (a CPS card's authentication certificate, for tests).

    ``authority`` defaults to the CA of ``directory``; the files go to ``directory`` either way.
    """
    try:
        value = parse_idnat_ps(idnat, check_luhn=False).value
    except ValueError as exc:
        raise PkiError(str(exc)) from exc
    if not name.strip():
        raise PkiError("the professional's name is empty")
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attributes += [
        x509.NameAttribute(NameOID.USER_ID, value),
        x509.NameAttribute(NameOID.COMMON_NAME, name.strip()),
    ]
    return _client_files(
        directory,
        value,
        authority or load_ca(directory),
        x509.Name(attributes),
        days=days,
        not_before=not_before,
        friendly_name=name.strip(),
        p12_password=p12_password,
    )


def issue_organization(
    directory: Path,
    *,
    idnat_struct: str,
    name: str,
    days: int = CLIENT_DAYS,
    not_before: dt.datetime | None = None,
    p12_password: str | None = None,
    authority: Authority | None = None,
) -> Issued:
    """An organisation ("personne morale") certificate, for software acting for the organisation."""
    try:
        value = parse_idnat_struct(idnat_struct, check_luhn=False).value
    except ValueError as exc:
        raise PkiError(str(exc)) from exc
    if not name.strip():
        raise PkiError("the organisation's name is empty")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name.strip()),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ORGANIZATION_UNIT),
            x509.NameAttribute(NameOID.USER_ID, value),
            x509.NameAttribute(NameOID.COMMON_NAME, name.strip()),
        ]
    )
    return _client_files(
        directory,
        f"org-{value}",
        authority or load_ca(directory),
        subject,
        days=days,
        not_before=not_before,
        friendly_name=name.strip(),
        p12_password=p12_password,
    )


# ---------------------------------------------------------------------------------------- server
def issue_server(
    directory: Path,
    *,
    hosts: list[str] | tuple[str, ...] = ("127.0.0.1",),
    dns: list[str] | tuple[str, ...] = ("localhost",),
    days: int = SERVER_DAYS,
    authority: Authority | None = None,
) -> Issued:
    """``server.crt``/``server.key`` for ``carnet serve --tls-cert/--tls-key``, with IP and DNS names."""
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError as exc:
            raise PkiError(f"--host {host!r} is not an IP address (use --dns for names)") from exc
    if not names:
        raise PkiError("a server certificate needs at least one --host or --dns name")
    authority = authority or load_ca(directory)
    key = _new_key()
    start, end = _validity(None, days)
    common_name = dns[0] if dns else hosts[0]
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Carnet (test)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    cert = (
        _end_entity_usage(_builder(subject, authority, key.public_key(), start, end), key_agreement=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    return Issued(
        certificate=_write(directory / SERVER_CERT, _cert_pem(cert)),
        key=_write(directory / SERVER_KEY, _key_pem(key), private=True),
    )
