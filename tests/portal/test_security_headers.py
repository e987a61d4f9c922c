"""The security headers of every kind of portal response — pages of both portals (signed in or not), error
pages, redirects, fragments answered to htmx, documents' bytes, static files: ``Referrer-Policy``,
framing refused (``X-Frame-Options: DENY`` and ``frame-ancestors 'none'``; documents' bytes framed by
Carnet's own pages only), a Content-Security-Policy without ``unsafe-inline`` (nor ``unsafe-eval``)
anywhere, ``nosniff`` and ``no-store``. The headers come from ``carnet.app.SECURITY_HEADERS`` (every
response) and ``carnet.portal.web`` / ``carnet.portal.content`` (pages, documents)."""

from __future__ import annotations

import uuid

import httpx2 as httpx

from carnet.demo.pdf import make_pdf
from tests import factories
from tests.portal.patient_support import (
    browser,
    cheap_hashing,  # noqa: F401 - autouse fixture
    deposit_pdf,
    new_patient,
    patient_documents,
    post,
    signed_in,
    upload,
)
from tests.portal.pro_support import (
    PDF_FIELDS,
    Pro,
    cards_fixture,  # noqa: F401 - fixture
    deposit,
    doc_id_of,
    pro_app_fixture,  # noqa: F401 - fixture
    pro_fixture,  # noqa: F401 - fixture
)
from tests.portal.pro_support import post as pro_post

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"


def _directives(policy: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        if name:
            found[name] = value.strip()
    return found


def assert_common(response: httpx.Response, where: str) -> dict[str, str]:
    """What every portal response carries; its CSP directives."""
    headers = response.headers
    assert headers.get("referrer-policy") == "no-referrer", where
    assert headers.get("x-content-type-options") == "nosniff", where
    assert headers.get("cache-control") == "no-store", where
    policy = headers.get("content-security-policy")
    assert policy, where
    assert "unsafe-inline" not in policy, where
    assert "unsafe-eval" not in policy, where
    return _directives(policy)


def assert_page(response: httpx.Response, where: str) -> None:
    """A portal page (or a fragment of one): framed by nobody, scripts and styles from Carnet only."""
    assert response.status_code in (200, 403, 404, 422), (where, response.status_code)
    assert response.headers["content-type"].startswith("text/html"), where
    directives = assert_common(response, where)
    assert response.headers.get("x-frame-options") == "DENY", where
    assert directives.get("frame-ancestors") == "'none'", where
    assert directives.get("script-src") == "'self'", where
    assert directives.get("style-src") == "'self'", where
    assert directives.get("object-src") == "'none'", where
    assert directives.get("base-uri") == "'none'", where
    assert directives.get("form-action") == "'self'", where


def assert_content(response: httpx.Response, where: str, *, sandboxed: bool = True) -> None:
    """A document's bytes: nothing loads, only Carnet's own pages may frame them."""
    assert response.status_code == 200, where
    directives = assert_common(response, where)
    assert directives.get("default-src") == "'none'", where
    assert directives.get("frame-ancestors") in ("'self'", "'none'"), where
    assert response.headers.get("x-frame-options") in ("SAMEORIGIN", "DENY"), where
    assert ("sandbox" in directives) is sandboxed, where


def test_patient_portal_responses_carry_the_security_headers(pro: Pro) -> None:
    api = pro.api
    person = new_patient(api)
    pdf_id = deposit_pdf(api, person, persona="dr_medioni", title="Compte rendu")
    client = signed_in(person)
    assert upload(client, person, JPEG, title="Photo", category="ORD_SOIN", filename="p.jpg").status_code == 303
    assert upload(client, person, b"Une note\n", title="Note", category="AUTR_DOC", filename="n.txt").status_code == 303
    assert upload(client, person, make_pdf("Note", ["x"]), title="Mien", category="AUTR_DOC").status_code == 303
    own = {d["content"][0]["attachment"]["title"]: d["id"] for d in patient_documents(person)}
    base = person.base
    anonymous = browser(api)  # nobody signed in
    for path in (
        "/",
        "/a-propos",
        "/patient/connexion",
        "/patient/activation",
        "/patient/mot-de-passe-oublie",
        "/patient/mot-de-passe-oublie/nouveau",
        "/pro/connexion",
    ):
        assert_page(anonymous.get(path), path)
    for path in (
        base,
        f"{base}/documents",
        f"{base}/documents/ajout",
        f"{base}/documents/{pdf_id}",
        f"{base}/documents/{own['Photo']}",
        f"{base}/documents/{own['Note']}",
        f"{base}/documents/{own['Mien']}/suppression",
        f"{base}/professionnels",
        f"{base}/historique",
        f"{base}/dossier",
        "/patient/notifications",
        "/patient/notifications/preferences",
        "/patient/appareils",
        f"{base}/documents/{uuid.uuid4()}",  # the "not found" page
    ):
        assert_page(client.get(path), path)
    # Refusals, form errors and htmx fragments are pages too.
    assert_page(client.post(f"{base}/documents", data={"texte": "x"}), "forged search (403)")
    assert_page(post(client, f"{base}/documents", {"du": "31/02/2026"}), "bad dates (422)")
    htmx = {"HX-Request": "true"}
    assert_page(post(client, f"{base}/documents", {"categorie": "BIOLOGIE"}, headers=htmx), "htmx search")
    assert_page(post(client, f"{base}/documents/{pdf_id}/masquage", {"masquer": "1"}, headers=htmx), "htmx mask")
    # A redirect after a form.
    redirect = post(client, f"{base}/documents/{pdf_id}/masquage", {"masquer": "0"})
    assert redirect.status_code == 303
    assert_common(redirect, "redirect")
    assert redirect.headers["x-frame-options"] == "DENY"
    # The documents' bytes: a PDF inline (not sandboxed), everything else sandboxed.
    assert_content(client.get(f"{base}/documents/{pdf_id}/contenu"), "pdf inline", sandboxed=False)
    for path in (
        f"{base}/documents/{pdf_id}/telecharger",
        f"{base}/documents/{own['Photo']}/contenu",
        f"{base}/documents/{own['Note']}/contenu",
        f"{base}/documents/{own['Note']}/telecharger",
    ):
        assert_content(client.get(path), path)
    # Static files: no policy of theirs allows anything inline either.
    for path in ("/static/carnet.css", "/static/carnet.js", "/static/htmx.min.js"):
        static = anonymous.get(path)
        assert static.status_code == 200, path
        assert "unsafe-inline" not in static.headers["content-security-policy"], path
        assert static.headers["x-content-type-options"] == "nosniff", path


def test_professional_portal_responses_carry_the_security_headers(pro: Pro) -> None:
    patient_id, ins, system = pro.api.new_patient()
    client = pro.login("dr_lambert")
    response = deposit(client, patient_id, factories.pdf_bytes("entetes"), fields=PDF_FIELDS)
    assert response.status_code == 303
    doc_id = doc_id_of(response)
    for path in (
        "/pro",
        f"/pro/dossiers/{patient_id}",
        f"/pro/dossiers/{patient_id}?periode=tout",
        f"/pro/documents/{doc_id}",
        f"/pro/dossiers/{patient_id}/depot",
        f"/pro/dossiers/{patient_id}/declarations",
        f"/pro/dossiers/{patient_id}/urgence",
        f"/pro/documents/{uuid.uuid4()}",  # not found
    ):
        assert_page(client.get(path), path)
    search = pro_post(
        client,
        "/pro/patients",
        {"ins": ins, "system": system, "family": "TESTEUR", "given": "Camille", "birth_date": "1984-11-23"},
    )
    assert_page(search, "patient search")
    assert_page(pro_post(client, f"/pro/dossiers/{patient_id}/urgence", {"reason": "court"}), "emergency refused")
    assert_content(client.get(f"/pro/documents/{doc_id}/contenu"), "pdf inline", sandboxed=False)
    assert_content(client.get(f"/pro/documents/{doc_id}/telecharger"), "pdf download")
