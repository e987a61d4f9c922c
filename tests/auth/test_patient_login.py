"""Patient and legal-representative sign-in: activation, password + TOTP, sessions, lockout, rate
limiting, password reset, CSRF, and the records a signed-in representative may search."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie

import pyotp
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher, profiles
from fastapi import FastAPI
from starlette.testclient import TestClient
from typer.testing import CliRunner

from carnet.accounts.models import Credential, LoginAttempt, LoginSession, OneTimeCode
from carnet.auth import patients, sessions
from carnet.cli import app as cli_app
from carnet.demo.personas import BY_KEY, persona_uuid
from carnet.errors import Invalid
from carnet.runtime import Runtime
from tests import factories
from tests.auth.patient_support import (
    CSRF,
    FHIR,
    OTHER_PASSWORD,
    PASSWORD,
    Person,
    activated,
    browser,
    diagnostics,
    make_app,
    new_patient,
    new_representative,
    random_address,
    set_last_seen,
    sign_in,
    variant,
)
from tests.conftest import Api

# Fixed demo-like credentials for the persona test (the demo loader picks its own).
MARC_PASSWORD = "Marc-Durand-Demo-2024"
MARC_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its cheapest: these tests check the logic, not the cost (see test_weak_hashes_are_upgraded)."""
    monkeypatch.setattr(patients, "hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture(scope="session")
def patient_app(runtime: Runtime) -> FastAPI:
    return make_app(runtime)


@pytest.fixture
def client(patient_app: FastAPI) -> Iterator[TestClient]:
    with browser(patient_app) as c:
        yield c


def _fhir_patient(client: TestClient, person: Person, **headers: str) -> dict[str, object]:
    response = client.get(
        "/fhir/Patient", params={"identifier": f"{person.system}|{person.ins}"}, headers={**FHIR, **headers}
    )
    assert response.status_code == 200, response.text
    bundle: dict[str, object] = response.json()
    return bundle


# ---------------------------------------------------------------------------------------- the whole path
def test_activation_confirmation_login_and_own_record(api: Api, client: TestClient) -> None:
    person = new_patient(api)
    code = person.activation_code()
    response = client.post(
        "/auth/patient/activate",
        json={"code": code, "ins": person.ins, "birth_date": person.birth_date, "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["account"] == str(person.account_id)
    assert body["otpauth_uri"].startswith("otpauth://totp/Carnet:")
    assert "issuer=Carnet" in body["otpauth_uri"]
    assert pyotp.parse_uri(body["otpauth_uri"]).secret == body["totp_secret"]
    assert person.ins not in body["otpauth_uri"]
    authenticator = person.enrol(body["totp_secret"])

    # Not confirmed yet: the right password and code are refused, with a hint only they can see.
    early = sign_in(client, person)
    assert early.status_code == 401
    assert "not confirmed" in diagnostics(early)[0]
    assert sessions.COOKIE not in early.cookies

    confirm = client.post("/auth/patient/activate/confirm", json={"ins": person.ins, "totp": authenticator.code()})
    assert confirm.status_code == 200, confirm.text

    login = sign_in(client, person)
    assert login.status_code == 200, login.text
    tokens = login.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["account"] == str(person.account_id)
    assert client.cookies.get(sessions.COOKIE)

    # The cookie alone (no Authorization header) reads the patient's own record …
    bundle = _fhir_patient(client, person)
    assert [e["resource"]["id"] for e in bundle["entry"]] == [person.record_id]  # type: ignore[attr-defined]
    # … and so does the access token alone, from a client without the cookie.
    with browser(client.app) as other:  # type: ignore[arg-type]
        bundle = _fhir_patient(other, person, Authorization=f"Bearer {tokens['access_token']}")
        assert [e["resource"]["id"] for e in bundle["entry"]] == [person.record_id]  # type: ignore[attr-defined]

    listed = client.get("/auth/patient/sessions")
    assert listed.status_code == 200, listed.text
    (only,) = listed.json()["sessions"]
    assert only["current"] is True
    assert only["user_agent"] == "testclient"


def test_activation_creates_the_patient_account_when_there_is_none(api: Api, client: TestClient) -> None:
    person = activated(api, new_patient(api, account=False), client)
    assert person.account_id is not None
    ins = str(person.ins)
    spaced = f"{ins[0]} {ins[1:3]} {ins[3:5]} {ins[5:7]} {ins[7:10]} {ins[10:13]} {ins[13:]}"  # as on the card
    assert sign_in(client, person, ins=spaced).status_code == 200
    _fhir_patient(client, person)


def test_the_stored_secrets_are_hashed_and_encrypted(api: Api, client: TestClient) -> None:
    person = activated(api, new_patient(api), client)
    assert person.authenticator is not None
    assert person.account_id is not None
    credential = person.credential()
    assert credential.password_hash.startswith("$argon2id$")
    assert person.authenticator.secret.encode() not in credential.totp_secret
    settings = api.runtime.settings
    assert (
        patients.decrypt_totp_secret(settings, person.account_id, credential.totp_secret) == person.authenticator.secret
    )
    assert patients.decrypt_totp_secret(settings, uuid.uuid4(), credential.totp_secret) is None
    with api.runtime.work() as work:
        (stored,) = work.session.scalars(
            sa.select(OneTimeCode.code_hash).where(OneTimeCode.record_id == uuid.UUID(str(person.record_id)))
        ).all()
    assert stored.startswith("hmac-sha256:")


def test_weak_hashes_are_upgraded_at_sign_in(api: Api, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    person = activated(api, new_patient(api), client)
    assert person.credential().password_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    monkeypatch.setattr(patients, "hasher", PasswordHasher())  # the production parameters
    assert sign_in(client, person).status_code == 200
    assert person.credential().password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert sign_in(client, person).status_code == 200


# ---------------------------------------------------------------------------------------- activation failures
def test_activation_failures_all_look_the_same(api: Api, client: TestClient) -> None:
    person = new_patient(api)
    code = person.activation_code()
    other_ins, _ = factories.random_ins()
    good = {"code": code, "ins": person.ins, "birth_date": person.birth_date, "password": PASSWORD}
    attempts = [
        {**good, "code": "ABCDE-FGHJK"},
        {**good, "birth_date": "1984-11-24"},
        {**good, "ins": other_ins},
        {**good, "ins": "123"},
    ]
    answers = [client.post("/auth/patient/activate", json=body) for body in attempts]
    assert {r.status_code for r in answers} == {401}
    assert len({r.content for r in answers}) == 1
    # The code survives a few mistakes; typed in lower case and without the dash it still works.
    response = client.post("/auth/patient/activate", json={**good, "code": code.replace("-", "").lower()})
    assert response.status_code == 201, response.text


def test_a_code_tolerates_only_a_few_wrong_birth_dates(api: Api, client: TestClient) -> None:
    person = new_patient(api)
    code = person.activation_code()
    for day in range(1, patients.MAX_CODE_ATTEMPTS + 1):
        wrong = {"code": code, "ins": person.ins, "birth_date": f"1990-01-{day:02d}", "password": PASSWORD}
        assert client.post("/auth/patient/activate", json=wrong).status_code == 401
    right = {"code": code, "ins": person.ins, "birth_date": person.birth_date, "password": PASSWORD}
    assert client.post("/auth/patient/activate", json=right).status_code == 401


def test_expired_reused_and_superseded_codes_are_refused(api: Api, client: TestClient) -> None:
    person = new_patient(api)
    body = {"ins": person.ins, "birth_date": person.birth_date, "password": PASSWORD}

    expired = person.activation_code()
    with api.runtime.work() as work:
        work.session.execute(
            sa.update(OneTimeCode)
            .where(OneTimeCode.record_id == uuid.UUID(str(person.record_id)))
            .values(expires_at=work.now - dt.timedelta(seconds=1))
        )
    assert client.post("/auth/patient/activate", json={**body, "code": expired}).status_code == 401

    superseded = person.activation_code()
    current = person.activation_code()
    assert client.post("/auth/patient/activate", json={**body, "code": superseded}).status_code == 401
    assert client.post("/auth/patient/activate", json={**body, "code": current}).status_code == 201
    assert client.post("/auth/patient/activate", json={**body, "code": current}).status_code == 401


def test_activation_codes_expire_after_the_configured_days(api: Api) -> None:
    person = new_patient(api)
    with api.runtime.work() as work:
        issued = patients.issue_activation_code(work, record_id=uuid.UUID(str(person.record_id)))
        assert issued.expires_at == work.now + dt.timedelta(days=api.settings.activation_code_days)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("Short-1", "at least 12"),
        ("onlylowercaseletters", "two kinds"),
        ("123456789012345", "two kinds"),
        ("Aaaaaaaaaaaa", "too few different"),
        ("Summer-23-11-1984!", "birth date"),
        ("Born19841123-Happy", "birth date"),
        ("{ins}-Strong!", "INS"),
    ],
)
def test_weak_passwords_are_refused(api: Api, client: TestClient, password: str, reason: str) -> None:
    person = new_patient(api)
    code = person.activation_code()
    body = {"code": code, "ins": person.ins, "birth_date": person.birth_date}
    weak = client.post("/auth/patient/activate", json={**body, "password": password.format(ins=person.ins)})
    assert weak.status_code == 422, weak.text
    assert any(reason in message for message in diagnostics(weak))
    assert all("password" in issue["expression"] for issue in weak.json()["issue"])
    # The code was not spent.
    assert client.post("/auth/patient/activate", json={**body, "password": PASSWORD}).status_code == 201


def test_password_rules() -> None:
    born = [dt.date(1984, 11, 23)]
    assert patients.password_problems(PASSWORD, birth_dates=born, identifiers=["279035121518989"]) == []
    assert patients.password_problems("x" * 300 + "Y1234")
    assert patients.password_problems("Le-2790351215189-moi", identifiers=["279035121518989"])
    assert patients.password_problems("Ne le 23/11/84 !", birth_dates=born)
    with pytest.raises(Invalid):
        patients.check_password("tooshort")


def test_reactivation_replaces_the_credentials_and_signs_out(api: Api, client: TestClient) -> None:
    person = activated(api, new_patient(api), client)
    assert sign_in(client, person).status_code == 200
    old_secret = person.authenticator.secret if person.authenticator else ""
    person.password = OTHER_PASSWORD
    activated(api, person, client)
    assert person.authenticator is not None
    assert person.authenticator.secret != old_secret
    assert client.get("/auth/patient/sessions").status_code == 401
    assert sign_in(client, person, password=PASSWORD).status_code == 401
    assert sign_in(client, person).status_code == 200


# ---------------------------------------------------------------------------------------- login failures
def test_unknown_ins_wrong_password_and_wrong_code_look_the_same(api: Api, client: TestClient) -> None:
    person = activated(api, new_patient(api), client)
    assert person.authenticator is not None
    stranger, _ = factories.random_ins()
    answers = [
        sign_in(client, person, ins=stranger),
        sign_in(client, person, password=OTHER_PASSWORD),
        sign_in(client, person, totp=person.authenticator.wrong()),
        client.post("/auth/patient/login", json={"login": str(uuid.uuid4()), "password": PASSWORD, "totp": "123456"}),
        client.post("/auth/patient/login", json={"login": "nobody-here", "password": PASSWORD, "totp": "123456"}),
    ]
    assert {r.status_code for r in answers} == {401}
    assert len({r.content for r in answers}) == 1
    assert sessions.COOKIE not in client.cookies


def test_a_totp_code_works_once(api: Api, client: TestClient) -> None:
    person = activated(api, new_patient(api), client)
    authenticator = person.authenticator
    assert authenticator is not None
    authenticator.rewind()
    step = authenticator.current_step()
    code = authenticator.at_step(step)
    assert sign_in(client, person, totp=code).status_code == 200
    replay = sign_in(client, person, totp=code)
    assert replay.status_code == 401
    # An older step than the last one used is refused too; the next one works.
    assert sign_in(client, person, totp=authenticator.at_step(step - 1)).status_code == 401
    assert sign_in(client, person, totp=authenticator.at_step(step + 1)).status_code == 200
    assert person.credential().totp_last_step == step + 1


def test_codes_outside_the_window_are_refused(api: Api, client: TestClient) -> None:
    person = activated(api, new_patient(api), client)
    authenticator = person.authenticator
    assert authenticator is not None
    current = authenticator.current_step()
    for step in (current - 3, current + 3):
        assert sign_in(client, person, totp=authenticator.at_step(step)).status_code == 401
    assert patients.totp_step(authenticator.secret, "12345", dt.datetime.now(dt.UTC), 0) is None


def test_lockout_after_repeated_failures(api: Api) -> None:
    strict = variant(api.runtime, login_max_failures=3, login_lockout_seconds=600)
    with browser(make_app(strict)) as client:
        person = activated(api, new_patient(api), client)
        wrong = [sign_in(client, person, password=OTHER_PASSWORD) for _ in range(3)]
        assert {r.status_code for r in wrong} == {401}
        locked = person.credential().locked_until
        assert locked is not None
        assert locked > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=590)

        # Locked: the right password and code are refused, with the generic answer.
        refused = sign_in(client, person)
        assert refused.status_code == 401
        assert refused.content == wrong[0].content
        assert sessions.COOKIE not in client.cookies

        # The lock lifts by itself.
        with api.runtime.work() as work:
            credential = work.session.get(Credential, person.account_id)
            assert credential is not None
            credential.locked_until = work.now - dt.timedelta(seconds=1)
        assert sign_in(client, person).status_code == 200
        credential = person.credential()
        assert credential.failed_attempts == 0
        assert credential.locked_until is None


def test_failures_below_the_limit_are_forgotten_after_a_success(api: Api) -> None:
    strict = variant(api.runtime, login_max_failures=3)
    with browser(make_app(strict)) as client:
        person = activated(api, new_patient(api), client)
        for _ in range(2):
            assert sign_in(client, person, password=OTHER_PASSWORD).status_code == 401
        assert person.credential().failed_attempts == 2
        assert sign_in(client, person).status_code == 200
        assert person.credential().failed_attempts == 0


def test_failures_from_one_address_are_rate_limited(api: Api) -> None:
    limited = variant(api.runtime, source_max_failures_per_minute=3)
    app = make_app(limited)
    address = random_address()
    stranger, _ = factories.random_ins()
    attempt = {"ins": stranger, "password": PASSWORD, "totp": "123456"}
    with browser(app, address=address) as client:
        assert [client.post("/auth/patient/login", json=attempt).status_code for _ in range(3)] == [401] * 3
        throttled = client.post("/auth/patient/login", json=attempt)
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "60"
        # Every route that checks secrets shares the limit.
        reset = client.post("/auth/patient/reset/request", json={"ins": stranger, "birth_date": "1980-01-01"})
        assert reset.status_code == 429
        activate = {"code": "ABCDE-FGHJK", "ins": stranger, "birth_date": "1980-01-01", "password": PASSWORD}
        assert client.post("/auth/patient/activate", json=activate).status_code == 429
    # Another address is not affected.
    with browser(app) as other:
        assert other.post("/auth/patient/login", json=attempt).status_code == 401
    # A minute later the address may try again.
    with api.runtime.work() as work:
        work.session.execute(
            sa.update(LoginAttempt).where(LoginAttempt.source == address).values(at=work.now - dt.timedelta(seconds=61))
        )
    with browser(app, address=address) as client:
        assert client.post("/auth/patient/login", json=attempt).status_code == 401


def test_a_trusted_proxy_forwards_the_client_address(api: Api) -> None:
    proxied = variant(api.runtime, trusted_proxies=["10.250.0.0/16"], source_max_failures_per_minute=2)
    app = make_app(proxied)
    stranger, _ = factories.random_ins()
    attempt = {"ins": stranger, "password": PASSWORD, "totp": "123456"}
    victim, attacker = random_address(), random_address()
    with browser(app, address="10.250.0.7") as proxy:
        for _ in range(2):
            proxy.post("/auth/patient/login", json=attempt, headers={"X-Forwarded-For": f"{attacker}, 10.250.0.9"})
        blocked = proxy.post("/auth/patient/login", json=attempt, headers={"X-Forwarded-For": attacker})
        assert blocked.status_code == 429
        assert proxy.post("/auth/patient/login", json=attempt, headers={"X-Forwarded-For": victim}).status_code == 401
    # From an untrusted peer the header is ignored: the peer itself is counted.
    spoofer = random_address()
    with browser(app, address=spoofer) as client:
        for _ in range(2):
            client.post("/auth/patient/login", json=attempt, headers={"X-Forwarded-For": random_address()})
        assert client.post("/auth/patient/login", json=attempt).status_code == 429


# ---------------------------------------------------------------------------------------- sessions
def test_cookie_flags(api: Api, client: TestClient) -> None:
    person = activated(api, new_patient(api), client)
    response = sign_in(client, person)
    assert response.status_code == 200
    cookie = SimpleCookie(response.headers["set-cookie"])[sessions.COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "strict"
    assert cookie["path"] == "/"
    assert not cookie["secure"]
    token = cookie.value
    assert len(token) == 43
    with api.runtime.work() as work:
        stored = work.session.get(LoginSession, sessions.token_hash(token))
        assert stored is not None
        assert stored.account_id == person.account_id
        assert stored.expires_at == stored.created_at + dt.timedelta(seconds=api.settings.session_max_seconds)
        # Only the hash is stored.
        assert token.encode() not in stored.token_hash


def test_the_cookie_is_secure_behind_https(api: Api) -> None:
    secure = variant(api.runtime, base_url="https://testserver")
    with browser(make_app(secure), https=True) as client:
        person = activated(api, new_patient(api), client)
        response = sign_in(client, person)
        assert response.status_code == 200, response.text
        cookie = SimpleCookie(response.headers["set-cookie"])[sessions.COOKIE]
        assert cookie["secure"] is True
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "strict"
        _fhir_patient(client, person)


def test_an_idle_session_expires(api: Api, client: TestClient) -> None:
    person = activated(api, new_patient(api), client)
    assert sign_in(client, person).status_code == 200
    token = client.cookies[sessions.COOKIE]
    _fhir_patient(client, person)
    # Used a little while ago: still alive, and the use refreshes it.
    set_last_seen(
        api.runtime, token, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=api.settings.session_idle_seconds - 120)
    )
    _fhir_patient(client, person)
    with api.runtime.work() as work:
        row = work.session.get(LoginSession, sessions.token_hash(token))
        assert row is not None
        assert row.last_seen_at > work.now - dt.timedelta(seconds=60)
    # Idle for longer than allowed: refused.
    set_last_seen(
        api.runtime, token, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=api.settings.session_idle_seconds + 1)
    )
    response = client.get("/fhir/Patient", params={"identifier": f"{person.system}|{person.ins}"}, headers=FHIR)
    assert response.status_code == 401
    assert client.get("/auth/patient/sessions").status_code == 401


def test_a_session_ends_after_its_maximum_lifetime(api: Api, client: TestClient) -> None:
    person = activated(api, new_patient(api), client)
    assert sign_in(client, person).status_code == 200
    token = client.cookies[sessions.COOKIE]
    with api.runtime.work() as work:
        work.session.execute(
            sa.update(LoginSession)
            .where(LoginSession.token_hash == sessions.token_hash(token))
            .values(expires_at=work.now - dt.timedelta(seconds=1))
        )
    assert client.get("/auth/patient/sessions").status_code == 401


def test_logout_and_logout_everywhere(api: Api, patient_app: FastAPI) -> None:
    with browser(patient_app) as laptop, browser(patient_app) as phone, browser(patient_app) as tablet:
        person = activated(api, new_patient(api), laptop)
        for device in (laptop, phone, tablet):
            assert sign_in(device, person).status_code == 200
        listed = phone.get("/auth/patient/sessions").json()["sessions"]
        assert len(listed) == 3
        assert [s["current"] for s in listed].count(True) == 1

        laptop_token = laptop.cookies[sessions.COOKIE]
        out = laptop.post("/auth/patient/logout", headers=CSRF)
        assert out.status_code == 204
        assert 'carnet_session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
        # The revoked token is refused even if a client keeps sending it.
        laptop.cookies.set(sessions.COOKIE, laptop_token)
        assert laptop.get("/auth/patient/sessions").status_code == 401
        assert phone.get("/auth/patient/sessions").status_code == 200
        assert len(phone.get("/auth/patient/sessions").json()["sessions"]) == 2

        everywhere = phone.post("/auth/patient/logout-all", headers=CSRF)
        assert everywhere.status_code == 200
        assert everywhere.json() == {"revoked": 2}
        tablet_token = tablet.cookies[sessions.COOKIE]
        tablet.cookies.set(sessions.COOKIE, tablet_token)
        assert tablet.get("/auth/patient/sessions").status_code == 401
        with api.runtime.work() as work:
            open_ = work.session.scalar(
                sa.select(sa.func.count())
                .select_from(LoginSession)
                .where(LoginSession.account_id == person.account_id, LoginSession.revoked_at.is_(None))
            )
        assert open_ == 0


def test_logout_everywhere_with_the_access_token(api: Api, patient_app: FastAPI) -> None:
    with browser(patient_app) as app_client, browser(patient_app) as web:
        person = activated(api, new_patient(api), web)
        assert sign_in(web, person).status_code == 200
        access = sign_in(app_client, person).json()["access_token"]
        app_client.cookies.clear()
        response = app_client.post("/auth/patient/logout-all", headers={"Authorization": f"Bearer {access}"})
        assert response.status_code == 200
        assert response.json() == {"revoked": 2}
        assert web.get("/auth/patient/sessions").status_code == 401


def test_sessions_are_for_patients_and_representatives(api: Api) -> None:
    assert api.get("/auth/patient/sessions", "dr_medioni").status_code == 403
    assert api.client.get("/auth/patient/sessions").status_code == 401
    assert api.client.post("/auth/patient/logout").status_code == 401


# ---------------------------------------------------------------------------------------- CSRF
def test_cookie_authenticated_changes_need_the_csrf_header(api: Api, client: TestClient) -> None:
    person = activated(api, new_patient(api), client)
    assert sign_in(client, person).status_code == 200

    forged = client.post("/auth/patient/logout")
    assert forged.status_code == 403
    assert sessions.CSRF_HEADER in diagnostics(forged)[0]
    assert client.post("/auth/patient/logout-all").status_code == 403
    # The FHIR API too: the cookie does not vouch for a write without the header …
    resource = factories.docref(str(person.ins), str(person.system))
    headers = {**FHIR, "Content-Type": "application/fhir+json"}
    assert client.post("/fhir/DocumentReference", json=resource, headers=headers).status_code == 403
    # … with it, the request reaches the service (which decides on its own grounds).
    answered = client.post("/fhir/DocumentReference", json=resource, headers={**headers, **CSRF})
    assert answered.status_code != 403 or sessions.CSRF_HEADER not in answered.text
    assert client.get("/auth/patient/sessions").status_code == 200  # reads need no header
    assert client.post("/auth/patient/logout", headers={sessions.CSRF_HEADER: "yes"}).status_code == 403
    assert client.post("/auth/patient/logout", headers=CSRF).status_code == 204


def test_sign_in_accepts_json_only(api: Api, client: TestClient) -> None:
    person = activated(api, new_patient(api), client)
    # What a cross-site HTML form can send (text/plain, form-urlencoded) never signs anyone in.
    body = f'{{"ins": "{person.ins}", "password": "{PASSWORD}", "totp": "{person.totp()}"}}'
    plain = client.post("/auth/patient/login", content=body, headers={"Content-Type": "text/plain"})
    assert plain.status_code == 400
    form = client.post(
        "/auth/patient/login", data={"ins": str(person.ins), "password": PASSWORD, "totp": person.totp()}
    )
    assert form.status_code == 400
    assert sessions.COOKIE not in client.cookies
    both = client.post(
        "/auth/patient/login", json={"ins": person.ins, "login": "x", "password": PASSWORD, "totp": "123456"}
    )
    assert both.status_code == 400


# ---------------------------------------------------------------------------------------- password reset
def test_password_reset(api: Api, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    strict = variant(api.runtime, login_max_failures=2)
    with browser(make_app(strict)) as locked_out, browser(make_app(strict)) as other_device:
        person = activated(api, new_patient(api), client)
        assert sign_in(other_device, person).status_code == 200
        for _ in range(2):
            sign_in(locked_out, person, password=OTHER_PASSWORD)
        assert person.credential().locked_until is not None

        def reset_codes() -> int:
            with api.runtime.work() as work:
                return int(
                    work.session.scalar(
                        sa.select(sa.func.count())
                        .select_from(OneTimeCode)
                        .where(OneTimeCode.account_id == person.account_id, OneTimeCode.purpose == "reset")
                    )
                    or 0
                )

        # Wrong birth date, unknown INS: the same 202, and nothing issued.
        wrong = client.post("/auth/patient/reset/request", json={"ins": person.ins, "birth_date": "1999-01-01"})
        unknown = client.post(
            "/auth/patient/reset/request", json={"ins": factories.random_ins()[0], "birth_date": person.birth_date}
        )
        monkeypatch.setattr(patients, "new_code", lambda: "RESETCODE2")
        right = client.post("/auth/patient/reset/request", json={"ins": person.ins, "birth_date": person.birth_date})
        assert wrong.status_code == unknown.status_code == right.status_code == 202
        assert wrong.content == unknown.content == right.content
        assert "RESETCODE2" not in right.text
        assert reset_codes() == 1
        # Asking again at once issues nothing more.
        client.post("/auth/patient/reset/request", json={"ins": person.ins, "birth_date": person.birth_date})
        assert reset_codes() == 1

        assert person.authenticator is not None
        confirm = {"code": "RESET-CODE2", "ins": person.ins, "new_password": OTHER_PASSWORD}
        bad_totp = client.post("/auth/patient/reset/confirm", json={**confirm, "totp": person.authenticator.wrong()})
        assert bad_totp.status_code == 401
        bad_code = client.post(
            "/auth/patient/reset/confirm", json={**confirm, "code": "WRONG-CODE2", "totp": person.totp()}
        )
        assert bad_code.status_code == 401
        assert bad_code.content == bad_totp.content
        weak = client.post(
            "/auth/patient/reset/confirm", json={**confirm, "new_password": "Jour-23111984-x", "totp": person.totp()}
        )
        assert weak.status_code == 422, weak.text  # the birth date is checked once the code is known good
        done = client.post("/auth/patient/reset/confirm", json={**confirm, "totp": person.totp()})
        assert done.status_code == 200, done.text
        assert client.post("/auth/patient/reset/confirm", json={**confirm, "totp": person.totp()}).status_code == 401

        # Every session is gone, the lock is lifted, only the new password works.
        assert other_device.get("/auth/patient/sessions").status_code == 401
        credential = person.credential()
        assert credential.locked_until is None
        assert credential.failed_attempts == 0
        assert sign_in(locked_out, person).status_code == 401
        person.password = OTHER_PASSWORD
        assert sign_in(locked_out, person).status_code == 200


def test_reset_codes_expire(api: Api, client: TestClient) -> None:
    person = activated(api, new_patient(api), client)
    assert person.account_id is not None
    with api.runtime.work() as work:
        issued = patients.issue_reset_code(work, person.account_id)
        assert issued.expires_at == work.now + dt.timedelta(seconds=api.settings.reset_code_seconds)
        work.session.execute(
            sa.update(OneTimeCode)
            .where(OneTimeCode.account_id == person.account_id)
            .values(expires_at=work.now - dt.timedelta(seconds=1))
        )
    body = {"code": issued.code, "ins": person.ins, "new_password": OTHER_PASSWORD, "totp": person.totp()}
    assert client.post("/auth/patient/reset/confirm", json=body).status_code == 401


def test_no_reset_before_activation(api: Api) -> None:
    person = new_patient(api)
    assert person.account_id is not None
    with api.runtime.work() as work, pytest.raises(ValueError, match="activation code"):
        patients.issue_reset_code(work, person.account_id)


# ---------------------------------------------------------------------------------------- representatives
def test_a_representative_activates_with_a_childs_birth_date(api: Api, client: TestClient) -> None:
    child = new_patient(api, birth_date="2015-04-02")
    parent = new_representative(api, child)
    code = parent.activation_code()
    base = {"code": code, "login": parent.login, "password": PASSWORD}
    # Not the child's INS, not another date, not someone else's login.
    assert client.post("/auth/patient/activate", json={**base, "birth_date": "1980-04-02"}).status_code == 401
    assert (
        client.post(
            "/auth/patient/activate", json={**base, "login": str(uuid.uuid4()), "birth_date": child.birth_date}
        ).status_code
        == 401
    )
    activated_now = client.post("/auth/patient/activate", json={**base, "birth_date": child.birth_date})
    assert activated_now.status_code == 201, activated_now.text
    assert activated_now.json()["login"] == parent.login
    authenticator = parent.enrol(activated_now.json()["totp_secret"])
    confirm = client.post("/auth/patient/activate/confirm", json={"login": parent.login, "totp": authenticator.code()})
    assert confirm.status_code == 200
    assert sign_in(client, parent).status_code == 200
    # The child's documents, through the representative's own session.
    response = client.get("/fhir/DocumentReference", params={"patient": child.record_id}, headers=FHIR)
    assert response.status_code == 200, response.text


@pytest.fixture
def marc_credentials(runtime: Runtime) -> Iterator[uuid.UUID]:
    """Marc's account, whose credentials the test sets; whatever it had before (the demo's) comes back after."""
    account_id = persona_uuid("marc_parent")
    with runtime.work() as work:
        before = work.session.get(Credential, account_id)
        saved = None if before is None else {c.key: getattr(before, c.key) for c in Credential.__table__.columns}
    yield account_id
    with runtime.work() as work:
        work.session.execute(sa.delete(Credential).where(Credential.account_id == account_id))
        if saved is not None:
            work.session.add(Credential(**saved))


def test_marc_parent_searches_leas_documents_and_no_one_elses(
    api: Api, client: TestClient, marc_credentials: uuid.UUID
) -> None:
    marc = BY_KEY["marc_parent"]
    lea = BY_KEY["lea_minor"]
    account_id = marc_credentials
    with api.runtime.work() as work:
        patients.set_credentials(work, account_id, MARC_PASSWORD, MARC_TOTP_SECRET)
    person = Person(api.runtime, account_id, "2012-05-14", login=marc.key, password=MARC_PASSWORD)
    person.enrol(MARC_TOTP_SECRET).rewind()

    lea_system = f"urn:oid:{lea.ins_oid}"
    assert lea.ins == "212054410902154"
    assert lea_system == "urn:oid:1.2.250.1.213.1.4.11"
    lea_doc = api.publish("dr_medioni", factories.docref(lea.ins, lea_system))
    assert lea_doc.status_code == 201, lea_doc.text
    lea_id = api.get("/fhir/Patient", "dr_medioni", params={"identifier": f"{lea_system}|{lea.ins}"}).json()["entry"][
        0
    ]["resource"]["id"]
    stranger = new_patient(api)
    stranger_doc = api.publish("dr_medioni", factories.docref(str(stranger.ins), str(stranger.system)))
    assert stranger_doc.status_code == 201

    # Marc signs in with his login (his persona label here; his account id works as well).
    signed_in = sign_in(client, person)
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["account"] == str(account_id)

    lea_doc_id = lea_doc.json()["id"]
    # By id: Léa's demo record gathers other tests' documents too, more than one page of them.
    found = client.get("/fhir/DocumentReference", params={"patient": lea_id, "_id": lea_doc_id}, headers=FHIR)
    assert found.status_code == 200, found.text
    assert found.json()["resourceType"] == "Bundle"
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [lea_doc_id]

    other = client.get("/fhir/DocumentReference", params={"patient": stranger.record_id}, headers=FHIR)
    assert other.status_code == 200, other.text
    assert other.json().get("entry", []) == []

    with browser(client.app) as again:  # type: ignore[arg-type]
        person.login = str(account_id)
        assert sign_in(again, person).status_code == 200


def test_set_credentials_refuses_weak_passwords_and_bad_secrets(api: Api) -> None:
    person = new_patient(api)
    assert person.account_id is not None
    with api.runtime.work() as work:
        with pytest.raises(ValueError, match="12"):
            patients.set_credentials(work, person.account_id, "short", MARC_TOTP_SECRET)
        with pytest.raises(ValueError, match="base32"):
            patients.set_credentials(work, person.account_id, PASSWORD, "not base32 at all!")
        patients.set_credentials(work, person.account_id, PASSWORD, MARC_TOTP_SECRET, confirmed=False)
    assert person.credential().totp_last_step == 0


# ---------------------------------------------------------------------------------------- operator CLI
def _cli(api: Api, *args: str) -> tuple[int, str, str]:
    env = {
        "CARNET_ENV": "test",
        "CARNET_DATABASE_URL": api.settings.database_url,
        "CARNET_BASE_URL": api.settings.base_url,
        "CARNET_LOG_LEVEL": "WARNING",
    }
    result = CliRunner().invoke(cli_app, ["account", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_operator_issues_codes_from_the_command_line(api: Api, client: TestClient) -> None:
    person = new_patient(api)
    code, out, err = _cli(api, "activation-code", "--ins", str(person.ins), "--system", str(person.system))
    assert code == 0, err
    printed = out.strip()
    assert len(printed) == 11
    assert printed[5] == "-"
    assert "INS" in err
    body = {"code": printed, "ins": person.ins, "birth_date": person.birth_date, "password": PASSWORD}
    response = client.post("/auth/patient/activate", json=body)
    assert response.status_code == 201, response.text
    authenticator = person.enrol(response.json()["totp_secret"])
    assert (
        client.post(
            "/auth/patient/activate/confirm", json={"ins": person.ins, "totp": authenticator.code()}
        ).status_code
        == 200
    )

    code, out, err = _cli(api, "reset-code", "--account", str(person.account_id))
    assert code == 0, err
    reset = {"code": out.strip(), "ins": person.ins, "new_password": OTHER_PASSWORD, "totp": person.totp()}
    assert client.post("/auth/patient/reset/confirm", json=reset).status_code == 200

    # A representative by persona key (the login is printed with the code).
    code, out, err = _cli(api, "activation-code", "--account", "marc_parent")
    assert code == 0, err
    assert str(persona_uuid("marc_parent")) in err


@pytest.mark.parametrize(
    "args",
    [
        ("activation-code",),
        ("activation-code", "--ins", "123", "--account", "marc_parent"),
        ("activation-code", "--ins", "123"),
        ("activation-code", "--account", "not-a-persona"),
    ],
)
def test_the_command_line_refuses_bad_arguments(api: Api, args: tuple[str, ...]) -> None:
    code, _, err = _cli(api, *args)
    assert code == 2
    assert "error" in err


def test_the_command_line_explains_what_it_cannot_do(api: Api) -> None:
    stranger, system = factories.random_ins()
    code, _, err = _cli(api, "activation-code", "--ins", stranger, "--system", system)
    assert code == 1
    assert "no record" in err
    unactivated = new_patient(api)
    code, _, err = _cli(api, "reset-code", "--ins", str(unactivated.ins), "--system", str(unactivated.system))
    assert code == 1
    assert "activation code" in err
    code, _, err = _cli(api, "activation-code", "--account", "ops_admin")
    assert code == 1
