"""What a patient (or a legal representative) does to documents from their space: upload their own,
mask or unmask a document from professionals, mask everything at once.

Each is a thin layer over the document service, which asks the access policy: an upload is an
ITI-105 simplified publish of a patient-expression document (``DOCPAT*`` / ``EXPPAT_2``, typed by the
category chosen: ``documents.categories.UPLOAD_TYPES``), masking a PDSm PATCH of ``securityLabel``
(``MASQUE_PS``). Nothing here decides who may do it.

Uploads follow Mon espace santé's rules (reference/dmp.md §2.5): PDF, JPEG, PNG, TIFF, plain text or
RTF, at most ``CARNET_MAX_PATIENT_UPLOAD_BYTES`` (5 MB); the kind of file is read from its bytes, never
from its name or what the browser says. A DMP document carries a format code of
JDV_J60-FormatCode-DMP, and for unstructured content that code follows the media type (ASS_A12, from
TRE_R222: PDF, text, RTF, JPEG, TIFF — the five kinds a CDA level-1 body may hold, reference/dmp.md §2.2
and §2.5). J60 has no code for PNG, so a PNG is kept as a one-page PDF holding exactly its pixels
(``documents.images``) and shared as a PDF. The upload form offers exactly what is accepted
(``ACCEPT``).

``find_documents`` is the documents page's search: a text matches the type, the title and the author of
each document (titles are encrypted with the record, so that matching runs here, over the reader's own
documents once the other filters have run in SQL), then the page is cut.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import unicodedata
import uuid
from dataclasses import dataclass

import orjson

from carnet.auth.actor import Actor
from carnet.documents import categories, images, overview
from carnet.documents import search as document_search
from carnet.documents import service as documents
from carnet.documents.categories import Category
from carnet.documents.content import PATIENT_UPLOAD_MEDIA, UNSTRUCTURED_FORMAT, Media, detect_media
from carnet.documents.schemas import Created, DocumentQuery, PatchOperation
from carnet.errors import Invalid, IssueCode, Problem, TooLarge
from carnet.fhirtypes import JSON, format_instant
from carnet.runtime import Work
from carnet.terminology import terminology

A00 = "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"
HL7_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
TA07 = documents.TA07
MASQUE_PS = "MASQUE_PS"
TITLE_MAX = 200
PAGE = 100
SCAN_LIMIT = 10_000  # documents a text search looks through at most (a record holds far fewer)

# What a patient may upload: the kinds Mon espace santé takes (PNG is kept as a PDF, having no DMP format code).
UPLOAD_MEDIA = frozenset(m for m in PATIENT_UPLOAD_MEDIA if m in UNSTRUCTURED_FORMAT or m is Media.PNG)
_EXTENSIONS = {
    Media.PDF: (".pdf",),
    Media.JPEG: (".jpg", ".jpeg"),
    Media.PNG: (".png",),
    Media.TIFF: (".tif", ".tiff"),
    Media.TEXT: (".txt",),
    Media.RTF: (".rtf",),
}
_ALIASES = {Media.RTF: ("application/rtf",)}  # what some systems call an RTF file
# The upload field's ``accept`` attribute: the same kinds, by file name and by media type.
ACCEPT = ",".join(
    [ext for media in sorted(UPLOAD_MEDIA) for ext in _EXTENSIONS[media]]
    + [name for media in sorted(UPLOAD_MEDIA) for name in (media.value, *_ALIASES.get(media, ()))]
)


@dataclass(frozen=True, slots=True)
class Upload:
    """A file a patient sends from the portal, with what they said about it."""

    title: str
    category: Category
    date: dt.date
    data: bytes
    masked: bool = False


def check_upload(work: Work, upload: Upload) -> tuple[Media, bytes]:
    """The kind of the document and its bytes (a PNG becomes a PDF), or ``Invalid`` / ``TooLarge`` naming
    each field at fault (nothing written)."""
    problems: list[Problem] = []
    title = upload.title.strip()
    if not title:
        problems.append(Problem("give the document a title", "title", IssueCode.REQUIRED))
    elif len(title) > TITLE_MAX:
        problems.append(Problem(f"the title has at most {TITLE_MAX} characters", "title", IssueCode.VALUE))
    if upload.date > work.now.date():
        problems.append(Problem("the document's date cannot be in the future", "date", IssueCode.VALUE))
    if problems:
        raise Invalid("the document cannot be added", problems=problems, unprocessable=True)
    if not upload.data:
        raise Invalid("the file is empty", problems=[Problem("the file is empty", "file", IssueCode.REQUIRED)])
    if len(upload.data) > work.settings.max_patient_upload_bytes:
        raise TooLarge(f"the file is larger than {work.settings.max_patient_upload_bytes} bytes")
    media = detect_media(upload.data)
    if media is None or media not in UPLOAD_MEDIA:
        raise Invalid(
            "the file is not a PDF, JPEG, PNG, TIFF, text or RTF document",
            problems=[Problem("kind", "file", IssueCode.NOT_SUPPORTED)],
        )
    if media is Media.PNG:
        try:
            return Media.PDF, images.png_as_pdf(upload.data)
        except images.ImageError as exc:
            raise Invalid(str(exc), problems=[Problem("png", "file", IssueCode.VALUE)]) from exc
    return media, upload.data


def document_reference(work: Work, *, actor: Actor, patient_id: str, upload: Upload, media: Media) -> JSON:
    """The DocumentReference of a patient's upload (ITI-105, the content sent alongside)."""
    term = terminology()
    type_code = categories.UPLOAD_TYPES[upload.category]
    type_coding = term.type_codes.codes[type_code]
    class_code = term.expected_class(type_code) or "90"
    class_coding = term.class_codes.codes[class_code]
    format_code = UNSTRUCTURED_FORMAT[media]
    when = dt.datetime.combine(upload.date, dt.time(12, 0), tzinfo=dt.UTC)
    labels: list[JSON] = [{"coding": [{"system": HL7_CONFIDENTIALITY, "code": "N"}]}]
    if upload.masked:
        labels.append({"coding": [{"system": TA07, "code": MASQUE_PS}]})
    author: JSON = (
        {"resourceType": "Patient", "id": "author"}
        if actor.own_record is not None and str(actor.own_record) == patient_id
        else {"resourceType": "RelatedPerson", "id": "author", "patient": {"reference": f"Patient/{patient_id}"}}
    )
    return {
        "resourceType": "DocumentReference",
        "contained": [author],
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "status": "current",
        "type": {"coding": [{"system": type_coding.system, "code": type_code, "display": type_coding.display}]},
        "category": [
            {"coding": [{"system": class_coding.system, "code": class_code, "display": class_coding.display}]}
        ],
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": format_instant(when),
        "author": [{"reference": "#author"}],
        "securityLabel": labels,
        "content": [
            {
                "attachment": {
                    "contentType": media.value,
                    "language": "fr-FR",
                    "title": upload.title.strip(),
                    "creation": format_instant(when),
                },
                "format": {"system": term.format_codes.codes[format_code].system, "code": format_code},
            }
        ],
        "context": {
            "facilityType": {"coding": [{"system": A00, "code": "EXP_PATIENT"}]},
            "practiceSetting": {"coding": [{"system": A00, "code": "EXP_PATIENT"}]},
        },
    }


def upload(work: Work, *, actor: Actor, patient_id: str, upload: Upload) -> Created:
    """Add a patient's own document to the record (all or nothing)."""
    media, data = check_upload(work, upload)
    resource = document_reference(work, actor=actor, patient_id=patient_id, upload=upload, media=media)
    return documents.publish(work, actor=actor, resource=resource, data=data)


def _labels_with(resource: JSON, masked: bool) -> list[JSON]:
    kept = [
        label
        for label in resource.get("securityLabel") or []
        if not any(c.get("code") == MASQUE_PS for c in (label.get("coding") or []) if isinstance(c, dict))
    ]
    if masked:
        kept.append({"coding": [{"system": TA07, "code": MASQUE_PS, "display": "Masqué aux professionnels de santé"}]})
    return kept


def set_masked(work: Work, *, actor: Actor, doc_id: str, masked: bool) -> bool:
    """Mask a document from professionals (or unmask it); whether it changed."""
    before = orjson.loads(documents.read_document(work, actor=actor, doc_id=doc_id))
    labels = _labels_with(before, masked)
    if labels == (before.get("securityLabel") or []):
        return False
    documents.patch_document(
        work,
        actor=actor,
        doc_id=doc_id,
        operations=[
            PatchOperation("replace" if "securityLabel" in before else "add", "/securityLabel", labels, "securityLabel")
        ],
    )
    return True


def mask_all(work: Work, *, actor: Actor, patient_id: str, masked: bool) -> int:
    """Mask (or unmask) every current document of the record the reader sees; how many changed."""
    changed = 0
    offset = 0
    ids: list[str] = []
    while True:
        page = document_search.search_documents(
            work,
            actor=actor,
            query=DocumentQuery(patient_id=patient_id, statuses=["current"], count=PAGE, offset=offset),
        )
        ids.extend(str(orjson.loads(body)["id"]) for body in page.matches)
        offset += PAGE
        if offset >= page.total or not page.matches:
            break
    for doc_id in ids:
        changed += set_masked(work, actor=actor, doc_id=doc_id, masked=masked)
    return changed


def _fold(text: str) -> str:
    """Lower case without accents (what people type against what documents say)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _haystack(summary: overview.Summary) -> str:
    author = summary.author
    parts = (
        summary.type_display,
        summary.type_code,
        summary.title,
        author.name,
        author.profession,
        author.organization,
    )
    return _fold(" ".join(p for p in parts if p))


def find_documents(
    work: Work, *, actor: Actor, patient_id: str, filters: overview.Filters, page_size: int = 20
) -> overview.Listing:
    """One page of the documents page's results. Without a text, ``overview.list_documents`` does it all in
    SQL; with one, every word must appear (accents and case aside) in the document's type, title or author
    (name, profession, organisation): the reader's documents matching the other filters are read page by
    page and matched here, and the page asked for is cut from the matches (total and pages count them)."""
    words = _fold(filters.text).split()
    if not words:
        return overview.list_documents(work, actor=actor, patient_id=patient_id, filters=filters, page_size=page_size)
    matches: list[overview.Summary] = []
    number = 1
    while True:
        chunk = overview.list_documents(
            work,
            actor=actor,
            patient_id=patient_id,
            filters=dataclasses.replace(filters, text="", page=number),
            page_size=PAGE,
        )
        matches.extend(s for s in chunk.items if all(w in _haystack(s) for w in words))
        if not chunk.items or number * PAGE >= min(chunk.total, SCAN_LIMIT):
            break
        number += 1
    page = max(1, filters.page)
    start = (page - 1) * page_size
    return overview.Listing(
        items=matches[start : start + page_size], total=len(matches), page=page, page_size=page_size
    )
