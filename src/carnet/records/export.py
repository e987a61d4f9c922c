"""The holder's full export of a record: a ZIP with a FHIR Bundle of everything and the original files.

Mon espace santé lets the holder download a copy of their data (reference/dmp.md §5, "Data export").
Carnet's export is for the patient and their legal representatives, and holds what they may see:

* ``bundle.json``: a FHIR R4 Bundle of type ``collection`` with the Patient, every DocumentReference
  (current, superseded and archived; deleted ones are visible to nobody), every SubmissionSet and
  Folder List, and every Consent (active and withdrawn). Each entry's ``fullUrl`` is the resource's
  URL on this server (``{base}/fhir/{type}/{id}``); the resources are those the API serves.
* ``documents/<date>_<DocumentReference id>.<ext>``: each document's bytes exactly as deposited (the
  extension follows its media type; names are built from ids and dates only, never from titles).
* ``index.json``: for each DocumentReference, its file name, media type, size and SHA-256.
* ``LISEZMOI.txt``: what the archive holds, in French and English.

Everything is read through the same services and policy as the API (searches filtered inside SQL,
retrievals checked one by one, each read traced), and the export itself is traced
(``TraceAction.EXPORT``). Nothing is written to the record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
import zipfile
from dataclasses import dataclass
from typing import IO

import orjson

from carnet import audit
from carnet.access import Action, require
from carnet.audit.trace import TraceAction
from carnet.auth.actor import Actor, ActorKind
from carnet.consents import service as consents
from carnet.documents import search as document_search
from carnet.documents import service as documents
from carnet.documents.schemas import DocumentQuery, ListQuery
from carnet.errors import NotFound
from carnet.records import service as records
from carnet.runtime import Work

PAGE = 100
EXTENSIONS = {
    "application/pdf": "pdf",
    "text/xml": "xml",
    "application/xml": "xml",
    "application/hl7-cda+xml": "xml",
    "application/xslt+xml": "xml",
    "application/fhir+json": "json",
    "application/json": "json",
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/png": "png",
    "image/tiff": "tif",
    "text/plain": "txt",
    "text/rtf": "rtf",
    "application/rtf": "rtf",
}
README = """Carnet — export de votre dossier de santé partagé / export of your shared health record

bundle.json   Bundle FHIR R4 (type « collection ») : le patient, les documents (DocumentReference),
              les lots de soumission et classeurs (List) et les décisions d'accès (Consent).
              A FHIR R4 collection Bundle: the patient, documents, lists and consents.
documents/    Les fichiers des documents, tels qu'ils ont été déposés.
              The documents' files, exactly as they were deposited.
index.json    Pour chaque document : son fichier, son type de contenu, sa taille et son empreinte SHA-256.
              For each document: its file, media type, size and SHA-256.

Ce fichier contient des données de santé : conservez-le en lieu sûr.
This archive holds health data: keep it safe.
"""


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What an export wrote."""

    record_id: uuid.UUID
    documents: int
    lists: int
    consents: int
    bytes_of_documents: int


def extension_for(content_type: str) -> str:
    return EXTENSIONS.get(content_type.split(";", 1)[0].strip().lower(), "bin")


def file_name(resource: dict[str, object], content_type: str) -> str:
    """``documents/<date>_<id>.<ext>``: ids and dates only (safe on every file system, nothing medical)."""
    doc_id = str(resource.get("id"))
    date = str(resource.get("date") or "")[:10]
    safe_date = date if len(date) == 10 and date.replace("-", "").isdigit() else "sans-date"
    safe_id = "".join(c for c in doc_id if c.isalnum() or c == "-")[:64]
    return f"documents/{safe_date}_{safe_id}.{extension_for(content_type)}"


def _all_documents(work: Work, actor: Actor, patient_id: str) -> list[bytes]:
    found: list[bytes] = []
    offset = 0
    while True:
        page = document_search.search_documents(
            work,
            actor=actor,
            query=DocumentQuery(patient_id=patient_id, count=PAGE, offset=offset, sort_ascending=True),
        )
        found.extend(page.matches)
        offset += PAGE
        if offset >= page.total or not page.matches:
            return found


def _all_lists(work: Work, actor: Actor, patient_id: str) -> list[bytes]:
    found: list[bytes] = []
    offset = 0
    while True:
        page = document_search.search_lists(
            work, actor=actor, query=ListQuery(patient_id=patient_id, count=PAGE, offset=offset)
        )
        found.extend(page.matches)
        offset += PAGE
        if offset >= page.total or not page.matches:
            return found


def _binary_id(resource: dict[str, object]) -> str | None:
    content = resource.get("content")
    if not isinstance(content, list) or not content:
        return None
    attachment = content[0].get("attachment") if isinstance(content[0], dict) else None
    url = attachment.get("url") if isinstance(attachment, dict) else None
    return str(url).rsplit("/", 1)[-1] if url and "Binary/" in str(url) else None


def export_record(work: Work, *, actor: Actor, patient_id: str, out: IO[bytes]) -> ExportSummary:
    """Write the ZIP export of ``patient_id`` to ``out`` for its holder (or a legal representative).

    Anyone else gets ``NotFound``, as for a record that does not exist.
    """
    record = records.get_record(work, patient_id)
    if record is None or actor.kind not in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
        raise NotFound()
    decision = require(work, actor, Action.RECORD_READ, record)
    base = work.settings.base_url.rstrip("/")
    patient = records.read_patient(work, actor=actor, patient_id=str(record.id))
    entries: list[dict[str, object]] = [
        {"fullUrl": f"{base}/fhir/Patient/{record.id}", "resource": orjson.loads(patient.body)}
    ]
    index: list[dict[str, object]] = []
    total_bytes = 0
    document_bodies = _all_documents(work, actor, str(record.id))
    list_bodies = _all_lists(work, actor, str(record.id))
    consent_bodies = consents.search(work, actor=actor, patient_id=str(record.id), kinds=[], statuses=[])
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for body in document_bodies:
            resource = orjson.loads(body)
            entries.append({"fullUrl": f"{base}/fhir/DocumentReference/{resource['id']}", "resource": resource})
            binary_id = _binary_id(resource)
            if binary_id is None:
                continue
            content = documents.retrieve(work, actor=actor, binary_id=binary_id)
            name = file_name(resource, content.content_type)
            archive.writestr(name, content.data)
            total_bytes += len(content.data)
            index.append(
                {
                    "documentReference": f"DocumentReference/{resource['id']}",
                    "file": name,
                    "contentType": content.content_type,
                    "size": len(content.data),
                    "sha256": hashlib.sha256(content.data).hexdigest(),
                }
            )
        for body in list_bodies:
            resource = orjson.loads(body)
            entries.append({"fullUrl": f"{base}/fhir/List/{resource['id']}", "resource": resource})
        for body in consent_bodies:
            resource = orjson.loads(body)
            entries.append({"fullUrl": f"{base}/fhir/Consent/{resource['id']}", "resource": resource})
        bundle = {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "meta": {"lastUpdated": work.now.isoformat(timespec="seconds")},
            "type": "collection",
            "timestamp": work.now.isoformat(timespec="seconds"),
            "entry": entries,
        }
        archive.writestr("bundle.json", orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
        archive.writestr("index.json", orjson.dumps({"documents": index}, option=orjson.OPT_INDENT_2))
        archive.writestr("LISEZMOI.txt", README)
    audit.trace(
        work,
        TraceAction.EXPORT,
        actor,
        record=record,
        resource_type=records.PATIENT,
        resource_id=str(record.id),
        decision=decision,
        detail=f"documents:{len(index)} lists:{len(list_bodies)} consents:{len(consent_bodies)}",
    )
    return ExportSummary(record.id, len(index), len(list_bodies), len(consent_bodies), total_bytes)


def export_name(now: dt.datetime) -> str:
    """The download's file name (a date, nothing else)."""
    return f"carnet-export-{now.date().isoformat()}.zip"
