"""Professionals' card certificates (X.509 client certificates): mutual TLS or a trusted proxy's header.

Where the certificate comes from:

* **direct mutual TLS** (``carnet serve --tls-cert … --tls-client-ca …``): the server puts the chain
  the client presented in the ASGI scope, ``scope["extensions"]["tls"]["client_cert_chain"]`` (a list
  of PEM strings, leaf first: the ASGI TLS extension; see ``carnet.server``);
* **behind a TLS-terminating proxy**: the proxy forwards the client certificate, URL-encoded PEM
  (nginx's ``$ssl_client_escaped_cert``), in the header ``settings.client_cert_header``. The header
  is believed only when the TCP peer is one of ``settings.trusted_proxies``; from any other address
  it is an impersonation attempt and the request is refused (401), whatever else it carries.

Either way Carnet verifies the chain itself against ``settings.tls_client_ca`` (validity period,
extended key usage ``clientAuth``, chain to a trust anchor) before it reads an identity:

* a **professional** certificate (subject ``UID`` = IdNat_PS) → ``{"sub": "pro:<IdNat_PS>"}``;
* an **organisation** certificate (``OU`` = ``personne morale``, ``UID`` = IdNat_Struct) is the
  organisation's software: ``{"sub": "org-cert:<IdNat_Struct>", "act": {"sub": "pro:<IdNat_PS>"}}``
  where the acting professional is named by the ``X-Acting-Professional`` header (required).
  ``carnet.auth.authenticate`` resolves it to the organisation's registered software client, with
  :func:`software_for_organization`. When the organisation has several active software clients, the
  request names its own in ``X-Carnet-Client`` and the subject becomes
  ``org-cert:<IdNat_Struct>:<client id>`` (so that cached actors never mix two programs up).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from fastapi import Request

from carnet.accounts.models import Client, ClientKind
from carnet.auth.actor import Professional
from carnet.auth.pki import ORGANIZATION_UNIT
from carnet.config import Settings
from carnet.directory import service as directory
from carnet.directory.models import Organization, Practitioner, PractitionerRole
from carnet.errors import Unauthenticated
from carnet.identifiers import IdentifierError, parse_idnat_ps, parse_idnat_struct
from carnet.logging import log
from carnet.runtime import Work

ACTING_PROFESSIONAL_HEADER = "x-acting-professional"
# Names the calling software when its organisation has registered several (an organisation certificate
# says which organisation calls, not which of its programs).
CLIENT_HEADER = "x-carnet-client"
ORG_CERT_SCHEME = "org-cert"
# A client sends its certificate and a few intermediates; anything longer is not a card chain.
MAX_CHAIN_LENGTH = 8

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The Web PKI end-entity rules, except that the subject alternative name may be absent: card
# certificates name their holder in the subject (UID), not in a SAN.
_EE_POLICY = ExtensionPolicy.webpki_defaults_ee().may_be_present(
    x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """Who a verified client certificate names."""

    kind: str  # "professional" | "organization"
    identifier: str  # IdNat_PS or IdNat_Struct, as in the certificate


# ------------------------------------------------------------------------------ the entry point
def claims_from_request(request: Request, settings: Settings) -> dict[str, Any] | None:
    """Identity claims from a verified client certificate, or None when the request carries none."""
    chain = presented_chain(request, settings)
    if chain is None:
        return None
    identity = verify_chain(chain, settings)
    return claims_for(
        identity,
        request.headers.get(ACTING_PROFESSIONAL_HEADER),
        settings,
        client=request.headers.get(CLIENT_HEADER),
    )


def presented_chain(request: Request, settings: Settings) -> list[x509.Certificate] | None:
    """The certificate chain the request presents (leaf first), not verified yet; None without one.

    The proxy header is believed only from a trusted proxy, and from anyone else refused outright.
    When the TCP peer is a trusted proxy, only its header counts: a certificate in the TLS
    connection itself would be the proxy's own, not its client's.
    """
    forwarded = request.headers.get(settings.client_cert_header, "").strip()
    peer = request.client.host if request.client else None
    from_proxy = is_trusted_proxy(peer, settings.trusted_proxies)
    if forwarded:
        if not from_proxy:
            log.warning("certificate.untrusted_forwarder")
            raise Unauthenticated(
                f"the {settings.client_cert_header} header is accepted only from a trusted proxy "
                "(CARNET_TRUSTED_PROXIES); present the certificate in the TLS handshake instead"
            )
        return parse_pem_chain(urllib.parse.unquote(forwarded), source="forwarded by the proxy")
    if from_proxy:
        return None
    extensions = request.scope.get("extensions") or {}
    tls = extensions.get("tls") if isinstance(extensions, dict) else None
    pems = tls.get("client_cert_chain") if isinstance(tls, dict) else None
    if pems:
        return parse_pem_chain("\n".join(str(p) for p in pems), source="presented in the TLS handshake")
    return None


# ------------------------------------------------------------------------------ trusted proxies
def parse_trusted_proxies(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The networks of ``CARNET_TRUSTED_PROXIES`` (addresses or CIDRs); ``ValueError`` on a bad entry."""
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"CARNET_TRUSTED_PROXIES: {entry!r} is not an IP address or network") from exc
    return tuple(networks)


@lru_cache(maxsize=16)
def _trusted_networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    try:
        return parse_trusted_proxies(entries)
    except ValueError:
        # Fail closed: a misconfigured list trusts nobody (`carnet serve` refuses to start with one).
        log.error("certificate.invalid_trusted_proxies")
        return ()


def is_trusted_proxy(host: str | None, trusted: Sequence[str]) -> bool:
    """Whether the TCP peer ``host`` is one of the trusted proxies."""
    if not host or not trusted:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # not an IP peer (a Unix socket, a test client's placeholder name)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in _trusted_networks(tuple(trusted)))


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The client's address: the TCP peer, or what trusted proxies forwarded (``X-Forwarded-For``)."""
    peer = peer or "unknown"
    if forwarded_for and is_trusted_proxy(peer, trusted):
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        # The right-most address the trusted proxies did not add themselves.
        while hops and is_trusted_proxy(hops[-1], trusted):
            hops.pop()
        if hops:
            return hops[-1][:64]
    return peer[:64]


# ------------------------------------------------------------------------------ parsing
def parse_pem_chain(text: str, *, source: str) -> list[x509.Certificate]:
    """PEM certificates (leaf first); ``Unauthenticated`` when the text is not that."""
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise Unauthenticated(f"the client certificate {source} is not a PEM certificate")
    try:
        chain = x509.load_pem_x509_certificates(text.encode("utf-8", "replace"))
    except ValueError as exc:
        raise Unauthenticated(f"the client certificate {source} cannot be read") from exc
    if not chain or len(chain) > MAX_CHAIN_LENGTH:
        raise Unauthenticated(f"the client certificate chain {source} has {len(chain)} certificates")
    return chain


@lru_cache(maxsize=4)
def _load_store(path: str, stamp: tuple[int, int]) -> Store:
    try:
        return Store(x509.load_pem_x509_certificates(Path(path).read_bytes()))
    except (OSError, ValueError) as exc:
        raise ValueError(f"CARNET_TLS_CLIENT_CA {path} is not a readable PEM file of CA certificates") from exc


def trust_store(path: Path) -> Store:
    """The trust anchors in ``path`` (PEM, one or more CA certificates), reloaded when the file changes."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ValueError(f"CARNET_TLS_CLIENT_CA {path} cannot be read: {exc.strerror}") from exc
    return _load_store(str(path), (stat.st_mtime_ns, stat.st_size))


# ------------------------------------------------------------------------------ verification
def _reason(exc: Exception) -> str:
    return str(exc).split(" (encountered processing", 1)[0].removeprefix("validation failed: ")


def verify_chain(
    chain: Sequence[x509.Certificate], settings: Settings, *, now: dt.datetime | None = None
) -> CertificateIdentity:
    """Verify ``chain`` (leaf first) against ``settings.tls_client_ca`` and read who it names."""
    if settings.tls_client_ca is None:
        raise Unauthenticated("client certificates are not accepted: no trusted authority is configured")
    try:
        store = trust_store(settings.tls_client_ca)
    except ValueError as exc:
        log.error("certificate.trust_store_unreadable")
        raise Unauthenticated("client certificates cannot be verified right now") from exc
    moment = now or dt.datetime.now(dt.UTC)
    leaf = chain[0]
    if moment < leaf.not_valid_before_utc:
        raise Unauthenticated(
            f"the client certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    if moment > leaf.not_valid_after_utc:
        raise Unauthenticated(f"the client certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    except ValueError as exc:  # extensions are parsed lazily: a malformed one shows up here
        raise Unauthenticated("the client certificate has malformed extensions") from exc
    if usages is None or ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise Unauthenticated("the certificate is not meant for client authentication (no clientAuth key usage)")
    verifier = (
        PolicyBuilder()
        .store(store)
        .time(moment)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, list(chain[1:]))
    except (VerificationError, ValueError) as exc:
        log.info("certificate.rejected")
        raise Unauthenticated(
            f"the client certificate is not issued by an authority Carnet trusts ({_reason(exc)})"
        ) from exc
    return identity_of(leaf)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def identity_of(certificate: x509.Certificate) -> CertificateIdentity:
    """The national identifier a (verified) certificate names, and whether it is an organisation's."""
    uids = certificate.subject.get_attributes_for_oid(NameOID.USER_ID)
    if len(uids) != 1 or not _text(uids[0].value).strip():
        raise Unauthenticated("the client certificate names no national identifier (one subject UID expected)")
    units = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    organization = any(_text(u.value).strip().casefold() == ORGANIZATION_UNIT for u in units)
    return CertificateIdentity("organization" if organization else "professional", _text(uids[0].value).strip())


def claims_for(
    identity: CertificateIdentity, acting: str | None, settings: Settings, *, client: str | None = None
) -> dict[str, Any]:
    """Identity claims for a verified certificate.

    ``acting`` and ``client`` are the X-Acting-Professional and X-Carnet-Client headers, which only
    organisation certificates use.
    """
    luhn = settings.is_production
    if identity.kind == "professional":
        try:
            idnat = parse_idnat_ps(identity.identifier, check_luhn=luhn).value
        except IdentifierError as exc:
            raise Unauthenticated(f"the client certificate's IdNat_PS is not valid: {exc}") from exc
        return {"sub": f"pro:{idnat}", "auth": "certificate"}
    try:
        struct = parse_idnat_struct(identity.identifier, check_luhn=luhn).value
    except IdentifierError as exc:
        raise Unauthenticated(f"the organisation certificate's IdNat_Struct is not valid: {exc}") from exc
    if not acting or not acting.strip():
        raise Unauthenticated(
            "an organisation certificate must name the professional its software acts for: "
            "send X-Acting-Professional: <IdNat_PS>"
        )
    try:
        professional = parse_idnat_ps(acting.strip().removeprefix("pro:"), check_luhn=luhn).value
    except IdentifierError as exc:
        raise Unauthenticated(f"X-Acting-Professional is not a valid IdNat_PS: {exc}") from exc
    subject = f"{ORG_CERT_SCHEME}:{struct}"
    if client and client.strip():
        if len(client.strip()) > 64:
            raise Unauthenticated("X-Carnet-Client is not a client id")
        subject += f":{client.strip()}"
    return {"sub": subject, "act": {"sub": f"pro:{professional}"}, "auth": "certificate"}


# ------------------------------------------------------------------------------ organisation → software
def software_for_organization(work: Work, ident: str, acting_idnat: str) -> tuple[Client, Professional]:
    """The software client registered for the organisation, and the professional it acts for there.

    ``ident`` is what follows ``org-cert:``: the IdNat_Struct, and the client id when the request named
    one (``<IdNat_Struct>:<client id>``). ``Unauthenticated`` when the organisation is unknown or
    inactive, when the named client is not one of its active software clients, when no client is
    named and it has none or several, or when the professional has no active role in it.
    """
    idnat_struct, _, client_id = ident.partition(":")
    organization = work.session.scalar(
        sa.select(Organization).where(Organization.idnat_struct == idnat_struct, Organization.active.is_(True))
    )
    if organization is None:
        raise Unauthenticated("the organisation of this certificate is not in the directory")
    query = sa.select(Client).where(
        Client.organization_id == organization.id,
        Client.kind == ClientKind.SOFTWARE.value,
        Client.active.is_(True),
    )
    if client_id:
        query = query.where(Client.id == client_id)
    clients = work.session.scalars(query.order_by(Client.id).limit(2)).all()
    if client_id and not clients:
        raise Unauthenticated(
            "the client named in X-Carnet-Client is not an active software client of the organisation "
            "of this certificate"
        )
    if not clients:
        raise Unauthenticated("no active software client is registered for the organisation of this certificate")
    if len(clients) > 1:
        raise Unauthenticated(
            "several software clients are registered for the organisation of this certificate: "
            "name yours in the X-Carnet-Client header"
        )
    role_id = work.session.scalar(
        sa.select(PractitionerRole.id)
        .join(Practitioner, Practitioner.id == PractitionerRole.practitioner_id)
        .where(
            Practitioner.idnat_ps == acting_idnat,
            Practitioner.active.is_(True),
            PractitionerRole.organization_id == organization.id,
            PractitionerRole.active.is_(True),
        )
        .order_by(PractitionerRole.id)
        .limit(1)
    )
    professional = directory.professional(work, acting_idnat, role_id) if role_id is not None else None
    if professional is None:
        raise Unauthenticated("the acting professional has no active role in the organisation of this certificate")
    return clients[0], professional
