"""Document content: media detection from signatures, and the declared content types Carnet accepts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carnet.documents.content import (
    DECLARED,
    PATIENT_UPLOAD_MEDIA,
    UNSTRUCTURED_FORMAT,
    Media,
    declared_media,
    detect_media,
)
from carnet.terminology.valuesets import terminology
from tests import factories

PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


@pytest.mark.parametrize(
    ("data", "media"),
    [
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj", Media.PDF),
        (b"%PDF-2.0\n", Media.PDF),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", Media.JPEG),
        (b"\xff\xd8\xff\xe1\x00\x18Exif\x00\x00", Media.JPEG),
        (PNG_HEADER + b"\x00" * 32, Media.PNG),
        (b"II*\x00\x08\x00\x00\x00", Media.TIFF),  # little-endian
        (b"MM\x00*\x00\x00\x00\x08", Media.TIFF),  # big-endian
        (b"{\\rtf1\\ansi\\deff0 {\\fonttbl}", Media.RTF),
        (b'<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument/>', Media.XML),
        (b'\xef\xbb\xbf<?xml version="1.0"?><a/>', Media.XML),  # UTF-8 byte order mark
        (b'\r\n\t  \xef\xbb\xbf <?xml version="1.0"?><a/>', Media.XML),
        (b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>", Media.XML),
        (b'{"resourceType": "Bundle", "type": "document"}', Media.FHIR),
        (b'\n  {\n  "id": "x",\n  "resourceType": "Bundle"}', Media.FHIR),
        (b'\xef\xbb\xbf{"resourceType":"Bundle"}', Media.FHIR),
        (b"Compte rendu de consultation\r\nTension 12/8.\n", Media.TEXT),
        ("Résumé : fièvre à 39 °C, œdème\n".encode(), Media.TEXT),  # UTF-8
        ("Résumé : fièvre à 39 °C, œdème\n".encode("cp1252"), Media.TEXT),  # Windows-1252
        (b"tab\tseparated\fform feed", Media.TEXT),
        (b'{"not": "fhir"}', Media.TEXT),  # JSON without resourceType is only text
    ],
)
def test_detect_media(data: bytes, media: Media) -> None:
    assert detect_media(data) is media


def test_a_real_pdf_is_detected() -> None:
    assert detect_media(factories.pdf_bytes("detect")) is Media.PDF


def test_a_factory_cda_is_xml() -> None:
    assert detect_media(factories.cda("255081416802538")) is Media.XML


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01\x02\x03\x04\x05",
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00",  # GIF is not accepted
        b"PK\x03\x04\x14\x00\x06\x00",  # ZIP / DOCX
        b"\x7fELF\x02\x01\x01\x00",
        b"text with a NUL\x00 byte",
        b"bell\x07 and escape\x1b[31m",
        b"\x81\x8d\x8f\x90\x9d",  # undefined in cp1252 and invalid UTF-8
        b"I I*\x00",
    ],
)
def test_detect_media_refuses_other_content(data: bytes) -> None:
    assert detect_media(data) is None


@pytest.mark.parametrize(
    "data",
    [
        "Conclusion\u00a0: tension normale\u00a0! Contrôle dans 3\u00a0mois.\n".encode(),
        "Conclusion\u202f: tension normale\u202f! Contrôle dans 3\u202fmois.\n".encode(),
        "Conclusion\u00a0: tension normale\u00a0! Contrôle dans 3\u00a0mois.\n".encode("cp1252"),
    ],
    ids=["utf-8 no-break space", "utf-8 narrow no-break space", "cp1252 no-break space"],
)
def test_french_text_with_no_break_spaces_is_text(data: bytes) -> None:
    # French typography puts a (narrow) no-break space before « : ; ! ? », inside « » and in "3 mois".
    assert detect_media(data) is Media.TEXT


def test_truncated_signatures_are_not_their_format() -> None:
    assert detect_media(b"%PDF") is Media.TEXT  # four printable characters, not a PDF
    assert detect_media(b"\x89PNG\r\n") is not Media.PNG
    assert detect_media(b"II*") is Media.TEXT
    assert detect_media(b"\xff\xd8") is not Media.JPEG


def test_signature_wins_over_text() -> None:
    # Printable ASCII that happens to start with a signature is that format.
    assert detect_media(b"%PDF-this is actually text") is Media.PDF
    assert detect_media(b"{\\rtf is how RTF starts") is Media.RTF


def test_resource_type_must_appear_early_for_fhir() -> None:
    late = b'{"padding": "' + b"x" * 5000 + b'", "resourceType": "Bundle"}'
    assert detect_media(late) is Media.TEXT


def test_xml_needs_its_first_character_to_be_a_tag() -> None:
    assert detect_media(b"Note: <b>bold</b>") is Media.TEXT


@given(st.binary(min_size=1, max_size=512))
def test_detect_media_never_fails_and_answers_an_accepted_kind(data: bytes) -> None:
    assert detect_media(data) in {*Media, None}


@given(
    st.text(alphabet=st.characters(categories=["L", "N", "P", "S"], include_characters=" "), min_size=1, max_size=200)
)
def test_printable_text_is_text_or_a_structured_kind(text: str) -> None:
    media = detect_media(text.encode())
    assert media is not None
    if not text.lstrip().startswith(("<", "{", "%PDF-")):
        assert media is Media.TEXT


# ---------------------------------------------------------------- declared media


@pytest.mark.parametrize(
    ("content_type", "media"),
    [
        ("application/pdf", Media.PDF),
        ("Application/PDF", Media.PDF),
        ("application/pdf; name=cr.pdf", Media.PDF),
        ("  text/xml ; charset=UTF-8", Media.XML),
        ("application/xml", Media.XML),
        ("application/hl7-cda+xml", Media.XML),
        ("application/xslt+xml", Media.XML),
        ("application/fhir+json; fhirVersion=4.0", Media.FHIR),
        ("application/json", Media.FHIR),
        ("image/jpeg", Media.JPEG),
        ("IMAGE/JPG", Media.JPEG),
        ("image/png", Media.PNG),
        ("image/tiff", Media.TIFF),
        ("text/plain; charset=windows-1252", Media.TEXT),
        ("text/rtf", Media.RTF),
        ("application/rtf", Media.RTF),
    ],
)
def test_declared_media_normalises_case_and_parameters(content_type: str, media: Media) -> None:
    assert declared_media(content_type) is media


@pytest.mark.parametrize(
    "content_type",
    [None, "", "image/gif", "application/octet-stream", "application/msword", "text/html", "application/pdfx", "pdf"],
)
def test_declared_media_refuses_other_types(content_type: str | None) -> None:
    assert declared_media(content_type) is None


def test_every_declared_type_is_lower_case_without_parameters() -> None:
    for content_type in DECLARED:
        assert content_type == content_type.strip().lower()
        assert ";" not in content_type


def test_patients_may_not_upload_structured_documents() -> None:
    assert Media.XML not in PATIENT_UPLOAD_MEDIA
    assert Media.FHIR not in PATIENT_UPLOAD_MEDIA
    assert {Media.PDF, Media.JPEG, Media.PNG, Media.TIFF, Media.TEXT, Media.RTF} == PATIENT_UPLOAD_MEDIA


def test_unstructured_format_codes_are_dmp_format_codes() -> None:
    formats = terminology().format_codes
    for media, code in UNSTRUCTURED_FORMAT.items():
        assert code in formats, f"{media}: {code} is not in JDV_J60"
    assert UNSTRUCTURED_FORMAT[Media.PDF] == "urn:ihe:iti:xds-sd:pdf:2008"
