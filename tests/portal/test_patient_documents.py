"""The patient portal's documents: the list by category with search and filters, one document (PDF framed,
CDA rendered to safe HTML, images, text), download, upload with its refusals, masking from professionals
(one, all, the default for new documents) and deletion of one's own uploads — checked in the pages and
in what the services then hold (the FHIR API as professionals and as the patient see it)."""

from __future__ import annotations

import io
import re
import uuid

import pytest
from PIL import Image

from carnet.demo.pdf import make_pdf
from tests.conftest import Api
from tests.images_support import shown_image
from tests.portal.patient_support import (
    assert_no_medical_data_in_addresses,
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

# A tiny valid JPEG header and a PNG signature: the kind of file is read from the bytes.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"
BROKEN_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _png(size: tuple[int, int] = (60, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (12, 120, 200)).save(out, format="PNG")
    return out.getvalue()


EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(range(256))


def _titles(person_docs: list[dict[str, object]]) -> list[str]:
    return [
        str(doc["content"][0]["attachment"].get("title"))  # type: ignore[index]
        for doc in person_docs
    ]


def test_documents_are_listed_by_category_and_filtered(api: Api) -> None:
    person = new_patient(api)
    report = deposit_pdf(api, person, persona="dr_medioni", title="Compte rendu de consultation")
    lab = deposit_pdf(api, person, persona="dr_medioni", type_code="11502-2", title="Bilan sanguin")
    client = signed_in(person)
    page = client.get(f"{person.base}/documents")
    assert page.status_code == 200
    text = body(page)
    for label in (
        "Ma santé en résumé",
        "Ordonnances et soins",
        "Radio, écho, scanner, IRM",
        "Résultats de biologie",
        "Comptes rendus",
        "Prévention et dépistages",
        "Certificats",
        "Pièces administratives",
        "Autres",
    ):
        assert label in text
    assert f"documents/{report}" in text
    assert f"documents/{lab}" in text
    # Nothing medical in any address: no INS, no type code, no category code, no title.
    assert_no_medical_data_in_addresses(page.text, person.ins or "", "11488-4", "11502-2", "BIOLOGIE", "Bilan")
    biology = post(client, f"{person.base}/documents", {"categorie": "BIOLOGIE"})
    assert biology.status_code == 200
    assert f"documents/{lab}" in biology.text
    assert f"documents/{report}" not in biology.text
    reports = post(client, f"{person.base}/documents", {"categorie": "CPT_REND"})
    assert f"documents/{report}" in reports.text
    assert f"documents/{lab}" not in reports.text
    # The text search looks at the type; a text that matches nothing finds nothing.
    nothing = post(client, f"{person.base}/documents", {"categorie": "tous", "texte": "zzzz-aucun-type"})
    assert nothing.status_code == 200
    assert f"documents/{report}" not in nothing.text
    assert f"documents/{lab}" not in nothing.text
    # Dates: a period ending before the documents (2026-10-01) hides them; a bad date is a clear error.
    before = post(client, f"{person.base}/documents", {"categorie": "tous", "au": "2026-09-30"})
    assert f"documents/{report}" not in before.text
    after = post(client, f"{person.base}/documents", {"categorie": "tous", "du": "2026-09-30", "au": "2026-10-02"})
    assert f"documents/{report}" in after.text
    bad = post(client, f"{person.base}/documents", {"categorie": "tous", "du": "31/02/2026"})
    assert bad.status_code == 422
    assert "Indiquez une date valide." in body(bad)
    reversed_dates = post(client, f"{person.base}/documents", {"du": "2026-10-02", "au": "2026-10-01"})
    assert reversed_dates.status_code == 422
    assert "La date de fin doit suivre la date de début." in body(reversed_dates)
    # French by default, English on request (the same page, the same documents).
    english = client.get(f"{person.base}/documents", headers={"Accept-Language": "en"})
    assert "Laboratory results" in body(english)
    assert "Hide all documents" in body(english)
    assert "Résultats de biologie" not in body(english)
    assert f"documents/{lab}" in english.text
    # Filters travel in the body: the search form posts, it never puts the text in the address.
    assert 'method="post" action="' + f'{person.base}/documents"' in page.text


def test_search_needs_the_csrf_token(api: Api) -> None:
    person = new_patient(api)
    client = signed_in(person)
    refused = client.post(f"{person.base}/documents", data={"texte": "bilan"}, follow_redirects=False)
    assert refused.status_code == 403
    assert "Le formulaire a expiré" in body(refused)


def test_a_pdf_is_framed_inline_and_downloaded(api: Api) -> None:
    person = new_patient(api)
    doc_id = deposit_pdf(api, person, persona="dr_medioni", title="Compte rendu opératoire")
    client = signed_in(person)
    page = client.get(f"{person.base}/documents/{doc_id}")
    assert page.status_code == 200
    assert f'<iframe class="viewer" src="{person.base}/documents/{doc_id}/contenu"' in page.text
    assert "Compte rendu opératoire" in body(page)
    assert_no_medical_data_in_addresses(page.text, person.ins or "", "11488-4", "opératoire", "CPT_REND")
    inline = client.get(f"{person.base}/documents/{doc_id}/contenu")
    assert inline.status_code == 200
    assert inline.headers["content-type"] == "application/pdf"
    assert inline.headers["content-disposition"].startswith("inline;")
    # A PDF shown inline is not sandboxed (PDF viewers other than Chromium's show nothing in a sandboxed
    # document) but loads nothing and may be framed by the portal's own pages only.
    policy = inline.headers["content-security-policy"]
    assert "sandbox" not in policy
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'self'" in policy
    assert "unsafe-inline" not in policy
    assert inline.headers["x-frame-options"] == "SAMEORIGIN"  # framed by the portal's own page only
    assert inline.headers["x-content-type-options"] == "nosniff"  # and always read as a PDF
    assert inline.headers["cache-control"] == "no-store"
    assert inline.content.startswith(b"%PDF-")
    download = client.get(f"{person.base}/documents/{doc_id}/telecharger")
    assert download.status_code == 200
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["content-security-policy"].endswith("; sandbox")  # a download stays sandboxed
    assert download.headers["content-disposition"].endswith('.pdf"')
    assert download.content == inline.content


def test_a_cda_is_rendered_without_anything_active(api: Api) -> None:
    person = new_patient(api)
    hostile = (
        '<text xmlns:x="http://www.w3.org/1999/xhtml">'
        '<paragraph styleCode="Bold" onclick="alert(1)" ID="p1">Tension normale '
        '<x:script>alert("xss")</x:script>'
        '<x:img src="https://evil.example/pixel.png" onerror="alert(2)"/>'
        '<linkHtml href="https://evil.example/phish" onmouseover="alert(3)">voir le site</linkHtml>'
        '<renderMultiMedia referencedObject="MM1"/>'
        "</paragraph>"
        '<table border="1" onload="alert(4)"><tbody><tr><td colspan="2" style="background:url(https://evil.example/bg)">'
        "Glycémie</td></tr></tbody></table>"
        "<content>&lt;script&gt;alert(5)&lt;/script&gt;</content>"
        "</text>"
    )
    doc_id = deposit_cda(api, person, persona="dr_medioni", narrative=hostile)
    client = signed_in(person)
    page = client.get(f"{person.base}/documents/{doc_id}")
    assert page.status_code == 200
    html = page.text
    content = html[html.index('id="view-title"') : html.index("<footer")]
    assert "Tension normale" in content
    assert "Glycémie" in body(page)
    assert "voir le site" in content
    assert "[image non affichée]" in body(page)
    lowered = content.lower()
    assert "<script" not in lowered
    assert "evil.example" not in lowered
    assert re.search(r"\son[a-z]+\s*=", lowered) is None
    assert "style=" not in lowered
    assert "<img" not in lowered
    assert "<a " not in lowered
    # The escaped text stays text.
    assert "&lt;script&gt;" in content
    # The whole page keeps its strict policy (no inline scripts allowed).
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy or "default-src 'self'" in policy
    assert "unsafe-inline" not in policy.split("script-src", 1)[-1].split(";", 1)[0]
    # The raw CDA framed inline is plain text, never XML a browser would interpret.
    raw = client.get(f"{person.base}/documents/{doc_id}/contenu")
    assert raw.headers["content-type"].startswith("text/plain")


def test_an_upload_is_stored_with_its_title_category_and_date(api: Api) -> None:
    person = new_patient(api)
    client = signed_in(person)
    form = client.get(f"{person.base}/documents/ajout")
    assert form.status_code == 200
    assert 'enctype="multipart/form-data"' in form.text
    pdf = make_pdf("Certificat", ["Aptitude au sport"])
    sent = upload(client, person, pdf, title="Certificat de sport", category="CERT_MED", date="28/03/2026")
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"] == f"{person.base}/documents?ok=ajoute"
    listing = client.get(sent.headers["location"])
    assert "Votre document a été ajouté." in body(listing)
    assert "Certificat de sport" in body(listing)
    held = patient_documents(person)
    assert _titles(held) == ["Certificat de sport"]
    doc = held[0]
    assert doc["type"]["coding"][0]["code"].startswith("DOCPAT")
    assert doc["date"].startswith("2026-03-28")
    assert doc["content"][0]["attachment"]["contentType"] == "application/pdf"
    # A care-team professional finds it (not masked) and its bytes are the ones sent.
    assert doc["id"] in fhir_ids(api, "dr_lambert", person)
    shown = client.get(f"{person.base}/documents/{doc['id']}/telecharger")
    assert shown.content == pdf
    # A JPEG shows as an image; a masked upload is hidden from professionals at once.
    image = upload(client, person, JPEG, title="Photo ordonnance", category="ORD_SOIN", masked=True)
    assert image.status_code == 303, image.text
    photo = next(d for d in patient_documents(person) if d["content"][0]["attachment"]["title"] == "Photo ordonnance")
    page = client.get(f"{person.base}/documents/{photo['id']}")
    assert f'<img class="preview-image" src="{person.base}/documents/{photo["id"]}/contenu"' in page.text
    assert photo["id"] not in fhir_ids(api, "dr_lambert", person)
    # TIFF and RTF are accepted too, typed from their bytes whatever the name says.
    tiff = b"II*\x00\x08\x00\x00\x00" + b"\x00" * 64
    rtf = b"{\\rtf1\\ansi Ordonnance de kin\\'e9sith\\'e9rapie}"
    assert upload(client, person, tiff, title="Radio scannée", category="RADIO_SC", filename="scan").status_code == 303
    assert upload(client, person, rtf, title="Ordonnance RTF", category="ORD_SOIN", filename="o.pdf").status_code == 303
    media = {
        d["content"][0]["attachment"]["title"]: d["content"][0]["attachment"]["contentType"]
        for d in patient_documents(person)
    }
    assert media["Radio scannée"] == "image/tiff"
    assert media["Ordonnance RTF"] in ("application/rtf", "text/rtf")


def test_upload_refusals_are_clear_and_write_nothing(api: Api) -> None:
    person = new_patient(api)
    client = signed_in(person)
    pdf = make_pdf("Certificat", ["Contenu"])
    limit = api.settings.max_patient_upload_bytes
    too_big = pdf + b"%" + b"0" * (limit - len(pdf))
    assert len(too_big) > limit
    cases = [
        (upload(client, person, too_big), "Le fichier dépasse la taille maximale (5 Mo)."),
        (upload(client, person, EXE, filename="programme.pdf"), "Ce fichier n'est pas accepté"),
        (upload(client, person, BROKEN_PNG, filename="image.png", media="image/png"), "Cette image PNG est illisible"),
        (upload(client, person, pdf, title="   "), "Donnez un titre au document."),
        (upload(client, person, pdf, title="x" * 201), "Le titre compte au plus 200 caractères."),
        (upload(client, person, pdf, date="32/13/2026"), "Indiquez la date du document"),
        (upload(client, person, pdf, date=""), "Indiquez la date du document"),
        (upload(client, person, pdf, date="2999-01-01"), "La date du document ne peut pas être dans le futur."),
        (upload(client, person, pdf, category="INCONNUE"), "Choisissez une catégorie."),
        (upload(client, person, b""), "Choisissez un fichier."),
    ]
    for response, message in cases:
        assert response.status_code == 422, (message, response.status_code)
        assert message in body(response), message
        assert 'aria-invalid="true"' in response.text
    # What the person typed is kept in the form (except the file).
    kept = upload(client, person, pdf, title="Mon titre gardé", date="")
    assert 'value="Mon titre gardé"' in body(kept)
    no_csrf = upload(client, person, pdf, with_csrf=False)
    assert no_csrf.status_code == 403
    assert "Le formulaire a expiré" in body(no_csrf)
    assert patient_documents(person) == []


def test_masking_one_document_hides_it_from_professionals_until_unmasked(api: Api) -> None:
    person = new_patient(api)
    doc_id = deposit_pdf(api, person, persona="dr_medioni")
    api.declare("dr_girard", str(person.record_id), "medecin-traitant")
    assert doc_id in fhir_ids(api, "dr_lambert", person)
    client = signed_in(person)
    page = client.get(f"{person.base}/documents/{doc_id}")
    assert "Masquer aux professionnels" in body(page)
    refused = client.post(f"{person.base}/documents/{doc_id}/masquage", data={"masquer": "1"}, follow_redirects=False)
    assert refused.status_code == 403
    assert doc_id in fhir_ids(api, "dr_lambert", person)
    masked = post(client, f"{person.base}/documents/{doc_id}/masquage", {"masquer": "1"})
    assert masked.status_code == 303
    assert masked.headers["location"] == f"{person.base}/documents/{doc_id}?ok=masque"
    shown = client.get(masked.headers["location"])
    assert "Le document est masqué aux professionnels de santé." in body(shown)
    assert "Rendre visible aux professionnels" in body(shown)
    # A care-team professional (not médecin traitant, not the author) no longer finds it; the author does.
    assert doc_id not in fhir_ids(api, "dr_lambert", person)
    assert api.get(f"/fhir/DocumentReference/{doc_id}", "dr_lambert").status_code == 404
    assert doc_id in fhir_ids(api, "dr_medioni", person)
    assert doc_id in fhir_ids(api, "dr_girard", person)  # the médecin traitant still does
    unmasked = post(client, f"{person.base}/documents/{doc_id}/masquage", {"masquer": "0"})
    assert unmasked.headers["location"] == f"{person.base}/documents/{doc_id}?ok=demasque"
    assert doc_id in fhir_ids(api, "dr_lambert", person)


def test_mask_all_and_the_default_for_new_documents(api: Api) -> None:
    person = new_patient(api)
    first = deposit_pdf(api, person, persona="dr_medioni", title="Premier")
    second = deposit_pdf(api, person, persona="dr_medioni", title="Second")
    client = signed_in(person)
    done = post(client, f"{person.base}/documents/confidentialite", {"action": "tout-masquer"})
    assert done.status_code == 303
    assert done.headers["location"] == f"{person.base}/documents?ok=tout-masque"
    assert "Vos documents sont masqués aux professionnels de santé." in body(client.get(done.headers["location"]))
    assert not {first, second} & set(fhir_ids(api, "dr_lambert", person))
    post(client, f"{person.base}/documents/confidentialite", {"action": "tout-demasquer"})
    assert {first, second} <= set(fhir_ids(api, "dr_lambert", person))
    # The default for new documents: those deposited afterwards by professionals are masked.
    chosen = post(client, f"{person.base}/documents/confidentialite", {"action": "defaut-masque"})
    assert chosen.headers["location"] == f"{person.base}/documents?ok=defaut"
    listing = client.get(f"{person.base}/documents")
    assert re.search(r'id="f-defaut-masque"[^>]*checked', listing.text)
    later = deposit_pdf(api, person, persona="dr_medioni", title="Après le choix")
    assert later not in fhir_ids(api, "dr_lambert", person)
    assert first in fhir_ids(api, "dr_lambert", person)
    post(client, f"{person.base}/documents/confidentialite", {"action": "defaut-visible"})
    visible = deposit_pdf(api, person, persona="dr_medioni", title="Visible")
    assert visible in fhir_ids(api, "dr_lambert", person)
    unknown = post(client, f"{person.base}/documents/confidentialite", {"action": "tout-effacer"})
    assert unknown.status_code == 400
    assert "Cette action n'existe pas" in body(unknown)
    assert later not in fhir_ids(api, "dr_lambert", person)


def test_only_ones_own_uploads_can_be_deleted(api: Api) -> None:
    person = new_patient(api)
    professional_doc = deposit_pdf(api, person, persona="dr_medioni")
    client = signed_in(person)
    assert upload(client, person, make_pdf("Note", ["à supprimer"]), title="Note personnelle").status_code == 303
    own = next(d["id"] for d in patient_documents(person) if d["id"] != professional_doc)
    page = client.get(f"{person.base}/documents/{own}")
    assert "Supprimer ce document" in body(page)
    assert "Supprimer ce document" not in body(client.get(f"{person.base}/documents/{professional_doc}"))
    assert client.get(f"{person.base}/documents/{professional_doc}/suppression").status_code == 404
    refused = post(client, f"{person.base}/documents/{professional_doc}/suppression")
    assert refused.status_code in (403, 404)
    assert professional_doc in [d["id"] for d in patient_documents(person)]
    confirm = client.get(f"{person.base}/documents/{own}/suppression")
    assert confirm.status_code == 200
    no_csrf = client.post(f"{person.base}/documents/{own}/suppression", follow_redirects=False)
    assert no_csrf.status_code == 403
    assert own in [d["id"] for d in patient_documents(person)]
    deleted = post(client, f"{person.base}/documents/{own}/suppression")
    assert deleted.status_code == 303
    assert deleted.headers["location"] == f"{person.base}/documents?ok=supprime"
    assert "Le document a été supprimé." in body(client.get(deleted.headers["location"]))
    assert [d["id"] for d in patient_documents(person)] == [professional_doc]
    assert client.get(f"{person.base}/documents/{own}").status_code == 404
    # On a closed record nothing is deleted (the page no longer offers it).
    assert upload(client, person, make_pdf("Note", ["gardée"]), title="Gardée").status_code == 303
    kept = next(d["id"] for d in patient_documents(person) if d["id"] != professional_doc)
    post(client, f"{person.base}/fermeture", {"confirmation": "oui"})
    assert "Supprimer ce document" not in body(client.get(f"{person.base}/documents/{kept}"))
    assert client.get(f"{person.base}/documents/{kept}/suppression").status_code == 404  # not offered
    closed = post(client, f"{person.base}/documents/{kept}/suppression")
    assert closed.status_code == 403
    assert "Ce dossier est fermé : rouvrez-le pour le modifier." in body(closed)
    assert kept in [d["id"] for d in patient_documents(person)]


def test_text_uploads_are_shown_as_text_and_filtered_by_author(api: Api) -> None:
    person = new_patient(api)
    professional_doc = deposit_pdf(api, person, persona="dr_medioni")
    client = signed_in(person)
    note = "Bonjour <script>alert(1)</script> été\n".encode()
    sent = upload(
        client, person, note, title="<b>Ma note</b>", category="AUTR_DOC", filename="note.txt", media="text/plain"
    )
    assert sent.status_code == 303, sent.text
    own = next(d["id"] for d in patient_documents(person) if d["id"] != professional_doc)
    page = client.get(f"{person.base}/documents/{own}")
    assert '<pre class="plain-text">Bonjour &lt;script&gt;alert(1)&lt;/script&gt; été' in page.text
    assert "<b>Ma note</b>" not in page.text
    assert "&lt;b&gt;Ma note&lt;/b&gt;" in page.text
    raw = client.get(f"{person.base}/documents/{own}/contenu")
    assert raw.headers["content-type"].startswith("text/plain")
    assert "sandbox" in raw.headers["content-security-policy"]
    mine = post(client, f"{person.base}/documents", {"auteur": "patient"})
    assert f"documents/{own}" in mine.text
    assert f"documents/{professional_doc}" not in mine.text
    theirs = post(client, f"{person.base}/documents", {"auteur": "professional"})
    assert f"documents/{own}" not in theirs.text
    assert f"documents/{professional_doc}" in theirs.text


def test_another_patients_document_is_not_found(api: Api) -> None:
    owner = new_patient(api)
    other = new_patient(api)
    doc_id = deposit_pdf(api, owner, persona="dr_medioni")
    client = signed_in(other)
    missing = str(uuid.uuid4())
    for suffix in ("", "/contenu", "/telecharger", "/suppression"):
        through_own = client.get(f"{other.base}/documents/{doc_id}{suffix}")
        through_theirs = client.get(f"{owner.base}/documents/{doc_id}{suffix}")
        nowhere = client.get(f"{other.base}/documents/{missing}{suffix}")
        assert through_own.status_code == through_theirs.status_code == nowhere.status_code == 404, suffix
        assert body(through_own) == body(nowhere).replace(missing, doc_id), suffix
    masked = post(client, f"{other.base}/documents/{doc_id}/masquage", {"masquer": "1"})
    assert masked.status_code == 404
    assert doc_id in fhir_ids(api, "dr_lambert", owner)


def test_the_search_matches_the_type_the_title_and_the_author(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    person = new_patient(api)
    api.declare("dr_lambert", str(person.record_id), "medecin-traitant")
    knee = deposit_pdf(api, person, persona="dr_lambert", type_code="18748-4", title="Échographie du genou")
    lab = deposit_pdf(api, person, persona="dr_medioni", type_code="11502-2", title="Bilan sanguin")
    visit = deposit_pdf(api, person, persona="dr_medioni", title="Consultation de suivi")
    client = signed_in(person)
    assert upload(client, person, JPEG, title="Radio du genou", category="RADIO_SC").status_code == 303
    own = next(d["id"] for d in patient_documents(person) if d["id"] not in (knee, lab, visit))

    def found(text: str, **extra: str) -> set[str]:
        page = post(client, f"{person.base}/documents", {"categorie": "tous", "texte": text, **extra})
        assert page.status_code == 200
        assert_no_medical_data_in_addresses(page.text, text)  # the text travels in the body only
        return {i for i in (knee, lab, visit, own) if f"documents/{i}" in page.text}

    assert found("genou") == {knee, own}  # titles
    assert found("ECHOGRAPHIE") == {knee}  # accents and case aside
    assert found("lambert") == {knee}  # the author's name (from the directory)
    assert found("biologiques") == {lab}  # the type, as before
    assert found("genou lambert") == {knee}  # every word, anywhere in type, title or author
    assert found("genou", categorie="RADIO_SC") == {knee, own}  # with the other filters
    assert found("genou", auteur="patient") == {own}
    assert found("zzzz-aucun") == set()
    page = client.get(f"{person.base}/documents")
    assert re.search(r'<label for="f-texte">Type, titre ou auteur</label>', page.text)
    english = client.get(f"{person.base}/documents", headers={"Accept-Language": "en"})
    assert '<label for="f-texte">Type, title or author</label>' in english.text

    # Paging counts the matches, not the documents looked through (the matching reads them in chunks).
    from carnet.documents import patient_space
    from carnet.portal.patient import documents as documents_routes

    monkeypatch.setattr(documents_routes, "PAGE_SIZE", 1)
    monkeypatch.setattr(patient_space, "PAGE", 2)
    first = post(client, f"{person.base}/documents", {"categorie": "tous", "texte": "genou"})
    assert "Documents trouvés : 2" in body(first)
    assert "Page 1 sur 2" in body(first)
    second = post(client, f"{person.base}/documents", {"categorie_courante": "", "texte": "genou", "page": "2"})
    assert "Page 2 sur 2" in body(second)
    pages = [{i for i in (knee, lab, visit, own) if f"documents/{i}" in p.text} for p in (first, second)]
    assert all(len(p) == 1 for p in pages)
    assert pages[0] | pages[1] == {knee, own}


def test_the_upload_form_offers_exactly_the_kinds_of_file_accepted(api: Api) -> None:
    person = new_patient(api)
    client = signed_in(person)
    form = client.get(f"{person.base}/documents/ajout")
    accept = re.search(r'<input id="f-fichier"[^>]*accept="([^"]*)"', form.text)
    assert accept is not None
    offered = accept.group(1).split(",")
    assert {".pdf", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".txt", ".rtf"} <= set(offered)
    assert "PDF, JPEG, PNG, TIFF, texte ou RTF" in body(form)
    samples = {
        "application/pdf": make_pdf("Offert", ["pdf"]),
        "image/jpeg": JPEG,
        "image/png": _png(),
        "image/tiff": b"II*\x00\x08\x00\x00\x00" + b"\x00" * 64,
        "text/plain": b"Une note\n",
        "text/rtf": b"{\\rtf1\\ansi Note}",
        "application/rtf": b"{\\rtf1\\ansi Autre note}",
    }
    media_offered = [kind for kind in offered if "/" in kind]
    assert set(media_offered) == set(samples)
    for number, media in enumerate(media_offered):
        sent = upload(client, person, samples[media], title=f"Offert {number}", media=media, filename="f")
        assert sent.status_code == 303, (media, body(sent))
    # What is not in the list is refused, whatever its name says.
    refused = upload(client, person, EXE, title="Programme", filename="photo.png", media="image/png")
    assert refused.status_code == 422
    assert "choisissez un PDF, une image JPEG, PNG ou TIFF" in body(refused)


def test_a_png_is_kept_as_a_pdf_holding_its_pixels(api: Api) -> None:
    person = new_patient(api)
    client = signed_in(person)
    image = Image.new("RGB", (90, 50), (12, 120, 200))
    for x in range(90):
        image.putpixel((x, 10), (250, 250, 0))
    png = io.BytesIO()
    image.save(png, format="PNG")
    sent = upload(
        client,
        person,
        png.getvalue(),
        title="Capture ordonnance",
        category="ORD_SOIN",
        filename="c.png",
        media="image/png",
    )
    assert sent.status_code == 303, body(sent)
    (doc,) = patient_documents(person)
    attachment = doc["content"][0]["attachment"]
    assert attachment["contentType"] == "application/pdf"
    assert doc["content"][0]["format"]["code"] == "urn:ihe:iti:xds-sd:pdf:2008"
    # Shown framed like any PDF; the bytes are a PDF holding exactly the image's pixels.
    page = client.get(f"{person.base}/documents/{doc['id']}")
    assert f"{person.base}/documents/{doc['id']}/contenu" in page.text
    stored = client.get(f"{person.base}/documents/{doc['id']}/telecharger").content
    assert stored.startswith(b"%PDF-1.4")
    assert attachment["size"] == len(stored)
    assert shown_image(stored).tobytes() == image.tobytes()
    # A professional of the care team finds it and reads the same bytes.
    assert doc["id"] in fhir_ids(api, "dr_lambert", person)
