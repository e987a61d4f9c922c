"""Reading and checking DocumentReference metadata against the DMP rules (reference/dmp.md §2).

``read_metadata`` turns a (structurally valid) DocumentReference into a ``Draft``, checking every
coded element against its value set and collecting *all* the faults before raising, each located by
a FHIRPath expression. ``check_content`` then checks the draft against the document's bytes: size,
hash, media type and, for CDA, the header (patient, type, dates, identifiers).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
from dataclasses import dataclass, field

from carnet.documents.cda import CdaHeader, read_header
from carnet.documents.content import UNSTRUCTURED_FORMAT, Media, declared_media, detect_media
from carnet.errors import Invalid, IssueCode, Problem, TooLarge, UnsupportedMediaType
from carnet.fhirtypes import EXT_IS_ARCHIVED, JSON, codings, extension, parse_datetime
from carnet.identifiers import IdentifierError, Ins, parse_idnat_ps
from carnet.terminology import terminology
from carnet.terminology.valuesets import CONFIDENTIALITY_FLAGS, CONFIDENTIALITY_LEVELS, Terminology, canonical_system

IDNAT_PS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
IDNAT_STRUCT_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"
SHA1_BYTES = 20


class Mode(enum.Enum):
    """ITI-65 comprehensive metadata (everything required) or ITI-105 simplified publish (derived)."""

    COMPREHENSIVE = "comprehensive"
    SIMPLIFIED = "simplified"


@dataclass(slots=True)
class Draft:
    """A DocumentReference being deposited, with the facts the index and the checks need."""

    resource: JSON
    path: str
    mode: Mode
    type_code: str = ""
    class_code: str | None = None
    format_code: str | None = None
    facility_code: str | None = None
    setting_code: str | None = None
    confidentiality: str = "N"
    level_given: bool = False  # the metadata named the N/R/V level (else a CDA's confidentialityCode gives it)
    flags: int = 0
    date: dt.datetime | None = None
    period_start: dt.datetime | None = None
    period_end: dt.datetime | None = None
    creation: dt.datetime | None = None
    master_identifier: tuple[str | None, str] | None = None
    identifiers: list[tuple[str | None, str]] = field(default_factory=list)
    related: list[tuple[str | None, str]] = field(default_factory=list)
    replaces: str | None = None
    content_type: str = ""
    media: Media | None = None
    declared_size: int | None = None
    declared_hash: bytes | None = None
    attachment_url: str | None = None
    inline_data: bytes | None = None
    author_idnats: list[str] = field(default_factory=list)
    author_refs: list[str] = field(default_factory=list)
    is_archived: bool = False
    cda: CdaHeader | None = None

    @property
    def attachment_path(self) -> str:
        return f"{self.path}.content[0].attachment"


def _coded(
    problems: list[Problem], concept: object, path: str, lookup: object, what: str, *, required: bool
) -> tuple[str | None, str | None]:
    """The (system, code) of the first coding of ``concept`` found in a value set."""
    found = codings(concept)
    if not found:
        if required:
            problems.append(Problem(f"{what} is required", path, IssueCode.REQUIRED))
        return None, None
    for coding in found:
        hit = lookup(coding.get("system"), coding.get("code"))  # type: ignore[operator]
        if hit is not None:
            return hit.system, hit.code
    first = found[0]
    problems.append(
        Problem(
            f"{what} {first.get('code')!r} (system {first.get('system')!r}) is not in the DMP value set",
            f"{path}.coding[0].code",
            IssueCode.CODE_INVALID,
        )
    )
    return None, None


def _datetime(problems: list[Problem], value: object, path: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_datetime(str(value))
    except ValueError as exc:
        problems.append(Problem(str(exc), path, IssueCode.VALUE))
        return None


def _identifier(ident: object) -> tuple[str | None, str] | None:
    if isinstance(ident, dict) and ident.get("value"):
        return ident.get("system"), str(ident["value"])
    return None


def _contained(resource: JSON) -> dict[str, JSON]:
    return {c["id"]: c for c in resource.get("contained") or [] if isinstance(c, dict) and c.get("id")}


def _read_authors(problems: list[Problem], resource: JSON, path: str, draft: Draft, *, check_luhn: bool) -> None:
    contained = _contained(resource)
    for index, author in enumerate(resource.get("author") or []):
        ref = author.get("reference") if isinstance(author, dict) else None
        where = f"{path}.author[{index}]"
        target: JSON | None = None
        if isinstance(ref, str) and ref.startswith("#"):
            target = contained.get(ref[1:])
            if target is None:
                problems.append(Problem(f"author reference {ref} names no contained resource", where))
                continue
        elif isinstance(ref, str) and ref.split("/", 1)[0] in ("Practitioner", "PractitionerRole", "Organization"):
            draft.author_refs.append(ref)
            continue
        elif isinstance(author, dict) and isinstance(author.get("identifier"), dict):
            target = {"identifier": [author["identifier"]], "resourceType": author.get("type", "Practitioner")}
        if target is None:
            continue
        for ident in target.get("identifier") or []:
            if isinstance(ident, dict) and ident.get("system") == IDNAT_PS_SYSTEM and ident.get("value"):
                try:
                    draft.author_idnats.append(parse_idnat_ps(str(ident["value"]), check_luhn=check_luhn).value)
                except IdentifierError as exc:
                    problems.append(Problem(str(exc), f"{where}.identifier", IssueCode.VALUE))


def read_metadata(resource: JSON, path: str, mode: Mode, term: Terminology, *, production: bool) -> Draft:
    """Check a DocumentReference's metadata; raise ``Invalid`` listing every fault, or return a Draft."""
    draft = Draft(resource=resource, path=path, mode=mode)
    problems: list[Problem] = []
    comprehensive = mode is Mode.COMPREHENSIVE

    status = resource.get("status")
    if status != "current":
        problems.append(Problem(f"a new document has status 'current', not {status!r}", f"{path}.status"))

    # type (J66) and class (J57, must match ASS_X16)
    # Simplified publish may leave the type out when the content is a CDA document (its code gives it).
    _, type_code = _coded(
        problems, resource.get("type"), f"{path}.type", term.type_codes.lookup, "type code", required=comprehensive
    )
    if type_code:
        draft.type_code = type_code
    categories = resource.get("category") or []
    if len(categories) > 1:
        problems.append(Problem("the DMP allows exactly one class code", f"{path}.category"))
    if categories:
        _, class_code = _coded(
            problems, categories[0], f"{path}.category[0]", term.class_codes.lookup, "class code", required=True
        )
        draft.class_code = class_code
    elif comprehensive:
        problems.append(Problem("category (class code, JDV_J57) is required", f"{path}.category", IssueCode.REQUIRED))
    if type_code:
        expected = term.expected_class(type_code)
        if draft.class_code and expected and draft.class_code != expected:
            problems.append(
                Problem(
                    f"class code {draft.class_code} does not match type code {type_code}: "
                    f"ASS_X16 assigns class {expected}",
                    f"{path}.category[0].coding[0].code",
                    IssueCode.BUSINESS_RULE,
                )
            )
        draft.class_code = draft.class_code or expected

    # confidentiality (J58): one level N/R/V plus visibility flags
    levels: list[str] = []
    for index, label in enumerate(resource.get("securityLabel") or []):
        _, code = _coded(
            problems,
            label,
            f"{path}.securityLabel[{index}]",
            term.confidentiality.lookup,
            "confidentiality code",
            required=True,
        )
        if code in CONFIDENTIALITY_LEVELS:
            levels.append(code)
        elif code in CONFIDENTIALITY_FLAGS:
            draft.flags |= CONFIDENTIALITY_FLAGS[code]
    if len(levels) > 1:
        problems.append(Problem("only one of N, R, V may be given", f"{path}.securityLabel"))
    draft.confidentiality = levels[0] if levels else "N"
    draft.level_given = bool(levels)

    # content: exactly one attachment
    content = resource.get("content") or []
    if len(content) != 1:
        problems.append(Problem("a DMP document has exactly one content element", f"{path}.content"))
    attachment = content[0].get("attachment") if content and isinstance(content[0], dict) else None
    if isinstance(attachment, dict):
        apath = f"{path}.content[0].attachment"
        draft.content_type = str(attachment.get("contentType") or "")
        if not draft.content_type:
            problems.append(Problem("contentType is required", f"{apath}.contentType", IssueCode.REQUIRED))
        else:
            draft.media = declared_media(draft.content_type)
        if attachment.get("size") is not None:
            draft.declared_size = int(attachment["size"])
        if attachment.get("hash"):
            try:
                draft.declared_hash = base64.b64decode(str(attachment["hash"]), validate=True)
            except (binascii.Error, ValueError):
                problems.append(Problem("hash must be base64", f"{apath}.hash"))
            if draft.declared_hash is not None and len(draft.declared_hash) != SHA1_BYTES:
                problems.append(Problem("hash must be the base64 SHA-1 of the content (20 bytes)", f"{apath}.hash"))
        draft.attachment_url = attachment.get("url")
        draft.creation = _datetime(problems, attachment.get("creation"), f"{apath}.creation")
        if comprehensive and not draft.attachment_url:
            problems.append(Problem("url must reference the Binary of the bundle", f"{apath}.url", IssueCode.REQUIRED))
        format_system, format_code = _coded(
            problems,
            {"coding": [content[0]["format"]]} if content[0].get("format") else None,
            f"{path}.content[0].format",
            term.format_codes.lookup,
            "format code",
            required=comprehensive,
        )
        del format_system
        draft.format_code = format_code
    elif content:
        problems.append(Problem("attachment is required", f"{path}.content[0].attachment", IssueCode.REQUIRED))

    # context: facility type (J61), practice setting (J62), period, related
    context = resource.get("context") or {}
    _, draft.facility_code = _coded(
        problems,
        context.get("facilityType"),
        f"{path}.context.facilityType",
        term.facility_types.lookup,
        "facility type",
        required=comprehensive,
    )
    _, draft.setting_code = _coded(
        problems,
        context.get("practiceSetting"),
        f"{path}.context.practiceSetting",
        term.practice_settings.lookup,
        "practice setting",
        required=comprehensive,
    )
    period = context.get("period") or {}
    draft.period_start = _datetime(problems, period.get("start"), f"{path}.context.period.start")
    draft.period_end = _datetime(problems, period.get("end"), f"{path}.context.period.end")
    if draft.period_start and draft.period_end and draft.period_end < draft.period_start:
        problems.append(Problem("the period ends before it starts", f"{path}.context.period"))
    for index, related in enumerate(context.get("related") or []):
        ident = _identifier(related.get("identifier")) if isinstance(related, dict) else None
        if ident is None:
            problems.append(Problem("related entries carry an identifier", f"{path}.context.related[{index}]"))
        else:
            draft.related.append(ident)

    draft.date = _datetime(problems, resource.get("date"), f"{path}.date")
    draft.master_identifier = _identifier(resource.get("masterIdentifier"))
    if comprehensive and draft.master_identifier is None:
        problems.append(
            Problem(
                "masterIdentifier (the document uniqueId) is required", f"{path}.masterIdentifier", IssueCode.REQUIRED
            )
        )
    draft.identifiers = [i for i in (_identifier(x) for x in resource.get("identifier") or []) if i]

    # replacement
    for index, relation in enumerate(resource.get("relatesTo") or []):
        code = relation.get("code") if isinstance(relation, dict) else None
        if code != "replaces":
            problems.append(
                Problem(
                    f"the DMP supports only 'replaces' relations, not {code!r}",
                    f"{path}.relatesTo[{index}].code",
                    IssueCode.NOT_SUPPORTED,
                )
            )
            continue
        if draft.replaces is not None:
            problems.append(Problem("a document replaces at most one other", f"{path}.relatesTo[{index}]"))
        draft.replaces = ((relation.get("target") or {}).get("reference")) or None
        if draft.replaces is None:
            problems.append(
                Problem(
                    "relatesTo.target.reference is required", f"{path}.relatesTo[{index}].target", IssueCode.REQUIRED
                )
            )

    # authors
    _read_authors(problems, resource, path, draft, check_luhn=production)
    if comprehensive and not resource.get("author"):
        problems.append(Problem("at least one author is required", f"{path}.author", IssueCode.REQUIRED))

    archived = extension(resource, EXT_IS_ARCHIVED)
    if archived is not None and archived.get("valueBoolean") is True:
        problems.append(Problem("a new document cannot be archived", f"{path}.extension", IssueCode.BUSINESS_RULE))

    if problems:
        raise Invalid("the DocumentReference does not meet the DMP rules", problems=problems, unprocessable=True)
    return draft


# ---------------------------------------------------------------------------------------------- content


def _same_instant(a: dt.datetime, b: dt.datetime) -> bool:
    return abs((a - b).total_seconds()) < 1


def check_content(
    draft: Draft,
    data: bytes,
    *,
    ins: Ins,
    max_bytes: int,
    content_path: str,
) -> CdaHeader | None:
    """Check the document bytes against the metadata; derive what simplified publish left out."""
    apath = draft.attachment_path
    if len(data) > max_bytes:
        raise TooLarge(f"the document is {len(data)} bytes; the limit is {max_bytes}")
    if not data:
        raise Invalid.at(content_path, "the document is empty", IssueCode.REQUIRED)
    if draft.media is None:
        raise UnsupportedMediaType(
            f"media type {draft.content_type!r} is not accepted (PDF, CDA XML, FHIR JSON, JPEG, PNG, TIFF, text, RTF)",
            problems=[
                Problem(
                    f"media type {draft.content_type!r} is not accepted",
                    f"{apath}.contentType",
                    IssueCode.NOT_SUPPORTED,
                )
            ],
        )
    problems: list[Problem] = []
    detected = detect_media(data)
    if detected is not draft.media:
        problems.append(
            Problem(
                f"the content is {detected.value if detected else 'of an unknown kind'}, not {draft.content_type}",
                f"{apath}.contentType",
                IssueCode.VALUE,
            )
        )
    if draft.declared_size is not None and draft.declared_size != len(data):
        problems.append(
            Problem(
                f"size says {draft.declared_size} bytes but the content has {len(data)}",
                f"{apath}.size",
                IssueCode.VALUE,
            )
        )
    if draft.declared_hash is not None and draft.declared_hash != hashlib.sha1(data, usedforsecurity=False).digest():
        problems.append(Problem("hash is not the SHA-1 of the content", f"{apath}.hash", IssueCode.VALUE))
    if problems:
        raise Invalid("the document content does not match its metadata", problems=problems, unprocessable=True)

    header: CdaHeader | None = None
    if draft.media is Media.XML:
        header = read_header(data, content_path)
        _check_cda(draft, header, ins)
    elif draft.format_code is None and draft.media in UNSTRUCTURED_FORMAT:
        draft.format_code = UNSTRUCTURED_FORMAT[draft.media]
    if not draft.type_code:
        raise Invalid.at(
            f"{draft.path}.type", "type (JDV_J66) is required unless the content is a CDA document", IssueCode.REQUIRED
        )
    if draft.format_code is None:
        raise Invalid.at(
            f"{draft.path}.content[0].format", "format code (JDV_J60) is required for this content", IssueCode.REQUIRED
        )
    if draft.facility_code is None or draft.setting_code is None:
        missing = "context.facilityType" if draft.facility_code is None else "context.practiceSetting"
        raise Invalid.at(f"{draft.path}.{missing}", f"{missing} is required (JDV_J61 / JDV_J62)", IssueCode.REQUIRED)
    return header


def _unique_id_matches(master: tuple[str | None, str], header: CdaHeader) -> bool:
    assert header.document_id is not None
    value = master[1]
    for prefix in ("urn:oid:", "urn:uuid:"):
        if value.startswith(prefix):
            value = value[len(prefix) :]
    return value in (header.document_id.unique_id, header.document_id.root)


def _check_cda(draft: Draft, header: CdaHeader, ins: Ins) -> None:
    """The CDA header must tell the same story as the metadata; derive what is missing."""
    term = terminology()
    path = draft.path
    problems: list[Problem] = []
    if not any(i.extension == ins.value and i.root == ins.oid for i in header.ins_ids):
        problems.append(
            Problem(
                "the CDA recordTarget does not identify the patient of the record (INS mismatch)",
                f"{path}.subject",
                IssueCode.BUSINESS_RULE,
            )
        )
    assert header.code is not None
    if draft.type_code and header.code.code != draft.type_code:
        problems.append(
            Problem(
                f"the CDA code is {header.code.code} but the metadata type is {draft.type_code}",
                f"{path}.type",
                IssueCode.BUSINESS_RULE,
            )
        )
    if not draft.type_code:
        hit = term.type_codes.lookup(canonical_system(header.code.code_system), header.code.code)
        if hit is None:
            problems.append(
                Problem(
                    f"the CDA code {header.code.code} is not a DMP type code", f"{path}.type", IssueCode.CODE_INVALID
                )
            )
        else:
            draft.type_code = hit.code
            draft.class_code = draft.class_code or term.expected_class(hit.code)
    if header.confidentiality and header.confidentiality in CONFIDENTIALITY_LEVELS:
        if draft.level_given and header.confidentiality != draft.confidentiality:
            problems.append(
                Problem(
                    f"the CDA confidentialityCode is {header.confidentiality} "
                    f"but the metadata says {draft.confidentiality}",
                    f"{path}.securityLabel",
                    IssueCode.BUSINESS_RULE,
                )
            )
        elif not draft.level_given:
            # Visibility flags alone (MASQUE_PS …) say nothing of the level: the CDA's applies.
            draft.confidentiality = header.confidentiality
    assert header.effective_time is not None
    if draft.creation is not None and not _same_instant(draft.creation, header.effective_time):
        problems.append(
            Problem(
                "attachment.creation differs from the CDA effectiveTime",
                f"{draft.attachment_path}.creation",
                IssueCode.BUSINESS_RULE,
            )
        )
    draft.creation = draft.creation or header.effective_time
    if draft.master_identifier is not None and not _unique_id_matches(draft.master_identifier, header):
        problems.append(
            Problem(
                "masterIdentifier must be the CDA ClinicalDocument/id (XDS uniqueId)",
                f"{path}.masterIdentifier",
                IssueCode.BUSINESS_RULE,
            )
        )
    if draft.master_identifier is None and header.document_id is not None:
        draft.master_identifier = ("urn:ietf:rfc:3986", f"urn:oid:{header.document_id.unique_id}")
    if draft.author_idnats and header.author_idnats and not set(draft.author_idnats) & set(header.author_idnats):
        problems.append(
            Problem(
                "none of the metadata authors is an author of the CDA document",
                f"{path}.author",
                IssueCode.BUSINESS_RULE,
            )
        )
    if not draft.author_idnats:
        draft.author_idnats = list(dict.fromkeys(header.author_idnats))
    if header.non_xml_media_type:
        media = declared_media(header.non_xml_media_type)
        expected_format = UNSTRUCTURED_FORMAT.get(media) if media else None
        if expected_format and draft.format_code and draft.format_code != expected_format:
            problems.append(
                Problem(
                    f"a level-1 CDA with a {header.non_xml_media_type} body has format {expected_format}",
                    f"{path}.content[0].format",
                    IssueCode.BUSINESS_RULE,
                )
            )
        draft.format_code = draft.format_code or expected_format
    else:
        draft.format_code = draft.format_code or term.format_for_templates(header.template_ids)
    if draft.facility_code is None and header.facility_type is not None:
        hit = term.facility_types.lookup(canonical_system(header.facility_type.code_system), header.facility_type.code)
        draft.facility_code = hit.code if hit else None
    if draft.setting_code is None and header.practice_setting is not None:
        hit = term.practice_settings.lookup(
            canonical_system(header.practice_setting.code_system), header.practice_setting.code
        )
        draft.setting_code = hit.code if hit else None
    if draft.period_start is None:
        draft.period_start = header.service_start
        draft.period_end = draft.period_end or header.service_stop
    if problems:
        raise Invalid("the CDA header does not match the metadata", problems=problems, unprocessable=True)
    draft.cda = header
