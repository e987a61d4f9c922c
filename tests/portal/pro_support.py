"""Helpers for the professional portal's route tests: a Carnet that trusts the test PKI and a proxy, browsers
that sign in with a card certificate forwarded by that proxy (as nginx does), form posts with the CSRF token,
deposits, and looks at the record through the FHIR API (what the patient, a representative or another
professional sees).

The portal app runs on the session database of the backend (SQLite or PostgreSQL, demo directory loaded),
with its own settings: ``tls_client_ca`` = the test CA, ``trusted_proxies`` = ``10.0.0.0/8``.
"""

from __future__ import annotations

import html
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carnet.accounts import service as accounts
from carnet.accounts.models import AccountKind
from carnet.app import create_app
from carnet.auth import pki, tokens
from carnet.config import BlobBackend
from carnet.demo.personas import BY_KEY
from carnet.deps import PRO_TOKEN_COOKIE
from carnet.documents.models import DocumentEntry
from carnet.portal import csrf
from carnet.runtime import Runtime
from tests import factories
from tests.conftest import PARTICIPATION, Api, make_settings

PROXY = ("10.0.0.5", 44321)  # a trusted proxy (10.0.0.0/8)
STRANGER = ("192.0.2.7", 44321)  # anyone else
HEADER = "x-ssl-client-cert"
CARD_LOGIN = "/pro/connexion/carte"


@dataclass
class Cards:
    """The test PKI: the CA Carnet trusts, and card certificates issued on demand."""

    directory: Path  # the CA's directory (its key signs the cards)
    ca: Path
    issued: dict[str, pki.Issued] = field(default_factory=dict)

    def card(self, persona: str) -> pki.Issued:
        """The card certificate of a demo professional (issued once)."""
        if persona not in self.issued:
            person = BY_KEY[persona]
            assert person.idnat is not None
            self.issued[persona] = pki.issue_professional(self.directory, idnat=person.idnat, name=person.display)
        return self.issued[persona]


@dataclass
class Pro:
    """The portal app (card certificates trusted) with an ``Api`` on it for FHIR calls and set-ups."""

    api: Api
    cards: Cards

    @property
    def runtime(self) -> Runtime:
        return self.api.runtime

    def browser(self, peer: tuple[str, int] = PROXY) -> TestClient:
        """A browser of its own (cookie jar), reaching Carnet through ``peer``."""
        return TestClient(self.api.client.app, base_url="http://testserver", client=peer)

    def login(self, persona: str, *, next_page: str = "") -> TestClient:
        """A browser signed in with ``persona``'s card (the trusted proxy forwards the certificate)."""
        client = self.browser()
        response = card_login(client, pem(self.cards.card(persona)), next_page=next_page)
        assert response.status_code == 303, response.text
        assert client.cookies.get(PRO_TOKEN_COOKIE)
        return client


def pem(issued: pki.Issued) -> str:
    return issued.certificate.read_text(encoding="ascii")


def forwarded(certificate_pem: str) -> dict[str, str]:
    """The header a TLS-terminating proxy adds (nginx's ``$ssl_client_escaped_cert``)."""
    return {HEADER: urllib.parse.quote(certificate_pem, safe="")}


def card_login(client: TestClient, certificate_pem: str | None, *, next_page: str = "") -> httpx.Response:
    headers = forwarded(certificate_pem) if certificate_pem is not None else {}
    data = {"csrf": token(client), "next": next_page}
    return client.post(CARD_LOGIN, data=data, headers=headers, follow_redirects=False)


@pytest.fixture(scope="session", name="cards")
def cards_fixture(tmp_path_factory: pytest.TempPathFactory) -> Cards:
    directory = tmp_path_factory.mktemp("pro-pki")
    authority = pki.init_ca(directory)
    return Cards(directory, authority.certificate)


@contextmanager
def portal(runtime: Runtime, cards: Cards, **overrides: Any) -> Iterator[Pro]:
    """A Carnet on the session database of ``runtime`` that trusts the test CA and proxy (plus ``overrides``)."""
    settings = make_settings(
        runtime.settings.database_url,
        blob_backend=BlobBackend.DATABASE,
        tls_client_ca=cards.ca,
        trusted_proxies=["10.0.0.0/8"],
        **overrides,
    )
    rt = Runtime(settings)
    try:
        with TestClient(create_app(settings, rt), base_url="http://testserver") as client:
            yield Pro(Api(client, rt), cards)
    finally:
        rt.dispose()


@pytest.fixture(scope="session", name="pro_app")
def pro_app_fixture(runtime: Runtime, cards: Cards) -> Iterator[Pro]:
    with portal(runtime, cards) as app:
        yield app


@pytest.fixture(name="pro")
def pro_fixture(pro_app: Pro) -> Pro:
    pro_app.api.client.cookies.clear()
    return pro_app


# ------------------------------------------------------------------------------------ forms and pages
def token(client: TestClient) -> str:
    """This browser's CSRF token (a page hands one out the first time)."""
    value = client.cookies.get(csrf.COOKIE)
    if not value:
        client.get("/pro/connexion")
        value = client.cookies.get(csrf.COOKIE)
    assert value
    return str(value)


def post(client: TestClient, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
    """A form POST with the browser's CSRF token."""
    return client.post(url, data={"csrf": token(client), **(data or {})}, follow_redirects=False, **kwargs)


def text(response: httpx.Response) -> str:
    """The page's text with HTML entities decoded."""
    return html.unescape(response.text)


def deposit(
    client: TestClient,
    record_id: str,
    data: bytes,
    *,
    filename: str = "document.pdf",
    media: str = "application/pdf",
    fields: dict[str, Any] | None = None,
    with_csrf: bool = True,
) -> httpx.Response:
    """POST the deposit form (multipart) with a file."""
    form: dict[str, Any] = {**({"csrf": token(client)} if with_csrf else {}), **(fields or {})}
    return client.post(
        f"/pro/dossiers/{record_id}/depot",
        data=form,
        files={"file": (filename, data, media)},
        follow_redirects=False,
    )


PDF_FIELDS = {
    "title": "Compte rendu de consultation",
    "type": "11488-4",
    "facility": "SA07",
    "setting": "AMBULATOIRE",
    "service_date": "2026-10-01",
}


def deposit_pdf(client: TestClient, record_id: str, **fields: Any) -> str:
    """Deposit a PDF through the portal; the new document's id (from the redirect)."""
    response = deposit(client, record_id, factories.pdf_bytes(), fields={**PDF_FIELDS, **fields})
    assert response.status_code == 303, text(response)
    return doc_id_of(response)


def doc_id_of(response: httpx.Response) -> str:
    location = response.headers["location"]
    assert location.startswith("/pro/documents/"), location
    return location.removeprefix("/pro/documents/").split("?", 1)[0]


def documents_of(runtime: Runtime, record_id: str) -> int:
    """How many documents the record holds, whatever their status (to show nothing was written)."""
    with runtime.read() as work:
        count = work.session.scalar(
            sa.select(sa.func.count()).select_from(DocumentEntry).where(DocumentEntry.record_id == uuid.UUID(record_id))
        )
    return int(count or 0)


# ------------------------------------------------------------------------------------ through the FHIR API
def fhir_ids(api: Api, bearer: str, record_id: str) -> set[str]:
    """The ids of the current documents ``bearer`` finds in the record through the FHIR API."""
    response = api.as_token(bearer, "GET", "/fhir/DocumentReference", params={"patient": record_id})
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json().get("entry", []) if e.get("search", {}).get("mode") == "match"}


def representative_token(api: Api, record_id: str) -> str:
    """A legal representative's token for the (minor's) record ``record_id``."""
    with api.runtime.work() as work:
        account = accounts.create_account(work, kind=AccountKind.REPRESENTATIVE, label=f"rep-{uuid.uuid4().hex[:12]}")
        accounts.add_representation(work, account_id=account.id, record_id=uuid.UUID(record_id), relationship="MTH")
    return tokens.issue_dev(api.settings, f"account:{account.id}")


def idnat(persona: str) -> str:
    value = BY_KEY[persona].idnat
    assert value is not None
    return value


def patient_decides(api: Api, record_id: str, kind: str, persona: str | None, *, provision: str = "permit") -> None:
    """The patient authorizes (``authorization``) or blocks (``block``, deny) ``persona``, or sets a preference
    (``persona`` None, e.g. ``emergency-break-glass`` deny), through the FHIR API."""
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "https://carnet.health/fhir/CodeSystem/consent-kind", "code": kind}]}],
        "patient": {"reference": f"Patient/{record_id}"},
        "provision": {"type": provision},
    }
    if persona is not None:
        resource["provision"]["actor"] = [
            {
                "role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
                "reference": {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": idnat(persona)}},
            }
        ]
    response = api.as_token(api.patient_token(record_id), "POST", "/fhir/Consent", resource)
    assert response.status_code == 201, response.text


def search_fields(ins: str, system: str, **overrides: str) -> dict[str, str]:
    """The patient search form for a patient opened with ``Api.new_patient`` defaults (TESTEUR Camille)."""
    return {
        "ins": ins,
        "system": system.removeprefix("urn:oid:"),
        "family": "TESTEUR",
        "given": "Camille",
        "birth_date": "1980-06-15",
        **overrides,
    }
