"""Helpers for the patient portal's route tests: people with records and accounts, browsers with their own
cookie jar and session, CSRF tokens, documents deposited by professionals, and a scan of every address
a page generates (no medical data in URLs)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import pytest
from argon2 import PasswordHasher, profiles
from starlette.testclient import TestClient

from carnet.accounts import service as accounts
from carnet.accounts.models import AccountKind
from carnet.auth import patients, sessions
from carnet.auth.actor import Actor
from carnet.auth.authenticate import actor_for
from carnet.portal import csrf
from carnet.runtime import Work
from tests import factories
from tests.auth.patient_support import random_address
from tests.conftest import Api

PASSWORD = "Sturdy-Portal-Phrase-9"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its cheapest: these tests check pages, not the cost of hashing."""
    monkeypatch.setattr(patients, "hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@dataclass
class Person:
    api: Api
    account_id: uuid.UUID
    record_id: str | None
    ins: str | None
    system: str | None
    secret: str
    birth_date: str = "1984-11-23"

    @property
    def base(self) -> str:
        return f"/patient/dossiers/{self.record_id}"


def new_patient(api: Api, *, birth_date: str = "1984-11-23", given: str = "Camille") -> Person:
    """A record opened by dr_medioni (care team: the tests' usual professionals) and its confirmed account."""
    patient_id, ins, system = api.new_patient(birth_date=birth_date, given=given)
    secret = patients.new_totp_secret()
    with api.runtime.work() as work:
        account = accounts.create_account(
            work, kind=AccountKind.PATIENT, label=f"p-{uuid.uuid4().hex[:12]}", record_id=uuid.UUID(patient_id)
        )
        patients.set_credentials(work, account.id, PASSWORD, secret)
    return Person(api, account.id, patient_id, ins, system, secret, birth_date)


def new_representative(api: Api, *children: Person) -> Person:
    """A legal representative's account (no record of their own) for ``children``."""
    secret = patients.new_totp_secret()
    with api.runtime.work() as work:
        account = accounts.create_account(work, kind=AccountKind.REPRESENTATIVE, label=f"rep-{uuid.uuid4().hex[:12]}")
        for child in children:
            assert child.record_id is not None
            accounts.add_representation(
                work, account_id=account.id, record_id=uuid.UUID(child.record_id), relationship="MTH"
            )
        patients.set_credentials(work, account.id, PASSWORD, secret)
    return Person(api, account.id, None, None, None, secret)


def browser(api: Api) -> TestClient:
    """A browser of its own (cookie jar, address), never the shared ``api.client``."""
    return TestClient(api.client.app, base_url="http://testserver", client=(random_address(), 50000))


def token(client: TestClient) -> str:
    """This browser's CSRF token (a page hands one out the first time)."""
    value = client.cookies.get(csrf.COOKIE)
    if not value:
        client.get("/")
        value = client.cookies.get(csrf.COOKIE)
    assert value
    return str(value)


def signed_in(person: Person) -> TestClient:
    """A browser with a live session of ``person`` (opened by the sessions service, as sign-in does)."""
    client = browser(person.api)
    with person.api.runtime.work() as work:
        session_token = sessions.create_session(work, person.account_id, user_agent="pytest")
    client.cookies.set(sessions.COOKIE, session_token)
    token(client)
    return client


def post(client: TestClient, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
    """A form POST with the browser's CSRF token."""
    return client.post(url, data={"csrf": token(client), **(data or {})}, follow_redirects=False, **kwargs)


def deposit_pdf(
    api: Api,
    person: Person,
    *,
    persona: str = "dr_lambert",
    type_code: str = "11488-4",
    title: str = "Compte rendu",
    flags: tuple[str, ...] = (),
) -> str:
    assert person.ins
    assert person.system
    doc = factories.docref(
        person.ins,
        person.system,
        type_code=type_code,
        class_code=None,
        title=title,
        flags=flags,
        author_idnat=_idnat(persona),
    )
    response = api.publish(persona, doc)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def deposit_cda(
    api: Api, person: Person, *, persona: str = "dr_medioni", marker: str = "", narrative: str | None = None
) -> str:
    """A CDA deposited by ``persona``; ``narrative`` replaces the section's ``<text>`` (XML of its own)."""
    assert person.ins
    assert person.system
    data = factories.cda(
        person.ins, person.system.removeprefix("urn:oid:"), marker=marker, author_idnat=_idnat(persona)
    )
    if narrative is not None:
        original = f"<text>Observation clinique {marker}</text>".encode()
        assert original in data
        data = data.replace(original, narrative.encode())
    resource = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{person.record_id}"},
        "content": [{"attachment": {"contentType": "text/xml", "language": "fr-FR", "data": _b64(data)}}],
    }
    response = api.publish(persona, resource)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _idnat(persona: str) -> str:
    from carnet.demo.personas import BY_KEY

    idnat = BY_KEY[persona].idnat
    assert idnat
    return idnat


_URL = re.compile(r'(?:href|src|action)="([^"]*)"')


def addresses(html: str) -> Iterator[str]:
    """Every address a page links to, loads or posts to."""
    yield from _URL.findall(html)


def assert_no_medical_data_in_addresses(html: str, *forbidden: str) -> None:
    """No address of the page carries any of ``forbidden`` (INS, titles, type codes, category codes …)."""
    for url in addresses(html):
        for value in forbidden:
            if value:
                assert value.lower() not in url.lower(), f"{value!r} appears in the address {url!r}"


def body(response: httpx.Response) -> str:
    """The page's text with HTML entities decoded (apostrophes are escaped in attributes and text)."""
    import html

    return html.unescape(response.text)


def upload(
    client: TestClient,
    person: Person,
    data: bytes,
    *,
    title: str = "Mon certificat",
    category: str = "CERT_MED",
    date: str = "2026-03-28",
    masked: bool = False,
    filename: str = "fichier.pdf",
    media: str = "application/pdf",
    with_csrf: bool = True,
) -> httpx.Response:
    """The upload form sent as a browser does (multipart, the file and what the person said about it)."""
    fields: dict[str, str] = {"titre": title, "categorie": category, "date": date}
    if masked:
        fields["masquer"] = "1"
    if with_csrf:
        fields["csrf"] = token(client)
    return client.post(
        f"{person.base}/documents/ajout",
        data=fields,
        files={"fichier": (filename, data, media)},
        follow_redirects=False,
    )


def fhir_ids(api: Api, persona: str, person: Person, **params: str) -> list[str]:
    """The ids of the record's documents a professional finds through the FHIR API (ITI-67)."""
    from tests.conftest import match_ids

    return match_ids(api.search(persona, patient=str(person.record_id), **params))


def patient_documents(person: Person) -> list[dict[str, Any]]:
    """The record's documents as its holder finds them through the FHIR API (what the services hold)."""
    assert person.record_id
    api = person.api
    found = api.as_token(
        api.patient_token(person.record_id), "GET", f"/fhir/DocumentReference?patient={person.record_id}"
    )
    assert found.status_code == 200, found.text
    return [e["resource"] for e in found.json().get("entry", []) if e.get("search", {}).get("mode") == "match"]


def actor_of(person: Person, work: Work) -> Actor:
    """The actor behind ``person``'s account, as the API resolves it (to ask the services directly)."""
    return actor_for(work, {"sub": f"account:{person.account_id}"})


def represent(parent: Person, *children: Person) -> None:
    """Make ``parent`` (a patient with a record of their own) the legal representative of ``children``."""
    with parent.api.runtime.work() as work:
        for child in children:
            assert child.record_id is not None
            accounts.add_representation(
                work, account_id=parent.account_id, record_id=uuid.UUID(child.record_id), relationship="FTH"
            )
