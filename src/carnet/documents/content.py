"""Document content: which media types Carnet accepts, and what the bytes really are.

The declared ``attachment.contentType`` must agree with the bytes. Detection looks at signatures
(magic numbers), never at file names, and never parses the whole document.
"""

from __future__ import annotations

import enum
import unicodedata


class Media(enum.StrEnum):
    """The kinds of content a DMP document may hold."""

    PDF = "application/pdf"
    XML = "text/xml"  # CDA R2
    FHIR = "application/fhir+json"  # FHIR document Bundle
    JPEG = "image/jpeg"
    PNG = "image/png"
    TIFF = "image/tiff"
    TEXT = "text/plain"
    RTF = "text/rtf"


# Declared media types (lower-case, without parameters) → the kind they announce.
DECLARED: dict[str, Media] = {
    "application/pdf": Media.PDF,
    "text/xml": Media.XML,
    "application/xml": Media.XML,
    "application/hl7-cda+xml": Media.XML,
    "application/xslt+xml": Media.XML,  # "auto-présentable" CDA, as some DMP feeds declare it
    "application/fhir+json": Media.FHIR,
    "application/json": Media.FHIR,
    "image/jpeg": Media.JPEG,
    "image/jpg": Media.JPEG,
    "image/png": Media.PNG,
    "image/tiff": Media.TIFF,
    "text/plain": Media.TEXT,
    "text/rtf": Media.RTF,
    "application/rtf": Media.RTF,
}

# What patients may upload from the portal or an app (Mon espace santé rules).
PATIENT_UPLOAD_MEDIA = frozenset({Media.PDF, Media.JPEG, Media.PNG, Media.TIFF, Media.TEXT, Media.RTF})

# XDS-SD format codes of unstructured content (ASS_A12), by media kind.
UNSTRUCTURED_FORMAT = {
    Media.PDF: "urn:ihe:iti:xds-sd:pdf:2008",
    Media.TEXT: "urn:ihe:iti:xds-sd:text:2008",
    Media.RTF: "urn:ihe:iti-fr:xds-sd:rtf:2010",
    Media.JPEG: "urn:ihe:iti-fr:xds-sd:jpeg:2010",
    Media.TIFF: "urn:ihe:iti-fr:xds-sd:tiff:2010",
}


def declared_media(content_type: str | None) -> Media | None:
    """The media kind a declared content type announces, or None if Carnet does not accept it."""
    if not content_type:
        return None
    base = content_type.split(";", 1)[0].strip().lower()
    return DECLARED.get(base)


def _looks_like_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            return False
    # French typography puts no-break spaces (U+00A0, U+202F) before : ; ! ? — they are text too.
    return all(ch.isprintable() or ch in "\r\n\t\f" or unicodedata.category(ch) == "Zs" for ch in text[:65536])


def detect_media(data: bytes) -> Media | None:
    """What the bytes are, from their signature; None if they are none of the accepted kinds."""
    head = data[:1024]
    if head.startswith(b"%PDF-"):
        return Media.PDF
    if head.startswith(b"\xff\xd8\xff"):
        return Media.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Media.PNG
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return Media.TIFF
    if head.startswith(b"{\\rtf"):
        return Media.RTF
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"<"):
        return Media.XML
    if stripped.startswith(b"{") and b'"resourceType"' in data[:4096]:
        return Media.FHIR
    if data and _looks_like_text(data):
        return Media.TEXT
    return None
