"""Finding documents (ITI-67) and lists (ITI-66), filtered by the access policy inside SQL.

Visibility is part of the WHERE clause, so hidden documents never appear in results, in totals, in
paging or in included resources. An unknown patient and a patient the caller may not search give the
same empty page.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import fields
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import SQLColumnExpression
from sqlalchemy.sql.elements import ColumnElement

from carnet import audit
from carnet.access import Action, DocumentFacts, decide, document_visibility, require
from carnet.access import context as access_context
from carnet.access.policy import MASQUE_PS
from carnet.audit.trace import Outcome, TraceAction
from carnet.auth.actor import Actor, ActorKind
from carnet.db import UTCDateTime
from carnet.documents.models import DocumentEntry, ListEntry, ListMember
from carnet.documents.schemas import DateFilter, DocumentQuery, ListQuery, Page, TokenFilter
from carnet.errors import Forbidden, NotFound
from carnet.fhirtypes import MHD_LIST_TYPES
from carnet.identifiers import IdentifierError, parse_ins
from carnet.records import service as records
from carnet.records.models import Record
from carnet.runtime import Work
from carnet.storage.models import ResourceVersion, SearchToken
from carnet.terminology import terminology
from carnet.terminology.valuesets import CONFIDENTIALITY_FLAGS, CONFIDENTIALITY_LEVELS, ValueSet, canonical_system

DOCUMENT = "DocumentReference"
LIST = "List"


def _by_id(work: Work, actor: Actor, patient_id: str) -> Record | None:
    """The record, and the caller's access context on it, in one round trip."""
    try:
        key = uuid.UUID(patient_id)
    except ValueError:
        return None
    return access_context.load_record(work, actor, record_id=key)


def _record_for(
    work: Work, actor: Actor, patient_id: str | None, patient_ins: tuple[str | None, str] | None
) -> Record | None:
    """The record named by ``patient`` and/or ``patient.identifier`` (both must name the same one)."""
    by_id = _by_id(work, actor, patient_id) if patient_id is not None else None
    if patient_ins is None:
        return by_id
    try:
        ins = parse_ins(patient_ins[0], patient_ins[1], allow_test=not work.settings.is_production)
    except IdentifierError:
        return None
    by_ins = access_context.load_record(work, actor, ins_hash=work.store.indexer.ins(ins.value))
    if patient_id is not None and (by_id is None or by_ins is None or by_id.id != by_ins.id):
        return None
    return by_ins


def _codes(filters: list[TokenFilter], value_set: ValueSet) -> list[str]:
    """Codes matching token filters; a filter with a system matches only codes of that system."""
    codes = []
    for f in filters:
        hit = value_set.codes.get(f.code)
        if hit is None:
            codes.append(f.code)  # unknown code: matches nothing, but keeps the filter
        elif f.system is None or value_set.lookup(f.system, f.code) is not None:
            codes.append(f.code)
    return codes


def _date_condition(column: SQLColumnExpression[dt.datetime], f: DateFilter) -> ColumnElement[bool]:
    if f.prefix in ("eq", "ap"):
        return sa.and_(column >= f.start, column < f.end)
    if f.prefix == "ne":
        return sa.or_(column < f.start, column >= f.end)
    if f.prefix in ("gt", "sa"):
        return column >= f.end
    if f.prefix == "ge":
        return column >= f.start
    if f.prefix in ("lt", "eb"):
        return column < f.start
    return column < f.end  # le


def _period_condition(f: DateFilter) -> ColumnElement[bool]:
    """Match a document's context.period (an interval, possibly open) against a date filter."""
    start, end = DocumentEntry.period_start, DocumentEntry.period_end
    effective_end = sa.func.coalesce(end, start)
    has_period = start.is_not(None)
    if f.prefix in ("eq", "ap"):
        return sa.and_(has_period, start >= f.start, effective_end < f.end)
    if f.prefix == "ne":
        return sa.and_(has_period, sa.or_(start < f.start, effective_end >= f.end))
    if f.prefix in ("gt", "sa"):
        return sa.and_(has_period, sa.or_(end.is_(None), end >= f.end))
    if f.prefix == "ge":
        return sa.and_(has_period, sa.or_(end.is_(None), end >= f.start))
    if f.prefix in ("lt", "eb"):
        return sa.and_(has_period, start < f.start)
    return sa.and_(has_period, start < f.end)  # le


def _token_exists(
    record_id: uuid.UUID, resource_type: str, id_column: SQLColumnExpression[str], param: str, hashes: list[bytes]
) -> ColumnElement[bool]:
    return sa.exists().where(
        SearchToken.record_id == record_id,
        SearchToken.resource_type == resource_type,
        SearchToken.param == param,
        SearchToken.value_hash.in_(hashes),
        SearchToken.resource_id == id_column,
    )


def _token_hashes(work: Work, param: str, filters: list[TokenFilter]) -> list[bytes]:
    return [work.store.token(param, f.code if f.system is None else f"{f.system}|{f.code}") for f in filters]


def _filter_conditions(work: Work, record: Record, q: DocumentQuery) -> list[ColumnElement[bool]]:
    """The query's conditions other than the record and the statuses (which every ITI-67 search has)."""
    term = terminology()
    where: list[ColumnElement[bool]] = []
    if q.ids:
        where.append(DocumentEntry.id.in_(q.ids))
    if q.types:
        where.append(DocumentEntry.type_code.in_(_codes(q.types, term.type_codes)))
    if q.categories:
        where.append(DocumentEntry.class_code.in_(_codes(q.categories, term.class_codes)))
    if q.formats:
        where.append(DocumentEntry.format_code.in_(_codes(q.formats, term.format_codes)))
    if q.facilities:
        where.append(DocumentEntry.facility_code.in_(_codes(q.facilities, term.facility_types)))
    if q.settings:
        where.append(DocumentEntry.setting_code.in_(_codes(q.settings, term.practice_settings)))
    if q.security_labels:
        options: list[ColumnElement[bool]] = []
        for f in q.security_labels:
            if f.system is not None and term.confidentiality.lookup(f.system, f.code) is None:
                continue
            if f.code in CONFIDENTIALITY_LEVELS:
                options.append(DocumentEntry.confidentiality == f.code)
            elif f.code in CONFIDENTIALITY_FLAGS:
                options.append(DocumentEntry.flags.op("&")(CONFIDENTIALITY_FLAGS[f.code]) != 0)
        where.append(sa.or_(*options) if options else sa.false())
    if q.identifiers:
        where.append(
            _token_exists(
                record.id, DOCUMENT, DocumentEntry.id, "identifier", _token_hashes(work, "identifier", q.identifiers)
            )
        )
    if q.related:
        where.append(
            _token_exists(record.id, DOCUMENT, DocumentEntry.id, "related", _token_hashes(work, "related", q.related))
        )
    if q.authors:
        where.append(
            _token_exists(
                record.id, DOCUMENT, DocumentEntry.id, "author", [work.store.token("author", a) for a in q.authors]
            )
        )
    if q.author_identifiers:
        where.append(
            _token_exists(
                record.id,
                DOCUMENT,
                DocumentEntry.id,
                "author.identifier",
                _token_hashes(work, "author.identifier", q.author_identifiers),
            )
        )
    for date_filter in q.dates:
        where.append(_date_condition(DocumentEntry.date, date_filter))
    for period_filter in q.periods:
        where.append(_period_condition(period_filter))
    if q.service_since is not None:
        started = sa.func.coalesce(DocumentEntry.period_start, DocumentEntry.date, type_=UTCDateTime())
        where.append(started >= q.service_since)
    if q.archived is not None:
        where.append(DocumentEntry.is_archived.is_(q.archived))
    if q.depositor_kinds:
        where.append(sa.or_(*(_depositor_condition(kind) for kind in q.depositor_kinds)))
    if q.created_since is not None:
        where.append(DocumentEntry.created_at >= q.created_since)
    return where


def _depositor_condition(kind: str) -> ColumnElement[bool]:
    """Documents deposited by a kind of author (``DocumentEntry.author_key`` prefixes); unknown: none."""
    if kind == "professional":
        return DocumentEntry.author_key.startswith("pro:")
    if kind == "patient":
        return DocumentEntry.author_key.startswith("account:")
    if kind == "other":
        return sa.not_(
            sa.or_(DocumentEntry.author_key.startswith("pro:"), DocumentEntry.author_key.startswith("account:"))
        )
    return sa.false()


def _refuse_revealing_labels(actor: Actor, record: Record, query: DocumentQuery) -> None:
    """A search by a label that hides documents from the caller could only probe for them: refused."""
    if actor.kind not in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
        return
    hidden = (
        {"INVISIBLE_PATIENT"}
        if record.id == actor.own_record
        else {"INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"}
    )
    if any(f.code in hidden for f in query.security_labels):
        raise Forbidden("searching by a confidentiality label that hides documents from you is not allowed")


def describe(query: DocumentQuery | ListQuery) -> str:
    """A search's parameters for the audit trail: codes, dates, ids and paging; never the INS (the trace
    names the record) nor free text."""
    parts = []
    for f in fields(query):
        if f.name in ("patient_id", "patient_ins"):
            continue
        value = getattr(query, f.name)
        if value in (None, [], False, f.default):
            continue
        if isinstance(value, list):
            rendered = [
                v.code
                if isinstance(v, TokenFilter)
                else f"{v.prefix}{v.start.isoformat(timespec='seconds')}"
                if isinstance(v, DateFilter)
                else str(v)
                for v in value
            ]
            parts.append(f"{f.name}={','.join(rendered)}")
        else:
            parts.append(f"{f.name}={value}")
    return "&".join(parts)[:1000]


def _refused(work: Work, actor: Actor, action: TraceAction, record: Record, query: DocumentQuery | ListQuery) -> Page:
    audit.trace(work, action, actor, record=record, outcome=Outcome.DENIED, query=describe(query))
    return Page(total=0, matches=[])


def _page_statement(
    visibility: ColumnElement[bool], by_status: bool, ascending: bool, filters: list[ColumnElement[bool]]
) -> sa.Select[Any]:
    """A page of a record's documents the caller may read: index rows, current encrypted bodies and the
    total, with the record, statuses, page size and offset as bound parameters."""
    where: list[ColumnElement[bool]] = [DocumentEntry.record_id == sa.bindparam("s_record")]
    if by_status:
        where.append(DocumentEntry.status.in_(sa.bindparam("s_statuses", expanding=True)))
    order = (
        (DocumentEntry.date.asc(), DocumentEntry.id.asc())
        if ascending
        else (DocumentEntry.date.desc(), DocumentEntry.id.desc())
    )
    columns: list[Any] = [
        DocumentEntry.id,
        DocumentEntry.version,
        ResourceVersion.body,
        sa.func.count().over(),
        DocumentEntry.flags,
        DocumentEntry.type_code,
        DocumentEntry.author_key,
        DocumentEntry.author_org,
    ]
    return (
        sa.select(*columns)
        .join(
            ResourceVersion,
            sa.and_(
                ResourceVersion.record_id == DocumentEntry.record_id,
                ResourceVersion.resource_type == DOCUMENT,
                ResourceVersion.resource_id == DocumentEntry.id,
                ResourceVersion.version == DocumentEntry.version,
            ),
        )
        .where(*where, *filters, visibility)
        .order_by(*order)
        .limit(sa.bindparam("s_limit", type_=sa.Integer()))
        .offset(sa.bindparam("s_offset", type_=sa.Integer()))
    )


# Statements of the usual search, per (visibility condition, by status, ascending). The visibility
# conditions are themselves built once per combination of the caller's rights (``access.policy``),
# so there are few; the cache is bounded all the same (emptied when full), and each entry holds the
# condition it is keyed by, so that the key's identity cannot be reused by another object.
_PAGE_STATEMENTS: dict[tuple[int, bool, bool], tuple[ColumnElement[bool], sa.Select[Any]]] = {}
_PAGE_STATEMENTS_MAX = 1024


def _cached_page_statement(visibility: ColumnElement[bool], by_status: bool, ascending: bool) -> sa.Select[Any]:
    key = (id(visibility), by_status, ascending)
    hit = _PAGE_STATEMENTS.get(key)
    if hit is not None and hit[0] is visibility:
        return hit[1]
    if len(_PAGE_STATEMENTS) >= _PAGE_STATEMENTS_MAX:
        _PAGE_STATEMENTS.clear()
    statement = _page_statement(visibility, by_status, ascending, [])
    _PAGE_STATEMENTS[key] = (visibility, statement)
    return statement


def search_documents(work: Work, *, actor: Actor, query: DocumentQuery) -> Page:
    """ITI-67 Find Document References for one patient."""
    record = _record_for(work, actor, query.patient_id, query.patient_ins)
    if record is None:
        return Page(total=0, matches=[])
    decision = decide(work, actor, Action.DOCUMENT_SEARCH, record)
    if not decision.permit:
        return _refused(work, actor, TraceAction.DOCUMENT_SEARCH, record, query)
    _refuse_revealing_labels(actor, record, query)
    visibility = document_visibility(work, actor, record)
    filters = _filter_conditions(work, record, query)
    params: dict[str, object] = {"s_record": record.id, "s_limit": query.count, "s_offset": query.offset}
    if query.statuses:
        params["s_statuses"] = query.statuses
    if filters:
        statement = _page_statement(visibility, bool(query.statuses), query.sort_ascending, filters)
    else:  # the usual ITI-67 search (patient and status): its statement is built once per shape
        statement = _cached_page_statement(visibility, bool(query.statuses), query.sort_ascending)
    # One round trip: the page of index rows, their current encrypted bodies and the total.
    rows = work.session.execute(statement, params).all()
    where = [
        DocumentEntry.record_id == record.id,
        *([DocumentEntry.status.in_(query.statuses)] if query.statuses else []),
        *filters,
        visibility,
    ]
    if rows:
        total = int(rows[0][3])
    elif query.offset or query.count == 0:
        total = work.session.scalar(sa.select(sa.func.count()).select_from(DocumentEntry).where(*where)) or 0
    else:
        total = 0
    ids = [row[0] for row in rows]
    page = Page(total=total, matches=[work.store.decrypt(record, DOCUMENT, row[0], row[1], row[2]) for row in rows])
    # The query, then each document it returned (IHE BALP: one query event, the reads it disclosed).
    audit.trace(
        work,
        TraceAction.DOCUMENT_SEARCH,
        actor,
        record=record,
        decision=decision,
        query=describe(query),
        detail=f"total:{total}",
    )
    for doc_id, version, _, _, flags, type_code, author_key, author_org in rows:
        # A masked document reached only through an emergency access is read in that mode: its own decision.
        read = (
            decide(
                work,
                actor,
                Action.DOCUMENT_READ,
                record,
                DocumentFacts(type_code=type_code, flags=flags, author_key=author_key, author_org=author_org),
            )
            if flags & MASQUE_PS and actor.kind is ActorKind.PROFESSIONAL
            else decision
        )
        audit.trace(
            work,
            TraceAction.DOCUMENT_READ,
            actor,
            record=record,
            resource_type=DOCUMENT,
            resource_id=doc_id,
            version=version,
            decision=read,
            detail="search",
        )
    if query.include_subject and ids:
        patient = records.read_patient(work, actor=actor, patient_id=str(record.id))
        page.included.append(patient.body)
    if query.revinclude_lists and ids:
        list_ids = list(
            work.session.scalars(
                sa.select(ListMember.list_id)
                .where(ListMember.record_id == record.id, ListMember.document_id.in_(ids))
                .distinct()
            )
        )
        lists = work.store.current_many(record, LIST, sorted(list_ids))
        page.included.extend(_filter_list(work, actor, record, body) for body in lists.values())
        for list_id in lists:
            audit.trace(
                work,
                TraceAction.LIST_READ,
                actor,
                record=record,
                resource_type=LIST,
                resource_id=list_id,
                decision=decision,
                detail="revinclude",
            )
    return page


# --------------------------------------------------------------------------------------- lists


def _visible_document_ids(work: Work, actor: Actor, record: Record, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    return set(
        work.session.scalars(
            sa.select(DocumentEntry.id).where(
                DocumentEntry.record_id == record.id,
                DocumentEntry.id.in_(ids),
                document_visibility(work, actor, record),
            )
        )
    )


def _filter_list(work: Work, actor: Actor, record: Record, body: bytes) -> bytes:
    """A List as this caller may see it: entries naming documents hidden from them are left out."""
    resource = orjson.loads(body)
    refs = [((e or {}).get("item") or {}).get("reference") or "" for e in resource.get("entry") or []]
    doc_ids = [r.split("/", 1)[1] for r in refs if r.startswith(f"{DOCUMENT}/")]
    visible = _visible_document_ids(work, actor, record, doc_ids)
    entries = [
        e
        for e, ref in zip(resource.get("entry") or [], refs, strict=True)
        if not ref.startswith(f"{DOCUMENT}/") or ref.split("/", 1)[1] in visible
    ]
    if len(entries) == len(resource.get("entry") or []):
        return body
    resource["entry"] = entries
    return orjson.dumps(resource)


def _list_visibility(work: Work, actor: Actor, record: Record) -> ColumnElement[bool]:
    """A list is visible when at least one of its documents is, or when it lists none (an empty folder)."""
    member = sa.select(ListMember.document_id).where(
        ListMember.record_id == ListEntry.record_id, ListMember.list_id == ListEntry.id
    )
    visible_member = sa.exists().where(
        ListMember.record_id == ListEntry.record_id,
        ListMember.list_id == ListEntry.id,
        DocumentEntry.record_id == ListMember.record_id,
        DocumentEntry.id == ListMember.document_id,
        document_visibility(work, actor, record),
    )
    return sa.or_(visible_member, ~sa.exists(member))


def search_lists(work: Work, *, actor: Actor, query: ListQuery) -> Page:
    """ITI-66 Find Lists (SubmissionSets and Folders) of one patient."""
    term = terminology()
    record = _record_for(work, actor, query.patient_id, query.patient_ins)
    if record is None:
        return Page(total=0, matches=[])
    decision = decide(work, actor, Action.DOCUMENT_SEARCH, record)
    if not decision.permit:
        return _refused(work, actor, TraceAction.LIST_SEARCH, record, query)
    where: list[ColumnElement[bool]] = [ListEntry.record_id == record.id, _list_visibility(work, actor, record)]
    if query.ids:
        where.append(ListEntry.id.in_(query.ids))
    if query.codes:
        codes = [f.code for f in query.codes if f.system in (None, MHD_LIST_TYPES)]
        where.append(ListEntry.code.in_(codes))
    if query.statuses:
        where.append(ListEntry.status.in_(query.statuses))
    if query.designation_types:
        codes = [
            f.code
            for f in query.designation_types
            if f.system is None
            or (term.content_types.lookup(f.system, f.code) or term.class_codes.lookup(f.system, f.code))
        ]
        where.append(ListEntry.designation_code.in_(codes))
    if query.identifiers:
        where.append(
            _token_exists(
                record.id, LIST, ListEntry.id, "identifier", _token_hashes(work, "identifier", query.identifiers)
            )
        )
    if query.source_ids:
        where.append(
            _token_exists(
                record.id, LIST, ListEntry.id, "source", [work.store.token("source", f.code) for f in query.source_ids]
            )
        )
    for f in query.dates:
        where.append(_date_condition(ListEntry.date, f))
    total = work.session.scalar(sa.select(sa.func.count()).select_from(ListEntry).where(*where)) or 0
    ids = list(
        work.session.scalars(
            sa.select(ListEntry.id)
            .where(*where)
            .order_by(ListEntry.date.desc(), ListEntry.id.desc())
            .limit(query.count)
            .offset(query.offset)
        )
    )
    bodies = work.store.current_many(record, LIST, ids)
    page = Page(total=total, matches=[_filter_list(work, actor, record, bodies[i]) for i in ids if i in bodies])
    audit.trace(
        work,
        TraceAction.LIST_SEARCH,
        actor,
        record=record,
        decision=decision,
        query=describe(query),
        detail=f"total:{total}",
    )
    for list_id in ids:
        audit.trace(
            work,
            TraceAction.LIST_READ,
            actor,
            record=record,
            resource_type=LIST,
            resource_id=list_id,
            decision=decision,
            detail="search",
        )
    if query.include_items and ids:
        doc_ids = list(
            work.session.scalars(
                sa.select(ListMember.document_id)
                .where(ListMember.record_id == record.id, ListMember.list_id.in_(ids))
                .distinct()
            )
        )
        visible = sorted(_visible_document_ids(work, actor, record, doc_ids))
        included = work.store.current_many(record, DOCUMENT, visible)
        page.included.extend(included.values())
        for doc_id in included:
            audit.trace(
                work,
                TraceAction.DOCUMENT_READ,
                actor,
                record=record,
                resource_type=DOCUMENT,
                resource_id=doc_id,
                decision=decision,
                detail="include",
            )
    return page


def read_list(work: Work, *, actor: Actor, list_id: str, version: int | None = None) -> bytes:
    record_id = work.store.locate(LIST, list_id)
    record = work.session.get(Record, record_id) if record_id else None
    if record is None:
        raise NotFound()
    decision = require(work, actor, Action.DOCUMENT_SEARCH, record)
    visible = work.session.scalar(
        sa.select(ListEntry.id).where(
            ListEntry.record_id == record.id, ListEntry.id == list_id, _list_visibility(work, actor, record)
        )
    )
    if visible is None:
        raise NotFound()
    stored = (
        work.store.current(record, LIST, list_id)
        if version is None
        else work.store.version(record, LIST, list_id, version)
    )
    if stored is None:
        raise NotFound()
    audit.trace(
        work,
        TraceAction.LIST_READ,
        actor,
        record=record,
        resource_type=LIST,
        resource_id=list_id,
        version=stored.version,
        decision=decision,
    )
    return _filter_list(work, actor, record, stored.body)


def list_history(work: Work, *, actor: Actor, list_id: str) -> list[bytes]:
    read_list(work, actor=actor, list_id=list_id)
    record_id = work.store.locate(LIST, list_id)
    record = work.session.get(Record, record_id)
    assert record is not None
    return [_filter_list(work, actor, record, v.body) for v in work.store.history(record, LIST, list_id)]


def canonical(system: str | None) -> str | None:
    return canonical_system(system)
