"""The professional portal's sign-in: a card certificate forwarded by a trusted proxy, refusals with a readable
message (no card, untrusted peer, expired or foreign certificate, organisation certificate, unknown
professional), Pro Santé Connect landing in the portal, the banner, the idle timeout and signing out."""

from __future__ import annotations

import datetime as dt
import ssl
import time
import urllib.parse
from collections.abc import Iterator

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from carnet.app import create_app
from carnet.audit.models import AuditEntry
from carnet.audit.trace import TraceAction
from carnet.auth import pki, pro_portal, tokens
from carnet.config import BlobBackend
from carnet.deps import PRO_TOKEN_COOKIE
from carnet.portal.pro import routes as pro_routes
from carnet.runtime import Runtime
from tests import factories
from tests.auth.oidc_provider import CLIENT_ID, CLIENT_SECRET, start_provider
from tests.conftest import make_settings
from tests.portal.pro_support import (
    PROXY,
    STRANGER,
    Pro,
    card_login,
    cards_fixture,  # noqa: F401 - fixture
    forwarded,
    idnat,
    pem,
    post,
    pro_app_fixture,  # noqa: F401 - fixture
    pro_fixture,  # noqa: F401 - fixture
    text,
    token,
)


def _cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    header = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}="))
    return {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")[1:]}


def _set_cookie_value(response: httpx.Response, name: str) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            return header.split(";", 1)[0].split("=", 1)[1]
    return None


def _logins(pro: Pro, persona: str) -> int:
    with pro.runtime.read() as work:
        count = work.session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == TraceAction.LOGIN.value, AuditEntry.professional == idnat(persona))
        )
    return int(count or 0)


def test_a_card_forwarded_by_the_trusted_proxy_signs_in_and_the_banner_says_who(pro: Pro) -> None:
    before = _logins(pro, "dr_lambert")
    client = pro.browser()
    page = client.get("/pro/connexion")
    assert page.status_code == 200
    assert 'action="/pro/connexion/carte"' in page.text
    response = card_login(client, pem(pro.cards.card("dr_lambert")))
    assert response.status_code == 303, text(response)
    assert response.headers["location"] == "/pro"
    attributes = _cookie_attributes(response, PRO_TOKEN_COOKIE)
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["max-age"] == f"Max-Age={pro.runtime.settings.access_token_ttl_seconds}"
    claims = tokens.verify(pro.runtime.settings, client.cookies[PRO_TOKEN_COOKIE])
    assert claims["sub"] == f"pro:{idnat('dr_lambert')}"
    assert claims["auth"] == "certificate"

    home = client.get("/pro")
    assert home.status_code == 200
    banner = text(home)
    assert "Claire LAMBERT" in banner
    assert "Médecin" in banner
    assert "Cardiologie" in banner
    assert "Saint-Roch" in banner
    assert "Connexion : Carte de professionnel de santé" in banner
    assert "Mode d'accès : Normal" in banner
    assert _logins(pro, "dr_lambert") == before + 1


def test_signing_out_drops_the_cookie_and_the_pages_send_back_to_the_sign_in(pro: Pro) -> None:
    client = pro.login("inf_moreau")
    assert client.get("/pro").status_code == 200
    forged = client.post("/pro/deconnexion", data={}, follow_redirects=False)
    assert forged.status_code == 403  # no CSRF token: the session stays
    assert client.get("/pro").status_code == 200
    response = post(client, "/pro/deconnexion")
    assert response.status_code == 303
    assert response.headers["location"] == "/pro/connexion?fait=deconnexion"
    assert PRO_TOKEN_COOKIE not in client.cookies
    after = client.get(response.headers["location"])
    assert "Vous êtes déconnecté." in text(after)
    again = client.get("/pro", follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"] == "/pro/connexion?next=/pro"


def test_after_signing_in_the_professional_lands_on_the_page_asked_for(pro: Pro) -> None:
    client = pro.browser()
    asked = client.get("/pro/dossiers/00000000-0000-0000-0000-000000000000", follow_redirects=False)
    assert asked.status_code == 303
    assert asked.headers["location"] == "/pro/connexion?next=/pro/dossiers/00000000-0000-0000-0000-000000000000"
    login_page = client.get(asked.headers["location"])
    assert 'value="/pro/dossiers/00000000-0000-0000-0000-000000000000"' in login_page.text
    response = card_login(client, pem(pro.cards.card("dr_lambert")), next_page="/pro/dossiers/abc")
    assert response.headers["location"] == "/pro/dossiers/abc"
    for elsewhere in ("https://evil.example/", "//evil.example/x", "/\\evil"):
        other = pro.browser()
        response = card_login(other, pem(pro.cards.card("dr_lambert")), next_page=elsewhere)
        assert response.status_code == 303
        assert response.headers["location"] == "/pro"


def _refused(response: httpx.Response, client: TestClient, message: str) -> None:
    assert response.status_code == 401, response.text
    assert message in text(response)
    assert 'action="/pro/connexion/carte"' in response.text  # the sign-in page again, to retry
    assert PRO_TOKEN_COOKIE not in client.cookies
    assert client.get("/pro", follow_redirects=False).status_code == 303


def test_without_a_card_the_page_says_to_insert_it(pro: Pro) -> None:
    client = pro.browser()
    _refused(card_login(client, None), client, "Aucune carte n'a été présentée")


def test_a_certificate_header_from_an_untrusted_address_is_refused(pro: Pro) -> None:
    client = pro.browser(STRANGER)
    response = card_login(client, pem(pro.cards.card("dr_lambert")))
    _refused(response, client, "Votre carte n'a pas pu être vérifiée")


def test_expired_not_yet_valid_and_foreign_certificates_are_refused(
    pro: Pro, tmp_path_factory: pytest.TempPathFactory
) -> None:
    authority = pki.load_ca(pro.cards.directory)
    base = tmp_path_factory.mktemp("bad-cards")
    now = dt.datetime.now(dt.UTC)
    expired = pki.issue_professional(
        base,
        idnat=idnat("dr_lambert"),
        name="Dr L",
        not_before=now - dt.timedelta(days=30),
        days=1,
        authority=authority,
    )
    (base / "future").mkdir()
    future = pki.issue_professional(
        base / "future",
        idnat=idnat("dr_lambert"),
        name="Dr L",
        not_before=now + dt.timedelta(days=2),
        days=10,
        authority=authority,
    )
    other = base / "other"
    other.mkdir()
    pki.init_ca(other, name="Another CA")
    foreign = pki.issue_professional(other, idnat=idnat("dr_lambert"), name="Dr Claire LAMBERT")
    for issued in (expired, future, foreign):
        client = pro.browser()
        _refused(card_login(client, pem(issued)), client, "Votre carte n'a pas pu être vérifiée")
    garbage = pro.browser()
    response = garbage.post(
        "/pro/connexion/carte",
        data={"csrf": token(garbage)},
        headers={"x-ssl-client-cert": "not%20a%20certificate"},
        follow_redirects=False,
    )
    _refused(response, garbage, "Votre carte n'a pas pu être vérifiée")


def test_an_organisation_certificate_is_not_a_person(pro: Pro) -> None:
    organisation = pki.issue_organization(pro.cards.directory, idnat_struct="1440000289", name="Hôpital Saint-Roch")
    client = pro.browser()
    response = card_login(client, pem(organisation))
    _refused(response, client, "Ce certificat est celui d'une structure")
    # Even naming an acting professional, as software does on the API, opens no portal session.
    acting = pro.browser()
    response = acting.post(
        "/pro/connexion/carte",
        data={"csrf": token(acting)},
        headers={**forwarded(pem(organisation)), "x-acting-professional": idnat("dr_lambert")},
        follow_redirects=False,
    )
    _refused(response, acting, "Ce certificat est celui d'une structure")


def test_a_valid_card_unknown_to_the_directory_is_refused(pro: Pro) -> None:
    stranger = pki.issue_professional(pro.cards.directory, idnat="899999999999", name="Dr Inconnu")
    client = pro.browser()
    _refused(card_login(client, pem(stranger)), client, "vous n'avez pas d'activité en cours")


def test_the_card_form_needs_its_csrf_token(pro: Pro) -> None:
    client = pro.browser()
    token(client)
    response = client.post(
        "/pro/connexion/carte", data={}, headers=forwarded(pem(pro.cards.card("dr_lambert"))), follow_redirects=False
    )
    assert response.status_code == 403
    assert "reload the page" in text(response)
    assert PRO_TOKEN_COOKIE not in client.cookies


def test_a_patient_token_in_the_portal_cookie_is_no_way_in(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=())
    client = pro.browser()
    client.cookies.set(PRO_TOKEN_COOKIE, pro.api.patient_token(patient_id))
    response = client.get("/pro", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/pro/connexion")
    client.cookies.set(PRO_TOKEN_COOKIE, "not-a-token")
    assert client.get("/pro", follow_redirects=False).headers["location"].startswith("/pro/connexion")


# ------------------------------------------------------------------------------------ idle timeout
def _token_issued_ago(pro: Pro, monkeypatch: pytest.MonkeyPatch, persona: str, seconds: int) -> str:
    """A portal token of ``persona`` issued ``seconds`` ago."""
    with pro.runtime.read() as work:
        actor = pro_portal.sign_in(work, {"sub": f"pro:{idnat(persona)}", "auth": "certificate"})
    assert actor is not None
    past = time.time() - seconds
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: past)  # tokens.issue reads the clock with time.time()
        return pro_portal.issue(pro.runtime.settings, actor, now=int(past))


def test_an_idle_session_expires(pro: Pro, monkeypatch: pytest.MonkeyPatch) -> None:
    ttl = pro.runtime.settings.access_token_ttl_seconds
    client = pro.browser()
    client.cookies.set(PRO_TOKEN_COOKIE, _token_issued_ago(pro, monkeypatch, "dr_lambert", ttl + 120))
    response = client.get("/pro", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/pro/connexion?next=/pro"


def test_activity_renews_a_token_past_half_its_life(pro: Pro, monkeypatch: pytest.MonkeyPatch) -> None:
    ttl = pro.runtime.settings.access_token_ttl_seconds
    client = pro.browser()
    old = _token_issued_ago(pro, monkeypatch, "dr_lambert", ttl * 3 // 4)
    client.cookies.set(PRO_TOKEN_COOKIE, old)
    response = client.get("/pro")
    assert response.status_code == 200
    renewed = _set_cookie_value(response, PRO_TOKEN_COOKIE)
    assert renewed is not None
    assert renewed != old
    claims = tokens.verify(pro.runtime.settings, renewed)
    assert claims["exp"] >= time.time() + ttl - 60
    assert claims["sub"] == f"pro:{idnat('dr_lambert')}"
    young = pro.login("dr_lambert")
    first = young.cookies[PRO_TOKEN_COOKIE]
    assert _set_cookie_value(young.get("/pro"), PRO_TOKEN_COOKIE) is None
    assert young.cookies[PRO_TOKEN_COOKIE] == first


# ------------------------------------------------------------------------------------ Pro Santé Connect
@pytest.fixture(scope="module")
def oidc_portal(runtime: Runtime) -> Iterator[tuple[TestClient, str]]:
    provider, server = start_provider(["http://testserver/auth/oidc/callback"])
    settings = make_settings(
        runtime.settings.database_url,
        blob_backend=BlobBackend.DATABASE,
        oidc_issuer=provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
    )
    rt = Runtime(settings)
    try:
        with TestClient(create_app(settings, rt), base_url="http://testserver") as client:
            yield client, provider.issuer
    finally:
        rt.dispose()
        server.stop()


def test_pro_sante_connect_lands_in_the_portal(oidc_portal: tuple[TestClient, str]) -> None:
    client, issuer = oidc_portal
    client.cookies.clear()
    page = client.get("/pro/connexion?next=/pro")
    link = next(line for line in page.text.splitlines() if "/auth/oidc/login" in line)
    start = link.split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert start == "/auth/oidc/login?return_to=/pro"
    login = client.get(start, follow_redirects=False)
    assert login.status_code == 302, login.text
    authorize = login.headers["location"]
    assert authorize.startswith(f"{issuer}/authorize?")
    with httpx.Client(timeout=10, verify=ssl.create_default_context()) as provider_browser:
        consent = provider_browser.get(authorize, follow_redirects=False)
    assert consent.status_code == 302, consent.text
    callback = urllib.parse.urlsplit(consent.headers["location"])
    landed = client.get(f"{callback.path}?{callback.query}", follow_redirects=False)
    assert landed.status_code == 303, landed.text
    assert landed.headers["location"] == "/pro"
    home = client.get("/pro")
    assert home.status_code == 200
    banner = text(home)
    assert "Stéphane MEDIONI" in banner
    assert "Connexion : Pro Santé Connect" in banner
    assert "Rechercher un patient" in banner
    client.cookies.clear()


def test_the_login_page_offers_pro_sante_connect_only_when_configured(pro: Pro) -> None:
    page = text(pro.browser().get("/pro/connexion"))
    assert "/auth/oidc/login" not in page
    assert "n'est pas configurée" in page


def test_the_proxy_address_alone_signs_nobody_in(pro: Pro) -> None:
    client = TestClient(pro.api.client.app, base_url="http://testserver", client=PROXY)
    _refused(card_login(client, None), client, "Aucune carte n'a été présentée")


# ------------------------------------------------------------------------------------ every route
PUBLIC = {
    ("GET", "/pro/connexion"),
    ("POST", "/pro/connexion/carte"),
    ("POST", "/pro/connexion/demonstration"),  # development only: 404 here (tests/portal/test_pro_demo_signin.py)
    ("POST", "/pro/deconnexion"),
}


def _routes() -> list[tuple[str, str]]:
    found = []
    for route in pro_routes.router.routes:
        assert isinstance(route, APIRoute)
        for method in sorted(route.methods or ()):
            found.append((method, route.path))
    return found


def test_every_page_needs_a_session_and_every_change_its_csrf_token(pro: Pro) -> None:
    patient_id, ins, system = pro.api.new_patient(team=("dr_lambert",))
    doc_id = pro.api.publish("dr_lambert", factories.docref(ins, system, author_idnat=idnat("dr_lambert"))).json()["id"]
    routes = _routes()
    assert len(routes) >= 17
    signed_in = pro.login("dr_lambert")
    for method, template in routes:
        path = template.replace("{record_id}", patient_id).replace("{doc_id}", doc_id)
        if (method, template) in PUBLIC:
            continue
        anonymous = pro.browser()
        if method == "GET":
            response = anonymous.get(path, follow_redirects=False)
        else:
            response = post(anonymous, path, {"dossier": patient_id, "kind": "care-team", "attest": "1"})
        assert response.status_code == 303, (method, path, response.status_code)
        assert response.headers["location"].startswith("/pro/connexion?next="), (method, path)
        if method == "POST":
            forged = signed_in.post(path, data={"dossier": patient_id, "annonce": "1"}, follow_redirects=False)
            assert forged.status_code == 403, (method, path, forged.status_code)
            assert "reload the page" in text(forged)
    # Nothing was changed by any of these requests.
    assert pro.api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").json()["status"] == "current"
    assert signed_in.get(f"/pro/documents/{doc_id}").status_code == 200
