"""The patient portal's record pages: the home page (what is new since the last visit), the access history
and its filters, the notification centre and preferences, closing and reopening the record, and the full
export (a ZIP with a FHIR Bundle and the original files, nothing the patient may not see)."""

from __future__ import annotations

import io
import re
import uuid
import zipfile

import orjson

from carnet.demo.pdf import make_pdf
from carnet.demo.personas import BY_KEY
from carnet.notifications import centre, preferences
from carnet.notifications.kinds import Language, Topic
from tests.conftest import Api
from tests.portal.patient_support import (
    Person,
    body,
    cheap_hashing,  # noqa: F401 - autouse fixture
    deposit_cda,
    deposit_pdf,
    fhir_ids,
    new_patient,
    patient_documents,
    post,
    signed_in,
    upload,
)

EMERGENCY = {
    "resourceType": "Parameters",
    "parameter": [
        {"name": "mode", "valueCode": "break-glass"},
        {"name": "reason", "valueString": "Patient inconscient aux urgences, antécédents inconnus"},
    ],
}


def _notices(person: Person) -> centre.Page:
    with person.api.runtime.read() as work:
        return centre.list_notices(work, recipient=f"account:{person.account_id}", language=Language.FR)


# ---------------------------------------------------------------------------------------- home
def test_home_shows_what_is_new_since_the_last_visit(api: Api) -> None:
    person = new_patient(api)
    before = deposit_pdf(api, person, persona="dr_medioni", title="Ancien compte rendu")
    first_visit = signed_in(person)
    welcome = first_visit.get(person.base)
    assert welcome.status_code == 200
    assert "Bienvenue dans votre espace." in body(welcome)
    post(first_visit, "/patient/deconnexion")
    after = deposit_pdf(api, person, persona="dr_medioni", title="Nouveau compte rendu")
    assert api.get(f"/fhir/DocumentReference/{after}", "dr_lambert").status_code == 200
    again = signed_in(person)
    home = again.get(person.base)
    assert home.status_code == 200
    text = body(home)
    assert "Ce qui est nouveau depuis votre dernière visite" in text
    new_docs = text[text.index('id="new-docs"') : text.index('id="new-access"')]
    assert f"documents/{after}" in new_docs
    assert f"documents/{before}" not in new_docs
    accesses = text[text.index('id="new-access"') : text.index('id="new-notices"')]
    assert "LAMBERT" in accesses.upper()
    notices = text[text.index('id="new-notices"') :]
    assert "Aucune notification non lue." not in notices


# ---------------------------------------------------------------------------------------- history
def test_history_lists_every_access_with_who_how_and_filters(api: Api) -> None:
    person = new_patient(api)
    doc_id = deposit_pdf(api, person, persona="dr_medioni")
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200
    granted = api.post(f"/fhir/Patient/{person.record_id}/$emergency-access", "dr_blanc", EMERGENCY)
    assert granted.status_code == 200, granted.text
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_blanc").status_code == 200
    client = signed_in(person)
    page = client.get(f"{person.base}/historique")
    assert page.status_code == 200
    text = body(page)
    assert "LAMBERT" in text.upper()
    assert "BLANC" in text.upper()
    assert "Urgence : bris de glace" in text
    assert "Patient inconscient aux urgences" in text
    emergency_lines = re.findall(r'<li class="history-line history-line--emergency">(.*?)</li>', text, re.S)
    assert emergency_lines
    assert all("BLANC" in line.upper() for line in emergency_lines)
    # Filter on the actor type: professionals only, then the patient's own actions only.
    pros = body(client.get(f"{person.base}/historique?acteur=HEALTHCARE_PROFESSIONAL"))
    pro_lines = re.findall(r'history-line__what">(.*?)</p>', pros)
    assert pro_lines
    assert "LAMBERT" in pros.upper()
    assert not any("<strong>Vous</strong>" in line for line in pro_lines)
    own = body(client.get(f"{person.base}/historique?acteur=PATIENT"))
    own_lines = re.findall(r'history-line__what">(.*?)</p>', own)
    assert own_lines
    assert all(line.startswith("<strong>Vous</strong>") for line in own_lines)
    assert re.search(r'<option value="PATIENT" selected', own)
    # Dates: a period long before today finds nothing; bad dates are clear errors.
    old = body(client.get(f"{person.base}/historique?du=2001-01-01&au=2001-12-31"))
    assert "Aucune action ne correspond." in old
    bad = client.get(f"{person.base}/historique?du=2026-13-45")
    assert bad.status_code == 422
    assert "Indiquez une date valide." in body(bad)
    reversed_dates = client.get(f"{person.base}/historique?du=2026-10-02&au=2026-10-01")
    assert reversed_dates.status_code == 422
    assert "La date de fin doit suivre la date de début." in body(reversed_dates)
    # Another patient's history is not found, as a record that does not exist.
    other = signed_in(new_patient(api))
    assert other.get(f"{person.base}/historique").status_code == 404
    assert other.get(f"/patient/dossiers/{uuid.uuid4()}/historique").status_code == 404


# ---------------------------------------------------------------------------------------- notifications
def test_notification_centre_read_and_delete(api: Api) -> None:
    person = new_patient(api)
    doc_id = deposit_pdf(api, person, persona="dr_medioni")
    deposit_pdf(api, person, persona="dr_medioni", title="Second compte rendu")  # each deposit is a notice
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200
    held = _notices(person)
    assert held.total >= 2
    assert held.unread == held.total
    client = signed_in(person)
    page = client.get("/patient/notifications")
    assert page.status_code == 200
    assert f"Non lues : {held.unread}" in body(page)
    first = held.notices[0]
    assert f"/patient/notifications/{first.id}/lue" in page.text
    refused = client.post(f"/patient/notifications/{first.id}/lue", follow_redirects=False)
    assert refused.status_code == 403
    assert _notices(person).unread == held.unread
    read = post(client, f"/patient/notifications/{first.id}/lue")
    assert read.status_code == 303
    assert read.headers["location"] == "/patient/notifications?ok=lue"
    assert _notices(person).unread == held.unread - 1
    deleted = post(client, f"/patient/notifications/{first.id}/suppression")
    assert deleted.headers["location"] == "/patient/notifications?ok=notif-supprimee"
    assert _notices(person).total == held.total - 1
    # Someone else's notice: not found, and untouched.
    other = new_patient(api)
    other_doc = deposit_pdf(api, other, persona="dr_medioni")
    api.get(f"/fhir/DocumentReference/{other_doc}", "dr_lambert")
    theirs = _notices(other).notices[0]
    stranger = post(client, f"/patient/notifications/{theirs.id}/suppression")
    assert stranger.status_code == 404
    assert post(client, "/patient/notifications/not-an-id/lue").status_code == 404
    assert _notices(other).total >= 1
    assert any(n.id == theirs.id for n in _notices(other).notices)
    everything = post(client, "/patient/notifications/tout-lire")
    assert everything.headers["location"] == "/patient/notifications?ok=tout-lu"
    assert _notices(person).unread == 0
    assert "Toutes les notifications sont marquées comme lues." in body(client.get(everything.headers["location"]))


def test_notification_preferences(api: Api) -> None:
    person = new_patient(api)
    client = signed_in(person)
    form = client.get("/patient/notifications/preferences")
    assert form.status_code == 200
    assert 'name="canal_email"' in form.text
    address = f"camille.{uuid.uuid4().hex[:8]}@example.org"
    saved = post(
        client,
        "/patient/notifications/preferences",
        {"email": address, "canal_email": "1", "langue": "en", "theme": ["documents", "record"]},
    )
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == "/patient/notifications/preferences?ok=preferences"
    with api.runtime.read() as work:
        held = preferences.get(work, account_id=person.account_id)
    assert held.email == address
    assert held.email_channel is True
    assert held.sms_channel is False
    assert held.language == Language.EN
    assert not held.wants(Topic.PROFESSIONAL_ACCESS)
    assert held.wants(Topic.DOCUMENTS)
    assert held.wants(Topic.EMERGENCY_ACCESS)  # mandatory, whatever the form says
    page = client.get(saved.headers["location"])
    assert f'value="{address}"' in page.text
    # Bad input: a clear message, nothing written.
    bad_email = post(client, "/patient/notifications/preferences", {"email": "pas-une-adresse", "canal_email": "1"})
    assert bad_email.status_code == 422
    assert "Cette adresse e-mail n'est pas valide" in body(bad_email)
    sms_without_phone = post(client, "/patient/notifications/preferences", {"canal_sms": "1"})
    assert sms_without_phone.status_code == 422
    assert "Indiquez un numéro de mobile" in body(sms_without_phone)
    no_csrf = client.post(
        "/patient/notifications/preferences", data={"email": "", "langue": "fr"}, follow_redirects=False
    )
    assert no_csrf.status_code == 403
    with api.runtime.read() as work:
        assert preferences.get(work, account_id=person.account_id) == held


# ---------------------------------------------------------------------------------------- close / reopen
def test_close_with_the_consequences_spelled_out_then_reopen(api: Api) -> None:
    person = new_patient(api)
    doc_id = deposit_pdf(api, person, persona="dr_medioni")
    client = signed_in(person)
    page = client.get(f"{person.base}/dossier")
    assert page.status_code == 200
    text = body(page)
    assert "aucun professionnel de santé ne pourra plus le consulter, même en urgence" in text
    assert "le dossier est conservé dix ans" in text
    unconfirmed = post(client, f"{person.base}/fermeture")
    assert unconfirmed.status_code == 422
    assert "Cochez la case pour confirmer" in body(unconfirmed)
    no_csrf = client.post(f"{person.base}/fermeture", data={"confirmation": "oui"}, follow_redirects=False)
    assert no_csrf.status_code == 403
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200
    closed = post(client, f"{person.base}/fermeture", {"confirmation": "oui"})
    assert closed.status_code == 303
    assert closed.headers["location"] == f"{person.base}/dossier?ok=ferme"
    after = body(client.get(closed.headers["location"]))
    assert "Le dossier est fermé." in after
    assert "Rouvrir le dossier" in after
    # Professionals no longer reach it; the patient still reads their documents, but adds nothing.
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code != 200
    assert client.get(f"{person.base}/documents/{doc_id}").status_code == 200
    assert "Ce dossier est fermé" in body(client.get(person.base))
    closed_message = "Ce dossier est fermé : rouvrez-le pour le modifier."
    refused = upload(client, person, make_pdf("Note", ["x"]), title="Après fermeture")
    assert refused.status_code == 403
    assert closed_message in body(refused)
    assert client.get(f"{person.base}/documents/ajout").status_code == 403
    assert "Ajouter un document" not in body(client.get(f"{person.base}/documents"))
    closed_pros = body(client.get(f"{person.base}/professionnels"))
    assert "Enregistrer mes choix pour l'urgence" not in closed_pros
    assert "Bloquer" not in closed_pros
    for path, data in (
        (f"/documents/{doc_id}/masquage", {"masquer": "1"}),
        ("/documents/confidentialite", {"action": "tout-masquer"}),
        ("/professionnels/decision", {"action": "bloquer", "professionnel": BY_KEY["dr_lambert"].idnat or ""}),
        ("/professionnels/urgence", {"regulation": "non", "bris_de_glace": "non", "masques": "non"}),
    ):
        change = post(client, f"{person.base}{path}", data)
        assert change.status_code == 403, path
        assert closed_message in body(change), path
    assert [d["id"] for d in patient_documents(person)] == [doc_id]
    assert not any(d.get("securityLabel") and "MASQUE_PS" in str(d["securityLabel"]) for d in patient_documents(person))
    reopened = post(client, f"{person.base}/reouverture")
    assert reopened.headers["location"] == f"{person.base}/dossier?ok=rouvert"
    assert "Le dossier est rouvert." in body(client.get(reopened.headers["location"]))
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200
    other = signed_in(new_patient(api))
    assert post(other, f"{person.base}/fermeture", {"confirmation": "oui"}).status_code == 404
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200


# ---------------------------------------------------------------------------------------- export
def test_export_holds_a_bundle_and_the_original_files_and_nothing_hidden(api: Api) -> None:
    person = new_patient(api)
    visible = deposit_pdf(api, person, persona="dr_medioni", title="Compte rendu visible")
    cda = deposit_cda(api, person, persona="dr_medioni", marker="export")
    hidden = deposit_pdf(api, person, persona="dr_medioni", title="Annonce a venir", flags=("INVISIBLE_PATIENT",))
    assert hidden in fhir_ids(api, "dr_medioni", person)
    client = signed_in(person)
    pdf = make_pdf("Mon document", ["joint"])
    assert upload(client, person, pdf, title="Mon document").status_code == 303
    # The portal itself never shows it to the patient: not listed, and not found by address.
    assert f"documents/{hidden}" not in client.get(f"{person.base}/documents").text
    assert client.get(f"{person.base}/documents/{hidden}").status_code == 404
    assert client.get(f"{person.base}/documents/{hidden}/telecharger").status_code == 404
    no_csrf = client.post(f"{person.base}/export", follow_redirects=False)
    assert no_csrf.status_code == 403
    response = post(client, f"{person.base}/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="carnet-export-')
    assert response.headers["cache-control"] == "no-store"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = archive.namelist()
    assert "bundle.json" in names
    bundle = orjson.loads(archive.read("bundle.json"))
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "collection"
    resources = [entry["resource"] for entry in bundle["entry"]]
    assert resources[0]["resourceType"] == "Patient"
    assert resources[0]["id"] == person.record_id
    doc_ids = {r["id"] for r in resources if r["resourceType"] == "DocumentReference"}
    own = next(d["id"] for d in patient_documents(person) if d["id"] not in (visible, cda))
    assert doc_ids == {visible, cda, own}
    # Nothing of the hidden document anywhere in the archive (not its id, not its title).
    for name in names:
        data = archive.read(name)
        assert hidden.encode() not in data, name
        assert b"Annonce a venir" not in data, name
    # The original files, byte for byte, as the index describes them.
    index = orjson.loads(archive.read("index.json"))["documents"]
    by_doc = {item["documentReference"].removeprefix("DocumentReference/"): item for item in index}
    assert set(by_doc) == {visible, cda, own}
    assert archive.read(by_doc[own]["file"]) == pdf
    assert archive.read(by_doc[cda]["file"]).startswith(b"<?xml")
    assert archive.read(by_doc[visible]["file"]).startswith(b"%PDF-")
    # Another patient asking for this export gets the not-found answer.
    other = signed_in(new_patient(api))
    assert post(other, f"{person.base}/export").status_code == 404
    assert post(other, f"/patient/dossiers/{uuid.uuid4()}/export").status_code == 404


def test_essential_pages_work_without_javascript(api: Api) -> None:
    """Every action is a plain form (method, action, CSRF field): nothing needs a script to work."""
    person = new_patient(api)
    deposit_pdf(api, person, persona="dr_medioni")
    client = signed_in(person)
    for path in ("", "/documents", "/documents/ajout", "/professionnels", "/historique", "/dossier"):
        page = client.get(f"{person.base}{path}")
        assert page.status_code == 200, path
        for form in re.findall(r"<form\b[^>]*>.*?</form>", page.text, re.S):
            opening = form.split(">", 1)[0]
            assert 'action="' in opening, (path, opening)
            if 'method="post"' in opening:
                assert 'name="csrf"' in form, (path, opening)
        assert "javascript:" not in page.text
        policy = page.headers["content-security-policy"]
        assert "'unsafe-inline'" not in policy.split("script-src", 1)[-1].split(";", 1)[0]
        assert "<script>" not in page.text  # no inline script (the CSP forbids them anyway)


def test_every_state_changing_form_refuses_a_missing_csrf_token(api: Api) -> None:
    person = new_patient(api)
    doc_id = deposit_pdf(api, person, persona="dr_medioni")
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200
    notice = _notices(person).notices[0]
    client = signed_in(person)
    before = patient_documents(person)
    for path, data in (
        (f"{person.base}/documents", {"texte": "x"}),
        (f"{person.base}/documents/{doc_id}/masquage", {"masquer": "1"}),
        (f"{person.base}/documents/{doc_id}/suppression", {}),
        (f"{person.base}/documents/confidentialite", {"action": "tout-masquer"}),
        (f"{person.base}/professionnels/recherche", {"recherche": "Roux"}),
        (f"{person.base}/professionnels/decision", {"action": "bloquer", "professionnel": "810005123459"}),
        (f"{person.base}/professionnels/urgence", {"regulation": "non"}),
        (f"{person.base}/fermeture", {"confirmation": "oui"}),
        (f"{person.base}/reouverture", {}),
        (f"{person.base}/export", {}),
        ("/patient/notifications/tout-lire", {}),
        (f"/patient/notifications/{notice.id}/lue", {}),
        (f"/patient/notifications/{notice.id}/suppression", {}),
        ("/patient/notifications/preferences", {"langue": "en"}),
    ):
        for sent in (data, {**data, "csrf": "forged-token"}):
            refused = client.post(path, data=sent, follow_redirects=False)
            assert refused.status_code == 403, path
            assert "Le formulaire a expiré" in body(refused), path
    assert patient_documents(person) == before
    assert _notices(person).unread == _notices(person).total
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200
    with api.runtime.read() as work:
        assert preferences.get(work, account_id=person.account_id).language == Language.FR
