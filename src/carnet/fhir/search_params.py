"""Parse FHIR search parameters into the document service's query objects.

Unknown or unsupported parameters are refused with a 400 naming them, unless the client sent
``Prefer: handling=lenient`` (FHIR search rules), in which case they are ignored.
"""

from __future__ import annotations

import datetime as dt
import re

from starlette.datastructures import QueryParams

from carnet.config import Settings
from carnet.documents.schemas import DateFilter, DocumentQuery, ListQuery, TokenFilter
from carnet.errors import Invalid, IssueCode, Problem
from carnet.fhirtypes import parse_datetime, split_token

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
COMMON = {"_count", "_offset", "_format", "_total", "_summary", "_elements"}
_TIME_PRECISION = re.compile(r"T\d{2}:\d{2}(:(\d{2})(\.\d+)?)?")


def _end_of(value: str, start: dt.datetime) -> dt.datetime:
    """The exclusive end of the range a date/dateTime value denotes (its precision)."""
    date_part = value.split("T", 1)[0]
    if "T" in value:
        match = _TIME_PRECISION.search(value)
        if match and match.group(3):
            return start + dt.timedelta(milliseconds=1)
        if match and match.group(2):
            return start + dt.timedelta(seconds=1)
        return start + dt.timedelta(minutes=1)
    pieces = date_part.split("-")
    if len(pieces) == 1:
        return start.replace(year=start.year + 1)
    if len(pieces) == 2:
        return (
            start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        )
    return start + dt.timedelta(days=1)


def parse_date(name: str, raw: str) -> DateFilter:
    prefix = raw[:2] if raw[:2] in PREFIXES else "eq"
    value = raw[2:] if raw[:2] in PREFIXES else raw
    try:
        start = parse_datetime(value)
    except ValueError as exc:
        raise Invalid.at(name, f"{name}={raw!r}: {exc}", IssueCode.VALUE) from exc
    return DateFilter(prefix, start, _end_of(value, start))


def _tokens(name: str, values: list[str]) -> list[TokenFilter]:
    out = []
    for value in values:
        for part in value.split(","):
            system, code = split_token(part)
            if not code:
                raise Invalid.at(name, f"{name} needs a code (system|code or code)", IssueCode.VALUE)
            out.append(TokenFilter(system, code))
    return out


def _csv(values: list[str]) -> list[str]:
    return [p for v in values for p in v.split(",") if p]


def _paging(params: QueryParams, settings: Settings) -> tuple[int, int]:
    try:
        count = int(params.get("_count", settings.default_page_size))
        offset = int(params.get("_offset", 0))
    except ValueError as exc:
        raise Invalid.at("_count", "_count and _offset are whole numbers", IssueCode.VALUE) from exc
    if count < 0 or offset < 0:
        raise Invalid.at("_count", "_count and _offset cannot be negative", IssueCode.VALUE)
    return min(count, settings.max_page_size), offset


def _check_known(params: QueryParams, known: set[str], lenient: bool) -> None:
    unknown = sorted({k for k in params if k not in known and k not in COMMON})
    if unknown and not lenient:
        raise Invalid(
            f"unsupported search parameter(s): {', '.join(unknown)}",
            problems=[Problem(f"search parameter {k!r} is not supported", k, IssueCode.NOT_SUPPORTED) for k in unknown],
        )


def _patient(params: QueryParams) -> tuple[str | None, tuple[str | None, str] | None]:
    patient = params.get("patient") or params.get("subject")
    identifier = params.get("patient.identifier") or params.get("subject.identifier")
    patient_id = patient.rsplit("Patient/", 1)[-1] if patient else None
    ins = split_token(identifier) if identifier else None
    if patient_id is None and ins is None:
        raise Invalid.at(
            "patient", "ITI-67/ITI-66 searches name the patient (patient or patient.identifier)", IssueCode.REQUIRED
        )
    return patient_id, ins


AUTHOR_TYPES = ("Practitioner", "PractitionerRole", "Organization", "Patient", "Device", "RelatedPerson")


def _author_refs(value: str) -> list[str]:
    """``author`` as Type/id, an absolute URL, or a bare id (then any of the author types)."""
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] in AUTHOR_TYPES:
        return [f"{parts[-2]}/{parts[-1]}"]
    if len(parts) == 1 and parts[0]:
        return [f"{kind}/{parts[0]}" for kind in AUTHOR_TYPES]
    raise Invalid.at("author", f"author={value!r} is not a reference (Type/id)", IssueCode.VALUE)


def _bool(name: str, raw: str) -> bool:
    if raw not in ("true", "false"):
        raise Invalid.at(name, f"{name} is true or false", IssueCode.VALUE)
    return raw == "true"


DOCUMENT_PARAMS = {
    "patient",
    "patient.identifier",
    "subject",
    "subject.identifier",
    "_id",
    "status",
    "type",
    "category",
    "date",
    "period",
    "facility",
    "setting",
    "format",
    "security-label",
    "author",
    "author.identifier",
    "identifier",
    "related",
    "isArchived",
    "_sort",
    "_include",
    "_revinclude",
}


def document_query(params: QueryParams, settings: Settings, *, lenient: bool) -> DocumentQuery:
    _check_known(params, DOCUMENT_PARAMS, lenient)
    patient_id, ins = _patient(params)
    count, offset = _paging(params, settings)
    q = DocumentQuery(patient_id=patient_id, patient_ins=ins, count=count, offset=offset)
    q.ids = _csv(params.getlist("_id"))
    q.statuses = _csv(params.getlist("status"))
    for status in q.statuses:
        if status not in ("current", "superseded", "entered-in-error"):
            raise Invalid.at("status", f"status {status!r} is not a DocumentReference status", IssueCode.VALUE)
    q.types = _tokens("type", params.getlist("type"))
    q.categories = _tokens("category", params.getlist("category"))
    q.formats = _tokens("format", params.getlist("format"))
    q.facilities = _tokens("facility", params.getlist("facility"))
    q.settings = _tokens("setting", params.getlist("setting"))
    q.security_labels = _tokens("security-label", params.getlist("security-label"))
    q.identifiers = _tokens("identifier", params.getlist("identifier"))
    q.related = _tokens("related", params.getlist("related"))
    q.authors = [ref for v in params.getlist("author") for a in v.split(",") for ref in _author_refs(a)]
    q.author_identifiers = _tokens("author.identifier", params.getlist("author.identifier"))
    q.dates = [parse_date("date", v) for v in params.getlist("date")]
    q.periods = [parse_date("period", v) for v in params.getlist("period")]
    if "isArchived" in params:
        q.archived = _bool("isArchived", params["isArchived"])
    sort = params.get("_sort", "-date")
    if sort not in ("date", "-date"):
        raise Invalid.at("_sort", "documents sort by date or -date", IssueCode.NOT_SUPPORTED)
    q.sort_ascending = sort == "date"
    for inc in params.getlist("_include"):
        if inc not in ("DocumentReference:subject", "DocumentReference:patient"):
            raise Invalid.at("_include", f"_include={inc} is not supported", IssueCode.NOT_SUPPORTED)
        q.include_subject = True
    for rev in params.getlist("_revinclude"):
        if rev != "List:item":
            raise Invalid.at("_revinclude", f"_revinclude={rev} is not supported", IssueCode.NOT_SUPPORTED)
        q.revinclude_lists = True
    return q


LIST_PARAMS = {
    "patient",
    "patient.identifier",
    "subject",
    "subject.identifier",
    "_id",
    "code",
    "status",
    "designationType",
    "identifier",
    "sourceId",
    "source.identifier",
    "date",
    "_include",
}


def list_query(params: QueryParams, settings: Settings, *, lenient: bool) -> ListQuery:
    _check_known(params, LIST_PARAMS, lenient)
    patient_id, ins = _patient(params)
    count, offset = _paging(params, settings)
    q = ListQuery(patient_id=patient_id, patient_ins=ins, count=count, offset=offset)
    q.ids = _csv(params.getlist("_id"))
    q.codes = _tokens("code", params.getlist("code"))
    q.statuses = _csv(params.getlist("status"))
    q.designation_types = _tokens("designationType", params.getlist("designationType"))
    q.identifiers = _tokens("identifier", params.getlist("identifier"))
    q.source_ids = _tokens("sourceId", params.getlist("sourceId") + params.getlist("source.identifier"))
    q.dates = [parse_date("date", v) for v in params.getlist("date")]
    for inc in params.getlist("_include"):
        if inc != "List:item":
            raise Invalid.at("_include", f"_include={inc} is not supported", IssueCode.NOT_SUPPORTED)
        q.include_items = True
    return q
