"""The pages the journeys do not go through, in a real Chromium, for a patient of their own (a new record and
account, so that nothing here depends on the other tests): axe-core finds no serious or critical violation
on any of them, in French and in English (``check_page``); a PDF is shown in its frame on both portals; the
actions htmx carries (a category, a search, masking, marking a notice read) change the page in place —
no navigation — with the focus kept where the keyboard was. Their no-JavaScript twins are in
``test_journey.py::test_essential_actions_work_without_javascript`` and ``tests/portal/test_patient_htmx.py``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import FilePayload, Page, expect
from starlette.testclient import TestClient

from carnet.app import create_app
from carnet.demo.pdf import make_pdf
from tests.browser.conftest import Portal
from tests.browser.support import Console, assert_pdf_shown, focused, patient_sign_in, pro_find_patient, pro_sign_in
from tests.conftest import Api
from tests.portal.patient_support import PASSWORD, Person, deposit_pdf, new_patient

CheckPage = Callable[[Page, str], None]
NOT_NAVIGATED = "window.__carnetSamePage === true"  # a mark a navigation would wipe out


@pytest.fixture(scope="module")
def someone(portal: Portal) -> Iterator[tuple[Person, dict[str, str]]]:
    """A patient of these tests, with a record, an account (password + TOTP), two documents deposited by
    Dr Medioni (a report and a laboratory result: PDFs) and their notifications: (person, document ids)."""
    with TestClient(create_app(portal.settings, portal.runtime), base_url="http://testserver") as client:
        api = Api(client, portal.runtime)
        person = new_patient(api, given="Alix")
        docs = {
            "report": deposit_pdf(api, person, persona="dr_medioni", title="Compte rendu de consultation"),
            "lab": deposit_pdf(api, person, persona="dr_medioni", type_code="11502-2", title="Bilan sanguin"),
        }
        yield person, docs


def sign_in(page: Page, person: Person) -> None:
    assert person.ins is not None
    patient_sign_in(page, person.ins, PASSWORD, person.secret)


def to_english(page: Page, back: str | None = None) -> None:
    """The language switch of the page's header: back on the same page (or on ``back``), in English."""
    address = page.url
    page.select_option("#lang-select", "en")
    page.get_by_role("button", name="Changer").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert page.url == (address if back is None else urlsplit(address)._replace(path=back).geturl())


def mark_page(page: Page) -> None:
    page.evaluate("window.__carnetSamePage = true")


def test_the_other_pages_pass_axe(
    portal: Portal, someone: tuple[Person, dict[str, str]], new_page: Callable[..., Page], check_page: CheckPage
) -> None:
    person, _ = someone
    console = Console()
    page = console.watch(new_page(None))
    page.goto("/a-propos")
    expect(page.locator("h1")).to_have_text("À propos et confidentialité")
    check_page(page, "about")
    page.goto("/patient/mot-de-passe-oublie")
    expect(page.locator("h1")).to_have_text("Mot de passe oublié")
    check_page(page, "patient-reset-request")
    page.get_by_role("button", name="Recevoir un code").click()  # nothing typed: the errors, tied to the fields
    expect(page.locator("#error-summary")).to_be_visible()
    check_page(page, "patient-reset-request-errors")
    page.goto("/patient/mot-de-passe-oublie/nouveau")
    expect(page.locator("h1")).to_have_text("Choisir un nouveau mot de passe")
    check_page(page, "patient-reset-confirm")

    sign_in(page, person)
    base = person.base
    page.goto(f"{base}/documents/ajout")
    expect(page.locator("h1")).to_have_text("Ajouter un document")
    check_page(page, "patient-upload")
    page.get_by_label(re.compile(r"^Fichier")).set_input_files(
        files=FilePayload(name="certificat.pdf", mimeType="application/pdf", buffer=make_pdf("Certificat", ["Sport"]))
    )
    page.get_by_label(re.compile(r"^Titre")).fill("Certificat de sport")
    page.get_by_label(re.compile(r"^Catégorie")).select_option(label="Certificats")
    page.get_by_role("button", name="Ajouter le document").click()
    expect(page.get_by_role("status")).to_have_text("Votre document a été ajouté.")
    page.get_by_role("link", name=re.compile("Certificat déposé par le patient")).first.click()
    page.get_by_role("link", name="Supprimer ce document").click()
    expect(page.get_by_role("button", name=re.compile("Supprimer"))).to_be_visible()
    check_page(page, "patient-document-delete")
    page.goto("/patient/notifications/preferences")
    check_page(page, "patient-notification-preferences")
    response = page.goto(f"{base}/documents/{uuid.uuid4()}")
    assert response is not None
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Page introuvable")
    check_page(page, "error-not-found")

    pro = console.watch(new_page("dr_lambert"))
    pro_sign_in(pro)
    pro.goto(f"/pro/dossiers/{person.record_id}/declarations")
    expect(pro.locator("h1")).to_have_text("Déclarer le consentement")
    check_page(pro, "pro-declarations")
    assert console.errors == []


def test_the_main_pages_pass_axe_in_english(
    portal: Portal, someone: tuple[Person, dict[str, str]], new_page: Callable[..., Page], check_page: CheckPage
) -> None:
    person, docs = someone
    console = Console()
    page = console.watch(new_page(None))
    sign_in(page, person)
    to_english(page)
    expect(page.locator("h1")).to_contain_text("Alix")
    base = person.base
    pages = {
        "home": base,
        "documents": f"{base}/documents",
        "document": f"{base}/documents/{docs['report']}",
        "upload": f"{base}/documents/ajout",
        "professionals": f"{base}/professionnels",
        "history": f"{base}/historique",
        "notifications": "/patient/notifications",
        "notification-preferences": "/patient/notifications/preferences",
        "record": f"{base}/dossier",
        "devices": "/patient/appareils",
    }
    for name, path in pages.items():
        page.goto(path)
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.get_by_role("navigation", name="Main navigation")).to_be_visible()
        check_page(page, f"en-patient-{name}")
    page.goto(f"{base}/documents/{uuid.uuid4()}")
    expect(page.locator("h1")).to_have_text("Page not found")
    check_page(page, "en-error-not-found")

    pro = console.watch(new_page("dr_lambert"))
    pro_sign_in(pro)
    assert person.ins is not None
    assert person.system is not None
    pro_find_patient(
        pro,
        ins=person.ins,
        system=person.system.removeprefix("urn:oid:"),
        family="TESTEUR",
        given="Alix",
        birth_date=person.birth_date,
    )
    to_english(pro, back="/pro")  # a search result answers a form (POST /pro/patients): back to the search
    expect(pro.get_by_role("button", name="Search")).to_be_visible()
    check_page(pro, "en-pro-search")
    for name, path in {
        "record": f"/pro/dossiers/{person.record_id}",
        "document": f"/pro/documents/{docs['report']}",
        "deposit": f"/pro/dossiers/{person.record_id}/depot",
        "declarations": f"/pro/dossiers/{person.record_id}/declarations",
        "emergency-form": f"/pro/dossiers/{person.record_id}/urgence",
    }.items():
        pro.goto(path)
        expect(pro.locator("html")).to_have_attribute("lang", "en")
        check_page(pro, f"en-pro-{name}")
    assert console.errors == []
    assert console.statuses == [404]


def test_a_pdf_is_shown_in_its_frame_on_both_portals(
    portal: Portal, someone: tuple[Person, dict[str, str]], new_page: Callable[..., Page]
) -> None:
    """Chromium's PDF viewer opens the PDF in the page's frame (headless Chromium has it): the frame holds a
    PDF, the viewer has loaded it, and its pixels show a page, not an empty frame."""
    person, docs = someone
    page = new_page(None)
    sign_in(page, person)
    page.goto(f"{person.base}/documents/{docs['report']}")
    assert_pdf_shown(page, page.locator("iframe.viewer"), re.compile(r".*Compte-rendu-de-consultation\.pdf"))
    pro = new_page("dr_lambert")
    pro_sign_in(pro)
    pro.goto(f"/pro/documents/{docs['lab']}")
    assert_pdf_shown(pro, pro.locator("iframe.viewer"), f"carnet-{docs['lab'][:8]}.pdf")


def test_htmx_actions_change_the_page_in_place(
    portal: Portal, someone: tuple[Person, dict[str, str]], new_page: Callable[..., Page], check_page: CheckPage
) -> None:
    person, docs = someone
    console = Console()
    page = console.watch(new_page(None))
    sign_in(page, person)
    base = person.base

    # A category, then a search: the results change, the page stays (and so does the focus).
    page.goto(f"{base}/documents")
    mark_page(page)
    page.get_by_role("button", name="Résultats de biologie").click()
    expect(page.get_by_role("heading", name="Documents trouvés : 1 — Résultats de biologie")).to_be_visible()
    expect(page.get_by_role("button", name="Résultats de biologie")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("ul.docs")).to_contain_text("Bilan sanguin")
    expect(page.locator("#results-status")).to_have_text("Documents trouvés : 1 — Résultats de biologie")
    assert focused(page)["id"] == "chip-BIOLOGIE"
    assert page.evaluate(NOT_NAVIGATED)
    assert page.url.endswith(f"{base}/documents")
    page.get_by_role("button", name="Tous", exact=True).click()
    expect(page.get_by_role("button", name="Tous", exact=True)).to_have_attribute("aria-pressed", "true")
    page.get_by_label(re.compile(r"^Type, titre ou auteur")).fill("consultation")
    page.get_by_label(re.compile(r"^Type, titre ou auteur")).press("Enter")
    expect(page.get_by_role("heading", name=re.compile(r"^Documents trouvés : 1$"))).to_be_visible()
    expect(page.locator("ul.docs")).to_contain_text("Compte rendu de consultation")
    assert page.evaluate(NOT_NAVIGATED)
    check_page(page, "patient-documents-htmx")

    # Masking a document: its facts and actions change in place, the message is told.
    page.goto(f"{base}/documents/{docs['lab']}")
    mark_page(page)
    page.get_by_role("button", name="Masquer aux professionnels").click()
    expect(page.get_by_role("status")).to_have_text("Le document est masqué aux professionnels de santé.")
    expect(page.locator(".doc-meta")).to_contain_text("Masqué aux professionnels")
    toggle = page.get_by_role("button", name="Rendre visible aux professionnels")
    expect(toggle).to_be_focused()  # the same button's place, for the keyboard
    assert page.evaluate(NOT_NAVIGATED)
    assert page.url.endswith(f"/documents/{docs['lab']}")  # no ?ok=…: no redirect was followed
    toggle.click()
    expect(page.get_by_role("status")).to_have_text(
        "Le document est de nouveau visible par les professionnels autorisés."
    )
    expect(page.get_by_role("button", name="Masquer aux professionnels")).to_be_visible()
    assert page.evaluate(NOT_NAVIGATED)

    # Marking a notice read: the notice, the unread summary and the count of the navigation change.
    page.goto("/patient/notifications")
    mark_page(page)
    unread = page.locator("li.notice-item--unread")
    before = unread.count()
    assert before >= 1
    count = page.get_by_role("navigation", name="Navigation principale").locator("#unread-count")
    expect(count).to_contain_text(str(before))
    first = unread.first
    notice_id = first.get_attribute("id")
    first.get_by_role("button", name="Marquer comme lue").click()
    expect(page.get_by_role("status")).to_have_text("La notification est marquée comme lue.")
    item = page.locator(f"li#{notice_id}")
    expect(item).not_to_have_class(re.compile("notice-item--unread"))
    expect(item.locator(".badge")).to_have_count(0)  # no longer "Nouveau"
    expect(item.locator("h2")).to_be_focused()
    expect(page.locator("#unread-summary")).to_contain_text(f"Non lues : {before - 1}")
    if before > 1:
        expect(count).to_contain_text(str(before - 1))
    else:
        expect(count.locator(".count")).to_have_count(0)
    assert page.evaluate(NOT_NAVIGATED)
    check_page(page, "patient-notifications-htmx")
    assert console.errors == []
