"""Documents: deposit (ITI-65, ITI-105), replacement, read, history, metadata PATCH, deletion, retrieval.

Every function takes the unit of work first and the actor next, asks the access policy before
touching anything, and only flushes: the caller's unit of work commits, so a failure anywhere leaves
nothing behind (a rejected bundle writes no document, no binary, no submission set).
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from carnet import audit
from carnet.access import Action, Decision, DocumentFacts, decide, require
from carnet.access import context as access_context
from carnet.access.policy import DELETED
from carnet.audit.trace import TraceAction
from carnet.auth.actor import Actor, ActorKind
from carnet.directory.models import Practitioner
from carnet.documents.content import PATIENT_UPLOAD_MEDIA
from carnet.documents.metadata import IDNAT_PS_SYSTEM, Draft, Mode, check_content, read_metadata
from carnet.documents.models import BinaryEntry, DocumentEntry, ListEntry, ListMember
from carnet.documents.schemas import (
    BinaryInput,
    Created,
    DocumentInput,
    ListInput,
    PatchOperation,
    Submission,
    SubmissionResult,
)
from carnet.errors import Conflict, Invalid, IssueCode, NotAllowed, NotFound, PreconditionFailed, Problem, TooLarge
from carnet.fhirtypes import (
    EXT_IHE_DESIGNATION_TYPE,
    EXT_IHE_SOURCE_ID,
    EXT_IS_ARCHIVED,
    JSON,
    MHD_LIST_TYPES,
    codings,
    extension,
    format_instant,
    parse_datetime,
    set_extension,
)
from carnet.identifiers import IdentifierError, Ins, parse_ins
from carnet.records import service as records
from carnet.records.models import Record
from carnet.runtime import Work
from carnet.storage.blobs import BlobStore
from carnet.storage.models import ResourceLocator, ResourceVersion, SearchToken
from carnet.terminology import terminology
from carnet.terminology.valuesets import CONFIDENTIALITY_FLAGS, HL7_CONFIDENTIALITY

DOCUMENT = "DocumentReference"
LIST = "List"
BINARY = "Binary"
TA07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
TA03 = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
# PDSm PATCH may change only these elements (JSON pointer roots).
PATCHABLE = ("/status", "/securityLabel", "/extension")
MAJORITY = 18


# --------------------------------------------------------------------------------------- helpers


def _copy_json(value: JSON) -> JSON:
    """A deep copy of parsed JSON (a round trip through orjson is several times faster than deepcopy)."""
    copied: JSON = orjson.loads(orjson.dumps(value))
    return copied


def _record_of_subject(work: Work, actor: Actor, subject: object, path: str) -> tuple[Record, Ins | None]:
    """Resolve a DocumentReference/List subject to the record it names (with the actor's access context
    on it, loaded by the same statement)."""
    if not isinstance(subject, dict):
        raise Invalid.at(path, "subject (the patient) is required", IssueCode.REQUIRED)
    ref = subject.get("reference")
    ident = subject.get("identifier")
    allow_test = not work.settings.is_production
    ins: Ins | None = None
    record: Record | None = None
    try:
        if isinstance(ref, str) and "?identifier=" in ref and ref.split("?", 1)[0].endswith("Patient"):
            token = ref.split("?identifier=", 1)[1]
            system, _, value = token.partition("|")
            ins = parse_ins(system, value, allow_test=allow_test)
        elif isinstance(ident, dict):
            ins = parse_ins(ident.get("system"), ident.get("value"), allow_test=allow_test)
        elif isinstance(ref, str) and "Patient/" in ref:
            patient_id = ref.rsplit("Patient/", 1)[1].split("/", 1)[0]
            try:
                record = access_context.load_record(work, actor, record_id=uuid.UUID(patient_id))
            except ValueError:
                record = None
        else:
            raise Invalid.at(path, "subject must reference the Patient (Patient/id or Patient?identifier=INS)")
    except IdentifierError as exc:
        raise Invalid.at(path, f"subject INS: {exc}", IssueCode.VALUE) from exc
    if ins is not None:
        record = access_context.load_record(work, actor, ins_hash=work.store.indexer.ins(ins.value))
    if record is None:
        raise NotFound("no record exists for this patient")
    return record, ins


def _record_ins(work: Work, record: Record) -> Ins:
    """The INS of a record, read from its (encrypted) Patient resource."""
    stored = work.store.current(record, records.PATIENT, str(record.id))
    if stored is None:  # pragma: no cover - a record always has its Patient
        raise NotFound()
    return records.ins_of_patient(orjson.loads(stored.body), allow_test=True)


def _entry(work: Work, record_id: uuid.UUID, doc_id: str) -> DocumentEntry | None:
    return work.session.get(DocumentEntry, (record_id, doc_id))


# What a read needs of a document's index entry, as plain columns (``_read_current``).
_FACT_COLUMNS = (
    DocumentEntry.version,
    DocumentEntry.type_code,
    DocumentEntry.flags,
    DocumentEntry.status,
    DocumentEntry.author_key,
    DocumentEntry.author_org,
)


@functools.cache
def _document_statement(with_context: bool, with_body: bool, facts_only: bool = False) -> sa.Select[Any]:
    """Built once per shape: a document (its entry, or ``facts_only`` the ``_FACT_COLUMNS``), its record,
    optionally its current encrypted body and the professional's access context (the document id and
    the professional are bound parameters)."""
    columns: list[Any] = [Record, *_FACT_COLUMNS] if facts_only else [Record, DocumentEntry]
    if with_body:
        columns.append(
            sa.select(ResourceVersion.body)
            .where(
                ResourceVersion.record_id == DocumentEntry.record_id,
                ResourceVersion.resource_type == DOCUMENT,
                ResourceVersion.resource_id == DocumentEntry.id,
                ResourceVersion.version == DocumentEntry.version,
            )
            .scalar_subquery()
        )
    if with_context:
        columns.extend(access_context.context_subqueries())
    return (
        sa.select(*columns)
        .select_from(ResourceLocator)
        .join(Record, Record.id == ResourceLocator.record_id)
        .join(
            DocumentEntry,
            sa.and_(
                DocumentEntry.record_id == ResourceLocator.record_id, DocumentEntry.id == ResourceLocator.resource_id
            ),
        )
        .where(ResourceLocator.resource_type == DOCUMENT, ResourceLocator.resource_id == sa.bindparam("resource_id"))
    )


def _locate_document(work: Work, actor: Actor, doc_id: str, action: Action) -> tuple[Record, DocumentEntry, Decision]:
    """The document and its record if ``actor`` may perform ``action``; NotFound otherwise (or Forbidden
    when the actor can see the document but not act on it). One round trip."""
    context, params = access_context.context_columns(work, actor)
    row = work.session.execute(_document_statement(bool(context), False), {"resource_id": doc_id, **params}).first()
    if row is None:
        raise NotFound()
    record, entry = row[0], row[1]
    if context:
        access_context.remember(work, actor, record, row[2:])
    return record, entry, _check_document(work, actor, record, entry, action)


def _read_current(work: Work, actor: Actor, doc_id: str) -> tuple[Record, int, Decision, bytes]:
    """The current version of a document the actor may read: its record, version number, the decision
    and the encrypted body, in one round trip of plain columns (the busiest read builds no entry)."""
    context, params = access_context.context_columns(work, actor)
    statement = _document_statement(bool(context), True, facts_only=True)
    row = work.session.execute(statement, {"resource_id": doc_id, **params}).first()
    if row is None:
        raise NotFound()
    record: Record = row[0]
    width = 1 + len(_FACT_COLUMNS)
    if context:
        access_context.remember(work, actor, record, row[width + 1 :])
    facts = DocumentFacts(type_code=row[2], flags=row[3], status=row[4], author_key=row[5], author_org=row[6])
    return record, row[1], _check_facts(work, actor, record, facts, Action.DOCUMENT_READ), row[width]


def _check_document(work: Work, actor: Actor, record: Record, entry: DocumentEntry, action: Action) -> Decision:
    return _check_facts(work, actor, record, DocumentFacts.of(entry), action)


def _check_facts(work: Work, actor: Actor, record: Record, facts: DocumentFacts, action: Action) -> Decision:
    decision = require(work, actor, Action.DOCUMENT_READ, record, facts)
    if action is not Action.DOCUMENT_READ:
        decision = require(work, actor, action, record, facts, visible=True)
    return decision


def unique_key(value: str) -> str:
    """The form of a document uniqueId used to detect duplicates (``urn:oid:`` / ``urn:uuid:`` dropped)."""
    for prefix in ("urn:oid:", "urn:uuid:"):
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def _tokens_for(draft: Draft, author_refs: list[str]) -> set[tuple[str, str]]:
    tokens: set[tuple[str, str]] = set()
    identifiers = [*draft.identifiers]
    if draft.master_identifier:
        identifiers.append(draft.master_identifier)
        tokens.add(("master", unique_key(draft.master_identifier[1])))
    for system, value in identifiers:
        tokens.add(("identifier", value))
        tokens.add(("identifier", f"{system or ''}|{value}"))
    for system, value in draft.related:
        tokens.add(("related", value))
        tokens.add(("related", f"{system or ''}|{value}"))
    for ref in author_refs:
        tokens.add(("author", ref))
    for idnat in draft.author_idnats:
        tokens.add(("author.identifier", idnat))
        tokens.add(("author.identifier", f"{IDNAT_PS_SYSTEM}|{idnat}"))
    if draft.cda is not None and draft.cda.set_id is not None:
        tokens.add(("cda-setid", draft.cda.set_id.unique_id))
    return tokens


def _has_token(
    work: Work, record_id: uuid.UUID, resource_type: str, param: str, value: str, resource_id: str | None = None
) -> bool:
    query = sa.select(SearchToken.resource_id).where(
        SearchToken.record_id == record_id,
        SearchToken.resource_type == resource_type,
        SearchToken.param == param,
        SearchToken.value_hash == work.store.token(param, value),
    )
    if resource_id is not None:
        query = query.where(SearchToken.resource_id == resource_id)
    return work.session.scalar(query.limit(1)) is not None


def _author_refs(work: Work, draft: Draft) -> list[str]:
    """Author references for the index: explicit directory references plus directory matches of IdNat.

    IdNat → Practitioner id lookups are cached per process ("" caches "not in the directory").
    """
    refs = list(draft.author_refs)
    cache = work.practitioner_ids
    known = {i: cache.get(i) for i in draft.author_idnats} if cache is not None else {}
    missing = [i for i in draft.author_idnats if known.get(i) is None]
    if missing:
        rows = work.session.execute(
            sa.select(Practitioner.idnat_ps, Practitioner.id).where(Practitioner.idnat_ps.in_(missing))
        ).all()
        found = {str(idnat): str(pid) for idnat, pid in rows}
        for idnat in missing:
            known[idnat] = found.get(idnat, "")
            if cache is not None:
                cache.put(idnat, known[idnat] or "")
    refs.extend(f"Practitioner/{known[i]}" for i in draft.author_idnats if known.get(i))
    return list(dict.fromkeys(refs))


def _security_labels(draft: Draft) -> list[JSON]:
    labels: list[JSON] = [{"coding": [{"system": HL7_CONFIDENTIALITY, "code": draft.confidentiality}]}]
    for code, bit in CONFIDENTIALITY_FLAGS.items():
        if draft.flags & bit:
            labels.append({"coding": [{"system": TA07, "code": code}]})
    return labels


def _merge_labels(original: list[JSON], draft: Draft) -> list[JSON]:
    """Keep the submitted labels (with their displays); add the N/R/V level if it was left out and the
    flags the server set (secret connection, the patient's default confidentiality)."""
    if not original:
        return _security_labels(draft)
    term = terminology()
    present = {
        hit.code
        for label in original
        for c in codings(label)
        if (hit := term.confidentiality.lookup(c.get("system"), c.get("code"))) is not None
    }
    labels = list(original)
    if not present & {"N", "R", "V"}:
        labels.insert(0, {"coding": [{"system": HL7_CONFIDENTIALITY, "code": draft.confidentiality}]})
    for code, bit in CONFIDENTIALITY_FLAGS.items():
        if draft.flags & bit and code not in present:
            labels.append({"coding": [{"system": TA07, "code": code}]})
    return labels


def _set_coding(resource: JSON, key: str, system: str, code: str) -> None:
    term = terminology()
    coding: JSON = {"system": system, "code": code}
    display = None
    if key == "facilityType":
        display = (term.facility_types.codes.get(code) or None) and term.facility_types.codes[code].display
    elif key == "practiceSetting":
        display = (term.practice_settings.codes.get(code) or None) and term.practice_settings.codes[code].display
    if display:
        coding["display"] = display
    resource.setdefault("context", {})[key] = {"coding": [coding]}


def _normalise(
    draft: Draft,
    *,
    doc_id: str,
    version: int,
    record: Record,
    binary_id: str,
    data: bytes,
    work: Work,
    replaces_id: str | None,
) -> JSON:
    """The DocumentReference as stored: server ids, the subject, the binary URL, derived metadata."""
    term = terminology()
    resource = _copy_json(draft.resource)
    resource["resourceType"] = DOCUMENT
    resource["id"] = doc_id
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k in ("profile", "security", "tag")}
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_instant(work.now)
    resource["meta"] = meta
    resource.pop("text", None)
    if draft.master_identifier and not resource.get("masterIdentifier"):
        resource["masterIdentifier"] = {"system": draft.master_identifier[0], "value": draft.master_identifier[1]}
    elif not resource.get("masterIdentifier"):
        resource["masterIdentifier"] = {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{doc_id}"}
    if not draft.type_code:  # pragma: no cover - read_metadata/check_content guarantee a type
        raise Invalid.at(f"{draft.path}.type", "type is required", IssueCode.REQUIRED)
    if not resource.get("type"):
        hit = term.type_codes.codes[draft.type_code]
        resource["type"] = {"coding": [{"system": hit.system, "code": hit.code, "display": hit.display}]}
    if not resource.get("category") and draft.class_code:
        hit_class = term.class_codes.codes[draft.class_code]
        resource["category"] = [
            {"coding": [{"system": hit_class.system, "code": hit_class.code, "display": hit_class.display}]}
        ]
    resource["subject"] = {"reference": f"Patient/{record.id}"}
    resource["date"] = format_instant(draft.date or work.now)
    resource["securityLabel"] = _merge_labels(resource.get("securityLabel") or [], draft)
    content = resource["content"][0]
    attachment = content["attachment"]
    attachment.pop("data", None)
    attachment["url"] = f"{work.settings.fhir_base}/Binary/{binary_id}"
    attachment["size"] = len(data)
    attachment["hash"] = base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode()
    if draft.creation is not None and not attachment.get("creation"):
        attachment["creation"] = format_instant(draft.creation)
    if not attachment.get("title") and draft.cda is not None and draft.cda.title:
        attachment["title"] = draft.cda.title[:500]  # XDS title, from the CDA header when left out
    if not content.get("format") and draft.format_code:
        hit_format = term.format_codes.codes[draft.format_code]
        content["format"] = {"system": hit_format.system, "code": hit_format.code, "display": hit_format.display}
    context = resource.setdefault("context", {})
    if not context.get("facilityType") and draft.facility_code:
        _set_coding(
            resource, "facilityType", term.facility_types.codes[draft.facility_code].system, draft.facility_code
        )
    if not context.get("practiceSetting") and draft.setting_code:
        _set_coding(
            resource, "practiceSetting", term.practice_settings.codes[draft.setting_code].system, draft.setting_code
        )
    if not context.get("period") and draft.period_start:
        period: JSON = {"start": format_instant(draft.period_start)}
        if draft.period_end:
            period["end"] = format_instant(draft.period_end)
        context["period"] = period
    if replaces_id:
        resource["relatesTo"] = [{"code": "replaces", "target": {"reference": f"{DOCUMENT}/{replaces_id}"}}]
    return resource


# --------------------------------------------------------------------------------------- deposit


@dataclass(slots=True)
class _Prepared:
    draft: Draft
    data: bytes
    doc_id: str
    binary_id: str
    full_url: str | None
    binary_full_url: str | None
    replaces: DocumentEntry | None = None
    decision: Decision | None = None  # how the deposit was allowed (its trace says so)


def _read_drafts(work: Work, documents: list[DocumentInput], mode: Mode) -> list[Draft]:
    term = terminology()
    drafts: list[Draft] = []
    problems: list[Problem] = []
    for doc in documents:
        try:
            drafts.append(read_metadata(doc.resource, doc.path, mode, term, production=work.settings.is_production))
        except Invalid as exc:
            problems.extend(exc.problems)
    if problems:
        raise Invalid("the documents do not meet the DMP rules", problems=problems, unprocessable=True)
    return drafts


def _resolve_replacement(work: Work, actor: Actor, record: Record, draft: Draft) -> DocumentEntry | None:
    if draft.replaces is None:
        return None
    target = draft.replaces.rstrip("/").split("/_history", 1)[0]
    if f"{DOCUMENT}/" not in target:
        raise Invalid.at(f"{draft.path}.relatesTo", "relatesTo.target must reference a DocumentReference")
    target_id = target.rsplit(f"{DOCUMENT}/", 1)[1]
    entry = _entry(work, record.id, target_id)
    if entry is None or not decide(work, actor, Action.DOCUMENT_READ, record, DocumentFacts.of(entry)).permit:
        message = "the document to replace does not exist in this record"
        raise Invalid(
            message,
            problems=[Problem(message, f"{draft.path}.relatesTo", IssueCode.NOT_FOUND)],
            unprocessable=True,
        )
    require(work, actor, Action.DOCUMENT_REPLACE, record, DocumentFacts.of(entry), visible=True)
    if entry.status != "current":
        raise Conflict(f"the document to replace is {entry.status}, not current")
    new_set_id = draft.cda.set_id.unique_id if draft.cda is not None and draft.cda.set_id is not None else None
    if (
        new_set_id
        and _has_any_setid(work, record.id, entry.id)
        and not _has_token(work, record.id, DOCUMENT, "cda-setid", new_set_id, resource_id=entry.id)
    ):
        raise Invalid.at(
            f"{draft.path}.content[0]",
            "a replacing CDA keeps the setId of the version it replaces",
            IssueCode.BUSINESS_RULE,
        )
    return entry


def _has_any_setid(work: Work, record_id: uuid.UUID, doc_id: str) -> bool:
    return (
        work.session.scalar(
            sa.select(SearchToken.resource_id)
            .where(
                SearchToken.record_id == record_id,
                SearchToken.resource_type == DOCUMENT,
                SearchToken.param == "cda-setid",
                SearchToken.resource_id == doc_id,
            )
            .limit(1)
        )
        is not None
    )


def _is_minor(work: Work, record: Record) -> bool:
    stored = work.store.current(record, records.PATIENT, str(record.id))
    birth = orjson.loads(stored.body).get("birthDate") if stored else None
    if not birth:
        return False
    born = parse_datetime(str(birth)).date()
    today = work.now.date()
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return age < MAJORITY


def _server_flags(work: Work, actor: Actor, record: Record, draft: Draft) -> None:
    """Flags the server adds: the patient's default confidentiality (documents deposited by others are
    masked from professionals), and a professional's secret connection for a minor (the document is
    invisible to the legal representatives)."""
    if record.default_masked and actor.kind not in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
        draft.flags |= CONFIDENTIALITY_FLAGS["MASQUE_PS"]
    if actor.secret_connection and actor.acts_as_professional and _is_minor(work, record):
        draft.flags |= CONFIDENTIALITY_FLAGS["INVISIBLE_REPRESENTANTS_LEGAUX"]


def _prepare(
    work: Work,
    actor: Actor,
    record: Record,
    ins: Ins,
    drafts: list[Draft],
    inputs: list[DocumentInput],
    binaries: dict[str, BinaryInput] | None,
) -> list[_Prepared]:
    prepared: list[_Prepared] = []
    seen_masters: set[str] = set()
    for draft, doc in zip(drafts, inputs, strict=True):
        binary: BinaryInput | None = None
        if binaries is not None:
            binary = binaries.get(draft.attachment_url or "")
            if binary is None:
                raise Invalid.at(
                    f"{draft.attachment_path}.url",
                    f"attachment.url {draft.attachment_url!r} names no Binary of the bundle",
                )
            if (
                binary.content_type
                and draft.content_type
                and (
                    binary.content_type.split(";")[0].strip().lower()
                    != draft.content_type.split(";")[0].strip().lower()
                )
            ):
                raise Invalid.at(
                    f"{binary.path}.contentType",
                    "the Binary contentType differs from the DocumentReference attachment.contentType",
                    IssueCode.VALUE,
                )
            data, content_path = binary.data, f"{binary.path}.data"
        else:
            if draft.inline_data is None:
                raise Invalid.at(
                    f"{draft.attachment_path}.data", "attachment.data (the document) is required", IssueCode.REQUIRED
                )
            data, content_path = draft.inline_data, f"{draft.attachment_path}.data"
        if actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
            if len(data) > work.settings.max_patient_upload_bytes:
                raise TooLarge(f"patients upload documents of at most {work.settings.max_patient_upload_bytes} bytes")
            if draft.media not in PATIENT_UPLOAD_MEDIA:
                raise Invalid.at(
                    f"{draft.attachment_path}.contentType",
                    "patients upload PDF, JPEG, PNG, TIFF, plain text or RTF",
                    IssueCode.NOT_SUPPORTED,
                )
        check_content(draft, data, ins=ins, max_bytes=work.settings.max_document_bytes, content_path=content_path)
        _server_flags(work, actor, record, draft)
        # A caller who may not even look the record up must not learn that it exists.
        decision = require(
            work,
            actor,
            Action.DOCUMENT_CREATE,
            record,
            DocumentFacts(type_code=draft.type_code, flags=draft.flags),
            visible=decide(work, actor, Action.RECORD_LOOKUP, record).permit,
        )
        # Duplicates with documents already stored are refused by a unique index when the rows are written.
        master = unique_key(draft.master_identifier[1]) if draft.master_identifier else None
        if master is not None:
            if master in seen_masters:
                raise Conflict(f"the bundle carries uniqueId {master} twice")
            seen_masters.add(master)
        replaces = _resolve_replacement(work, actor, record, draft)
        prepared.append(
            _Prepared(
                draft,
                data,
                str(uuid.uuid4()),
                str(uuid.uuid4()),
                doc.full_url,
                binary.full_url if binary else None,
                replaces,
                decision,
            )
        )
    return prepared


def _write_document(work: Work, actor: Actor, record: Record, item: _Prepared, submission_set_id: str) -> Created:
    draft = item.draft
    cipher = work.store.cipher(record)
    ciphertext = cipher.encrypt(item.data, resource_type=BINARY, resource_id=item.binary_id, version=1)
    address = work.store.blobs.put(work.session, record.id, ciphertext, work.store.stage)
    work.store.stage(
        BinaryEntry,
        record_id=record.id,
        id=item.binary_id,
        document_id=item.doc_id,
        content_type=draft.content_type,
        size=len(item.data),
        blob_address=address,
        created_at=work.now,
    )
    resource = _normalise(
        draft,
        doc_id=item.doc_id,
        version=1,
        record=record,
        binary_id=item.binary_id,
        data=item.data,
        work=work,
        replaces_id=item.replaces.id if item.replaces else None,
    )
    work.store.put(record, DOCUMENT, item.doc_id, 1, resource, work.now)
    assert draft.class_code is not None
    work.store.stage(
        DocumentEntry,
        record_id=record.id,
        id=item.doc_id,
        version=1,
        status="current",
        is_archived=False,
        type_code=draft.type_code,
        class_code=draft.class_code,
        format_code=draft.format_code,
        facility_code=draft.facility_code,
        setting_code=draft.setting_code,
        confidentiality=draft.confidentiality,
        flags=draft.flags,
        date=draft.date or work.now,
        period_start=draft.period_start,
        period_end=draft.period_end,
        binary_id=item.binary_id,
        content_type=draft.content_type,
        size=len(item.data),
        author_key=actor.author_key,
        author_org=actor.organization_idnat,
        submission_set_id=submission_set_id,
        replaces_id=item.replaces.id if item.replaces else None,
        created_at=work.now,
        last_updated=work.now,
    )
    work.store.register(DOCUMENT, item.doc_id, record.id)
    work.store.register(BINARY, item.binary_id, record.id)
    work.store.add_tokens(record.id, DOCUMENT, item.doc_id, _tokens_for(draft, _author_refs(work, draft)))
    if item.replaces is not None:
        _supersede(work, record, item.replaces)
    audit.trace(
        work,
        TraceAction.DOCUMENT_REPLACE if item.replaces is not None else TraceAction.DOCUMENT_CREATE,
        actor,
        record=record,
        resource_type=DOCUMENT,
        resource_id=item.doc_id,
        version=1,
        decision=item.decision,
        detail=f"replaces:{item.replaces.id}" if item.replaces is not None else None,
    )
    return Created(DOCUMENT, item.doc_id, 1, work.now)


def _supersede(work: Work, record: Record, entry: DocumentEntry) -> None:
    stored = work.store.current(record, DOCUMENT, entry.id)
    if stored is None:  # pragma: no cover
        raise NotFound()
    resource = orjson.loads(stored.body)
    resource["status"] = "superseded"
    _bump(work, record, entry, resource)
    entry.status = "superseded"


def _bump(work: Work, record: Record, entry: DocumentEntry, resource: JSON) -> bytes:
    entry.version += 1
    entry.last_updated = work.now
    resource["meta"]["versionId"] = str(entry.version)
    resource["meta"]["lastUpdated"] = format_instant(work.now)
    return work.store.put(record, DOCUMENT, entry.id, entry.version, resource, work.now)


def _list_tokens(resource: JSON) -> set[tuple[str, str]]:
    tokens: set[tuple[str, str]] = set()
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("value"):
            tokens.add(("identifier", str(ident["value"])))
            tokens.add(("identifier", f"{ident.get('system') or ''}|{ident['value']}"))
    source = extension(resource, EXT_IHE_SOURCE_ID)
    if source is not None:
        value = (source.get("valueIdentifier") or {}).get("value")
        if value:
            tokens.add(("source", str(value)))
    return tokens


def _check_list(
    work: Work, actor: Actor, lst: ListInput, record: Record, kind: str, mode: Mode, same_subjects: list[object]
) -> str | None:
    """Validate a SubmissionSet or Folder; return its designation (content type) code.

    ``same_subjects`` are subject references already resolved to ``record`` (no need to query again).
    """
    term = terminology()
    resource, path = lst.resource, lst.path
    problems: list[Problem] = []
    codes = [c.get("code") for c in codings(resource.get("code")) if c.get("system") == MHD_LIST_TYPES]
    if kind not in codes:
        problems.append(Problem(f"List.code must be {MHD_LIST_TYPES}|{kind}", f"{path}.code", IssueCode.REQUIRED))
    if resource.get("status") != "current":
        problems.append(Problem("a new List has status 'current'", f"{path}.status"))
    if resource.get("mode") not in (None, "working"):
        problems.append(Problem("an MHD List has mode 'working'", f"{path}.mode"))
    designation: str | None = None
    if kind == "submissionset":
        source = extension(resource, EXT_IHE_SOURCE_ID)
        if mode is Mode.COMPREHENSIVE and (source is None or not (source.get("valueIdentifier") or {}).get("value")):
            problems.append(
                Problem(
                    "the SubmissionSet needs its sourceId (extension ihe-sourceId)",
                    f"{path}.extension",
                    IssueCode.REQUIRED,
                )
            )
        ext = extension(resource, EXT_IHE_DESIGNATION_TYPE)
        if ext is not None:
            found: list[Problem] = []
            for coding in codings(ext.get("valueCodeableConcept")):
                hit = term.content_types.lookup(coding.get("system"), coding.get("code"))
                hit = hit or term.class_codes.lookup(coding.get("system"), coding.get("code"))
                if hit is not None:
                    designation = hit.code
                    break
            else:
                found.append(
                    Problem(
                        "designationType (content type) is not in JDV_J59 nor JDV_J57",
                        f"{path}.extension('{EXT_IHE_DESIGNATION_TYPE}')",
                        IssueCode.CODE_INVALID,
                    )
                )
            problems.extend(found)
    if resource.get("date"):
        try:
            parse_datetime(str(resource["date"]))
        except ValueError as exc:
            problems.append(Problem(str(exc), f"{path}.date", IssueCode.VALUE))
    if resource.get("subject") is not None and resource.get("subject") not in same_subjects:
        try:
            subject_record, _ = _record_of_subject(work, actor, resource.get("subject"), f"{path}.subject")
        except NotFound:
            subject_record = None
        if subject_record is None or subject_record.id != record.id:
            problems.append(
                Problem(
                    "the List subject is not the patient of the documents", f"{path}.subject", IssueCode.BUSINESS_RULE
                )
            )
    if problems:
        raise Invalid(f"the {kind} does not meet the MHD rules", problems=problems, unprocessable=True)
    return designation


def _write_list(
    work: Work,
    actor: Actor,
    record: Record,
    lst: ListInput | None,
    kind: str,
    members: list[str],
    designation: str | None,
    ref_map: dict[str, str],
    list_id: str | None = None,
) -> Created:
    list_id = list_id or str(uuid.uuid4())
    resource: JSON = (
        _copy_json(lst.resource)
        if lst
        else {
            "resourceType": LIST,
            "status": "current",
            "mode": "working",
            "code": {"coding": [{"system": MHD_LIST_TYPES, "code": kind}]},
            "extension": [{"url": EXT_IHE_SOURCE_ID, "valueIdentifier": {"value": f"urn:uuid:{list_id}"}}],
        }
    )
    resource["resourceType"] = LIST
    resource["id"] = list_id
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k in ("profile", "security", "tag")}
    meta.update({"versionId": "1", "lastUpdated": format_instant(work.now)})
    resource["meta"] = meta
    resource.pop("text", None)
    resource["subject"] = {"reference": f"Patient/{record.id}"}
    date = parse_datetime(str(resource["date"])) if resource.get("date") else work.now
    resource["date"] = format_instant(date)
    resource["mode"] = "working"
    entries = []
    for item in resource.get("entry") or []:
        ref = ((item or {}).get("item") or {}).get("reference")
        if ref in ref_map:
            entries.append({**item, "item": {"reference": ref_map[ref]}})
    if not lst:
        entries = [{"item": {"reference": f"{DOCUMENT}/{doc_id}"}} for doc_id in members]
    resource["entry"] = entries
    work.store.put(record, LIST, list_id, 1, resource, work.now)
    work.store.stage(
        ListEntry,
        record_id=record.id,
        id=list_id,
        version=1,
        code=kind,
        status="current",
        date=date,
        designation_code=designation,
        author_key=actor.author_key,
        created_at=work.now,
        last_updated=work.now,
    )
    for doc_id in dict.fromkeys(members):
        work.store.stage(ListMember, record_id=record.id, list_id=list_id, document_id=doc_id)
    work.store.register(LIST, list_id, record.id)
    work.store.add_tokens(record.id, LIST, list_id, _list_tokens(resource))
    return Created(LIST, list_id, 1, work.now)


def provide(work: Work, *, actor: Actor, submission: Submission) -> SubmissionResult:
    """ITI-65 Provide Document Bundle: deposit a submission set of documents, all or nothing."""
    if submission.submission_set is None:
        raise Invalid.at("Bundle.entry", "the bundle needs one SubmissionSet List", IssueCode.REQUIRED)
    if not submission.documents:
        raise Invalid.at("Bundle.entry", "the bundle holds no DocumentReference", IssueCode.REQUIRED)
    drafts = _read_drafts(work, submission.documents, Mode.COMPREHENSIVE)
    record, ins = _common_record(work, actor, submission.documents)
    ins = ins or _record_ins(work, record)
    binaries = {b.full_url: b for b in submission.binaries}
    referenced = {d.attachment_url for d in drafts}
    for binary in submission.binaries:
        if binary.full_url not in referenced:
            raise Invalid.at(binary.path, "this Binary is referenced by no DocumentReference")
    prepared = _prepare(work, actor, record, ins, drafts, submission.documents, binaries)
    subjects = [d.resource.get("subject") for d in submission.documents]
    designation = _check_list(
        work, actor, submission.submission_set, record, "submissionset", Mode.COMPREHENSIVE, subjects
    )
    listed = {
        ((item or {}).get("item") or {}).get("reference")
        for item in submission.submission_set.resource.get("entry") or []
    }
    missing = [p.draft.path for p in prepared if p.full_url and p.full_url not in listed]
    if missing:
        raise Invalid.at(
            f"{submission.submission_set.path}.entry",
            f"the SubmissionSet must list every DocumentReference (missing {', '.join(missing)})",
        )
    for folder in submission.folders:
        _check_list(work, actor, folder, record, "folder", Mode.COMPREHENSIVE, subjects)

    result = SubmissionResult()
    submission_set_id = str(uuid.uuid4())
    ref_map: dict[str, str] = {}
    for item in prepared:
        created = _write_document(work, actor, record, item, submission_set_id)
        result.documents.append(created)
        if item.full_url:
            result.by_full_url[item.full_url] = created
            ref_map[item.full_url] = f"{DOCUMENT}/{created.id}"
        if item.binary_full_url:
            result.by_full_url[item.binary_full_url] = Created(BINARY, item.binary_id, 1, work.now)
    members = [p.doc_id for p in prepared]
    folder_members: dict[int, list[str]] = {}
    for index, folder in enumerate(submission.folders):
        refs = [((i or {}).get("item") or {}).get("reference") for i in folder.resource.get("entry") or []]
        folder_members[index] = [ref_map[r].split("/", 1)[1] for r in refs if r in ref_map]
        created_folder = _write_list(work, actor, record, folder, "folder", folder_members[index], None, ref_map)
        if folder.full_url:
            result.by_full_url[folder.full_url] = created_folder
            ref_map[folder.full_url] = f"{LIST}/{created_folder.id}"
    # The submission set gets the id the documents' index rows already point to.
    created_set = _write_list(
        work,
        actor,
        record,
        submission.submission_set,
        "submissionset",
        members,
        designation,
        ref_map,
        submission_set_id,
    )
    result.submission_set = created_set
    if submission.submission_set.full_url:
        result.by_full_url[submission.submission_set.full_url] = created_set
    _write_all(work)
    replaced = {p.replaces.id for p in prepared if p.replaces is not None}
    for patch in submission.patches:
        if patch.target in replaced and all(
            op.path == "/status" and op.value == "superseded" for op in patch.operations
        ):
            entry = _entry(work, record.id, patch.target)
            assert entry is not None
            result.patched.append(Created(DOCUMENT, entry.id, entry.version, work.now, "200 OK"))
            continue
        patch_document(work, actor=actor, doc_id=patch.target, operations=patch.operations)
        entry = _entry(work, record.id, patch.target)
        assert entry is not None
        result.patched.append(Created(DOCUMENT, entry.id, entry.version, work.now, "200 OK"))
    work.store.flush()
    return result


def _write_all(work: Work) -> None:
    """Write the staged rows; a uniqueId already in the record is a conflict (409)."""
    try:
        work.store.flush()
    except IntegrityError as exc:
        message = str(exc.orig)
        # PostgreSQL names the index; SQLite lists its columns.
        if "uq_search_tokens_master" in message or (
            "search_tokens.record_id, search_tokens.resource_type, search_tokens.value_hash" in message
        ):
            raise Conflict("a document with this uniqueId (masterIdentifier) already exists in this record") from None
        raise


def _common_record(work: Work, actor: Actor, documents: list[DocumentInput]) -> tuple[Record, Ins | None]:
    record: Record | None = None
    ins: Ins | None = None
    for doc in documents:
        found, found_ins = _record_of_subject(work, actor, doc.resource.get("subject"), f"{doc.path}.subject")
        if record is not None and found.id != record.id:
            raise Invalid.at(
                f"{doc.path}.subject", "all documents of a submission concern the same patient", IssueCode.BUSINESS_RULE
            )
        record, ins = found, ins or found_ins
    assert record is not None
    return record, ins


def publish(work: Work, *, actor: Actor, resource: JSON, data: bytes | None, path: str = DOCUMENT) -> Created:
    """ITI-105 Simplified Publish: one DocumentReference with its content inline.

    Metadata the producer left out is derived from the CDA header (type, class, dates, facility,
    practice setting, format, authors, uniqueId) or from the content's media type.
    """
    doc = DocumentInput(resource=resource, path=path)
    draft = _read_drafts(work, [doc], Mode.SIMPLIFIED)[0]
    draft.inline_data = data
    record, ins = _record_of_subject(work, actor, resource.get("subject"), f"{path}.subject")
    ins = ins or _record_ins(work, record)
    prepared = _prepare(work, actor, record, ins, [draft], [doc], None)
    submission_set_id = str(uuid.uuid4())
    created = _write_document(work, actor, record, prepared[0], submission_set_id)
    _write_list(work, actor, record, None, "submissionset", [created.id], None, {}, submission_set_id)
    _write_all(work)
    return created


# --------------------------------------------------------------------------------------- reading


def read_document(work: Work, *, actor: Actor, doc_id: str, version: int | None = None, echo: bool = False) -> bytes:
    """A DocumentReference (a version of it). ``echo``: returned to its depositor in the response to
    the deposit (traced as such, so histories can fold it into the deposit)."""
    if version is None:
        record, current_version, decision, current = _read_current(work, actor, doc_id)
        if current is None:  # pragma: no cover - a document entry always has its current version
            raise NotFound()
        body = work.store.decrypt(record, DOCUMENT, doc_id, current_version, current)
    else:
        record, entry, decision = _locate_document(work, actor, doc_id, Action.DOCUMENT_READ)
        stored = work.store.version(record, DOCUMENT, entry.id, version)
        if stored is None:
            raise NotFound()
        body, current_version = stored.body, entry.version
    audit.trace(
        work,
        TraceAction.DOCUMENT_READ,
        actor,
        record=record,
        resource_type=DOCUMENT,
        resource_id=doc_id,
        version=version or current_version,
        decision=decision,
        detail="echo" if echo else None,
    )
    return body


def document_history(work: Work, *, actor: Actor, doc_id: str) -> list[bytes]:
    record, entry, decision = _locate_document(work, actor, doc_id, Action.DOCUMENT_READ)
    audit.trace(
        work,
        TraceAction.DOCUMENT_READ,
        actor,
        record=record,
        resource_type=DOCUMENT,
        resource_id=entry.id,
        version=entry.version,
        decision=decision,
        detail="history",
    )
    return [v.body for v in work.store.history(record, DOCUMENT, entry.id)]


@dataclass(frozen=True, slots=True)
class Content:
    content_type: str
    data: bytes
    document_id: str


# Built once per shape, keyed by (with the access context, blob store type): see ``_binary_statement``.
_BINARY_STATEMENTS: dict[tuple[bool, type], tuple[sa.Select[Any], bool]] = {}


def _binary_statement(with_context: bool, blobs: BlobStore) -> tuple[sa.Select[Any], bool]:
    """A Binary, what the policy needs of its document, its record, the professional's access context
    and, when the blob store keeps blobs in the database, the encrypted bytes themselves; and whether
    they are inlined. Plain columns rather than entities beside the record: fewer columns to describe
    and no objects to build on the busiest read."""
    key = (with_context, type(blobs))
    cached = _BINARY_STATEMENTS.get(key)
    if cached is not None:
        return cached
    blob = blobs.inline_column(BinaryEntry.record_id, BinaryEntry.blob_address)
    columns: list[Any] = [
        Record,
        BinaryEntry.content_type,
        BinaryEntry.document_id,
        BinaryEntry.blob_address,
        DocumentEntry.type_code,
        DocumentEntry.flags,
        DocumentEntry.status,
        DocumentEntry.author_key,
        DocumentEntry.author_org,
        blob if blob is not None else sa.null(),
    ]
    if with_context:
        columns.extend(access_context.context_subqueries())
    statement = (
        sa.select(*columns)
        .select_from(ResourceLocator)
        .join(Record, Record.id == ResourceLocator.record_id)
        .join(
            BinaryEntry,
            sa.and_(BinaryEntry.record_id == ResourceLocator.record_id, BinaryEntry.id == ResourceLocator.resource_id),
        )
        .join(
            DocumentEntry,
            sa.and_(DocumentEntry.record_id == BinaryEntry.record_id, DocumentEntry.id == BinaryEntry.document_id),
        )
        .where(ResourceLocator.resource_type == BINARY, ResourceLocator.resource_id == sa.bindparam("resource_id"))
    )
    cached = _BINARY_STATEMENTS[key] = (statement, blob is not None)
    return cached


def retrieve(work: Work, *, actor: Actor, binary_id: str) -> Content:
    """ITI-68: the document's bytes, exactly as deposited, with their media type (one round trip when
    the blobs are in the database)."""
    context, params = access_context.context_columns(work, actor)
    blobs = work.store.blobs
    statement, inline = _binary_statement(bool(context), blobs)
    row = work.session.execute(statement, {"resource_id": binary_id, **params}).first()
    if row is None:
        raise NotFound()
    record: Record = row[0]
    content_type, document_id, blob_address = row[1], row[2], row[3]
    facts = DocumentFacts(type_code=row[4], flags=row[5], status=row[6], author_key=row[7], author_org=row[8])
    if context:
        access_context.remember(work, actor, record, row[10:])
    decision = _check_facts(work, actor, record, facts, Action.DOCUMENT_RETRIEVE)
    ciphertext = blobs.inlined(blob_address, row[9]) if inline else blobs.get(work.session, record.id, blob_address)
    data = work.store.cipher(record).decrypt(ciphertext, resource_type=BINARY, resource_id=binary_id, version=1)
    audit.trace(
        work,
        TraceAction.DOCUMENT_RETRIEVE,
        actor,
        record=record,
        resource_type=BINARY,
        resource_id=binary_id,
        version=1,
        decision=decision,
        detail=f"document:{document_id}",
    )
    return Content(content_type, data, document_id)


def retrieve_document(work: Work, *, actor: Actor, doc_id: str) -> Content:
    """The bytes of a document named by its DocumentReference id (the portals' viewer and download),
    with the same checks and trace as ITI-68."""
    _, entry, _ = _locate_document(work, actor, doc_id, Action.DOCUMENT_RETRIEVE)
    return retrieve(work, actor=actor, binary_id=entry.binary_id)


def permitted(work: Work, *, actor: Actor, doc_id: str, actions: tuple[Action, ...]) -> frozenset[Action]:
    """Which of ``actions`` the access policy lets ``actor`` perform on a document they may read (an
    interface offers only those); ``NotFound`` when they may not read it."""
    record, entry, _ = _locate_document(work, actor, doc_id, Action.DOCUMENT_READ)
    facts = DocumentFacts.of(entry)
    return frozenset(a for a in actions if decide(work, actor, a, record, facts).permit)


# --------------------------------------------------------------------------------------- changes


def _label_code(label: object) -> str | None:
    term = terminology()
    for coding in codings(label):
        hit = term.confidentiality.lookup(coding.get("system"), coding.get("code"))
        if hit is not None:
            return hit.code
    return None


def _apply_pointer(resource: JSON, op: PatchOperation) -> None:
    """Apply one JSON-Patch operation whose path starts at an allowed element."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op.path.lstrip("/").split("/")]
    target: object = resource
    for part in parts[:-1]:
        if isinstance(target, list):
            target = target[int(part)]
        elif isinstance(target, dict):
            target = target.setdefault(part, [] if part in ("securityLabel", "extension") else {})
        else:
            raise Invalid.at(op.where, f"path {op.path} does not exist")
    last = parts[-1]
    try:
        if isinstance(target, list):
            if op.op == "add":
                target.insert(len(target) if last == "-" else int(last), copy.deepcopy(op.value))
            elif op.op == "remove":
                del target[int(last)]
            elif op.op == "replace":
                target[int(last)] = copy.deepcopy(op.value)
            else:
                raise Invalid.at(op.where, f"patch operation {op.op!r} is not supported")
        elif isinstance(target, dict):
            if op.op in ("add", "replace"):
                if op.op == "replace" and last not in target:
                    raise Invalid.at(op.where, f"path {op.path} does not exist")
                target[last] = copy.deepcopy(op.value)
            elif op.op == "remove":
                if last not in target:
                    raise Invalid.at(op.where, f"path {op.path} does not exist")
                del target[last]
            else:
                raise Invalid.at(op.where, f"patch operation {op.op!r} is not supported")
    except (ValueError, IndexError) as exc:
        raise Invalid.at(op.where, f"path {op.path} does not exist") from exc


def patch_document(work: Work, *, actor: Actor, doc_id: str, operations: list[PatchOperation]) -> bytes:
    """PDSm metadata update: only ``status``, ``securityLabel`` and the archive extension may change.

    Masking from professionals (MASQUE_PS) is for the patient and the author; lifting or setting the
    patient-invisibility flags is for the author; archiving for the author or their organisation;
    logical deletion (status entered-in-error) for the author only.
    """
    for op in operations:
        if not any(op.path == root or op.path.startswith(root + "/") for root in PATCHABLE):
            raise NotAllowed(
                f"{op.path} cannot be changed: PDSm allows PATCH of status, securityLabel and isArchived only"
            )
    record, entry, decision = _locate_document(work, actor, doc_id, Action.DOCUMENT_READ)
    stored = work.store.current(record, DOCUMENT, entry.id)
    if stored is None:  # pragma: no cover
        raise NotFound()
    before = orjson.loads(stored.body)
    after = copy.deepcopy(before)
    for op in operations:
        _apply_pointer(after, op)
    other_extensions = [e for e in after.get("extension") or [] if e.get("url") != EXT_IS_ARCHIVED]
    if other_extensions != [e for e in before.get("extension") or [] if e.get("url") != EXT_IS_ARCHIVED]:
        raise NotAllowed("only the isArchived extension may be changed")
    facts = DocumentFacts.of(entry)
    term = terminology()

    # status
    status = after.get("status")
    if status != before.get("status"):
        if status == DELETED:
            decision = require(work, actor, Action.DOCUMENT_DELETE, record, facts, visible=True)
        elif status == "superseded":
            raise Invalid.at(
                "DocumentReference.status",
                "a document is superseded by depositing its replacement",
                IssueCode.BUSINESS_RULE,
            )
        else:
            raise Invalid.at("DocumentReference.status", f"status cannot change to {status!r}", IssueCode.BUSINESS_RULE)

    # security labels
    levels: list[str] = []
    flags = 0
    for index, label in enumerate(after.get("securityLabel") or []):
        code = _label_code(label)
        if code is None:
            raise Invalid.at(
                f"DocumentReference.securityLabel[{index}]",
                "confidentiality code not in JDV_J58",
                IssueCode.CODE_INVALID,
            )
        if code in ("N", "R", "V"):
            levels.append(code)
        else:
            flags |= CONFIDENTIALITY_FLAGS[code]
    if len(levels) != 1:
        raise Invalid.at("DocumentReference.securityLabel", "exactly one of N, R, V is required")
    del term
    changed = flags ^ entry.flags
    labels_checked = bool(changed) or levels[0] != entry.confidentiality
    if changed & CONFIDENTIALITY_FLAGS["MASQUE_PS"]:
        decision = require(work, actor, Action.DOCUMENT_MASK, record, facts, visible=True)
    if changed & CONFIDENTIALITY_FLAGS["INVISIBLE_PATIENT"]:
        lifting = bool(entry.flags & CONFIDENTIALITY_FLAGS["INVISIBLE_PATIENT"])
        decision = require(
            work, actor, Action.DOCUMENT_REVEAL if lifting else Action.DOCUMENT_RESTRICT, record, facts, visible=True
        )
    if changed & CONFIDENTIALITY_FLAGS["INVISIBLE_REPRESENTANTS_LEGAUX"]:
        decision = require(work, actor, Action.DOCUMENT_RESTRICT, record, facts, visible=True)
    if levels[0] != entry.confidentiality:
        decision = require(work, actor, Action.DOCUMENT_RESTRICT, record, facts, visible=True)

    # archive flag
    archived_ext = extension(after, EXT_IS_ARCHIVED)
    archived = bool(archived_ext and archived_ext.get("valueBoolean") is True)
    if archived_ext is not None and not isinstance(archived_ext.get("valueBoolean"), bool):
        raise Invalid.at("DocumentReference.extension", "isArchived takes valueBoolean")
    if archived != entry.is_archived:
        decision = require(work, actor, Action.DOCUMENT_ARCHIVE, record, facts, visible=True)
    if archived_ext is not None:
        set_extension(after, {"url": EXT_IS_ARCHIVED, "valueBoolean": archived})

    if status == entry.status and not labels_checked and archived == entry.is_archived:
        # Nothing that means anything changes (a label repeated or reordered, an explicit isArchived=false):
        # no new version; still refused to who may not change those elements at all.
        if after.get("securityLabel") != before.get("securityLabel"):
            _require_any(work, actor, (Action.DOCUMENT_MASK, Action.DOCUMENT_RESTRICT), record, facts)
        if extension(after, EXT_IS_ARCHIVED) != extension(before, EXT_IS_ARCHIVED):
            require(work, actor, Action.DOCUMENT_ARCHIVE, record, facts, visible=True)
        return stored.body
    body = _bump(work, record, entry, after)
    audit.trace(
        work,
        TraceAction.DOCUMENT_DELETE if status == DELETED else TraceAction.DOCUMENT_UPDATE,
        actor,
        record=record,
        resource_type=DOCUMENT,
        resource_id=entry.id,
        version=entry.version,
        decision=decision,  # the right the change used
        detail=_change_summary(entry, str(status), flags, levels[0], archived),
    )
    entry.status = str(status)
    entry.flags = flags
    entry.confidentiality = levels[0]
    entry.is_archived = archived
    work.store.flush()
    return body


def _require_any(work: Work, actor: Actor, actions: tuple[Action, ...], record: Record, facts: DocumentFacts) -> None:
    """Permitted if any of ``actions`` is; otherwise refused (and traced) as the first of them."""
    if not any(decide(work, actor, action, record, facts).permit for action in actions):
        require(work, actor, actions[0], record, facts, visible=True)


def _change_summary(entry: DocumentEntry, status: str, flags: int, level: str, archived: bool) -> str:
    """What a PATCH changed, as codes (no content): status, labels added or removed, archiving."""
    changes = []
    if status != entry.status:
        changes.append(f"status:{status}")
    for code, bit in CONFIDENTIALITY_FLAGS.items():
        if (flags ^ entry.flags) & bit:
            changes.append(f"{'+' if flags & bit else '-'}{code}")
    if level != entry.confidentiality:
        changes.append(f"confidentiality:{level}")
    if archived != entry.is_archived:
        changes.append("archived" if archived else "unarchived")
    return " ".join(changes)


def set_flag(work: Work, *, actor: Actor, doc_id: str, flag: str, on: bool) -> bytes:
    """Set or lift one visibility flag of a document (``MASQUE_PS``, ``INVISIBLE_PATIENT``,
    ``INVISIBLE_REPRESENTANTS_LEGAUX``): a PDSm PATCH of its securityLabel, so the same rules apply
    (lifting ``INVISIBLE_PATIENT`` after the announcement consultation is for the author)."""
    if flag not in CONFIDENTIALITY_FLAGS:
        raise ValueError(f"{flag} is not a visibility flag")
    record, entry, _ = _locate_document(work, actor, doc_id, Action.DOCUMENT_READ)
    stored = work.store.current(record, DOCUMENT, entry.id)
    if stored is None:  # pragma: no cover
        raise NotFound()
    labels = [label for label in orjson.loads(stored.body).get("securityLabel") or [] if _label_code(label) != flag]
    if on:
        labels.append({"coding": [{"system": TA07, "code": flag}]})
    return patch_document(
        work,
        actor=actor,
        doc_id=doc_id,
        operations=[PatchOperation("replace", "/securityLabel", labels, "DocumentReference.securityLabel")],
    )


def delete_document(work: Work, *, actor: Actor, doc_id: str) -> None:
    """Logical deletion (status entered-in-error) by the author; the bytes stay for the legal retention."""
    patch_document(
        work,
        actor=actor,
        doc_id=doc_id,
        operations=[PatchOperation("replace", "/status", DELETED, "DocumentReference.status")],
    )


def parse_inline_data(resource: JSON, path: str) -> bytes | None:
    """Decode ``content[0].attachment.data`` (ITI-105) and remove it from the resource."""
    content = resource.get("content") or []
    attachment = content[0].get("attachment") if content and isinstance(content[0], dict) else None
    if not isinstance(attachment, dict) or attachment.get("data") is None:
        return None
    raw = attachment.pop("data")
    try:
        return base64.b64decode(str(raw), validate=True)
    except (ValueError, TypeError) as exc:
        raise Invalid.at(f"{path}.content[0].attachment.data", "attachment.data is not valid base64") from exc


def find_by_identifier(work: Work, *, actor: Actor, system: str | None, value: str) -> str:
    """The one document (visible to ``actor``) carrying this identifier, for conditional operations."""
    token = work.store.token("identifier", value if system is None else f"{system}|{value}")
    rows = work.session.execute(
        sa.select(SearchToken.record_id, SearchToken.resource_id).where(
            SearchToken.resource_type == DOCUMENT, SearchToken.param == "identifier", SearchToken.value_hash == token
        )
    ).all()
    found = []
    for record_id, doc_id in rows:
        record = work.session.get(Record, record_id)
        entry = _entry(work, record_id, doc_id)
        if (
            record is not None
            and entry is not None
            and decide(work, actor, Action.DOCUMENT_READ, record, DocumentFacts.of(entry)).permit
        ):
            found.append(doc_id)
    if not found:
        raise NotFound("no document carries this identifier")
    if len(found) > 1:
        raise PreconditionFailed("several documents carry this identifier")
    return str(found[0])
