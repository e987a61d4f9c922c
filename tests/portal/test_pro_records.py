"""Finding a patient by INS (identity traits compared), the professional's access status on the record, the
record page (newest first, grouped by class, the last two years unless widened) and a document's viewer and
download — each seen from a professional who may and one who may not."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from carnet.portal.pro import routes as pro_routes
from tests import factories
from tests.portal.patient_support import assert_no_medical_data_in_addresses
from tests.portal.pro_support import (
    Pro,
    cards_fixture,  # noqa: F401 - fixture
    idnat,
    patient_decides,
    post,
    pro_app_fixture,  # noqa: F401 - fixture
    pro_fixture,  # noqa: F401 - fixture
    search_fields,
    text,
)

NOT_FOUND = "Ce que vous cherchez n'existe pas ou ne vous est pas accessible."


# ------------------------------------------------------------------------------------ finding a patient
def test_matching_traits_are_confirmed_and_the_record_opens_from_a_link_without_the_ins(pro: Pro) -> None:
    patient_id, ins, system = pro.api.new_patient()
    client = pro.login("dr_lambert")
    # Accents, case and hyphens do not make a difference (INSi comparison).
    response = post(client, "/pro/patients", search_fields(ins, system, family="testeur", given="camille"))
    assert response.status_code == 200
    page = text(response)
    assert "Les traits d'identité saisis correspondent à ceux du dossier." in page
    assert "Ouvert" in page
    assert "Équipe de soins" in page
    assert f'href="/pro/dossiers/{patient_id}"' in response.text
    assert_no_medical_data_in_addresses(response.text, ins, "TESTEUR", "1980-06-15")
    # Nothing of the search went into an address: it was a POST.
    assert str(response.url).endswith("/pro/patients")


def test_mismatching_traits_are_listed_before_opening(pro: Pro) -> None:
    _, ins, system = pro.api.new_patient()
    client = pro.login("dr_lambert")
    response = post(client, "/pro/patients", search_fields(ins, system, family="DUPONT", birth_date="1980-06-16"))
    assert response.status_code == 200
    page = text(response)
    assert "Attention : les traits d'identité ne correspondent pas au dossier" in page
    differences = page.split("Différences :", 1)[1].split("</ul>", 1)[0]
    assert "Nom de naissance" in differences
    assert "Date de naissance" in differences
    assert "Premier prénom de naissance" not in differences
    assert "correspondent à ceux du dossier" not in page


def _status(pro: Pro, persona: str, ins: str, system: str) -> str:
    client = pro.login(persona)
    response = post(client, "/pro/patients", search_fields(ins, system))
    assert response.status_code == 200, text(response)
    found = re.search(r"<dt>Votre accès</dt>\s*<dd><span class=\"badge[^\"]*\">([^<]+)</span>", text(response))
    assert found, text(response)
    return found.group(1)


def test_the_access_status_of_each_situation(pro: Pro) -> None:
    patient_id, ins, system = pro.api.new_patient(team=("dr_lambert",))
    patient_decides(pro.api, patient_id, "authorization", "dr_girard")
    pro.api.declare("dr_roux", patient_id, "medecin-traitant")
    patient_decides(pro.api, patient_id, "authorization", "inf_moreau")
    patient_decides(pro.api, patient_id, "block", "inf_moreau", provision="deny")
    assert _status(pro, "dr_girard", ins, system) == "Autorisé par le patient"
    assert _status(pro, "dr_lambert", ins, system) == "Équipe de soins"
    assert _status(pro, "dr_roux", ins, system) == "Médecin traitant"
    assert _status(pro, "dr_haddad", ins, system) == "Aucun accès"
    # Blocked looks exactly like no access: the professional does not learn they were blocked.
    assert _status(pro, "inf_moreau", ins, system) == "Aucun accès"
    blocked = post(pro.login("inf_moreau"), "/pro/patients", search_fields(ins, system))
    none = post(pro.login("dr_haddad"), "/pro/patients", search_fields(ins, system))
    for response in (blocked, none):
        page = text(response)
        assert "bloqu" not in page.lower()
        assert "L'identité enregistrée dans ce dossier ne vous est pas accessible" in page
        assert "TESTEUR" not in page.split('id="result-title"', 1)[1]  # the identity traits stay hidden


def test_an_unknown_ins_differs_from_a_record_the_professional_may_not_see(pro: Pro) -> None:
    _, ins, system = pro.api.new_patient(team=())
    unknown, _ = factories.random_ins()
    client = pro.login("dr_haddad")
    missing = text(post(client, "/pro/patients", search_fields(unknown, system)))
    assert "Aucun dossier n'existe pour cet INS." in missing
    existing = text(post(client, "/pro/patients", search_fields(ins, system)))
    assert "Aucun dossier n'existe" not in existing
    assert "Ouvert" in existing
    assert "Aucun accès" in existing


def test_a_closed_record_says_so(pro: Pro) -> None:
    patient_id, ins, system = pro.api.new_patient()
    body = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueCode": "DECES"}]}
    assert pro.api.post(f"/fhir/Patient/{patient_id}/$close", "ops_admin", body).status_code == 200
    page = text(post(pro.login("dr_lambert"), "/pro/patients", search_fields(ins, system)))
    assert "Fermé" in page
    assert "Un dossier fermé n'est plus consultable" in page
    assert f'href="/pro/dossiers/{patient_id}"' not in page


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"ins": "12345"}, "ins", "Un INS compte 15 caractères"),
        ({"ins": "BAD"}, "ins", "Un INS compte 15 caractères"),
        ({"ins": ""}, "ins", "Saisissez l'INS du patient"),
        ({"birth_date": "31/02/1980"}, "birth_date", "Saisissez la date de naissance du patient"),
        ({"birth_date": "1980-02-31"}, "birth_date", "Saisissez la date de naissance du patient"),
        ({"family": ""}, "family", "Saisissez le nom de naissance du patient."),
        ({"system": "1.2.3"}, "system", "Choisissez l'autorité d'affectation de l'INS."),
    ],
)
def test_bad_search_input_is_explained_next_to_its_field(
    pro: Pro, fields: dict[str, str], field: str, message: str
) -> None:
    ins, system = factories.random_ins()
    response = post(pro.login("dr_lambert"), "/pro/patients", {**search_fields(ins, system), **fields})
    assert response.status_code == 422
    page = text(response)
    assert message in page
    assert f'id="f-{field}"' in page
    assert "Résultat" not in page


def test_an_ins_with_a_wrong_key_is_refused(pro: Pro) -> None:
    ins, system = factories.random_ins()
    wrong = ins[:13] + f"{(int(ins[13:]) % 97) + 1:02d}"
    response = post(pro.login("dr_lambert"), "/pro/patients", search_fields(wrong, system))
    assert response.status_code == 422
    assert "La clé de cet INS ne correspond pas" in text(response)


def test_the_search_needs_its_csrf_token_and_a_session(pro: Pro) -> None:
    _, ins, system = pro.api.new_patient()
    client = pro.login("dr_lambert")
    forged = client.post("/pro/patients", data=search_fields(ins, system), follow_redirects=False)
    assert forged.status_code == 403
    assert "TESTEUR" not in forged.text
    anonymous = pro.browser()
    response = post(anonymous, "/pro/patients", search_fields(ins, system))
    assert response.status_code == 303
    assert response.headers["location"].startswith("/pro/connexion")


# ------------------------------------------------------------------------------------ the record page
def _publish(
    pro: Pro, ins: str, system: str, *, type_code: str, title: str, start: dt.datetime, persona: str = "dr_lambert"
) -> str:
    doc = factories.docref(
        ins,
        system,
        type_code=type_code,
        class_code=None,
        title=title,
        author_idnat=idnat(persona),
        date=(start + dt.timedelta(hours=1)).isoformat(timespec="seconds"),
        period=(start.isoformat(timespec="seconds"), (start + dt.timedelta(minutes=30)).isoformat(timespec="seconds")),
    )
    response = pro.api.publish(persona, doc)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _positions(page: str, *titles: str) -> list[int]:
    return [page.index(t) for t in titles]


def test_the_record_lists_documents_newest_first_grouped_by_class_over_two_years(pro: Pro) -> None:
    patient_id, ins, system = pro.api.new_patient()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    older = _publish(
        pro, ins, system, type_code="11488-4", title="Consultation ancienne", start=now - dt.timedelta(days=200)
    )
    newer = _publish(
        pro, ins, system, type_code="11490-0", title="Lettre de sortie récente", start=now - dt.timedelta(days=10)
    )
    synthesis = _publish(
        pro, ins, system, type_code="34133-9", title="Synthèse d'épisode", start=now - dt.timedelta(days=50)
    )
    imaging = _publish(
        pro, ins, system, type_code="18748-4", title="Scanner thoracique", start=now - dt.timedelta(days=5)
    )
    ancient = _publish(
        pro,
        ins,
        system,
        type_code="11488-4",
        title="Consultation d'il y a trois ans",
        start=now - dt.timedelta(days=3 * 366),
    )

    client = pro.login("dr_lambert")
    response = client.get(f"/pro/dossiers/{patient_id}")
    assert response.status_code == 200
    page = text(response)
    assert "Dossier de Camille TESTEUR" in page
    assert "Documents des deux dernières années" in page
    # Classes in the JDV_J57 order (Compte rendu, Synthèse, Imagerie), each newest first.
    groups = _positions(page, 'id="classe-10"', 'id="classe-11"', 'id="classe-31"')
    assert groups == sorted(groups)
    assert _positions(page, "Lettre de sortie récente", "Consultation ancienne") == sorted(
        _positions(page, "Lettre de sortie récente", "Consultation ancienne")
    )
    section_10 = page.split('id="classe-10"', 1)[1].split('id="classe-11"', 1)[0]
    assert "Lettre de sortie récente" in section_10
    assert "Consultation ancienne" in section_10
    assert "Scanner thoracique" in page.split('id="classe-31"', 1)[1]
    assert "Synthèse d'épisode" in page.split('id="classe-11"', 1)[1].split('id="classe-31"', 1)[0]
    for doc in (older, newer, synthesis, imaging):
        assert f'href="/pro/documents/{doc}"' in response.text
    # The two-year window ANS recommends for a first opening leaves the old document out …
    assert f'href="/pro/documents/{ancient}"' not in response.text
    assert f'href="/pro/dossiers/{patient_id}?periode=tout"' in response.text
    # … and widening shows it, still newest first.
    wide = client.get(f"/pro/dossiers/{patient_id}?periode=tout")
    assert wide.status_code == 200
    wide_page = text(wide)
    assert "Tous les documents" in wide_page
    assert f'href="/pro/documents/{ancient}"' in wide.text
    assert wide_page.index("Consultation ancienne") < wide_page.index("Consultation d'il y a trois ans")
    assert_no_medical_data_in_addresses(wide.text, ins, "11488-4", "Consultation", "TESTEUR")


def test_the_record_of_a_professional_without_access_shows_only_their_own_deposits(pro: Pro) -> None:
    patient_id, ins, system = pro.api.new_patient()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    theirs = _publish(
        pro, ins, system, type_code="11488-4", title="Document de l'équipe", start=now - dt.timedelta(days=3)
    )
    response = pro.login("dr_haddad").get(f"/pro/dossiers/{patient_id}")
    assert response.status_code == 200
    page = text(response)
    assert "Aucun accès" in page
    assert "Vous ne voyez que les documents que vous avez vous-même déposés." in page
    assert f"/pro/documents/{theirs}" not in page
    assert "TESTEUR" not in page
    assert "Aucun document ne vous est accessible" in page


def test_an_unknown_record_is_not_found(pro: Pro) -> None:
    client = pro.login("dr_lambert")
    for path in ("/pro/dossiers/00000000-0000-0000-0000-000000000000", "/pro/dossiers/not-a-uuid"):
        response = client.get(path)
        assert response.status_code == 404
        assert NOT_FOUND in text(response)


# ------------------------------------------------------------------------------------ one document
def test_a_document_is_viewed_inline_and_downloaded(pro: Pro) -> None:
    patient_id, ins, system = pro.api.new_patient()
    data = factories.pdf_bytes("visible")
    doc = factories.docref(ins, system, data=data, title="Bilan cardiologique", author_idnat=idnat("dr_lambert"))
    doc_id = pro.api.publish("dr_lambert", doc).json()["id"]
    client = pro.login("inf_moreau")
    page = client.get(f"/pro/documents/{doc_id}")
    assert page.status_code == 200
    html = text(page)
    assert "Bilan cardiologique" in html
    assert "CR ou fiche de consultation ou de visite" in html
    assert f'<iframe class="viewer" src="/pro/documents/{doc_id}/contenu"' in page.text
    assert f'href="/pro/dossiers/{patient_id}"' in page.text
    assert "Supprimer ce document" not in html  # not the author
    assert_no_medical_data_in_addresses(page.text, ins, "Bilan", "11488-4", "TESTEUR")
    inline = client.get(f"/pro/documents/{doc_id}/contenu")
    assert inline.status_code == 200
    assert inline.content == data
    assert inline.headers["content-type"] == "application/pdf"
    assert inline.headers["content-disposition"].startswith("inline;")
    assert "frame-ancestors 'self'" in inline.headers["content-security-policy"]
    assert inline.headers["cache-control"] == "no-store"
    download = client.get(f"/pro/documents/{doc_id}/telecharger")
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["content-disposition"].startswith("attachment;")
    assert "Bilan" not in download.headers["content-disposition"]  # no medical data in the file name


def test_a_document_out_of_reach_is_not_found_like_a_missing_one(pro: Pro) -> None:
    _, ins, system = pro.api.new_patient()
    doc_id = pro.api.publish("dr_lambert", factories.docref(ins, system, author_idnat=idnat("dr_lambert"))).json()["id"]
    client = pro.login("dr_haddad")
    for path in (
        f"/pro/documents/{doc_id}",
        f"/pro/documents/{doc_id}/contenu",
        f"/pro/documents/{doc_id}/telecharger",
    ):
        refused = client.get(path)
        missing = client.get(path.replace(doc_id, "0" * len(doc_id)))
        assert refused.status_code == missing.status_code == 404
        assert NOT_FOUND in text(refused)
        assert text(refused).replace(doc_id, "") == text(missing).replace("0" * len(doc_id), "")


def test_a_closed_record_page_says_it_is_closed(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient()
    body = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueCode": "DECES"}]}
    assert pro.api.post(f"/fhir/Patient/{patient_id}/$close", "ops_admin", body).status_code == 200
    response = pro.login("dr_lambert").get(f"/pro/dossiers/{patient_id}")
    assert response.status_code == 200, text(response)
    page = text(response)
    assert "Dossier fermé" in page
    assert f'href="/pro/dossiers/{patient_id}/depot"' not in page


def test_a_long_record_is_paged_newest_first(pro: Pro, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pro_routes, "PAGE_SIZE", 2)
    patient_id, ins, system = pro.api.new_patient()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    titles = ["Premier acte", "Deuxième acte", "Troisième acte"]
    ids = [
        _publish(pro, ins, system, type_code="11488-4", title=title, start=now - dt.timedelta(days=30 - 10 * n))
        for n, title in enumerate(titles)
    ]
    client = pro.login("dr_lambert")
    first = client.get(f"/pro/dossiers/{patient_id}")
    assert [f"/pro/documents/{i}" in first.text for i in ids] == [False, True, True]
    assert f'href="/pro/dossiers/{patient_id}?page=2"' in first.text
    second = client.get(f"/pro/dossiers/{patient_id}?page=2")
    assert [f"/pro/documents/{i}" in second.text for i in ids] == [True, False, False]
    assert f'href="/pro/dossiers/{patient_id}?page=1"' in second.text
    assert "?page=3" not in second.text
    wide = client.get(f"/pro/dossiers/{patient_id}?periode=tout&page=2")
    assert f'href="/pro/dossiers/{patient_id}?periode=tout&amp;page=1"' in wide.text
    # A nonsensical page number is the first page.
    assert client.get(f"/pro/dossiers/{patient_id}?page=abc").text.count("/pro/documents/") == 2
