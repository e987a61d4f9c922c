"""Documents as the portals list them: one summary per document, from the policy-filtered search.

``list_documents`` runs the ITI-67 search (``documents.search``: visibility inside SQL, every result
traced) with the filters of the Mon espace santé documents page — a category (``documents.categories``),
a text matched against the type's display, a date range, the kind of author — and turns each
DocumentReference into a ``Summary``: type, category, date, title, author (resolved in the directory),
confidentiality, and what the reader may do with it (mask, delete), as the access policy answers.
``read_summary`` does the same for one document (a traced read).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
import uuid
from dataclasses import dataclass, field

import orjson
import sqlalchemy as sa

from carnet.access import Action, DocumentFacts, decide
from carnet.accounts.models import Client
from carnet.auth.actor import Actor
from carnet.directory import people
from carnet.documents import categories
from carnet.documents import search as document_search
from carnet.documents import service as documents
from carnet.documents.categories import Category
from carnet.documents.models import DocumentEntry
from carnet.documents.schemas import DateFilter, DocumentQuery, TokenFilter
from carnet.errors import NotFound
from carnet.fhirtypes import JSON, parse_datetime
from carnet.records.models import Record
from carnet.runtime import Work
from carnet.terminology import terminology
from carnet.terminology.valuesets import CONFIDENTIALITY_FLAGS

MASKED = CONFIDENTIALITY_FLAGS["MASQUE_PS"]
INVISIBLE_REPRESENTANTS = CONFIDENTIALITY_FLAGS["INVISIBLE_REPRESENTANTS_LEGAUX"]
AUTHOR_KINDS = ("professional", "patient", "other")
NO_MATCH = "__none__"  # a type code no document carries: a text that matches no type finds nothing


@dataclass(frozen=True, slots=True)
class Author:
    kind: str  # professional | patient | other
    name: str | None = None  # a professional's name (with "Dr"), an organisation's or software's name
    profession: str | None = None
    organization: str | None = None
    is_reader: bool = False  # the reader deposited it themselves


@dataclass(frozen=True, slots=True)
class Summary:
    id: str
    record_id: uuid.UUID
    type_code: str
    type_display: str
    class_code: str
    category: Category
    title: str | None
    date: dt.datetime | None
    author: Author
    status: str
    confidentiality: str  # N, R, V
    masked: bool
    hidden_from_representatives: bool
    archived: bool
    content_type: str
    size: int
    binary_id: str
    can_mask: bool
    can_delete: bool
    version: int

    @property
    def is_cda(self) -> bool:
        return self.content_type.split(";")[0].strip().lower() in (
            "text/xml",
            "application/xml",
            "application/hl7-cda+xml",
            "application/xslt+xml",
        )

    @property
    def is_pdf(self) -> bool:
        return self.content_type.split(";")[0].strip().lower() == "application/pdf"

    @property
    def is_image(self) -> bool:
        return self.content_type.split(";")[0].strip().lower() in ("image/jpeg", "image/png")

    @property
    def is_text(self) -> bool:
        return self.content_type.split(";")[0].strip().lower() == "text/plain"


@dataclass(slots=True)
class Filters:
    """The documents page's filters (each optional)."""

    text: str = ""
    start: dt.date | None = None
    end: dt.date | None = None  # inclusive
    category: Category | None = None
    author_kind: str | None = None
    page: int = 1
    since: dt.datetime | None = None  # deposited since (the home page's "new since your last visit")


@dataclass(slots=True)
class Listing:
    items: list[Summary]
    total: int
    page: int
    page_size: int
    counts: dict[Category, int] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def _fold(text: str) -> str:
    """Lower case without accents (for matching what people type against displays)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def types_matching(text: str) -> set[str]:
    """DMP type codes whose display (or code) contains every word of ``text``."""
    words = _fold(text).split()
    if not words:
        return set()
    found = set()
    for code, coding in terminology().type_codes.codes.items():
        haystack = _fold(f"{coding.display} {code}")
        if all(w in haystack for w in words):
            found.add(code)
    return found


def query_for(patient_id: str, filters: Filters, *, page_size: int) -> DocumentQuery:
    """The ITI-67 query of the documents page (current documents, newest first)."""
    types: set[str] | None = None
    if filters.category is not None:
        types = set(categories.type_codes(filters.category))
    if filters.text.strip():
        matching = types_matching(filters.text)
        types = matching if types is None else types & matching
    query = DocumentQuery(
        patient_id=patient_id,
        statuses=["current"],
        count=page_size,
        offset=(max(1, filters.page) - 1) * page_size,
    )
    if types is not None:
        query.types = [TokenFilter(None, code) for code in sorted(types)] or [TokenFilter(None, NO_MATCH)]
    if filters.start is not None:
        start = dt.datetime.combine(filters.start, dt.time(), tzinfo=dt.UTC)
        query.dates.append(DateFilter("ge", start, start))
    if filters.end is not None:
        end = dt.datetime.combine(filters.end + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        query.dates.append(DateFilter("lt", end, end))
    if filters.author_kind in AUTHOR_KINDS:
        query.depositor_kinds = [filters.author_kind]
    query.created_since = filters.since
    return query


def _title(resource: JSON) -> str | None:
    content = resource.get("content")
    if isinstance(content, list) and content and isinstance(content[0], dict):
        attachment = content[0].get("attachment")
        if isinstance(attachment, dict) and attachment.get("title"):
            return str(attachment["title"])[:300]
    return None


def _contained_author_name(resource: JSON) -> str | None:
    contained = {c.get("id"): c for c in resource.get("contained") or [] if isinstance(c, dict)}
    for author in resource.get("author") or []:
        ref = author.get("reference") if isinstance(author, dict) else None
        target = contained.get(ref[1:]) if isinstance(ref, str) and ref.startswith("#") else None
        if not isinstance(target, dict):
            continue
        if target.get("resourceType") == "Practitioner":
            for name in target.get("name") or []:
                parts = [*name.get("given", []), name.get("family", "")]
                text = " ".join(p for p in parts if p)
                if text:
                    return text
        if target.get("resourceType") in ("Organization", "Device"):
            name = target.get("name") or target.get("deviceName")
            if isinstance(name, str):
                return name
    return None


class _Resolver:
    """Names of authors for a page of documents, in a few queries."""

    def __init__(self, work: Work, actor: Actor, entries: list[DocumentEntry]) -> None:
        keys = {e.author_key for e in entries}
        self.actor = actor
        self.cards = people.cards(work, {k[4:] for k in keys if k.startswith("pro:")})
        clients = sorted(k[7:] for k in keys if k.startswith("client:"))
        self.clients: dict[str, str] = (
            # ``.all()``: a Result has ``keys()``, so ``dict(result)`` would treat it as a mapping and fail.
            dict(work.session.execute(sa.select(Client.id, Client.name).where(Client.id.in_(clients))).all())
            if clients
            else {}
        )

    def author(self, entry: DocumentEntry, resource: JSON) -> Author:
        key = entry.author_key
        if key.startswith("pro:"):
            card = self.cards.get(key[4:])
            if card is not None:
                return Author("professional", card.title, card.profession, card.organization)
            return Author("professional", _contained_author_name(resource))
        if key.startswith("account:"):
            return Author("patient", None, is_reader=key == self.actor.author_key)
        if key.startswith("client:"):
            return Author("other", self.clients.get(key[7:]) or _contained_author_name(resource))
        return Author("other", _contained_author_name(resource))


def _summary(
    work: Work, actor: Actor, record: Record, entry: DocumentEntry, body: bytes, resolver: _Resolver
) -> Summary:
    resource = orjson.loads(body)
    facts = DocumentFacts.of(entry)
    coding = terminology().type_codes.codes.get(entry.type_code)
    date_text = resource.get("date")
    try:
        date = parse_datetime(str(date_text)) if date_text else entry.date
    except ValueError:
        date = entry.date
    return Summary(
        id=entry.id,
        record_id=record.id,
        type_code=entry.type_code,
        type_display=coding.display if coding is not None else entry.type_code,
        class_code=entry.class_code,
        category=categories.category_of(entry.type_code, entry.class_code),
        title=_title(resource),
        date=date,
        author=resolver.author(entry, resource),
        status=entry.status,
        confidentiality=entry.confidentiality,
        masked=bool(entry.flags & MASKED),
        hidden_from_representatives=bool(entry.flags & INVISIBLE_REPRESENTANTS),
        archived=entry.is_archived,
        content_type=entry.content_type,
        size=entry.size,
        binary_id=entry.binary_id,
        can_mask=decide(work, actor, Action.DOCUMENT_MASK, record, facts).permit,
        can_delete=decide(work, actor, Action.DOCUMENT_DELETE, record, facts).permit,
        version=entry.version,
    )


def list_documents(work: Work, *, actor: Actor, patient_id: str, filters: Filters, page_size: int = 20) -> Listing:
    """One page of the documents the reader may see in this record, with the filters applied."""
    page = document_search.search_documents(
        work, actor=actor, query=query_for(patient_id, filters, page_size=page_size)
    )
    record = work.session.get(Record, uuid.UUID(patient_id)) if page.matches else None
    bodies = [(str(orjson.loads(b)["id"]), b) for b in page.matches]
    entries: dict[str, DocumentEntry] = {}
    if record is not None:
        entries = {
            e.id: e
            for e in work.session.scalars(
                sa.select(DocumentEntry).where(
                    DocumentEntry.record_id == record.id, DocumentEntry.id.in_([i for i, _ in bodies])
                )
            )
        }
    resolver = _Resolver(work, actor, list(entries.values()))
    items = [
        _summary(work, actor, record, entries[doc_id], body, resolver)
        for doc_id, body in bodies
        if record is not None and doc_id in entries
    ]
    return Listing(items=items, total=page.total, page=max(1, filters.page), page_size=page_size)


def read_summary(work: Work, *, actor: Actor, patient_id: str, doc_id: str) -> Summary:
    """One document of this record (a traced read through the policy); ``NotFound`` for any other."""
    try:
        record_key = uuid.UUID(patient_id)
    except ValueError:
        raise NotFound() from None
    body = documents.read_document(work, actor=actor, doc_id=doc_id)
    entry = work.session.get(DocumentEntry, (record_key, doc_id))
    record = work.session.get(Record, record_key)
    if entry is None or record is None:
        raise NotFound()  # the document exists, but in another record than the one in the address
    return _summary(work, actor, record, entry, body, _Resolver(work, actor, [entry]))
