"""Declarations from the professional portal (the patient's consent → care team, becoming médecin traitant)
and the emergency access: a mandatory reason, a red banner with a countdown on every page while it lasts,
read-only, and its end."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import sqlalchemy as sa

from carnet.access.models import EmergencyAccess
from tests import factories
from tests.conftest import PARTICIPATION
from tests.portal.pro_support import (
    PDF_FIELDS,
    Pro,
    cards_fixture,  # noqa: F401 - fixture
    deposit,
    deposit_pdf,
    documents_of,
    fhir_ids,
    idnat,
    patient_decides,
    post,
    pro_app_fixture,  # noqa: F401 - fixture
    pro_fixture,  # noqa: F401 - fixture
    text,
)

REASON = "Patient inconscient aux urgences, antécédents inconnus"


def _access(page: str) -> str:
    found = re.search(r'<h2 id="access-title">Votre accès</h2>\s*<p><span class="badge[^"]*">([^<]+)</span>', page)
    assert found, page
    return found.group(1)


def _grants(pro: Pro, record_id: str, persona: str) -> int:
    """How many emergency accesses ``persona`` ever opened on the record."""
    with pro.runtime.read() as work:
        count = work.session.scalar(
            sa.select(sa.func.count())
            .select_from(EmergencyAccess)
            .where(
                EmergencyAccess.record_id == uuid.UUID(record_id),
                EmergencyAccess.actor_key == f"pro:{idnat(persona)}",
            )
        )
    return int(count or 0)


# ------------------------------------------------------------------------------------ declarations
def test_declaring_the_patients_consent_joins_the_care_team(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=("dr_lambert",))
    doc_id = deposit_pdf(pro.login("dr_lambert"), patient_id)
    client = pro.login("dr_haddad")
    assert _access(text(client.get(f"/pro/dossiers/{patient_id}"))) == "Aucun accès"
    page = text(client.get(f"/pro/dossiers/{patient_id}/declarations"))
    assert 'name="kind" value="care-team"' in page
    assert 'name="kind" value="medecin-traitant"' in page  # a doctor

    unattested = post(client, f"/pro/dossiers/{patient_id}/declarations", {"kind": "care-team"})
    assert unattested.status_code == 422
    assert "Attestez avoir recueilli le consentement du patient." in text(unattested)
    forged = client.post(
        f"/pro/dossiers/{patient_id}/declarations", data={"kind": "care-team", "attest": "1"}, follow_redirects=False
    )
    assert forged.status_code == 403
    unknown = post(client, f"/pro/dossiers/{patient_id}/declarations", {"kind": "authorization", "attest": "1"})
    assert unknown.status_code == 422
    assert "Choisissez une déclaration." in text(unknown)
    assert _access(text(client.get(f"/pro/dossiers/{patient_id}"))) == "Aucun accès"
    assert doc_id not in fhir_ids(pro.api, pro.api.token("dr_haddad"), patient_id)

    done = post(client, f"/pro/dossiers/{patient_id}/declarations", {"kind": "care-team", "attest": "1"})
    assert done.status_code == 303
    assert done.headers["location"] == f"/pro/dossiers/{patient_id}?fait=equipe"
    record = text(client.get(done.headers["location"]))
    assert "Vous êtes déclaré dans l'équipe de soins du patient." in record
    assert _access(record) == "Équipe de soins"
    assert f"/pro/documents/{doc_id}" in record
    assert "Vous accédez déjà à ce dossier à ce titre." in text(client.get(f"/pro/dossiers/{patient_id}/declarations"))


def test_a_doctor_becomes_medecin_traitant_when_the_patient_agrees(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=("dr_lambert",))
    masked = deposit_pdf(pro.login("dr_lambert"), patient_id, flags="MASQUE_PS")
    client = pro.login("dr_girard")
    unattested = post(client, f"/pro/dossiers/{patient_id}/declarations", {"kind": "medecin-traitant"})
    assert unattested.status_code == 422
    assert "Attestez que le patient accepte que vous deveniez son médecin traitant." in text(unattested)
    done = post(client, f"/pro/dossiers/{patient_id}/declarations", {"kind": "medecin-traitant", "attest": "1"})
    assert done.status_code == 303
    record = text(client.get(done.headers["location"]))
    assert "Vous êtes déclaré médecin traitant du patient." in record
    assert _access(record) == "Médecin traitant"
    # The médecin traitant sees documents masked from other professionals.
    assert f"/pro/documents/{masked}" in record
    assert "Vous êtes déjà déclaré médecin traitant de ce patient." in text(
        client.get(f"/pro/dossiers/{patient_id}/declarations")
    )


def test_only_a_doctor_is_offered_to_become_medecin_traitant(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=())
    nurse = pro.login("inf_moreau")
    page = text(nurse.get(f"/pro/dossiers/{patient_id}/declarations"))
    assert 'value="medecin-traitant"' not in page
    response = post(nurse, f"/pro/dossiers/{patient_id}/declarations", {"kind": "medecin-traitant", "attest": "1"})
    assert response.status_code == 422
    assert "Vous ne pouvez pas faire cette déclaration pour ce dossier." in text(response)
    assert _access(text(nurse.get(f"/pro/dossiers/{patient_id}"))) == "Aucun accès"


def test_a_blocked_professional_cannot_declare_and_is_not_told_why(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=())
    patient_decides(pro.api, patient_id, "block", "dr_haddad", provision="deny")
    client = pro.login("dr_haddad")
    response = post(client, f"/pro/dossiers/{patient_id}/declarations", {"kind": "care-team", "attest": "1"})
    assert response.status_code == 422
    page = text(response)
    assert "Vous ne pouvez pas faire cette déclaration pour ce dossier." in page
    assert "bloqu" not in page.lower()
    assert _access(text(client.get(f"/pro/dossiers/{patient_id}"))) == "Aucun accès"


# ------------------------------------------------------------------------------------ emergency access
def test_an_emergency_access_needs_a_reason(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=())
    client = pro.login("dr_haddad")
    form = text(client.get(f"/pro/dossiers/{patient_id}/urgence"))
    assert 'name="reason"' in form
    assert 'value="regulation"' not in form  # not a regulator
    for reason in ("", "   ", "urgence"):
        response = post(client, f"/pro/dossiers/{patient_id}/urgence", {"mode": "break-glass", "reason": reason})
        assert response.status_code == 422
        assert "Expliquez la raison de l'accès en urgence (au moins 10 caractères)." in text(response)
    bad_mode = post(client, f"/pro/dossiers/{patient_id}/urgence", {"mode": "whatever", "reason": REASON})
    assert bad_mode.status_code == 422
    assert "Choisissez le mode d'accès en urgence." in text(bad_mode)
    forged = client.post(
        f"/pro/dossiers/{patient_id}/urgence", data={"mode": "break-glass", "reason": REASON}, follow_redirects=False
    )
    assert forged.status_code == 403
    regulation = post(client, f"/pro/dossiers/{patient_id}/urgence", {"mode": "regulation", "reason": REASON})
    assert regulation.status_code == 422
    assert "réservé aux médecins régulateurs" in text(regulation)
    assert _grants(pro, patient_id, "dr_haddad") == 0
    assert _banner(text(client.get("/pro")), patient_id, here=False) is None


def _banner(page: str, record_id: str, *, here: bool) -> str | None:
    """The banner's line about the emergency access to ``record_id`` (other accesses of the same professional,
    opened by other tests, have lines of their own); ``here``: the page is that record's page."""
    found = re.search(r'<div class="emergency-banner[^"]*"[^>]*>(.*?)</div>', page, re.S)
    if found is None:
        return None
    for line in re.findall(r"<p>(.*?)</p>", found.group(1), re.S):
        if (here and "ce dossier" in line and "/pro/dossiers/" not in line) or f'"/pro/dossiers/{record_id}"' in line:
            return str(line)
    return None


def test_an_emergency_access_shows_its_banner_and_countdown_everywhere_and_is_read_only(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=("dr_lambert",))
    theirs = deposit_pdf(pro.login("dr_lambert"), patient_id, flags="INVISIBLE_PATIENT")
    client = pro.login("dr_haddad")
    assert theirs not in client.get(f"/pro/dossiers/{patient_id}").text
    opened = post(client, f"/pro/dossiers/{patient_id}/urgence", {"mode": "break-glass", "reason": REASON})
    assert opened.status_code == 303, text(opened)
    assert opened.headers["location"] == f"/pro/dossiers/{patient_id}?fait=urgence"
    assert _grants(pro, patient_id, "dr_haddad") == 1
    with pro.runtime.read() as work:
        expires = work.session.scalar(
            sa.select(EmergencyAccess.expires_at).where(EmergencyAccess.record_id == uuid.UUID(patient_id))
        )
    assert expires is not None
    iso = expires.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    record = client.get(opened.headers["location"])
    page = text(record)
    assert "L'accès en urgence est ouvert, en lecture seule." in page
    assert _access(page) == "Accès en urgence (bris de glace)"
    assert "Mode d'accès : Urgence : bris de glace" in page
    assert f"/pro/documents/{theirs}" in page
    # The banner and its countdown on every page of the portal while the access lasts.
    pages = {
        "record": record,
        "home": client.get("/pro"),
        "document": client.get(f"/pro/documents/{theirs}"),
        "deposit": client.get(f"/pro/dossiers/{patient_id}/depot"),
        "declarations": client.get(f"/pro/dossiers/{patient_id}/declarations"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        banner = _banner(text(response), patient_id, here=name == "record")
        assert banner is not None, name
        assert "Accès en urgence — Bris de glace" in banner, name
        assert "lecture seule" in banner, name
        countdown = re.search(r'<time datetime="([^"]+)" data-countdown="([^"]+)"[^>]*>([0-9:]+)</time>', banner)
        assert countdown, name
        assert countdown.group(1) == countdown.group(2) == iso
        hours, minutes, _ = (int(part) for part in countdown.group(3).split(":"))
        assert 3 * 60 + 55 <= hours * 60 + minutes <= 4 * 60, countdown.group(3)
        if name != "record":
            assert f'href="/pro/dossiers/{patient_id}"' in banner, name
    for name in ("document", "deposit", "declarations"):
        assert "Mode d'accès : Urgence : bris de glace" in text(pages[name]), name
    # Read-only: nothing of someone else's document may be changed.
    document = text(pages["document"])
    assert "Supprimer ce document" not in document
    assert "Remplacer par une nouvelle version" not in document
    assert "/annonce" not in document
    assert post(client, f"/pro/documents/{theirs}/supprimer", {"dossier": patient_id}).status_code == 403
    assert post(client, f"/pro/documents/{theirs}/annonce", {"annonce": "1"}).status_code == 403
    replaced = deposit(client, patient_id, factories.pdf_bytes(), fields={**PDF_FIELDS, "replaces": theirs})
    assert replaced.status_code in (403, 422)
    assert theirs in fhir_ids(pro.api, pro.api.token("dr_lambert"), patient_id)
    assert "INVISIBLE_PATIENT" in str(pro.api.get(f"/fhir/DocumentReference/{theirs}", "dr_lambert").json())


def test_the_banner_shows_the_emergency_mode_even_with_a_care_team_access(pro: Pro) -> None:
    """A care-team member who breaks the glass (to see documents masked from professionals) works under the
    emergency mode on every page of that record, not under their ordinary access."""
    patient_id, _, _ = pro.api.new_patient(team=("dr_lambert", "dr_haddad"))
    client = pro.login("dr_haddad")
    assert "Mode d'accès : Normal" in text(client.get(f"/pro/dossiers/{patient_id}"))
    opened = post(client, f"/pro/dossiers/{patient_id}/urgence", {"mode": "break-glass", "reason": REASON})
    assert opened.status_code == 303, text(opened)
    for path in (f"/pro/dossiers/{patient_id}", f"/pro/dossiers/{patient_id}/depot"):
        page = text(client.get(path))
        assert "Mode d'accès : Urgence : bris de glace" in page, path
        assert "Mode d'accès : Normal" not in page, path


def test_an_emergency_access_ends_and_takes_its_banner_along(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=("dr_lambert",))
    theirs = deposit_pdf(pro.login("dr_lambert"), patient_id)
    client = pro.login("dr_haddad")
    assert (
        post(client, f"/pro/dossiers/{patient_id}/urgence", {"mode": "break-glass", "reason": REASON}).status_code
        == 303
    )
    assert f"/pro/documents/{theirs}" in client.get(f"/pro/dossiers/{patient_id}").text
    with pro.runtime.work() as work:
        work.session.execute(
            sa.update(EmergencyAccess)
            .where(EmergencyAccess.record_id == uuid.UUID(patient_id))
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    record = text(client.get(f"/pro/dossiers/{patient_id}"))
    assert _banner(record, patient_id, here=True) is None
    assert _access(record) == "Aucun accès"
    assert "Mode d'accès : Normal" in record
    assert f"/pro/documents/{theirs}" not in record
    assert client.get(f"/pro/documents/{theirs}").status_code == 404
    assert _banner(text(client.get("/pro")), patient_id, here=False) is None


def test_an_emergency_access_the_patient_opposed_or_a_block_is_refused_without_saying_blocked(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=())
    patient_decides(pro.api, patient_id, "block", "dr_haddad", provision="deny")
    client = pro.login("dr_haddad")
    response = post(client, f"/pro/dossiers/{patient_id}/urgence", {"mode": "break-glass", "reason": REASON})
    assert response.status_code == 422
    page = text(response)
    assert "L'accès en urgence à ce dossier ne vous est pas ouvert." in page
    assert "bloqu" not in page.lower()
    assert _grants(pro, patient_id, "dr_haddad") == 0


def test_emergency_pages_of_an_unknown_record_are_not_found(pro: Pro) -> None:
    client = pro.login("dr_haddad")
    missing = str(uuid.uuid4())
    assert client.get(f"/pro/dossiers/{missing}/urgence").status_code == 404
    response = post(client, f"/pro/dossiers/{missing}/urgence", {"mode": "break-glass", "reason": REASON})
    assert response.status_code == 404
    assert client.get(f"/pro/dossiers/{missing}/declarations").status_code == 404
    assert (
        post(client, f"/pro/dossiers/{missing}/declarations", {"kind": "care-team", "attest": "1"}).status_code == 404
    )


def test_the_api_refuses_a_non_doctor_as_medecin_traitant_too(pro: Pro) -> None:
    """The rule lives in the consents service: the portal and the FHIR API answer alike."""
    patient_id, _, _ = pro.api.new_patient(team=())
    resource = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [
            {"coding": [{"system": "https://carnet.health/fhir/CodeSystem/consent-kind", "code": "medecin-traitant"}]}
        ],
        "patient": {"reference": f"Patient/{patient_id}"},
        "provision": {
            "type": "permit",
            "actor": [
                {
                    "role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
                    "reference": {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": idnat("inf_moreau")}},
                }
            ],
        },
    }
    refused = pro.api.post("/fhir/Consent", "inf_moreau", resource)
    assert refused.status_code == 422, refused.text
    assert "only a doctor" in refused.text
    assert pro.api.declare("dr_haddad", patient_id, "medecin-traitant").status_code == 201


def test_the_portal_speaks_english_when_asked(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=())
    client = pro.login("dr_haddad")
    switched = post(client, "/langue", {"lang": "en", "next": f"/pro/dossiers/{patient_id}"})
    assert switched.status_code == 303
    page = text(client.get(switched.headers["location"]))
    assert "No access" in page
    assert "Signed in with:" in page
    assert "Aucun accès" not in page


def test_a_regulator_opens_a_regulation_access(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=())
    client = pro.login("dr_regul")
    form = text(client.get(f"/pro/dossiers/{patient_id}/urgence"))
    assert 'value="regulation"' in form
    opened = post(client, f"/pro/dossiers/{patient_id}/urgence", {"mode": "regulation", "reason": REASON})
    assert opened.status_code == 303, text(opened)
    page = text(client.get(f"/pro/dossiers/{patient_id}"))
    assert _access(page) == "Accès du centre de régulation (SAMU - centre 15)"
    assert "Mode d'accès : Urgence : centre de régulation" in page
    banner = _banner(page, patient_id, here=True)
    assert banner is not None
    assert "Centre de régulation (SAMU - centre 15)" in banner


def test_a_blocked_professional_is_refused_a_deposit_without_learning_why(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=())
    patient_decides(pro.api, patient_id, "block", "dr_haddad", provision="deny")
    client = pro.login("dr_haddad")
    before = documents_of(pro.runtime, patient_id)
    response = deposit(client, patient_id, factories.pdf_bytes(), fields=PDF_FIELDS)
    assert response.status_code in (403, 422)
    page = text(response)
    assert "Vous ne pouvez pas déposer de document dans ce dossier." in page
    assert "bloqu" not in page.lower()
    assert documents_of(pro.runtime, patient_id) == before


def test_an_emergency_access_the_patient_opposed_is_refused_with_the_reason(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(team=())
    patient_decides(pro.api, patient_id, "emergency-break-glass", None, provision="deny")
    client = pro.login("dr_haddad")
    response = post(client, f"/pro/dossiers/{patient_id}/urgence", {"mode": "break-glass", "reason": REASON})
    assert response.status_code == 422
    assert "Le patient s'est opposé à l'accès à son dossier en urgence (bris de glace)." in text(response)
    assert _grants(pro, patient_id, "dr_haddad") == 0
