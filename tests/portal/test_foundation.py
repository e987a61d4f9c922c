"""What every portal page shares: headers, CSRF on forms, language, HTML errors instead of FHIR ones."""

from __future__ import annotations

from tests.conftest import Api


def test_pages_carry_a_strict_content_security_policy(api: Api) -> None:
    page = api.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    # The page's forms carry the token of the CSRF cookie set with it.
    token = page.cookies.get("carnet_csrf")
    assert token
    assert f'value="{token}"' in page.text
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie


def test_a_form_without_its_token_is_refused(api: Api) -> None:
    api.client.get("/")
    refused = api.client.post("/langue", data={"lang": "en", "next": "/"}, follow_redirects=False)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    forged = api.client.post("/langue", data={"lang": "en", "next": "/", "csrf": "x" * 43}, follow_redirects=False)
    assert forged.status_code == 403
    token = api.client.cookies.get("carnet_csrf")
    accepted = api.client.post(
        "/langue", data={"lang": "en", "next": "/a-propos", "csrf": token}, follow_redirects=False
    )
    assert accepted.status_code == 303
    assert accepted.headers["location"] == "/a-propos"
    assert "Neither your health insurer" in api.client.get("/a-propos").text
    api.client.cookies.delete("carnet_lang")


def test_the_language_follows_the_browser_then_the_choice(api: Api) -> None:
    api.client.cookies.delete("carnet_lang")
    assert "Aller au contenu" in api.client.get("/").text
    assert "Skip to content" in api.client.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"}).text


def test_the_next_page_after_a_form_stays_on_carnet(api: Api) -> None:
    api.client.get("/")
    token = api.client.cookies.get("carnet_csrf")
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = api.client.post(
            "/langue", data={"lang": "fr", "next": target, "csrf": token}, follow_redirects=False
        )
        assert response.headers["location"] == "/"


def test_static_files_are_served_versioned(api: Api) -> None:
    page = api.client.get("/").text
    assert "/static/carnet.css?v=" in page
    assert "/static/htmx.min.js?v=" in page
    css = api.client.get("/static/carnet.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert api.client.get("/static/../config.py").status_code == 404


def test_the_language_switch_comes_back_to_a_page_that_exists(api: Api) -> None:
    """After a form, the switch returns to the page's own address if it has a page (a search on the documents
    page), else to the page above it (a directory search answers ``POST …/professionnels/recherche``)."""
    from tests.portal.patient_support import new_patient, post, signed_in

    person = new_patient(api)
    client = signed_in(person)
    shown = client.get(f"{person.base}/documents")
    assert f'name="next" value="{person.base}/documents"' in shown.text
    searched = post(client, f"{person.base}/documents", {"texte": "bilan"})
    assert searched.status_code == 200
    assert f'name="next" value="{person.base}/documents"' in searched.text
    directory = post(client, f"{person.base}/professionnels/recherche", {"recherche": "Blanc"})
    assert directory.status_code == 200
    assert f'name="next" value="{person.base}/professionnels"' in directory.text
    assert client.get(f"{person.base}/professionnels").status_code == 200
