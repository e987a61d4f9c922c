"""Both portals end to end in a real Chromium, through the pages only (links, buttons, forms).

Dominique (a demo patient) activates her account with the code of her activation letter, signs in with
her password and a TOTP code, reads a cardiology report, masks it from professionals, blocks a doctor,
allows masked documents in emergencies and reads her access history. Dr Girard (whom she authorized)
signs in with his card, finds her record by INS, deposits a CDA report, cannot open the masked report,
breaks the glass with a reason, and then reads it under the red emergency banner. Dr Blanc, blocked,
may not break the glass. Dominique finally sees the emergency access in her history and its
notification. Every key page passes axe-core (no serious or critical violation) and is saved as a
screenshot; no page reports a console error (the CSP blocked nothing).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from playwright.sync_api import FilePayload, Page, expect

from carnet.accounts.models import Account
from carnet.auth import patients
from carnet.demo.personas import BY_KEY, DEMO_PASSWORD, demo_totp_secret, persona_uuid
from carnet.identifiers.ins import INS_NIR_DEMO_OID, INS_NIR_TEST_OID
from tests import factories
from tests.browser.conftest import Portal, screenshot
from tests.browser.support import (
    Console,
    assert_fits,
    assert_focus_visible,
    assert_pdf_shown,
    field,
    focused,
    fresh_code,
    patient_sign_in,
    pro_find_patient,
    pro_sign_in,
    spent,
    tab_to,
)

CheckPage = Callable[[Page, str], None]
DOMINIQUE = BY_KEY["dominique_patient"]
NEW_PASSWORD = "Lavande-Quai-Sept-72"
REASON = "Patiente inconsciente aux urgences, antécédents inconnus"
CARDIOLOGY = "Compte rendu de consultation de cardiologie"


def activation_code(portal: Portal, record_id: uuid.UUID) -> str:
    """The code Carnet prints on the activation letter (as ``carnet account activation-code`` does)."""
    with portal.runtime.work() as work:
        issued = patients.issue_activation_code(work, record_id=record_id)
    return patients.format_code(issued.code)


def dominique_record(portal: Portal) -> uuid.UUID:
    with portal.runtime.read() as work:
        account = work.session.get(Account, persona_uuid("dominique_patient"))
        assert account is not None
        assert account.record_id is not None
        return account.record_id


def new_cda(marker: str) -> bytes:
    """A CDA R2 report about Dominique, written by Dr Girard."""
    girard = BY_KEY["dr_girard"]
    assert DOMINIQUE.ins is not None
    assert girard.idnat is not None
    data = factories.cda(DOMINIQUE.ins, INS_NIR_TEST_OID, marker=marker, author_idnat=girard.idnat)
    return (
        data.replace(
            b"<family>TESTEUR</family><given>Camille</given>", b"<family>PAT-TROIS</family><given>DOMINIQUE</given>"
        )
        .replace(b'<birthTime value="19800615"/>', b'<birthTime value="19790328"/>')
        .replace(b"<family>MEDIONI</family>", b"<family>GIRARD</family>")
    )


def test_patient_and_professional_journey(
    portal: Portal,
    patient_page: Page,
    pro_page: Callable[[str], Page],
    check_page: CheckPage,
) -> None:
    console = Console()
    page = console.watch(patient_page)
    page.on("dialog", lambda dialog: dialog.accept())  # "Bloquer ce professionnel ?" (carnet.js)
    record_id = dominique_record(portal)
    base = f"/patient/dossiers/{record_id}"

    # ------------------------------------------------------------------ the patient activates her account
    code = activation_code(portal, record_id)
    page.goto("/patient")
    expect(page).to_have_url(re.compile(r"/patient/connexion"))
    check_page(page, "patient-login")
    page.get_by_role("link", name="Première connexion : activer mon compte").click()
    field(page, "Code d'activation").fill(code)
    field(page, "INS ou identifiant").fill(DOMINIQUE.ins or "")
    field(page, "Date de naissance").fill("1979-03-28")
    field(page, "Mot de passe").fill(NEW_PASSWORD)
    field(page, "Confirmation du mot de passe").fill(NEW_PASSWORD)
    check_page(page, "patient-activation")
    page.get_by_role("button", name="Continuer").click()
    expect(page.locator("h1")).to_have_text("Enregistrez Carnet dans votre application d'authentification")
    expect(page.locator("img.qr")).to_be_visible()
    secret = page.locator("#totp-secret").get_attribute("data-secret")
    assert secret is not None
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    check_page(page, "patient-enrolment")
    first = fresh_code(secret)
    field(page, "Code affiché par l'application").fill(first)
    page.get_by_role("button", name="Terminer l'activation").click()
    expect(page).to_have_url(re.compile(r"/patient/connexion\?ok=active$"))
    expect(page.get_by_role("status")).to_contain_text("Votre compte est activé")
    spent(secret, first)

    # ------------------------------------------------------------------ sign-in: password + TOTP
    field(page, "INS ou identifiant").fill(DOMINIQUE.ins or "")
    field(page, "Mot de passe").fill(NEW_PASSWORD)
    field(page, "Code de l'application d'authentification").fill(fresh_code(secret))
    page.get_by_role("button", name="Se connecter").click()
    expect(page).to_have_url(re.compile(f"{base}$"))
    expect(page.locator("h1")).to_have_text("Bonjour Dominique")
    expect(page.get_by_role("heading", name=re.compile("Nouveaux documents"))).to_be_visible()
    nav = page.get_by_role("navigation", name="Navigation principale")
    expect(nav.get_by_role("link", name="Accueil")).to_have_attribute("aria-current", "page")
    check_page(page, "patient-home")

    # ------------------------------------------------------------------ documents: read one, mask it
    nav.get_by_role("link", name="Documents").click()
    expect(page).to_have_url(re.compile(f"{base}/documents$"))
    expect(page.get_by_role("heading", name=re.compile(r"Documents trouvés : \d+"))).to_be_visible()
    listing = page.locator("ul.docs > li")
    assert listing.count() >= 8  # the demo record: reports, prescriptions, vaccinations, her own directives
    expect(page.locator("ul.docs")).not_to_contain_text("anatomie pathologique")  # kept until its announcement
    check_page(page, "patient-documents")
    page.get_by_role("link", name="Prescription de produits de santé").click()
    expect(page.locator(".doc-view")).to_contain_text("PARACETAMOL MYLAN 500 mg")  # a CDA, rendered in the page
    check_page(page, "patient-document-cda")
    page.get_by_role("link", name="Documents", exact=True).last.click()
    listing.filter(has_text=CARDIOLOGY).get_by_role("link").click()
    expect(page).to_have_url(re.compile(f"{base}/documents/[0-9a-f-]{{36}}$"))
    masked_id = page.url.rsplit("/", 1)[1]
    expect(page.locator(".lead")).to_have_text(CARDIOLOGY)
    expect(page.locator(".doc-meta")).to_contain_text("Dr Claire LAMBERT")
    expect(page.locator("iframe.viewer")).to_have_attribute("src", f"{base}/documents/{masked_id}/contenu")
    expect(page.locator(".doc-meta")).to_contain_text("Visible par les professionnels autorisés")
    # The PDF is shown in its frame by Chromium's viewer (and the screenshot shows it, not an empty frame).
    assert_pdf_shown(
        page, page.locator("iframe.viewer"), re.compile(r".*Compte-rendu-de-consultation-de-cardiologie\.pdf")
    )
    check_page(page, "patient-document")
    page.get_by_role("button", name="Masquer aux professionnels").click()
    expect(page.get_by_role("status")).to_have_text("Le document est masqué aux professionnels de santé.")
    expect(page.locator(".doc-meta")).to_contain_text("Masqué aux professionnels")
    expect(page.get_by_role("button", name="Rendre visible aux professionnels")).to_be_visible()

    # ------------------------------------------------------------------ professionals: block one, emergency choices
    nav.get_by_role("link", name="Professionnels et confidentialité").click()
    expect(page.locator("h1")).to_have_text("Professionnels et confidentialité")
    pros = page.locator("ul.pros > li")
    expect(pros.filter(has_text="Dr Paul GIRARD")).to_contain_text("Autorisé par vous")
    expect(pros.filter(has_text="Dr Hugo NOIR")).to_contain_text("Bloqué")
    expect(pros.filter(has_text="Dr Marc BLANC")).to_have_count(0)
    check_page(page, "patient-professionals")
    field(page, "Nom ou numéro RPPS").fill("Blanc")
    page.get_by_role("button", name="Chercher dans l'annuaire").click()
    found = page.locator("section[aria-labelledby=find-title] li").filter(has_text="Dr Marc BLANC")
    expect(found).to_have_count(1)
    found.get_by_role("button", name="Bloquer").click()
    expect(page.get_by_role("status")).to_have_text(
        "Le professionnel est bloqué : il ne peut plus accéder à votre dossier."
    )
    expect(pros.filter(has_text="Dr Marc BLANC")).to_contain_text("Bloqué")
    masked_yes = page.get_by_role(
        "group", name=re.compile("les documents que j'ai masqués sont visibles")
    ).get_by_label("Oui")
    expect(masked_yes).not_to_be_checked()
    masked_yes.check()
    page.get_by_role("button", name="Enregistrer mes choix pour l'urgence").click()
    expect(page.get_by_role("status")).to_have_text("Vos choix pour les situations d'urgence sont enregistrés.")
    expect(page.locator("#f-masques-oui")).to_be_checked()

    # ------------------------------------------------------------------ the access history
    nav.get_by_role("link", name="Historique des accès").click()
    expect(page.locator("h1")).to_have_text("Historique des accès")
    expect(page.locator("ul.history")).to_contain_text("Vous avez autorisé l'accès en urgence aux documents masqués")
    field(page, "Qui").select_option(label="Professionnels de santé")
    page.get_by_role("button", name="Filtrer").click()
    expect(page.locator("ul.history")).to_contain_text("Dr Stéphane MEDIONI")  # who deposited her documents
    expect(page.locator("ul.history")).not_to_contain_text("Vous avez")
    expect(page.locator(".history-line--emergency")).to_have_count(0)
    check_page(page, "patient-history")

    # ------------------------------------------------------------------ a professional, with his card
    pro = console.watch(pro_page("dr_girard"))
    pro.goto("/pro/connexion")
    check_page(pro, "pro-login")
    pro_sign_in(pro)
    expect(pro.locator(".pro-identity")).to_contain_text("Paul GIRARD")
    expect(pro.locator(".pro-identity")).to_contain_text("Carte de professionnel de santé")
    check_page(pro, "pro-search")
    pro_find_patient(
        pro,
        ins=DOMINIQUE.ins or "",
        system=INS_NIR_TEST_OID,
        family="PAT-TROIS",
        given="Dominique",
        birth_date="1979-03-28",
    )
    result = pro.locator("section.result")
    expect(result).to_contain_text("Autorisé par le patient")
    expect(result).to_contain_text("Les traits d'identité saisis correspondent à ceux du dossier.")
    check_page(pro, "pro-search-result")
    result.get_by_role("link", name="Ouvrir le dossier").click()
    expect(pro).to_have_url(re.compile(f"/pro/dossiers/{record_id}$"))
    expect(pro.locator("h1")).to_contain_text("PAT-TROIS")
    documents = pro.locator("section[aria-labelledby=documents-title]")
    expect(documents).to_contain_text("Compte rendu d'anatomie pathologique")  # kept from the patient, not from him
    expect(documents).not_to_contain_text(CARDIOLOGY)  # masked by the patient
    check_page(pro, "pro-record")

    # deposit a CDA
    pro.get_by_role("link", name="Déposer un document").click()
    expect(pro.locator("h1")).to_have_text("Déposer un document")
    check_page(pro, "pro-deposit")
    marker = uuid.uuid4().hex[:8]
    field(pro, "Document (PDF ou CDA R2)").set_input_files(
        files=FilePayload(name="compte-rendu.xml", mimeType="text/xml", buffer=new_cda(marker))
    )
    pro.get_by_role("button", name="Déposer", exact=True).click()
    expect(pro).to_have_url(re.compile(r"/pro/documents/[0-9a-f-]{36}\?fait=depot$"))
    expect(pro.locator("h1")).to_have_text(f"Compte rendu {marker}")
    expect(pro.locator(".document-view")).to_contain_text(f"Observation clinique {marker}")
    check_page(pro, "pro-document")

    # the masked report stays out of reach, even at its address
    response = pro.goto(f"/pro/documents/{masked_id}")
    assert response is not None
    assert response.status == 404
    expect(pro.locator("h1")).to_have_text("Page introuvable")

    # break the glass
    pro.goto(f"/pro/dossiers/{record_id}")
    expect(pro.locator(".emergency-banner")).to_have_count(0)
    pro.get_by_role("link", name="Accès en urgence").click()
    expect(pro.locator("h1")).to_have_text("Accès en urgence")
    check_page(pro, "pro-emergency-form")
    field(pro, "Raison de l'accès").fill("Urgent")  # too short: refused, nothing opened
    pro.get_by_role("button", name="Ouvrir l'accès en urgence").click()
    expect(pro.locator("#f-reason-error")).to_contain_text("au moins 10 caractères")
    expect(pro.locator(".emergency-banner")).to_have_count(0)
    field(pro, "Raison de l'accès").fill(REASON)
    pro.get_by_role("button", name="Ouvrir l'accès en urgence").click()
    expect(pro).to_have_url(re.compile(f"/pro/dossiers/{record_id}\\?fait=urgence$"))
    banner = pro.get_by_role("region", name="Accès en urgence en cours")
    expect(banner).to_contain_text("Accès en urgence — Bris de glace")
    expect(banner).to_contain_text("lecture seule")
    countdown = banner.locator("time[data-countdown]")
    first_reading = countdown.inner_text()
    assert re.fullmatch(r"[34]:\d{2}:\d{2}", first_reading), first_reading  # 240 minutes, counting down
    expect(countdown).not_to_have_text(first_reading, timeout=5_000)  # carnet.js ticks (the CSP let it run)
    expect(documents).to_contain_text(CARDIOLOGY)  # the masked report, now readable
    check_page(pro, "pro-record-emergency")
    pro.locator(f"a[href='/pro/documents/{masked_id}']").click()
    expect(pro.locator("h1")).to_have_text(CARDIOLOGY)
    expect(pro.locator(".document-facts")).to_contain_text("Masqué aux professionnels")
    expect(pro.get_by_role("region", name="Accès en urgence en cours")).to_be_visible()
    check_page(pro, "pro-document-emergency")

    # ------------------------------------------------------------------ a blocked professional may not
    blocked = console.watch(pro_page("dr_blanc"))
    pro_sign_in(blocked)
    pro_find_patient(
        blocked,
        ins=DOMINIQUE.ins or "",
        system=INS_NIR_TEST_OID,
        family="PAT-TROIS",
        given="Dominique",
        birth_date="1979-03-28",
    )
    expect(blocked.locator("section.result")).to_contain_text("Aucun accès")
    blocked.locator("section.result").get_by_role("link", name="Ouvrir le dossier").click()
    expect(blocked.locator("section[aria-labelledby=documents-title]")).to_contain_text(
        "Aucun document ne vous est accessible"
    )
    blocked.get_by_role("link", name="Accès en urgence").click()
    field(blocked, "Raison de l'accès").fill(REASON)
    blocked.get_by_role("button", name="Ouvrir l'accès en urgence").click()
    expect(blocked.get_by_role("alert")).to_have_text("L'accès en urgence à ce dossier ne vous est pas ouvert.")
    expect(blocked.locator(".emergency-banner")).to_have_count(0)

    # ------------------------------------------------------------------ the patient sees it all
    page.reload()
    emergency = page.locator(".history-line--emergency")
    expect(emergency.first).to_contain_text("Paul GIRARD")  # every access he made in that mode is marked …
    expect(emergency.first).to_contain_text("Urgence : bris de glace")
    opening = emergency.filter(has_text="a accédé au dossier en urgence")
    expect(opening).to_have_count(1)  # … and the opening of the emergency access carries its reason
    expect(opening).to_contain_text("Paul GIRARD")
    expect(opening).to_contain_text(REASON)
    expect(emergency.filter(has_text=REASON)).to_have_count(1)
    check_page(page, "patient-history-emergency")
    page.get_by_role("link", name="Documents").first.click()
    expect(page.locator("ul.docs")).to_contain_text(f"Compte rendu {marker}")  # Dr Girard's deposit
    unread = nav.get_by_role("link", name=re.compile("Notifications"))
    expect(unread.locator(".count")).to_be_visible()
    unread.click()
    expect(page.locator("h1")).to_have_text("Notifications")
    alert = page.locator("li.notice-item--emergency")
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text("urgence")
    expect(alert).to_contain_text("Paul GIRARD")
    expect(alert).to_contain_text("Nouveau")
    check_page(page, "patient-notifications")
    alert.get_by_role("button", name="Marquer comme lue").click()
    expect(page.get_by_role("status")).to_have_text("La notification est marquée comme lue.")
    expect(page.locator("li.notice-item--emergency")).not_to_contain_text("Nouveau")

    assert console.errors == []  # the CSP blocked nothing, no script failed
    assert sorted(console.statuses) == [404, 422, 422]  # refused: the masked report, "Urgent", the blocked doctor


# ---------------------------------------------------------------------------------------------- without JavaScript
def test_essential_actions_work_without_javascript(portal: Portal, new_page: Callable[..., Page]) -> None:
    """Jean signs in, reads, filters, masks and unmasks, blocks and unblocks, reads his history and
    notifications, signs out; Dr Medioni signs in with his card, finds Jean and deposits a report — all
    with JavaScript off (no confirmation dialog, no countdown: the server does everything)."""
    jean = BY_KEY["jean_patient"]
    assert jean.ins is not None
    page = new_page(None, java_script_enabled=False)
    patient_sign_in(page, jean.ins, DEMO_PASSWORD, demo_totp_secret("jean_patient"))
    expect(page.locator("h1")).to_have_text("Bonjour Jean")
    screenshot(page, "nojs-patient-home")
    nav = page.get_by_role("navigation", name="Navigation principale")
    nav.get_by_role("link", name="Documents").click()
    expect(page.get_by_role("heading", name="Documents trouvés : 2")).to_be_visible()
    page.get_by_role("button", name="Comptes rendus").click()  # a category: a form, sent without script
    expect(page.get_by_role("heading", name=re.compile(r"^Documents trouvés : 1"))).to_be_visible()
    expect(page.get_by_role("button", name="Comptes rendus")).to_have_attribute("aria-pressed", "true")
    page.locator("ul.docs").get_by_role("link").click()
    expect(page.locator(".lead")).to_have_text("Compte rendu de consultation")
    page.get_by_role("button", name="Masquer aux professionnels").click()
    expect(page.get_by_role("status")).to_have_text("Le document est masqué aux professionnels de santé.")
    page.get_by_role("button", name="Rendre visible aux professionnels").click()
    expect(page.get_by_role("status")).to_have_text(
        "Le document est de nouveau visible par les professionnels autorisés."
    )
    screenshot(page, "nojs-patient-document")

    nav.get_by_role("link", name="Professionnels et confidentialité").click()
    field(page, "Nom ou numéro RPPS").fill("Blanc")
    page.get_by_role("button", name="Chercher dans l'annuaire").click()
    page.locator("section[aria-labelledby=find-title] li").filter(has_text="Dr Marc BLANC").get_by_role(
        "button", name="Bloquer"
    ).click()  # no confirmation dialog without JavaScript: the form is sent at once
    expect(page.get_by_role("status")).to_have_text(
        "Le professionnel est bloqué : il ne peut plus accéder à votre dossier."
    )
    blanc = page.locator("ul.pros > li").filter(has_text="Dr Marc BLANC")
    expect(blanc).to_contain_text("Bloqué")
    blanc.get_by_role("button", name="Débloquer").click()
    expect(page.get_by_role("status")).to_have_text("Le professionnel est débloqué.")
    screenshot(page, "nojs-patient-professionals")

    nav.get_by_role("link", name="Historique des accès").click()
    field(page, "Qui").select_option(label="Vous et vos représentants")
    page.get_by_role("button", name="Filtrer").click()  # a GET form
    expect(page.locator("ul.history")).to_contain_text("Vous avez")
    expect(page.locator("ul.history")).not_to_contain_text("MEDIONI")
    nav.get_by_role("link", name=re.compile("^Notifications")).click()
    expect(page.locator("h1")).to_have_text("Notifications")
    page.get_by_role("button", name="Tout marquer comme lu").click()
    expect(page.get_by_role("status")).to_have_text("Toutes les notifications sont marquées comme lues.")
    expect(page.locator(".notice-item--unread")).to_have_count(0)
    screenshot(page, "nojs-patient-notifications")
    page.get_by_role("button", name="Se déconnecter").click()
    expect(page.get_by_role("status")).to_have_text("Vous êtes déconnecté(e).")
    page.goto("/patient")
    expect(page).to_have_url(re.compile(r"/patient/connexion"))

    pro = new_page("dr_medioni", java_script_enabled=False)
    pro_sign_in(pro)
    pro_find_patient(
        pro, ins=jean.ins, system=INS_NIR_DEMO_OID, family="LEFÈVRE", given="Jean", birth_date="1955-03-02"
    )
    pro.locator("section.result").get_by_role("link", name="Ouvrir le dossier").click()
    expect(pro.locator("h1")).to_contain_text("LEFÈVRE")
    pro.get_by_role("link", name="Déposer un document").click()
    medioni = BY_KEY["dr_medioni"]
    assert medioni.idnat is not None
    data = factories.cda(jean.ins, INS_NIR_DEMO_OID, marker="sans-script", author_idnat=medioni.idnat)
    field(pro, "Document (PDF ou CDA R2)").set_input_files(
        files=FilePayload(name="cr.xml", mimeType="text/xml", buffer=data)
    )
    pro.get_by_role("button", name="Déposer", exact=True).click()
    expect(pro.locator("h1")).to_have_text("Compte rendu sans-script")
    screenshot(pro, "nojs-pro-document")
    pro.get_by_role("button", name="Se déconnecter").click()
    expect(pro).to_have_url(re.compile(r"/pro/connexion"))


# ---------------------------------------------------------------------------------------------- a 360 px phone
PHONE = {"width": 360, "height": 740}


def test_main_pages_fit_a_360_px_phone(portal: Portal, new_page: Callable[..., Page], check_page: CheckPage) -> None:
    """Marc (Léa's father) and Dr Haddad, on a phone: no page scrolls sideways."""
    page = new_page(None, viewport=PHONE, is_mobile=True, has_touch=True)
    console = Console()
    console.watch(page)
    for path in ("/", "/patient/connexion", "/patient/activation", "/pro/connexion"):
        page.goto(path)
        assert_fits(page, PHONE["width"])
    patient_sign_in(page, "marc_parent", DEMO_PASSWORD, demo_totp_secret("marc_parent"))
    expect(page.locator("h1")).to_have_text(re.compile("Léa PAT-TROIS"))
    assert_fits(page, PHONE["width"])
    check_page(page, "phone-patient-home")
    base = page.url
    pages = {
        "documents": f"{base}/documents",
        "professionals": f"{base}/professionnels",
        "history": f"{base}/historique",
        "notifications": "/patient/notifications",
        "devices": "/patient/appareils",
        "record": f"{base}/dossier",
    }
    for name, path in pages.items():
        page.goto(path)
        assert_fits(page, PHONE["width"])
        check_page(page, f"phone-patient-{name}")
    page.goto(pages["documents"])
    page.locator("ul.docs").get_by_role("link").first.click()
    assert_fits(page, PHONE["width"])
    check_page(page, "phone-patient-document")

    lea = BY_KEY["lea_minor"]
    assert lea.ins is not None
    pro = new_page("dr_haddad", viewport=PHONE, is_mobile=True, has_touch=True)
    console.watch(pro)
    pro_sign_in(pro)
    assert_fits(pro, PHONE["width"])
    check_page(pro, "phone-pro-search")
    pro_find_patient(
        pro, ins=lea.ins, system=INS_NIR_DEMO_OID, family="PAT-TROIS", given="Léa", birth_date="2012-05-14"
    )
    assert_fits(pro, PHONE["width"])
    pro.locator("section.result").get_by_role("link", name="Ouvrir le dossier").click()
    assert_fits(pro, PHONE["width"])
    pro.get_by_role("link", name="Accès en urgence").click()
    assert_fits(pro, PHONE["width"])
    field(pro, "Raison de l'accès").fill("Adolescente amenée inconsciente aux urgences")
    pro.get_by_role("button", name="Ouvrir l'accès en urgence").click()
    expect(pro.get_by_role("region", name="Accès en urgence en cours")).to_be_visible()
    assert_fits(pro, PHONE["width"])
    check_page(pro, "phone-pro-record-emergency")
    pro.get_by_role("link", name="Déposer un document").click()
    assert_fits(pro, PHONE["width"])
    check_page(pro, "phone-pro-deposit")
    assert console.errors == []


# ---------------------------------------------------------------------------------------------- keyboard only
def test_keyboard_navigation(portal: Portal, new_page: Callable[..., Page]) -> None:
    """Tab reaches the skip link first, then the main actions; every focused element shows its focus."""
    lea = BY_KEY["lea_minor"]
    assert lea.ins is not None
    page = new_page(None)
    page.goto("/patient/connexion")
    page.keyboard.press("Tab")
    skip = focused(page)
    assert skip["text"] == "Aller au contenu"
    assert "skip-link" in skip["classes"]
    assert_focus_visible(skip)
    expect(page.locator(".skip-link")).to_be_in_viewport()  # shown while focused
    page.keyboard.press("Enter")
    assert focused(page)["id"] == "main"
    assert_focus_visible(tab_to(page, "f-identifiant", limit=3))
    page.keyboard.type("lea_minor")
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "f-mot_de_passe"
    page.keyboard.type(DEMO_PASSWORD)
    page.keyboard.press("Tab")
    assert focused(page)["id"] == "f-code"
    page.keyboard.type(fresh_code(demo_totp_secret("lea_minor")))
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Bonjour Léa")

    page.keyboard.press("Tab")
    assert focused(page)["text"] == "Aller au contenu"
    assert_focus_visible(tab_to(page, "Documents"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile(r"^Documents trouvés"))).to_be_visible()
    assert_focus_visible(tab_to(page, "Note de vaccination"))  # a document of the list
    page.keyboard.press("Enter")
    expect(page.locator(".lead")).to_have_text("Note de vaccination HPV")
    assert_focus_visible(tab_to(page, "Masquer aux professionnels"))
    assert_focus_visible(tab_to(page, "Se déconnecter", limit=80))
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Vous êtes déconnecté(e).")

    pro = new_page("dr_lambert")
    pro.goto("/pro/connexion")
    pro.keyboard.press("Tab")
    assert focused(pro)["text"] == "Aller au contenu"
    assert_focus_visible(tab_to(pro, "Se connecter avec ma carte"))
    pro.keyboard.press("Enter")
    expect(pro).to_have_url(re.compile(r"/pro$"))
    assert_focus_visible(tab_to(pro, "f-ins"))
    pro.keyboard.type(lea.ins)
    pro.keyboard.press("Tab")
    pro.keyboard.press("Tab")
    assert focused(pro)["id"] == "f-family"
    pro.keyboard.type("PAT-TROIS")
    pro.keyboard.press("Tab")
    pro.keyboard.type("Léa")
    pro.keyboard.press("Tab")
    assert focused(pro)["id"] == "f-birth_date"
    pro.locator("#f-system").select_option(INS_NIR_DEMO_OID)  # a select is changed with the arrow keys
    pro.locator("#f-birth_date").fill("2012-05-14")
    pro.locator("#f-birth_date").press("Enter")
    expect(pro.locator("section.result")).to_contain_text("Équipe de soins")
    assert_focus_visible(tab_to(pro, "Ouvrir le dossier"))
    pro.keyboard.press("Enter")
    expect(pro.locator("h1")).to_contain_text("PAT-TROIS")
    for action in ("Déposer un document", "Déclarer le consentement", "Accès en urgence", "Note de vaccination HPV"):
        assert_focus_visible(tab_to(pro, action))
