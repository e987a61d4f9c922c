"""A document as the professional portal shows it: a CDA rendered to safe HTML by ``documents.render`` (the
same renderer as the patient portal) with its headings in the reader's language, a readable message when a
CDA cannot be rendered, and a PDF framed inline with the policies of a document's bytes."""

from __future__ import annotations

import re

import pytest

from carnet.errors import Invalid
from carnet.portal.pro import routes
from tests import factories
from tests.portal.pro_support import (
    PDF_FIELDS,
    Pro,
    cards_fixture,  # noqa: F401 - fixture
    deposit,
    doc_id_of,
    idnat,
    pro_app_fixture,  # noqa: F401 - fixture
    pro_fixture,  # noqa: F401 - fixture
    text,
)


def _cda(pro: Pro, marker: str, narrative: bytes | None = None) -> tuple[str, str]:
    """A CDA deposited through the portal by Dr Lambert: (record id, document id)."""
    patient_id, ins, system = pro.api.new_patient()
    client = pro.login("dr_lambert")
    data = factories.cda(ins, system.removeprefix("urn:oid:"), marker=marker, author_idnat=idnat("dr_lambert"))
    if narrative is not None:
        data = data.replace(f"<text>Observation clinique {marker}</text>".encode(), narrative)
    response = deposit(client, patient_id, data, filename="cr.xml", media="text/xml")
    assert response.status_code == 303, text(response)
    return patient_id, doc_id_of(response)


def _view(html: str) -> str:
    return html[html.index('id="view-title"') : html.index("<footer")]


def test_a_cda_is_rendered_with_headings_in_the_readers_language(pro: Pro) -> None:
    hostile = b'<text><paragraph styleCode="Bold" onclick="alert(1)">Tension normale</paragraph></text>'
    _, doc_id = _cda(pro, "VUE-1", hostile)
    client = pro.login("dr_lambert")
    french = client.get(f"/pro/documents/{doc_id}")
    assert french.status_code == 200
    view = _view(text(french))
    assert '<div class="cda">' in view
    assert "<h3>Observations</h3>" in view  # the section's title, under the page's h2 "Document"
    assert '<p class="cda-bold">Tension normale</p>' in view  # a class, never a style attribute
    assert "onclick" not in view
    assert "style=" not in view
    for label in ("Document", "Date", "Patient", "Auteur"):
        assert f"<dt>{label}</dt>" in view, label
    assert "pas encore disponible" not in text(french)
    assert "ne peut pas être affiché" not in view

    english = client.get(f"/pro/documents/{doc_id}", headers={"Accept-Language": "en"})
    view = _view(text(english))
    assert "<dt>Author</dt>" in view
    assert "<dt>Auteur</dt>" not in view
    assert "Tension normale" in view  # the document's own words stay as written
    assert "Download" in text(english)


def test_a_cda_that_cannot_be_rendered_is_explained_and_downloadable(pro: Pro, monkeypatch: pytest.MonkeyPatch) -> None:
    _, doc_id = _cda(pro, "VUE-2")

    def refuse(data: bytes, **_: object) -> str:
        raise Invalid.at("document", "the content is not a CDA R2 ClinicalDocument")

    monkeypatch.setattr(routes, "cda_to_html", refuse)
    client = pro.login("dr_lambert")
    page = client.get(f"/pro/documents/{doc_id}")
    assert page.status_code == 200  # the page is shown, with its facts and the download
    view = _view(text(page))
    assert "Ce document CDA ne peut pas être affiché" in view
    assert '<div class="cda">' not in view
    assert f'href="/pro/documents/{doc_id}/telecharger"' in page.text
    english = client.get(f"/pro/documents/{doc_id}", headers={"Accept-Language": "en"})
    assert "This CDA document cannot be displayed" in text(english)


def test_a_pdf_is_framed_inline_and_its_bytes_are_served_with_a_strict_policy(pro: Pro) -> None:
    patient_id, _, _ = pro.api.new_patient()
    client = pro.login("dr_lambert")
    response = deposit(client, patient_id, factories.pdf_bytes("cadre"), fields=PDF_FIELDS)
    assert response.status_code == 303, text(response)
    doc_id = doc_id_of(response)
    page = client.get(f"/pro/documents/{doc_id}")
    assert re.search(rf'<iframe class="viewer" src="/pro/documents/{doc_id}/contenu"', page.text)
    inline = client.get(f"/pro/documents/{doc_id}/contenu")
    assert inline.status_code == 200
    assert inline.headers["content-type"] == "application/pdf"
    assert inline.headers["content-disposition"].startswith("inline;")
    policy = inline.headers["content-security-policy"]
    assert "sandbox" not in policy  # a PDF viewer renders it (see portal.content)
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'self'" in policy
    assert inline.headers["x-frame-options"] == "SAMEORIGIN"
    assert inline.headers["x-content-type-options"] == "nosniff"
    assert inline.headers["cache-control"] == "no-store"
    download = client.get(f"/pro/documents/{doc_id}/telecharger")
    assert download.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in download.headers["content-security-policy"]
    assert "default-src 'none'" in download.headers["content-security-policy"]
    # A CDA is never given to the browser to interpret: downloaded, sandboxed.
    _, cda_id = _cda(pro, "VUE-3")
    raw = client.get(f"/pro/documents/{cda_id}/contenu")
    assert raw.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in raw.headers["content-security-policy"]
