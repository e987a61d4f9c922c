"""uvicorn HTTP protocols that expose the TLS client certificate to the application.

uvicorn terminates TLS but does not tell the application which certificate the client presented.
These subclasses of its httptools and h11 protocols add the ASGI TLS extension to every request's
scope::

    scope["extensions"]["tls"] = {"client_cert_chain": [PEM, …], "client_cert_name": …, …}

(``client_cert_chain`` is the chain the client sent, leaf first; empty when it sent none). The TLS
handshake is over before ``connection_made`` runs, so the chain is read once per connection.
``carnet serve --tls-cert … --tls-client-ca …`` passes :class:`TLSHttpToolsProtocol` to uvicorn;
``carnet.auth.certificates`` verifies the chain itself (the TLS layer's check is not relied on).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from cryptography import x509
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# ASGI TLS extension: tls_version is the TLS protocol number.
_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def _der_chain(ssl_object: ssl.SSLObject) -> list[bytes]:
    """The client's certificate chain as it was sent (DER, leaf first), or ``[]`` without a certificate."""
    leaf = ssl_object.getpeercert(binary_form=True)
    if not leaf:
        return []
    chain: list[bytes] = []
    # Python 3.13 has SSLObject.get_unverified_chain(); 3.10-3.12 only the private _sslobj's.
    source = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None
    )
    if source is not None:
        try:
            for cert in source() or []:
                # 3.13: DER bytes; before: _ssl.Certificate objects, whose public_bytes() is PEM by default.
                chain.append(cert if isinstance(cert, bytes) else ssl.PEM_cert_to_DER_cert(cert.public_bytes()))
        except (ssl.SSLError, ValueError, AttributeError):
            chain = []
    if not chain or chain[0] != leaf:
        chain = [leaf, *[c for c in chain if c != leaf]]
    return chain


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension for a connection, or None when it is not TLS."""
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    pems: list[str] = []
    name: str | None = None
    for index, der in enumerate(_der_chain(ssl_object)):
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            break  # the application treats an unreadable chain as no chain; OpenSSL accepted it, though
        if index == 0:
            name = cert.subject.rfc4514_string()
        pems.append(ssl.DER_cert_to_PEM_cert(der))
    version = ssl_object.version()
    return {
        "server_cert": None,
        "client_cert_chain": pems,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(version or ""),
        "cipher_suite": None,
    }


def with_tls_extension(app: ASGI3Application, transport: asyncio.BaseTransport) -> ASGI3Application:
    """``app`` wrapped to add this connection's TLS extension to each scope (unchanged for plain HTTP)."""
    tls = tls_extension(transport)
    if tls is None:
        return app

    async def connection_app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "http" or scope["type"] == "websocket":
            extensions = dict(scope.get("extensions") or {})
            copy: dict[object, object] = {}
            copy.update(tls)
            extensions["tls"] = copy
            scope["extensions"] = extensions
        await app(scope, receive, send)

    return connection_app


class TLSHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (its default), with the ASGI TLS extension."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = with_tls_extension(self.app, transport)


class TLSH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with the ASGI TLS extension."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = with_tls_extension(self.app, transport)
