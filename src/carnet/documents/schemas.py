"""Inputs and outputs of the document service, independent of how they arrived (FHIR bundle, portal form)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from carnet.fhirtypes import JSON


@dataclass(slots=True)
class DocumentInput:
    """A DocumentReference to deposit; ``path`` locates it in the request for error messages."""

    resource: JSON
    path: str
    full_url: str | None = None


@dataclass(slots=True)
class BinaryInput:
    full_url: str
    content_type: str | None
    data: bytes
    path: str


@dataclass(slots=True)
class ListInput:
    """A SubmissionSet or Folder List."""

    resource: JSON
    path: str
    full_url: str | None = None


@dataclass(frozen=True, slots=True)
class PatchOperation:
    """One metadata change: ``op`` is add / remove / replace; ``path`` is a JSON pointer inside the resource."""

    op: str
    path: str
    value: object = None
    where: str = ""  # location of the operation in the request


@dataclass(slots=True)
class PatchInput:
    target: str  # DocumentReference id
    operations: list[PatchOperation]
    path: str


@dataclass(slots=True)
class Submission:
    """An ITI-65 Provide Document Bundle, unpacked."""

    submission_set: ListInput | None
    documents: list[DocumentInput]
    binaries: list[BinaryInput]
    folders: list[ListInput] = field(default_factory=list)
    patches: list[PatchInput] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Created:
    """A resource written by a deposit, for the transaction response."""

    resource_type: str
    id: str
    version: int
    last_updated: dt.datetime
    status: str = "201 Created"


@dataclass(slots=True)
class SubmissionResult:
    """What a deposit wrote, keyed by the request's fullUrls (and in request order)."""

    by_full_url: dict[str, Created] = field(default_factory=dict)
    documents: list[Created] = field(default_factory=list)
    submission_set: Created | None = None
    patched: list[Created] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TokenFilter:
    """A token search value: ``system`` None means any system."""

    system: str | None
    code: str


@dataclass(frozen=True, slots=True)
class DateFilter:
    """One FHIR date comparison on an instant or a period: ``prefix`` and the range the value denotes."""

    prefix: str  # eq ne gt lt ge le sa eb ap
    start: dt.datetime
    end: dt.datetime  # exclusive


@dataclass(slots=True)
class DocumentQuery:
    """ITI-67 Find Document References, parsed. Each list is OR'ed; different fields are AND'ed."""

    patient_id: str | None = None
    patient_ins: tuple[str | None, str] | None = None
    ids: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    types: list[TokenFilter] = field(default_factory=list)
    categories: list[TokenFilter] = field(default_factory=list)
    formats: list[TokenFilter] = field(default_factory=list)
    facilities: list[TokenFilter] = field(default_factory=list)
    settings: list[TokenFilter] = field(default_factory=list)
    security_labels: list[TokenFilter] = field(default_factory=list)
    identifiers: list[TokenFilter] = field(default_factory=list)
    related: list[TokenFilter] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)
    author_identifiers: list[TokenFilter] = field(default_factory=list)
    dates: list[DateFilter] = field(default_factory=list)
    periods: list[DateFilter] = field(default_factory=list)
    # Documents whose service period starts at or after this instant, or, without a period, dated at or
    # after it: the professional portal's window for a first opening (ANS: the last two years).
    service_since: dt.datetime | None = None
    archived: bool | None = None
    # Who deposited the documents (the portals' "author" filter): "professional" (pro:…), "patient"
    # (account:…, the patient or a legal representative), "other" (software clients, the insurer's feed).
    depositor_kinds: list[str] = field(default_factory=list)
    created_since: dt.datetime | None = None  # deposited at or after (the portals' "new since your last visit")
    sort_ascending: bool = False
    count: int = 20
    offset: int = 0
    include_subject: bool = False
    revinclude_lists: bool = False


@dataclass(slots=True)
class ListQuery:
    """ITI-66 Find Lists, parsed."""

    patient_id: str | None = None
    patient_ins: tuple[str | None, str] | None = None
    ids: list[str] = field(default_factory=list)
    codes: list[TokenFilter] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    designation_types: list[TokenFilter] = field(default_factory=list)
    identifiers: list[TokenFilter] = field(default_factory=list)
    source_ids: list[TokenFilter] = field(default_factory=list)
    dates: list[DateFilter] = field(default_factory=list)
    count: int = 20
    offset: int = 0
    include_items: bool = False


@dataclass(slots=True)
class Page:
    """One page of search results: JSON bodies of the matches and of the included resources."""

    total: int
    matches: list[bytes]
    included: list[bytes] = field(default_factory=list)
