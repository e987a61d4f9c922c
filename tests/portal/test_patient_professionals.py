"""The patient portal's professionals and confidentiality page: who accessed or may access the record,
authorize / revoke / block / unblock / administrator decisions, the emergency settings — checked in the
page and in what professionals then get from the FHIR API (blocked = not found)."""

from __future__ import annotations

import re
import uuid

from carnet.consents import overview as consent_overview
from carnet.demo.personas import BY_KEY
from tests.conftest import Api
from tests.portal.patient_support import (
    Person,
    actor_of,
    body,
    cheap_hashing,  # noqa: F401 - autouse fixture
    deposit_pdf,
    fhir_ids,
    new_patient,
    post,
    signed_in,
)


def _idnat(persona: str) -> str:
    value = BY_KEY[persona].idnat
    assert value
    return value


def _section(html: str, idnat: str) -> str:
    """The list item of one professional (the decision buttons carry their IdNat_PS)."""
    items = [item for item in html.split('<li class="pro">')[1:] if f'value="{idnat}"' in item]
    assert len(items) == 1, idnat
    return items[0].split("</li>", 1)[0]


def test_the_page_lists_the_care_team_and_who_accessed(api: Api) -> None:
    person = new_patient(api)
    doc_id = deposit_pdf(api, person, persona="dr_medioni")
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200
    client = signed_in(person)
    page = client.get(f"{person.base}/professionnels")
    assert page.status_code == 200
    html = body(page)
    lambert = _section(html, _idnat("dr_lambert"))
    assert "Équipe de soins" in lambert
    assert "Dernier accès" in lambert
    assert "Bloquer" in lambert
    assert "Autoriser" in lambert
    assert f'value="{_idnat("dr_roux")}"' not in page.text  # no relationship, no access: not listed
    # The emergency settings, explained in plain words, with the current choice checked.
    assert "Chaque accès en urgence est limité dans le temps" in html
    assert re.search(r'id="f-masques-non"[^>]*checked', page.text)


def test_search_the_directory_in_the_body(api: Api) -> None:
    person = new_patient(api)
    client = signed_in(person)
    found = post(client, f"{person.base}/professionnels/recherche", {"recherche": "Roux"})
    assert found.status_code == 200
    assert f'value="{_idnat("dr_roux")}"' in found.text
    assert "ROUX" in body(found).upper()
    short = post(client, f"{person.base}/professionnels/recherche", {"recherche": "R"})
    assert short.status_code == 422
    assert "Saisissez au moins deux lettres" in body(short)
    refused = client.post(f"{person.base}/professionnels/recherche", data={"recherche": "Roux"})
    assert refused.status_code == 403


def test_authorize_then_revoke(api: Api) -> None:
    person = new_patient(api)
    doc_id = deposit_pdf(api, person, persona="dr_medioni")
    outsider = "dr_roux"
    assert api.get(f"/fhir/DocumentReference/{doc_id}", outsider).status_code == 404
    client = signed_in(person)
    missing_csrf = client.post(
        f"{person.base}/professionnels/decision",
        data={"action": "autoriser", "professionnel": _idnat(outsider)},
        follow_redirects=False,
    )
    assert missing_csrf.status_code == 403
    assert api.get(f"/fhir/DocumentReference/{doc_id}", outsider).status_code == 404
    done = post(
        client, f"{person.base}/professionnels/decision", {"action": "autoriser", "professionnel": _idnat(outsider)}
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"{person.base}/professionnels?ok=autorise"
    page = client.get(done.headers["location"])
    assert "Le professionnel est autorisé à accéder à votre dossier." in body(page)
    assert "Autorisé par vous" in _section(body(page), _idnat(outsider))
    assert api.get(f"/fhir/DocumentReference/{doc_id}", outsider).status_code == 200
    assert doc_id in fhir_ids(api, outsider, person)
    revoked = post(
        client, f"{person.base}/professionnels/decision", {"action": "retirer", "professionnel": _idnat(outsider)}
    )
    assert revoked.headers["location"] == f"{person.base}/professionnels?ok=retire"
    assert api.get(f"/fhir/DocumentReference/{doc_id}", outsider).status_code == 404


def test_a_blocked_professional_gets_not_found_until_unblocked(api: Api) -> None:
    person = new_patient(api)
    doc_id = deposit_pdf(api, person, persona="dr_medioni")
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200
    client = signed_in(person)
    blocked = post(
        client, f"{person.base}/professionnels/decision", {"action": "bloquer", "professionnel": _idnat("dr_lambert")}
    )
    assert blocked.status_code == 303
    assert blocked.headers["location"] == f"{person.base}/professionnels?ok=bloque"
    page = body(client.get(blocked.headers["location"]))
    assert "Le professionnel est bloqué" in page
    lambert = _section(page, _idnat("dr_lambert"))
    assert "Bloqué" in lambert
    assert "Débloquer" in lambert
    # The blocked professional gets the answer of a record that does not exist.
    read = api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert")
    missing = api.get(f"/fhir/DocumentReference/{uuid.uuid4()}", "dr_lambert")
    assert read.status_code == missing.status_code == 404
    assert doc_id not in fhir_ids(api, "dr_lambert", person)
    # Reading the Patient resource only tells them their access status (PDSm TD0.2): none.
    status = api.get(f"/fhir/Patient/{person.record_id}", "dr_lambert").json()
    assert '"none"' in str(status).replace("'", '"')
    # Others of the care team are unaffected.
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_medioni").status_code == 200
    unblocked = post(
        client,
        f"{person.base}/professionnels/decision",
        {"action": "debloquer", "professionnel": _idnat("dr_lambert")},
    )
    assert unblocked.headers["location"] == f"{person.base}/professionnels?ok=debloque"
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200


def test_an_administrator_sees_masked_documents(api: Api) -> None:
    person = new_patient(api)
    doc_id = deposit_pdf(api, person, persona="dr_medioni")
    client = signed_in(person)
    post(client, f"{person.base}/documents/{doc_id}/masquage", {"masquer": "1"})
    assert doc_id not in fhir_ids(api, "dr_lambert", person)
    designated = post(
        client,
        f"{person.base}/professionnels/decision",
        {"action": "administrateur", "professionnel": _idnat("dr_lambert")},
    )
    assert designated.headers["location"] == f"{person.base}/professionnels?ok=admin"
    page = body(client.get(designated.headers["location"]))
    assert "Administrateur de votre dossier" in _section(page, _idnat("dr_lambert"))
    assert doc_id in fhir_ids(api, "dr_lambert", person)
    removed = post(
        client,
        f"{person.base}/professionnels/decision",
        {"action": "retirer-administrateur", "professionnel": _idnat("dr_lambert")},
    )
    assert removed.headers["location"] == f"{person.base}/professionnels?ok=admin-retire"
    assert doc_id not in fhir_ids(api, "dr_lambert", person)


def test_bad_decisions_are_refused_and_change_nothing(api: Api) -> None:
    person = new_patient(api)
    doc_id = deposit_pdf(api, person, persona="dr_medioni")
    client = signed_in(person)
    unknown = post(
        client, f"{person.base}/professionnels/decision", {"action": "effacer", "professionnel": _idnat("dr_lambert")}
    )
    assert unknown.status_code == 400
    assert "Cette action n'existe pas" in body(unknown)
    for idnat in ("", "899999999999", "<script>"):
        stranger = post(client, f"{person.base}/professionnels/decision", {"action": "bloquer", "professionnel": idnat})
        assert stranger.status_code == 422, idnat
        assert "Ce professionnel n'est pas dans l'annuaire" in body(stranger)
        assert 'href="#f-recherche"' in stranger.text  # the error leads to the search field
        assert "<script>" not in stranger.text
    english = post(
        client,
        f"{person.base}/professionnels/decision",
        {"action": "bloquer", "professionnel": "899999999999"},
        headers={"Accept-Language": "en"},
    )
    assert "This professional is not in the directory" in body(english)
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200
    # Another patient cannot decide for this record: the same answer as a record that does not exist.
    other = signed_in(new_patient(api))
    theirs = post(
        other, f"{person.base}/professionnels/decision", {"action": "bloquer", "professionnel": _idnat("dr_lambert")}
    )
    nowhere = post(
        other,
        f"/patient/dossiers/{uuid.uuid4()}/professionnels/decision",
        {"action": "bloquer", "professionnel": _idnat("dr_lambert")},
    )
    assert theirs.status_code == nowhere.status_code == 404
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 200
    assert other.get(f"{person.base}/professionnels").status_code == 404


def test_emergency_settings_are_saved(api: Api) -> None:
    person = new_patient(api)
    client = signed_in(person)
    refused = client.post(
        f"{person.base}/professionnels/urgence",
        data={"regulation": "non", "bris_de_glace": "non", "masques": "oui"},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    saved = post(
        client,
        f"{person.base}/professionnels/urgence",
        {"regulation": "non", "bris_de_glace": "non", "masques": "oui"},
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{person.base}/professionnels?ok=urgence"
    page = client.get(saved.headers["location"])
    assert "Vos choix pour les situations d'urgence sont enregistrés." in body(page)
    assert re.search(r'id="f-regulation-non"[^>]*checked', page.text)
    assert re.search(r'id="f-bris-non"[^>]*checked', page.text)
    assert re.search(r'id="f-masques-oui"[^>]*checked', page.text)
    prefs = _preferences(person)
    assert (prefs.regulation, prefs.break_glass, prefs.masked_in_emergency) == (False, False, True)
    again = post(
        client,
        f"{person.base}/professionnels/urgence",
        {"regulation": "oui", "bris_de_glace": "oui", "masques": "non"},
    )
    assert again.status_code == 303
    prefs = _preferences(person)
    assert (prefs.regulation, prefs.break_glass, prefs.masked_in_emergency) == (True, True, False)


def _preferences(person: Person) -> consent_overview.Preferences:
    """The record's emergency and confidentiality preferences as the consent service holds them."""
    with person.api.runtime.read() as work:
        return consent_overview.overview(
            work, actor=actor_of(person, work), patient_id=str(person.record_id)
        ).preferences
