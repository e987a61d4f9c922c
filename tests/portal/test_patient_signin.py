"""The patient portal's sign-in pages: activation with the QR code, first TOTP code, sign-in, humane
errors and rate limiting, password reset, sign-out, devices and "sign out everywhere"."""

from __future__ import annotations

import base64
import re
import uuid

import pyotp
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carnet.accounts.models import LoginSession
from carnet.app import create_app
from carnet.auth import patients, sessions
from tests.auth.patient_support import random_address, variant
from tests.conftest import Api
from tests.portal.patient_support import (
    PASSWORD,
    body,
    browser,
    cheap_hashing,  # noqa: F401 - autouse fixture
    new_patient,
    new_representative,
    post,
    signed_in,
    token,
)


def _activation_code(api: Api, record_id: str | None = None, account_id: uuid.UUID | None = None) -> str:
    with api.runtime.work() as work:
        issued = patients.issue_activation_code(
            work, record_id=uuid.UUID(record_id) if record_id else None, account_id=account_id
        )
    return patients.format_code(issued.code)


def test_a_patient_activates_enrols_and_signs_in(api: Api) -> None:
    patient_id, ins, _ = api.new_patient(birth_date="1981-02-03")
    client = browser(api)
    form = client.get("/patient/activation")
    assert form.status_code == 200
    assert 'name="code_activation"' in body(form)
    assert 'for="f-code_activation"' in body(form)
    code = _activation_code(api, patient_id)
    weak = post(
        client,
        "/patient/activation",
        {
            "code_activation": code,
            "identifiant": ins,
            "date_naissance": "1981-02-03",
            "mot_de_passe": "short",
            "confirmation": "short",
        },
    )
    assert weak.status_code == 422
    assert "au moins 12 caractères" in body(weak)
    mismatch = post(
        client,
        "/patient/activation",
        {
            "code_activation": code,
            "identifiant": ins,
            "date_naissance": "1981-02-03",
            "mot_de_passe": PASSWORD,
            "confirmation": PASSWORD + "x",
        },
    )
    assert mismatch.status_code == 422
    assert "ne sont pas identiques" in body(mismatch)
    wrong_birth = post(
        client,
        "/patient/activation",
        {
            "code_activation": code,
            "identifiant": ins,
            "date_naissance": "1981-02-04",
            "mot_de_passe": PASSWORD,
            "confirmation": PASSWORD,
        },
    )
    assert wrong_birth.status_code == 401
    assert "Activation impossible" in body(wrong_birth)
    page = post(
        client,
        "/patient/activation",
        {
            "code_activation": code,
            "identifiant": ins,
            "date_naissance": "03/02/1981",
            "mot_de_passe": PASSWORD,
            "confirmation": PASSWORD,
        },
    )
    assert page.status_code == 200, page.text
    # The QR code is an SVG image in a data: URI (allowed by the page's CSP), with the secret beside it.
    match = re.search(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page.text)
    assert match is not None
    assert base64.b64decode(match.group(1)).startswith(b"<svg")
    secret = re.search(r'data-secret="([A-Z2-7]+)"', page.text)
    assert secret is not None
    totp = pyotp.TOTP(secret.group(1))
    refused = post(
        client,
        "/patient/activation/confirmation",
        {"identifiant": ins, "code": "000000" if totp.now() != "000000" else "111111", "secret": secret.group(1)},
    )
    assert refused.status_code == 401
    assert "n'est pas le bon" in body(refused)
    assert secret.group(1) in body(refused)  # the enrolment page again, QR code included
    # The enrolment page's fields did not come back (here, a secret that is no base32): start over, no 500.
    lost = post(client, "/patient/activation/confirmation", {"identifiant": ins, "code": "123456", "secret": "A"})
    assert lost.status_code == 422, lost.text
    assert "Recommencez l'activation" in body(lost)
    assert 'name="code_activation"' in body(lost)
    confirmed = post(
        client, "/patient/activation/confirmation", {"identifiant": ins, "code": totp.now(), "secret": secret.group(1)}
    )
    assert confirmed.status_code == 303
    assert confirmed.headers["location"] == "/patient/connexion?ok=active"
    # Sign in with INS + password + the next TOTP code (the one just used is spent).
    login_page = client.get("/patient/connexion?next=/patient")
    assert login_page.status_code == 200
    nxt = totp.at(__import__("time").time() + 30)
    signed = post(
        client, "/patient/connexion", {"identifiant": ins, "mot_de_passe": PASSWORD, "code": nxt, "next": "/patient"}
    )
    assert signed.status_code == 303, signed.text
    cookie = signed.headers["set-cookie"]
    assert "carnet_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    landing = client.get("/patient", follow_redirects=False)
    assert landing.status_code == 303
    assert landing.headers["location"] == f"/patient/dossiers/{patient_id}"
    home = client.get(landing.headers["location"])
    assert home.status_code == 200
    assert "Bonjour" in body(home)


def test_sign_in_errors_are_clear_but_reveal_nothing(api: Api) -> None:
    person = new_patient(api)
    client = browser(api)
    missing = post(client, "/patient/connexion", {"identifiant": person.ins, "mot_de_passe": "", "code": ""})
    assert missing.status_code == 422
    assert 'id="f-mot_de_passe-error"' in body(missing)
    assert 'aria-describedby=" f-mot_de_passe-error"' in missing.text or 'f-mot_de_passe-error"' in body(missing)
    wrong_password = post(
        client,
        "/patient/connexion",
        {"identifiant": person.ins, "mot_de_passe": "Nope-nope-nope-1", "code": pyotp.TOTP(person.secret).now()},
    )
    unknown = post(
        client,
        "/patient/connexion",
        {"identifiant": "279035121518989"[:-2] + "00", "mot_de_passe": PASSWORD, "code": "123456"},
    )
    assert wrong_password.status_code == unknown.status_code == 401
    message = "Connexion impossible"
    assert message in body(wrong_password)
    assert message in body(unknown)
    assert "carnet_session" not in wrong_password.headers.get("set-cookie", "")


def test_too_many_failures_from_one_address_get_a_humane_429(api: Api) -> None:
    strict = variant(api.runtime, source_max_failures_per_minute=2)
    client = TestClient(create_app(strict.settings, strict), client=(random_address(), 50000))
    person = new_patient(api)
    for _ in range(2):
        post(
            client,
            "/patient/connexion",
            {"identifiant": person.ins, "mot_de_passe": "Wrong-password-12", "code": "123456"},
        )
    refused = post(
        client,
        "/patient/connexion",
        {"identifiant": person.ins, "mot_de_passe": PASSWORD, "code": pyotp.TOTP(person.secret).now()},
    )
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"
    assert "attendez une minute" in body(refused)
    assert refused.headers["content-type"].startswith("text/html")


def test_a_representative_signs_in_with_their_login(api: Api) -> None:
    child = new_patient(api, birth_date="2015-05-05", given="Léa")
    parent = new_representative(api, child)
    client = browser(api)
    signed = post(
        client,
        "/patient/connexion",
        {"identifiant": str(parent.account_id), "mot_de_passe": PASSWORD, "code": pyotp.TOTP(parent.secret).now()},
    )
    assert signed.status_code == 303
    landing = client.get("/patient", follow_redirects=False)
    assert landing.headers["location"] == child.base


def test_a_representative_activates_with_the_childs_birth_date(api: Api) -> None:
    child = new_patient(api, birth_date="2016-06-06")
    parent = new_representative(api, child)
    client = browser(api)
    code = _activation_code(api, account_id=parent.account_id)
    page = post(
        client,
        "/patient/activation",
        {
            "code_activation": code,
            "identifiant": str(parent.account_id),
            "date_naissance": "2016-06-06",
            "mot_de_passe": PASSWORD,
            "confirmation": PASSWORD,
        },
    )
    assert page.status_code == 200, page.text
    assert str(parent.account_id) in body(page)  # the login to sign in with


def test_password_reset_with_code_and_totp(api: Api) -> None:
    person = new_patient(api)
    client = browser(api)
    asked = post(
        client, "/patient/mot-de-passe-oublie", {"identifiant": person.ins, "date_naissance": person.birth_date}
    )
    assert asked.status_code == 200
    assert "code de réinitialisation est en route" in body(asked)
    nobody = post(client, "/patient/mot-de-passe-oublie", {"identifiant": "nobody", "date_naissance": "2000-01-01"})
    assert nobody.status_code == 200  # the same answer
    assert "code de réinitialisation est en route" in body(nobody)
    with api.runtime.work() as work:
        code = patients.format_code(patients.issue_reset_code(work, person.account_id).code)
    new_password = "Brand-New-Phrase-77"
    wrong = post(
        client,
        "/patient/mot-de-passe-oublie/nouveau",
        {
            "identifiant": person.ins,
            "code_reinitialisation": code,
            "mot_de_passe": new_password,
            "confirmation": new_password,
            "code": "000000",
        },
    )
    assert wrong.status_code == 401
    done = post(
        client,
        "/patient/mot-de-passe-oublie/nouveau",
        {
            "identifiant": person.ins,
            "code_reinitialisation": code,
            "mot_de_passe": new_password,
            "confirmation": new_password,
            "code": pyotp.TOTP(person.secret).now(),
        },
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/patient/connexion?ok=mot-de-passe"
    assert "Votre mot de passe est changé" in body(client.get(done.headers["location"]))


def test_sign_out_and_sign_out_everywhere(api: Api) -> None:
    person = new_patient(api)
    first, second = signed_in(person), signed_in(person)
    devices = first.get("/patient/appareils")
    assert devices.status_code == 200
    assert devices.text.count("pytest") == 2
    assert "cet appareil" in body(devices)
    out = post(first, "/patient/deconnexion")
    assert out.status_code == 303
    assert out.headers["location"] == "/patient/connexion?ok=deconnecte"
    assert 'carnet_session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    gone = first.get(person.base, follow_redirects=False)
    assert gone.status_code == 303
    assert gone.headers["location"].startswith("/patient/connexion?next=")
    assert second.get(person.base).status_code == 200
    third = signed_in(person)
    everywhere = post(third, "/patient/appareils/deconnexion-partout")
    assert everywhere.status_code == 303
    assert second.get(person.base, follow_redirects=False).status_code == 303
    with api.runtime.work() as work:
        live = work.session.scalar(
            sa.select(sa.func.count())
            .select_from(LoginSession)
            .where(LoginSession.account_id == person.account_id, LoginSession.revoked_at.is_(None))
        )
    assert live == 0


def test_the_session_ends_after_the_idle_timeout(api: Api) -> None:
    import datetime as dt

    from tests.auth.patient_support import set_last_seen

    person = new_patient(api)
    client = signed_in(person)
    session_token = client.cookies.get(sessions.COOKIE)
    assert session_token
    set_last_seen(
        api.runtime,
        session_token,
        dt.datetime.now(dt.UTC) - dt.timedelta(seconds=api.settings.session_idle_seconds + 5),
    )
    expired = client.get(person.base, follow_redirects=False)
    assert expired.status_code == 303
    assert expired.headers["location"] == f"/patient/connexion?next={person.base}"


@pytest.mark.parametrize(
    "path",
    [
        "/patient/connexion",
        "/patient/deconnexion",
        "/patient/activation",
        "/patient/activation/confirmation",
        "/patient/mot-de-passe-oublie",
        "/patient/mot-de-passe-oublie/nouveau",
        "/patient/appareils/deconnexion-partout",
    ],
)
def test_sign_in_forms_refuse_a_missing_csrf_token(api: Api, path: str) -> None:
    client = browser(api)
    token(client)
    refused = client.post(path, data={"identifiant": "x"}, follow_redirects=False)
    assert refused.status_code == 403
    assert "Le formulaire a expiré" in body(refused)
