"""Reading the trail: who may read which traces, searching them, and what goes with them.

Every read goes through the access policy (``access.audit_visibility``, one gate): the patient and
their legal representatives read their record's traces (not those of documents hidden from them), the
médecin traitant the record's, a professional the traces of their own actions, the auditor all of
them; anyone else reads nothing, and a record they may not read is answered exactly like an unknown
one (an empty page, a 404). Reading traces is itself traced (``audit.read``).

``search_events`` serves FHIR ``AuditEvent`` searches and ``history`` the patient's "who accessed my
record" page (``carnet.audit.routes``). Both return stored traces with what display needs, resolved
now: names from the directory (never stored in the trail), document types, and the reason of an
emergency access, decrypted with the record's key for the readers allowed to see it (not the auditor:
a reason may say something medical) and shown only if it still matches the digest its trace binds.

AuditEvent ids are opaque: the AES-SIV encryption (key derived from ``CARNET_INDEX_KEY``) of the
entry's chain and position, in base32 — 64 characters, valid FHIR ids, revealing nothing of the
record or of how many traces it holds.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from carnet import audit
from carnet.access import policy
from carnet.access.models import EmergencyAccess
from carnet.accounts.models import Client
from carnet.audit import labels
from carnet.audit.models import AuditEntry
from carnet.audit.trace import Outcome, TraceAction
from carnet.auth.actor import Actor, ActorKind
from carnet.crypto import DecryptionFailed
from carnet.directory.models import Organization, Practitioner, PractitionerRole
from carnet.documents.models import BinaryEntry, DocumentEntry
from carnet.documents.schemas import DateFilter
from carnet.errors import Invalid, IssueCode, NotFound
from carnet.records.models import Record
from carnet.runtime import Work
from carnet.terminology import terminology

DOCUMENT = "DocumentReference"
BINARY = "Binary"
EMERGENCY = "EmergencyAccess"

# ------------------------------------------------------------------ opaque ids


@functools.cache
def _siv(index_key: bytes) -> AESSIV:
    return AESSIV(hmac.new(index_key, b"carnet-audit-event-id/1", hashlib.sha256).digest())


def event_id(work: Work, chain: uuid.UUID, seq: int) -> str:
    """The opaque AuditEvent id of entry ``seq`` of ``chain``."""
    sealed = _siv(work.settings.index_key_bytes()).encrypt(chain.bytes + seq.to_bytes(8, "big"), None)
    return base64.b32encode(sealed).decode().rstrip("=").lower()


def parse_event_id(work: Work, value: str) -> tuple[uuid.UUID, int] | None:
    """(chain, seq) of an AuditEvent id, or None when it is not one of ours."""
    if len(value) != 64:
        return None
    try:
        sealed = base64.b32decode(value.upper())
        plain = _siv(work.settings.index_key_bytes()).decrypt(sealed, None)
    except (binascii.Error, ValueError, InvalidTag):
        return None
    return uuid.UUID(bytes=plain[:16]), int.from_bytes(plain[16:], "big")


# ------------------------------------------------------------------ queries and results


@dataclass(slots=True)
class AuditQuery:
    """A search of the trail. Each list is OR'ed; different fields are AND'ed."""

    patient_ids: list[str] = field(default_factory=list)
    dates: list[DateFilter] = field(default_factory=list)
    actions: frozenset[str] | None = None  # the trace actions asked for (None: any)
    professionals: list[str] = field(default_factory=list)  # IdNat_PS of the agent
    outcomes: list[str] | None = None  # trace outcomes (None: any; empty: none)
    actor_types: list[str] = field(default_factory=list)  # history: labels.ACTOR_TYPES
    fold_echoes: bool = False  # history: a deposit's echo read is part of the deposit
    ascending: bool = False
    count: int = 20
    offset: int = 0

    def describe(self) -> str:
        """The query as codes and ids, for its own trace."""
        parts = []
        if self.patient_ids:
            parts.append("patient=" + ",".join(self.patient_ids))
        for f in self.dates:
            parts.append(f"date={f.prefix}{f.start.isoformat(timespec='seconds')}")
        if self.actions is not None:
            parts.append("actions=" + ",".join(sorted(self.actions)))
        if self.professionals:
            parts.append("agent=" + ",".join(self.professionals))
        if self.outcomes is not None:
            parts.append("outcome=" + ",".join(self.outcomes))
        if self.actor_types:
            parts.append("actorType=" + ",".join(self.actor_types))
        parts.append(f"sort={'asc' if self.ascending else 'desc'}&count={self.count}&offset={self.offset}")
        return "&".join(parts)[:1000]


@dataclass(frozen=True, slots=True)
class TraceView:
    """One stored trace, and what this reader may be shown beside it."""

    id: str
    chain: uuid.UUID
    seq: int
    at: dt.datetime
    trace: dict[str, object]
    reason: str | None = None  # an emergency access's reason, decrypted (only for readers allowed to see it)

    @property
    def action(self) -> str:
        return str(self.trace.get("action") or "")

    @property
    def record_id(self) -> str | None:
        value = self.trace.get("record_id")
        return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Reader:
    """What the reader may see beyond the traces themselves."""

    actor: Actor
    # Records whose every trace they may read in full (holder, representative, médecin traitant).
    full_records: frozenset[uuid.UUID] = frozenset()
    auditor: bool = False

    @property
    def is_person(self) -> bool:
        return self.actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE)

    def is_actor_of(self, trace: dict[str, object]) -> bool:
        professional = self.actor.professional
        if professional is not None and trace.get("professional") == professional.idnat:
            return True
        return bool(trace.get("actor_key") == self.actor.key)

    def sees_network(self, trace: dict[str, object]) -> bool:
        """Client addresses: the auditor's and the actor's own."""
        return self.auditor or self.is_actor_of(trace)

    def sees_details(self, trace: dict[str, object]) -> bool:
        """A search's query and totals: not for the patient side (a total counts documents hidden from them)."""
        return not self.is_person or self.is_actor_of(trace)

    def sees_reason(self, trace: dict[str, object], chain: uuid.UUID) -> bool:
        """An emergency's reason: the patient side and the médecin traitant of the record, the actor; never
        the auditor (it may say something medical)."""
        return chain in self.full_records or (not self.auditor and self.is_actor_of(trace))


@dataclass(slots=True)
class TracePage:
    total: int
    items: list[TraceView]
    names: labels.Names
    reader: Reader


# ------------------------------------------------------------------ the rules


def _date_condition(f: DateFilter) -> ColumnElement[bool]:
    column = AuditEntry.at
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


def _actor_type_condition(actor_type: str) -> ColumnElement[bool]:
    kinds = labels.ACTOR_KINDS.get(actor_type)
    if kinds is None:
        raise Invalid.at("actorType", f"unknown actor type {actor_type!r}", IssueCode.VALUE)
    if not kinds:
        return sa.false()
    condition = AuditEntry.actor_kind.in_(kinds)
    activation = TraceAction.ACCOUNT_ACTIVATION.value
    if actor_type == labels.ENROLMENT:
        return sa.and_(condition, AuditEntry.action == activation)
    if actor_type == labels.PATIENT:
        return sa.and_(condition, AuditEntry.action != activation)
    return condition


_deposit = aliased(AuditEntry)
_ECHO = sa.and_(
    AuditEntry.action == TraceAction.DOCUMENT_READ.value,
    sa.exists().where(
        _deposit.chain == AuditEntry.chain,
        _deposit.at == AuditEntry.at,
        _deposit.action.in_((TraceAction.DOCUMENT_CREATE.value, TraceAction.DOCUMENT_REPLACE.value)),
        _deposit.resource_id == AuditEntry.resource_id,
        _deposit.actor_key == AuditEntry.actor_key,
    ),
)


def _filters(query: AuditQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [_date_condition(f) for f in query.dates]
    if query.actions is not None:
        where.append(AuditEntry.action.in_(sorted(query.actions)) if query.actions else sa.false())
    if query.professionals:
        where.append(AuditEntry.professional.in_(query.professionals))
    if query.outcomes is not None:
        where.append(AuditEntry.outcome.in_(query.outcomes) if query.outcomes else sa.false())
    if query.actor_types:
        where.append(sa.or_(*(_actor_type_condition(t) for t in query.actor_types)))
    if query.fold_echoes:
        where.append(sa.not_(_ECHO))
    return where


def _records(work: Work, patient_ids: Iterable[str]) -> list[Record]:
    found: dict[uuid.UUID, Record] = {}
    for value in patient_ids:
        try:
            key = uuid.UUID(value)
        except ValueError:
            continue  # not a record id: as unknown
        record = work.session.get(Record, key)
        if record is not None:
            found[record.id] = record
    return list(found.values())


def _reader(work: Work, actor: Actor, records: list[Record]) -> Reader:
    full: set[uuid.UUID] = set()
    scope = records or [
        r
        for r in _records(work, (str(i) for i in (*actor.represented_records, actor.own_record) if i is not None))
        if actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE)
    ]
    for record in scope:
        decision = policy.decide(work, actor, policy.Action.AUDIT_READ, record)
        if decision.permit and decision.basis in ("own-record", "legal-representative", "medecin-traitant"):
            full.add(record.id)
    return Reader(actor, frozenset(full), auditor=actor.kind is ActorKind.AUDITOR)


def _visibility(work: Work, actor: Actor, query: AuditQuery) -> tuple[ColumnElement[bool], list[Record]]:
    """The reader's part of the trail for this query, and the records it names that exist."""
    if not query.patient_ids:
        return policy.audit_visibility(work, actor, None), []
    records = _records(work, query.patient_ids)
    conditions = [policy.audit_visibility(work, actor, record) for record in records]
    return (sa.or_(*conditions) if conditions else sa.false()), records


def _trace_reading(work: Work, actor: Actor, records: list[Record], query: str, detail: str) -> None:
    """Reading traces is traced: one entry per record read (or one in the reader's own chain)."""
    if not records:
        audit.trace(work, TraceAction.AUDIT_READ, actor, query=query, detail=detail)
        return
    for record in records:
        decision = policy.decide(work, actor, policy.Action.AUDIT_READ, record)
        audit.trace(
            work,
            TraceAction.AUDIT_READ,
            actor,
            record=record,
            decision=decision if decision.permit else None,
            outcome=Outcome.SUCCESS if decision.permit else Outcome.DENIED,
            query=query,
            detail=detail if decision.permit else (decision.reasons[0] if decision.reasons else "denied")[:200],
        )


def _select(where: list[ColumnElement[bool]], query: AuditQuery) -> sa.Select[uuid.UUID, int, dt.datetime, bytes, int]:
    order = (
        (AuditEntry.at.asc(), AuditEntry.chain.asc(), AuditEntry.seq.asc())
        if query.ascending
        else (AuditEntry.at.desc(), AuditEntry.chain.desc(), AuditEntry.seq.desc())
    )
    return (
        sa.select(AuditEntry.chain, AuditEntry.seq, AuditEntry.at, AuditEntry.payload, sa.func.count().over())
        .where(*where)
        .order_by(*order)
        .limit(query.count)
        .offset(query.offset)
    )


def search_events(work: Work, *, actor: Actor, query: AuditQuery) -> TracePage:
    """The traces ``actor`` may read that match ``query``, one page (FHIR AuditEvent search)."""
    visible, records = _visibility(work, actor, query)
    where = [visible, *_filters(query)]
    rows = work.session.execute(_select(where, query)).all()
    if rows:
        total = int(rows[0][4])
    elif query.offset or query.count == 0:
        total = work.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(*where)) or 0
    else:
        total = 0
    reader = _reader(work, actor, records)
    _trace_reading(work, actor, records, query.describe(), f"total:{total}")
    items = [
        TraceView(event_id(work, chain, seq), chain, seq, _aware(at), orjson.loads(payload))
        for chain, seq, at, payload, _ in rows
    ]
    items = _with_reasons(work, reader, items)
    return TracePage(total, items, resolve_names(work, items), reader)


def read_event(work: Work, *, actor: Actor, event: str) -> TracePage:
    """One trace by its AuditEvent id; ``NotFound`` when it does not exist or is not the reader's to see."""
    located = parse_event_id(work, event)
    if located is None:
        raise NotFound()
    chain, seq = located
    record = work.session.get(Record, chain)
    visible = policy.audit_visibility(work, actor, record)
    row = work.session.execute(
        sa.select(AuditEntry.chain, AuditEntry.seq, AuditEntry.at, AuditEntry.payload).where(
            AuditEntry.chain == chain, AuditEntry.seq == seq, visible
        )
    ).first()
    if row is None:
        if record is not None and not policy.decide(work, actor, policy.Action.AUDIT_READ, record).permit:
            _trace_reading(work, actor, [record], f"_id={event}", "read")
        raise NotFound()
    records = [record] if record is not None else []
    _trace_reading(work, actor, records, f"_id={event}", "read")
    reader = _reader(work, actor, records)
    items = _with_reasons(work, reader, [TraceView(event, row[0], row[1], _aware(row[2]), orjson.loads(row[3]))])
    return TracePage(1, items, resolve_names(work, items), reader)


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# ------------------------------------------------------------------ the patient's history


@dataclass(slots=True)
class HistoryQuery:
    record_id: str | None = None
    start: dt.datetime | None = None  # inclusive
    end: dt.datetime | None = None  # exclusive
    actor_types: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    ascending: bool = False
    limit: int = 20
    offset: int = 0


def history(work: Work, *, actor: Actor, query: HistoryQuery) -> tuple[Record, TracePage]:
    """The history of one record for its patient or a legal representative (``NotFound`` for anyone else)."""
    if actor.kind not in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
        raise NotFound()
    record_id = query.record_id
    if record_id is None:
        held = [actor.own_record] if actor.own_record else sorted(actor.represented_records, key=str)
        if len(held) != 1:
            raise Invalid.at("record", "name the record (its Patient id): you may read several", IssueCode.REQUIRED)
        record_id = str(held[0])
    records = _records(work, [record_id])
    if not records:
        raise NotFound()
    record = records[0]
    if not policy.decide(work, actor, policy.Action.AUDIT_READ, record).permit:
        _trace_reading(work, actor, [record], f"history record={record.id}", "history")
        raise NotFound()
    for name, values, known in (
        ("actorType", query.actor_types, labels.ACTOR_TYPES),
        ("group", query.groups, labels.GROUPS),
        ("action", query.actions, tuple(a.value for a in TraceAction)),
    ):
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise Invalid.at(name, f"unknown {name} {', '.join(unknown)}; one of {', '.join(known)}", IssueCode.VALUE)
    actions: set[str] | None = set(query.actions) if query.actions else None
    if query.groups:
        grouped = set().union(*(labels.actions_of_group(g) for g in query.groups))
        actions = grouped if actions is None else actions & grouped
    dates = []
    if query.start is not None:
        dates.append(DateFilter("ge", query.start, query.start))
    if query.end is not None:
        dates.append(DateFilter("lt", query.end, query.end))
    search = AuditQuery(
        patient_ids=[str(record.id)],
        dates=dates,
        actions=frozenset(actions) if actions is not None else None,
        actor_types=query.actor_types,
        fold_echoes=True,
        ascending=query.ascending,
        count=query.limit,
        offset=query.offset,
    )
    visible = policy.audit_visibility(work, actor, record)
    where = [visible, *_filters(search)]
    rows = work.session.execute(_select(where, search)).all()
    if rows:
        total = int(rows[0][4])
    elif search.offset or search.count == 0:
        total = work.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(*where)) or 0
    else:
        total = 0
    _trace_reading(work, actor, [record], search.describe(), "history")
    reader = _reader(work, actor, [record])
    items = _with_reasons(
        work,
        reader,
        [
            TraceView(event_id(work, chain, seq), chain, seq, _aware(at), orjson.loads(payload))
            for chain, seq, at, payload, _ in rows
        ],
    )
    return record, TracePage(total, items, resolve_names(work, items), reader)


# ------------------------------------------------------------------ resolved at display time


def resolve_names(work: Work, items: list[TraceView]) -> labels.Names:
    """Names and document types for a page of traces, in a few queries (none stored in the trail)."""
    names = labels.Names()
    idnats: set[str] = set()
    organizations: set[str] = set()
    clients: set[str] = set()
    documents: dict[uuid.UUID, set[str]] = {}
    binaries: dict[uuid.UUID, set[str]] = {}
    for item in items:
        trace = item.trace
        if trace.get("professional"):
            idnats.add(str(trace["professional"]))
        if trace.get("organization"):
            organizations.add(str(trace["organization"]))
        if trace.get("client_id"):
            clients.add(str(trace["client_id"]))
        if item.action in (TraceAction.CONSENT_CREATE.value, TraceAction.CONSENT_REVOKE.value):
            parts = str(trace.get("detail") or "").split()
            if len(parts) > 2:
                idnats.add(parts[2])
                organizations.add(parts[2])
        record_id = item.record_id
        if record_id is not None and trace.get("resource_id"):
            target = documents if trace.get("resource_type") == DOCUMENT else binaries
            if trace.get("resource_type") in (DOCUMENT, BINARY):
                target.setdefault(uuid.UUID(record_id), set()).add(str(trace["resource_id"]))
    if idnats:
        rows = work.session.execute(
            sa.select(Practitioner.idnat_ps, Practitioner.given, Practitioner.family, PractitionerRole.profession_code)
            .outerjoin(PractitionerRole, PractitionerRole.practitioner_id == Practitioner.id)
            .where(Practitioner.idnat_ps.in_(sorted(idnats)))
            .order_by(Practitioner.idnat_ps, PractitionerRole.id)
        ).all()
        for idnat, given, family, profession in rows:
            if idnat not in names.professionals:
                names.professionals[idnat] = (" ".join(p for p in (given, family) if p), profession)
    if organizations:
        names.organizations.update(
            work.session.execute(
                sa.select(Organization.idnat_struct, Organization.name).where(
                    Organization.idnat_struct.in_(sorted(organizations))
                )
            ).all()
        )
    if clients:
        names.clients.update(
            work.session.execute(sa.select(Client.id, Client.name).where(Client.id.in_(sorted(clients)))).all()
        )
    types = terminology().type_codes
    for record_key, ids in documents.items():
        for doc_id, code in work.session.execute(
            sa.select(DocumentEntry.id, DocumentEntry.type_code).where(
                DocumentEntry.record_id == record_key, DocumentEntry.id.in_(sorted(ids))
            )
        ).all():
            coding = types.codes.get(code)
            names.document_types[(DOCUMENT, doc_id)] = (code, coding.display if coding else code)
    for record_key, ids in binaries.items():
        for binary_id, code in work.session.execute(
            sa.select(BinaryEntry.id, DocumentEntry.type_code)
            .join(
                DocumentEntry,
                sa.and_(DocumentEntry.record_id == BinaryEntry.record_id, DocumentEntry.id == BinaryEntry.document_id),
            )
            .where(BinaryEntry.record_id == record_key, BinaryEntry.id.in_(sorted(ids)))
        ).all():
            coding = types.codes.get(code)
            names.document_types[(BINARY, binary_id)] = (code, coding.display if coding else code)
    return names


def _with_reasons(work: Work, reader: Reader, items: list[TraceView]) -> list[TraceView]:
    """Emergency accesses' reasons, decrypted for the readers allowed to see them."""
    wanted = [
        item
        for item in items
        if item.action == TraceAction.EMERGENCY_ACCESS.value
        and item.trace.get("resource_type") == EMERGENCY
        and item.trace.get("resource_id")
        and item.trace.get("reason")
        and reader.sees_reason(item.trace, item.chain)
    ]
    if not wanted:
        return items
    reasons: dict[tuple[uuid.UUID, str], str] = {}
    for item in wanted:
        record = work.session.get(Record, item.chain)
        access_id = str(item.trace["resource_id"])
        ciphertext = work.session.scalar(
            sa.select(EmergencyAccess.reason).where(
                EmergencyAccess.record_id == item.chain, EmergencyAccess.id == access_id
            )
        )
        if record is None or ciphertext is None:
            continue
        if f"sha256:{hashlib.sha256(ciphertext).hexdigest()}" != item.trace.get("reason"):
            continue  # the stored reason is not the one the trace bound: show none
        try:
            plain = work.store.cipher(record).decrypt(
                ciphertext, resource_type=EMERGENCY, resource_id=access_id, version=1
            )
        except DecryptionFailed:
            continue
        reasons[(item.chain, access_id)] = plain.decode()
    return [
        TraceView(i.id, i.chain, i.seq, i.at, i.trace, reasons.get((i.chain, str(i.trace.get("resource_id")))))
        if (i.chain, str(i.trace.get("resource_id"))) in reasons
        else i
        for i in items
    ]
