"""Depositing from the professional portal: a PDF with its metadata form (type → class), a CDA whose header
gives the metadata, the three confidentiality flags and their effect seen through the FHIR API (patient,
representative, other professionals), replacing a version, deleting one's own document (and not another's),
the announcement switch — and bad input refused with a readable message, nothing written."""

from __future__ import annotations

import pytest

from carnet.runtime import Runtime
from tests import factories
from tests.portal.pro_support import (
    PDF_FIELDS,
    Cards,
    Pro,
    cards_fixture,  # noqa: F401 - fixture
    deposit,
    deposit_pdf,
    doc_id_of,
    documents_of,
    fhir_ids,
    idnat,
    portal,
    post,
    pro_app_fixture,  # noqa: F401 - fixture
    pro_fixture,  # noqa: F401 - fixture
    representative_token,
    text,
)


def _fhir_doc(pro: Pro, doc_id: str, persona: str = "dr_lambert") -> dict[str, object]:
    response = pro.api.get(f"/fhir/DocumentReference/{doc_id}", persona)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def _codes(concept: object) -> list[str]:
    assert isinstance(concept, dict)
    return [str(c.get("code")) for c in concept.get("coding", [])]


# ------------------------------------------------------------------------------------ PDF and CDA
def test_the_deposit_form_offers_the_value_sets_and_the_organisation_defaults(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient()
    page = pro.login("dr_lambert").get(f"/pro/dossiers/{patient_id}/depot")
    assert page.status_code == 200
    html = text(page)
    assert 'enctype="multipart/form-data"' in html
    assert '<option value="11488-4" data-class="Compte rendu"' in html
    assert '<option value="18748-4" data-class="Imagerie médicale"' in html
    for flag in ("MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"):
        assert f'value="{flag}"' in html


def test_a_pdf_is_deposited_with_its_class_following_its_type(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient()
    client = pro.login("dr_lambert")
    response = deposit(client, patient_id, factories.pdf_bytes("depot"), fields={**PDF_FIELDS, "type": "18748-4"})
    assert response.status_code == 303, text(response)
    doc_id = doc_id_of(response)
    assert response.headers["location"].endswith("?fait=depot")
    page = text(client.get(response.headers["location"]))
    assert "Le document a été déposé dans le dossier." in page
    assert "CR d'imagerie médicale" in page
    assert "Imagerie médicale" in page
    assert "Claire LAMBERT" in page
    resource = _fhir_doc(pro, doc_id, "inf_moreau")
    assert _codes(resource["type"]) == ["18748-4"]
    categories = resource["category"]
    assert isinstance(categories, list)
    assert _codes(categories[0]) == ["31"]  # ASS_X16: the type decides the class
    assert resource["status"] == "current"
    assert idnat("dr_lambert") in str(resource["contained"])
    record = text(client.get(f"/pro/dossiers/{patient_id}"))
    assert f'href="/pro/documents/{doc_id}"' in record


def test_a_cda_gives_its_metadata_from_its_header(pro: Pro) -> None:
    patient_id, ins, system = pro.api.new_patient()
    client = pro.login("dr_lambert")
    data = factories.cda(
        ins, system.removeprefix("urn:oid:"), type_code="34133-9", marker="CDA-1", author_idnat=idnat("dr_lambert")
    )
    response = deposit(client, patient_id, data, filename="synthese.xml", media="text/xml")
    assert response.status_code == 303, text(response)
    doc_id = doc_id_of(response)
    page = text(client.get(f"/pro/documents/{doc_id}"))
    assert "Synthèse d'épisode de soins" in page
    assert "Compte rendu CDA-1" in page  # the CDA title
    assert "1 octobre 2026" in page  # the act's date, from the header
    resource = _fhir_doc(pro, doc_id)
    assert _codes(resource["type"]) == ["34133-9"]
    categories = resource["category"]
    assert isinstance(categories, list)
    assert _codes(categories[0]) == ["11"]
    download = client.get(f"/pro/documents/{doc_id}/telecharger")
    assert download.status_code == 200
    assert download.content == data


def test_a_cda_of_another_patient_is_refused_and_nothing_is_written(pro: Pro) -> None:
    patient_id, _, system = pro.api.new_patient()
    other_ins, _ = factories.random_ins()
    client = pro.login("dr_lambert")
    data = factories.cda(other_ins, system.removeprefix("urn:oid:"), author_idnat=idnat("dr_lambert"))
    before = documents_of(pro.runtime, patient_id)
    response = deposit(client, patient_id, data, filename="cr.xml", media="text/xml")
    assert response.status_code == 422
    assert "Ce document CDA concerne un autre patient" in text(response)
    assert documents_of(pro.runtime, patient_id) == before


@pytest.mark.parametrize(
    ("data", "fields", "field", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"0" * 64, PDF_FIELDS, "file", "Ce fichier n'est ni un PDF ni un document CDA R2"),
        (b"just some text", PDF_FIELDS, "file", "Ce fichier n'est ni un PDF ni un document CDA R2"),
        (b"", PDF_FIELDS, "file", "Choisissez le document à déposer"),
        (None, {**PDF_FIELDS, "service_date": "2026-02-30"}, "service_date", "Saisissez une date valide"),
        (None, {**PDF_FIELDS, "service_date": "01/10/2026"}, "service_date", "Saisissez une date valide"),
        (None, {**PDF_FIELDS, "type": "NOPE"}, "type", "Choisissez un type de document de la liste."),
        (None, {**PDF_FIELDS, "title": ""}, "title", "Donnez un titre au document."),
        (None, {**PDF_FIELDS, "type": ""}, "type", "Choisissez le type du document."),
        (None, {**PDF_FIELDS, "facility": "XX"}, "facility", "Choisissez un secteur d'activité de la liste."),
    ],
)
def test_bad_deposits_are_explained_and_write_nothing(
    pro: Pro, data: bytes | None, fields: dict[str, str], field: str, message: str
) -> None:
    patient_id, _, _ = pro.api.new_patient()
    client = pro.login("dr_lambert")
    before = documents_of(pro.runtime, patient_id)
    response = deposit(client, patient_id, factories.pdf_bytes() if data is None else data, fields=fields)
    assert response.status_code == 422, text(response)
    page = text(response)
    assert message in page
    assert "Le document n'a pas été déposé" in page
    assert f'id="f-{field}"' in page
    assert documents_of(pro.runtime, patient_id) == before


def test_a_deposit_without_its_csrf_token_is_refused(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient()
    client = pro.login("dr_lambert")
    response = deposit(client, patient_id, factories.pdf_bytes(), fields=PDF_FIELDS, with_csrf=False)
    assert response.status_code == 403
    assert documents_of(pro.runtime, patient_id) == 0


def test_too_large_a_file_is_refused(runtime: Runtime, cards: Cards) -> None:
    with portal(runtime, cards, max_document_bytes=4096) as small:
        patient_id, _, _ = small.api.new_patient()
        client = small.login("dr_lambert")
        # Just over the limit: the form says so next to the file.
        response = deposit(client, patient_id, b"%PDF-1.4\n" + b"0" * 5000, fields=PDF_FIELDS)
        assert response.status_code == 422
        assert "Le fichier est trop volumineux" in text(response)
        assert 'id="f-file"' in text(response)
        # Far over it: refused before the body is even read.
        huge = deposit(client, patient_id, b"%PDF-1.4\n" + b"0" * (400 * 1024), fields=PDF_FIELDS)
        assert huge.status_code == 413
        assert "Le fichier est trop volumineux." in text(huge)
        assert documents_of(small.runtime, patient_id) == 0


# ------------------------------------------------------------------------------------ confidentiality flags
def test_masked_from_professionals(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient()
    doc_id = deposit_pdf(pro.login("dr_lambert"), patient_id, flags="MASQUE_PS")
    assert "MASQUE_PS" in str(_fhir_doc(pro, doc_id)["securityLabel"])
    patient = pro.api.patient_token(patient_id)
    assert doc_id in fhir_ids(pro.api, patient, patient_id)
    assert doc_id in fhir_ids(pro.api, pro.api.token("dr_lambert"), patient_id)
    for persona in ("inf_moreau", "ph_didot", "dr_medioni"):
        assert doc_id not in fhir_ids(pro.api, pro.api.token(persona), patient_id)
    other = pro.login("inf_moreau")
    assert f"/pro/documents/{doc_id}" not in other.get(f"/pro/dossiers/{patient_id}").text
    assert other.get(f"/pro/documents/{doc_id}").status_code == 404


def test_invisible_to_the_patient_until_the_author_announces_it(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient()
    author = pro.login("dr_lambert")
    doc_id = deposit_pdf(author, patient_id, flags="INVISIBLE_PATIENT")
    patient = pro.api.patient_token(patient_id)
    assert doc_id not in fhir_ids(pro.api, patient, patient_id)
    assert doc_id in fhir_ids(pro.api, pro.api.token("inf_moreau"), patient_id)

    # Another professional sees the document but not the switch, and may not use it.
    other = pro.login("inf_moreau")
    page = text(other.get(f"/pro/documents/{doc_id}"))
    assert "Invisible pour le patient jusqu'à l'annonce" in page
    assert "/annonce" not in page
    refused = post(other, f"/pro/documents/{doc_id}/annonce", {"annonce": "1"})
    assert refused.status_code == 403
    assert "Seul l'auteur d'un document le rend visible au patient." in text(refused)
    assert doc_id not in fhir_ids(pro.api, patient, patient_id)

    # The author confirms the announcement consultation took place (a box to tick), then it is visible.
    assert f'action="/pro/documents/{doc_id}/annonce"' in author.get(f"/pro/documents/{doc_id}").text
    unconfirmed = post(author, f"/pro/documents/{doc_id}/annonce", {})
    assert unconfirmed.status_code == 422
    assert "Confirmez que la consultation d'annonce a eu lieu." in text(unconfirmed)
    forged = author.post(f"/pro/documents/{doc_id}/annonce", data={"annonce": "1"}, follow_redirects=False)
    assert forged.status_code == 403
    assert doc_id not in fhir_ids(pro.api, patient, patient_id)
    done = post(author, f"/pro/documents/{doc_id}/annonce", {"annonce": "1"})
    assert done.status_code == 303
    assert "Le document est maintenant visible par le patient." in text(author.get(done.headers["location"]))
    assert doc_id in fhir_ids(pro.api, patient, patient_id)
    assert "/annonce" not in author.get(f"/pro/documents/{doc_id}").text


def test_invisible_to_legal_representatives(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient(birth_date="2014-03-02")
    client = pro.login("dr_lambert")
    secret = deposit_pdf(client, patient_id, flags="INVISIBLE_REPRESENTANTS_LEGAUX")
    ordinary = deposit_pdf(client, patient_id)
    parent = representative_token(pro.api, patient_id)
    assert fhir_ids(pro.api, parent, patient_id) == {ordinary}
    assert {secret, ordinary} <= fhir_ids(pro.api, pro.api.patient_token(patient_id), patient_id)
    assert {secret, ordinary} <= fhir_ids(pro.api, pro.api.token("inf_moreau"), patient_id)


# ------------------------------------------------------------------------------------ replace and delete
def test_the_author_replaces_a_version(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient()
    client = pro.login("dr_lambert")
    first = deposit_pdf(client, patient_id, title="Première version")
    page = text(client.get(f"/pro/documents/{first}"))
    assert f'href="/pro/dossiers/{patient_id}/depot?remplace={first}"' in page
    form = text(client.get(f"/pro/dossiers/{patient_id}/depot?remplace={first}"))
    assert "La nouvelle version remplacera « Première version »" in form
    assert f'name="replaces" value="{first}"' in form
    response = deposit(
        client, patient_id, factories.pdf_bytes("v2"), fields={**PDF_FIELDS, "title": "Version 2", "replaces": first}
    )
    assert response.status_code == 303, text(response)
    assert response.headers["location"].endswith("?fait=remplacement")
    second = doc_id_of(response)
    assert _fhir_doc(pro, first)["status"] == "superseded"
    relates = _fhir_doc(pro, second)["relatesTo"]
    assert first in str(relates)
    record = client.get(f"/pro/dossiers/{patient_id}").text
    assert f"/pro/documents/{second}" in record
    assert f"/pro/documents/{first}" not in record
    # A superseded version is not replaced again.
    again = deposit(client, patient_id, factories.pdf_bytes("v3"), fields={**PDF_FIELDS, "replaces": first})
    assert again.status_code == 422
    assert "n'est plus la version en cours" in text(again)


def test_someone_else_may_not_replace_a_document(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient()
    doc_id = deposit_pdf(pro.login("dr_lambert"), patient_id)
    other = pro.login("inf_moreau")
    assert "Remplacer par une nouvelle version" not in text(other.get(f"/pro/documents/{doc_id}"))
    before = documents_of(pro.runtime, patient_id)
    response = deposit(other, patient_id, factories.pdf_bytes("x"), fields={**PDF_FIELDS, "replaces": doc_id})
    assert response.status_code in (403, 422)
    assert "Vous ne pouvez pas faire cela" in text(response)
    assert documents_of(pro.runtime, patient_id) == before
    assert _fhir_doc(pro, doc_id)["status"] == "current"


def test_the_author_deletes_their_document_and_nobody_else_may(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient()
    author = pro.login("dr_lambert")
    doc_id = deposit_pdf(author, patient_id)
    other = pro.login("inf_moreau")
    assert "Supprimer ce document" not in text(other.get(f"/pro/documents/{doc_id}"))
    refused = post(other, f"/pro/documents/{doc_id}/supprimer", {"dossier": patient_id})
    assert refused.status_code == 403
    assert "Seul l'auteur d'un document peut le supprimer." in text(refused)
    stranger = post(pro.login("dr_haddad"), f"/pro/documents/{doc_id}/supprimer", {"dossier": patient_id})
    assert stranger.status_code == 404
    forged = author.post(f"/pro/documents/{doc_id}/supprimer", data={"dossier": patient_id}, follow_redirects=False)
    assert forged.status_code == 403
    assert _fhir_doc(pro, doc_id)["status"] == "current"

    assert "Supprimer ce document" in text(author.get(f"/pro/documents/{doc_id}"))
    done = post(author, f"/pro/documents/{doc_id}/supprimer", {"dossier": patient_id})
    assert done.status_code == 303
    assert done.headers["location"] == f"/pro/dossiers/{patient_id}?fait=suppression"
    assert "Le document a été supprimé du dossier." in text(author.get(done.headers["location"]))
    assert doc_id not in fhir_ids(pro.api, pro.api.token("dr_lambert"), patient_id)
    assert doc_id not in fhir_ids(pro.api, pro.api.patient_token(patient_id), patient_id)
    assert author.get(f"/pro/documents/{doc_id}").status_code == 404
