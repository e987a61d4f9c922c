"""What a patient (or a legal representative) does to documents from their space: upload their own,
mask or unmask a document from professionals, mask everything at once.

Each is a thin layer over the document service, which asks the access policy: an upload is an
ITI-105 simplified publish of a patient-expression document (``DOCPAT*`` / ``EXPPAT_2``, typed by the
category chosen: ``documents.categories.UPLOAD_TYPES``), masking a PDSm PATCH of ``securityLabel``
(``MASQUE_PS``). Nothing here decides who may do it.

Uploads follow Mon espace santé's rules (reference/dmp.md §2.5): PDF, JPEG, TIFF, plain text or RTF,
at most ``CARNET_MAX_PATIENT_UPLOAD_BYTES`` (5 MB); the kind of file is read from its bytes, never from
its name or what the browser says. PNG images are recognised and refused with an explanation: the
DMP's format codes (JDV_J60) have none for PNG, so such a document could not be shared as a DMP
document.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import orjson

from carnet.auth.actor import Actor
from carnet.documents import categories
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


@dataclass(frozen=True, slots=True)
class Upload:
    """A file a patient sends from the portal, with what they said about it."""

    title: str
    category: Category
    date: dt.date
    data: bytes
    masked: bool = False


def check_upload(work: Work, upload: Upload) -> Media:
    """The kind of the file, or ``Invalid`` / ``TooLarge`` naming each field at fault (nothing written)."""
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
    if media is Media.PNG:
        raise Invalid(
            "PNG images cannot be shared as DMP documents",
            problems=[Problem("png", "file", IssueCode.NOT_SUPPORTED)],
        )
    if media is None or media not in PATIENT_UPLOAD_MEDIA or media not in UNSTRUCTURED_FORMAT:
        raise Invalid(
            "the file is not a PDF, JPEG, TIFF, text or RTF document",
            problems=[Problem("kind", "file", IssueCode.NOT_SUPPORTED)],
        )
    return media


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
    media = check_upload(work, upload)
    resource = document_reference(work, actor=actor, patient_id=patient_id, upload=upload, media=media)
    return documents.publish(work, actor=actor, resource=resource, data=upload.data)


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
