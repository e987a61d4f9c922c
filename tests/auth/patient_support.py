"""Helpers for the patient sign-in tests: apps with their own settings, browsers with their own address
and cookie jar, people with accounts, and an authenticator that never replays a TOTP code."""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import pyotp
import sqlalchemy as sa
from fastapi import FastAPI
from starlette.testclient import TestClient

from carnet.accounts import service as accounts
from carnet.accounts.models import AccountKind, Credential
from carnet.app import create_app
from carnet.auth import patients, sessions
from carnet.runtime import Runtime
from tests import factories
from tests.conftest import Api

CSRF = {sessions.CSRF_HEADER: sessions.CSRF_VALUE}
PASSWORD = "Correct-Horse-Battery-7"
OTHER_PASSWORD = "Another-Sturdy-Phrase-42"
FHIR = {"Accept": "application/fhir+json"}


def variant(runtime: Runtime, **overrides: Any) -> Runtime:
    """A runtime on the same database with some settings changed (lockout, rate limit, base URL)."""
    return Runtime(runtime.settings.model_copy(update=overrides), engine=runtime.engine)


def make_app(runtime: Runtime) -> FastAPI:
    return create_app(runtime.settings, runtime)


def random_address() -> str:
    """A source address no other test uses (rate limiting counts failures per address)."""
    return f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def browser(app: FastAPI, *, https: bool = False, address: str | None = None) -> TestClient:
    """A client with its own cookie jar and source address (never the shared ``api.client``)."""
    return TestClient(
        app,
        base_url="https://testserver" if https else "http://testserver",
        client=(address or random_address(), 50000),
    )


@dataclass
class Authenticator:
    """An authenticator app: the code of a time step the server accepts and that was not used yet.
    When those are spent (several sign-ins within a minute), the server's memory of the last step
    used is wound back, as if time had passed."""

    secret: str
    runtime: Runtime
    account_id: uuid.UUID | None = None
    last_step: int = 0
    totp: pyotp.TOTP = field(init=False)

    def __post_init__(self) -> None:
        self.totp = pyotp.TOTP(self.secret)

    def current_step(self) -> int:
        return self.totp.timecode(time.time())

    def at_step(self, step: int) -> str:
        return self.totp.generate_otp(step)

    def code(self) -> str:
        # The current step or the next: both stay inside the server's window (current ± 1) even if
        # its clock crosses a step boundary while the request travels.
        current = self.current_step()
        step = max(current, self.last_step + 1)
        if step > current + 1:
            self.rewind()
            step = current
        self.last_step = step
        return self.at_step(step)

    def rewind(self) -> None:
        assert self.account_id is not None
        with self.runtime.work() as work:
            credential = work.session.get(Credential, self.account_id)
            assert credential is not None
            credential.totp_last_step = max(1, self.current_step() - 5)

    def wrong(self) -> str:
        """A well-formed code that is none of the accepted ones."""
        current = self.current_step()
        accepted = {self.at_step(s) for s in range(current - 3, current + 4)}
        for candidate in (f"{n:06d}" for n in range(1000)):
            if candidate not in accepted:
                return candidate
        raise AssertionError("unreachable")


@dataclass
class Person:
    """Someone with a record (patient) or a representative's account, and what they know."""

    runtime: Runtime
    account_id: uuid.UUID | None
    birth_date: str
    ins: str | None = None
    system: str | None = None
    record_id: str | None = None
    login: str | None = None
    password: str = PASSWORD
    authenticator: Authenticator | None = None

    @property
    def ident(self) -> dict[str, str]:
        return {"ins": self.ins} if self.ins else {"login": str(self.login)}

    def activation_code(self) -> str:
        with self.runtime.work() as work:
            if self.record_id is not None:
                issued = patients.issue_activation_code(work, record_id=uuid.UUID(self.record_id))
            else:
                issued = patients.issue_activation_code(work, account_id=self.account_id)
        return patients.format_code(issued.code)

    def enrol(self, secret: str) -> Authenticator:
        self.authenticator = Authenticator(secret, self.runtime, self.account_id)
        return self.authenticator

    def totp(self) -> str:
        assert self.authenticator is not None
        return self.authenticator.code()

    def credential(self) -> Credential:
        assert self.account_id is not None
        with self.runtime.work() as work:
            credential = work.session.get(Credential, self.account_id)
            assert credential is not None
            return credential


def new_patient(api: Api, *, account: bool = True, birth_date: str = "1984-11-23") -> Person:
    """A new record (opened by dr_medioni) and, unless ``account`` is False, its patient account."""
    ins, system = factories.random_ins()
    response = api.post("/fhir/Patient", "dr_medioni", factories.patient_resource(ins, system, birth_date=birth_date))
    assert response.status_code == 201, response.text
    record_id = response.json()["id"]
    account_id = None
    if account:
        with api.runtime.work() as work:
            account_id = accounts.create_account(
                work, kind=AccountKind.PATIENT, label=f"t-{uuid.uuid4().hex[:12]}", record_id=uuid.UUID(record_id)
            ).id
    return Person(api.runtime, account_id, birth_date, ins=ins, system=system, record_id=record_id)


def new_representative(api: Api, child: Person) -> Person:
    """A legal representative's account (no record of their own) for ``child``."""
    label = f"rep-{uuid.uuid4().hex[:12]}"
    assert child.record_id is not None
    with api.runtime.work() as work:
        account = accounts.create_account(work, kind=AccountKind.REPRESENTATIVE, label=label)
        accounts.add_representation(
            work, account_id=account.id, record_id=uuid.UUID(child.record_id), relationship="FTH"
        )
    return Person(api.runtime, account.id, child.birth_date, login=str(account.id))


def activated(api: Api, person: Person, client: TestClient) -> Person:
    """Activate and confirm through the HTTP API; the person's authenticator is enrolled."""
    response = client.post(
        "/auth/patient/activate",
        json={
            "code": person.activation_code(),
            **person.ident,
            "birth_date": person.birth_date,
            "password": person.password,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    person.account_id = uuid.UUID(body["account"])
    authenticator = person.enrol(body["totp_secret"])
    confirm = client.post("/auth/patient/activate/confirm", json={**person.ident, "totp": authenticator.code()})
    assert confirm.status_code == 200, confirm.text
    return person


def sign_in(client: TestClient, person: Person, **changes: str) -> httpx.Response:
    body = {**person.ident, "password": person.password, "totp": person.totp() if "totp" not in changes else ""}
    body.update(changes)
    return client.post("/auth/patient/login", json=body)


def set_last_seen(runtime: Runtime, token: str, when: dt.datetime) -> None:
    from carnet.accounts.models import LoginSession

    with runtime.work() as work:
        work.session.execute(
            sa.update(LoginSession)
            .where(LoginSession.token_hash == sessions.token_hash(token))
            .values(last_seen_at=when)
        )


def diagnostics(response: httpx.Response) -> list[str]:
    return [issue["diagnostics"] for issue in response.json()["issue"]]
