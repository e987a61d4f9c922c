"""What htmx does on the patient portal, checked at the server: a request sent by htmx (``HX-Request: true``)
is answered with the fragment of the page the action changes (the document's facts after masking, a notice
marked read with the unread counts, the documents search form and its results), the same request without
the header with the whole page or a 303 — the no-JavaScript path. CSRF is enforced on both; a session that
expired makes htmx load the sign-in page as a whole page."""

from __future__ import annotations

import re
import uuid

from carnet.notifications import centre
from carnet.notifications.kinds import Language
from tests.conftest import Api
from tests.portal.patient_support import (
    Person,
    body,
    browser,
    cheap_hashing,  # noqa: F401 - autouse fixture
    deposit_pdf,
    fhir_ids,
    new_patient,
    post,
    signed_in,
    token,
)

HTMX = {"HX-Request": "true"}


def _whole_page(html: str) -> bool:
    return html.lstrip().lower().startswith("<!doctype html>")


def _notices(person: Person) -> centre.Page:
    with person.api.runtime.read() as work:
        return centre.list_notices(work, recipient=f"account:{person.account_id}", language=Language.FR)


def test_masking_answers_htmx_with_the_documents_facts_and_anyone_else_with_a_redirect(api: Api) -> None:
    person = new_patient(api)
    doc_id = deposit_pdf(api, person, persona="dr_medioni", title="Compte rendu masquable")
    client = signed_in(person)
    page = client.get(f"{person.base}/documents/{doc_id}")
    # The form works without JavaScript (method, action) and htmx swaps its answer in place of the facts.
    form = re.search(r"<form[^>]*masquage[^>]*>", page.text, re.S)
    assert form is not None
    assert 'method="post"' in form.group(0)
    assert f'action="{person.base}/documents/{doc_id}/masquage"' in form.group(0)
    assert f'hx-post="{person.base}/documents/{doc_id}/masquage"' in form.group(0)
    assert 'hx-target="#doc-meta"' in form.group(0)
    assert 'id="doc-meta"' in page.text
    assert 'id="notices"' in page.text  # where the answer's message goes

    masked = post(client, f"{person.base}/documents/{doc_id}/masquage", {"masquer": "1"}, headers=HTMX)
    assert masked.status_code == 200
    assert not _whole_page(masked.text)
    assert masked.text.lstrip().startswith('<section class="card doc-meta" id="doc-meta"')
    assert masked.headers["vary"] == "HX-Request"
    assert masked.headers["content-security-policy"].startswith("default-src 'self'")  # the page's policy
    fragment = body(masked)
    assert "Rendre visible aux professionnels" in fragment  # the action now offered
    assert "Masqué aux professionnels" in fragment
    assert re.search(r'<div id="notices"[^>]*hx-swap-oob="true"', masked.text)
    assert "Le document est masqué aux professionnels de santé." in fragment
    assert doc_id not in fhir_ids(api, "dr_lambert", person)  # really masked

    unmasked = post(client, f"{person.base}/documents/{doc_id}/masquage", {"masquer": "0"})  # no htmx
    assert unmasked.status_code == 303
    assert unmasked.headers["location"] == f"{person.base}/documents/{doc_id}?ok=demasque"
    assert doc_id in fhir_ids(api, "dr_lambert", person)

    # htmx sends the token in its header (hx-headers of the page) as well as in the form; neither: refused.
    by_header = client.post(
        f"{person.base}/documents/{doc_id}/masquage",
        data={"masquer": "1"},
        headers={**HTMX, "X-Carnet-Form": token(client)},
        follow_redirects=False,
    )
    assert by_header.status_code == 200
    forged = client.post(
        f"{person.base}/documents/{doc_id}/masquage", data={"masquer": "0"}, headers=HTMX, follow_redirects=False
    )
    assert forged.status_code == 403
    assert doc_id not in fhir_ids(api, "dr_lambert", person)  # still masked: the forged request did nothing


def test_marking_a_notice_read_answers_htmx_with_the_notice_and_the_unread_counts(api: Api) -> None:
    person = new_patient(api)
    deposit_pdf(api, person, persona="dr_medioni")
    deposit_pdf(api, person, persona="dr_medioni", title="Second compte rendu")
    held = _notices(person)
    assert held.unread >= 2
    first, second = held.notices[0], held.notices[1]
    client = signed_in(person)
    page = client.get("/patient/notifications")
    assert f'<li id="notice-{first.id}" class="notice-item notice-item--unread' in page.text
    assert f'hx-post="/patient/notifications/{first.id}/lue"' in page.text
    assert f'action="/patient/notifications/{first.id}/lue"' in page.text

    read = post(client, f"/patient/notifications/{first.id}/lue", headers=HTMX)
    assert read.status_code == 200
    assert not _whole_page(read.text)
    assert read.text.lstrip().startswith(f'<li id="notice-{first.id}" class="notice-item"')  # no longer unread
    assert f"/patient/notifications/{first.id}/lue" not in read.text  # nothing left to mark
    text = body(read)
    assert "La notification est marquée comme lue." in text
    assert f"Non lues : {held.unread - 1}" in text
    assert re.search(r'<div id="unread-summary" hx-swap-oob="true">', read.text)
    count = re.search(r'<span id="unread-count" hx-swap-oob="true">(.*?)</span></span>', read.text, re.S)
    assert count is not None
    assert f'<span class="count">{held.unread - 1}' in count.group(1)
    assert "data-focus-here" in read.text  # the keyboard focus stays with the notice (carnet.js)
    assert _notices(person).unread == held.unread - 1

    plain = post(client, f"/patient/notifications/{second.id}/lue")  # without JavaScript
    assert plain.status_code == 303
    assert plain.headers["location"] == "/patient/notifications?ok=lue"
    assert _notices(person).unread == held.unread - 2


def test_the_documents_search_answers_htmx_with_the_form_and_its_results(api: Api) -> None:
    person = new_patient(api)
    report = deposit_pdf(api, person, persona="dr_medioni", title="Compte rendu de consultation")
    lab = deposit_pdf(api, person, persona="dr_medioni", type_code="11502-2", title="Bilan sanguin")
    client = signed_in(person)
    page = client.get(f"{person.base}/documents")
    assert page.headers["vary"] == "HX-Request"
    form = re.search(r'<form[^>]*id="doc-search"[^>]*>', page.text, re.S)
    assert form is not None
    assert 'method="post"' in form.group(0)
    assert f'hx-post="{person.base}/documents"' in form.group(0)
    assert 'id="chip-BIOLOGIE"' in page.text  # a stable id: htmx keeps the focus on the chip pressed

    chip = post(client, f"{person.base}/documents", {"categorie": "BIOLOGIE"}, headers=HTMX)
    assert chip.status_code == 200
    assert not _whole_page(chip.text)
    assert chip.text.lstrip().startswith('<form method="post"')
    assert f"documents/{lab}" in chip.text
    assert f"documents/{report}" not in chip.text
    assert re.search(r'id="chip-BIOLOGIE"[^>]*aria-pressed="true"', chip.text)
    assert 'name="categorie_courante" value="BIOLOGIE"' in chip.text  # the next search keeps the category
    status = re.search(r'<p id="results-status"[^>]*hx-swap-oob="true">(.*?)</p>', chip.text, re.S)
    assert status is not None
    assert "Documents trouvés : 1" in status.group(1)

    # A wrong date: the form with its errors, swapped in too (422).
    wrong = post(client, f"{person.base}/documents", {"du": "31/02/2026"}, headers=HTMX)
    assert wrong.status_code == 422
    assert not _whole_page(wrong.text)
    assert "Indiquez une date valide." in body(wrong)
    assert 'aria-invalid="true"' in wrong.text

    # The same requests without htmx: whole pages.
    plain = post(client, f"{person.base}/documents", {"categorie": "BIOLOGIE"})
    assert plain.status_code == 200
    assert _whole_page(plain.text)
    assert f"documents/{lab}" in plain.text
    assert f"documents/{report}" not in plain.text


def test_an_expired_session_makes_htmx_load_the_sign_in_page(api: Api) -> None:
    person = new_patient(api)
    client = browser(api)  # no session
    answer = post(client, f"{person.base}/documents", {"categorie": "BIOLOGIE"}, headers=HTMX)
    assert answer.status_code == 200
    assert answer.headers["hx-redirect"].startswith("/patient/connexion?next=")
    assert answer.text == ""
    plain = post(client, f"{person.base}/documents", {"categorie": "BIOLOGIE"})
    assert plain.status_code == 303
    assert plain.headers["location"].startswith("/patient/connexion?next=")
    # An error is a whole page, whatever asked for it (htmx puts it in place of the page's body).
    signed = signed_in(person)
    missing = post(signed, f"{person.base}/documents/{uuid.uuid4()}/masquage", {"masquer": "1"}, headers=HTMX)
    assert missing.status_code == 404
    assert _whole_page(missing.text)
    assert "Page introuvable" in body(missing)
