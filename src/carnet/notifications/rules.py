"""Which traces notify whom (reference/dmp.md §4). Called by the unit of work, in its transaction.

Contract with ``carnet.runtime`` (do not change the signatures without changing the runtime):

* ``NotificationRules.pending(traces)`` — cheap, in memory, no database: may any of these traces
  notify someone? The runtime calls it after a read-only unit of work; when it says no, the traces
  are written alone (one round trip), when yes, the traces and ``apply`` share one transaction.
* ``NotificationRules.apply(work, traces)`` — in the unit of work's transaction: evaluate the rules
  and write the outbox rows (so a notification exists if and only if its cause committed).

The rules (only successful actions on a record count; the actor is never told of their own action):

=====================================  =========================================  ==========================
trace                                  notice                                     to
=====================================  =========================================  ==========================
a professional's first successful      ``professional-first-access``              patient, representatives
access to the record (any action but
a lookup by INS), once per IdNat_PS
``emergency.access``                   ``emergency-access`` (cannot be turned     patient, representatives,
                                       off)                                       the médecin traitant
``document.create`` / ``.replace`` by  ``document-added`` / ``-replaced``         patient, representatives
anyone but the patient                 (documents the recipient may not see —     who may see the document
                                       INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS
                                       _LEGAUX — are neither counted nor told)
``document.update`` lifting an         ``document-added``, for those who could    patient, representatives
invisibility flag                      not see the document and now can
``consent.create`` / ``.revoke``       ``consent-changed`` (authorizations,       patient, representatives
                                       blocks, emergency preferences …)
``record.create``                      ``record-created``                         patient, representatives
                                                                                  (without an account yet: the
                                                                                  Patient resource's e-mail or
                                                                                  mobile)
``record.close``                       ``record-closed``                          patient, representatives
``record.open`` (an announced record   ``record-opened``                          patient, representatives
opened: its opposition window ended)                                              (without an account yet: the
                                                                                  Patient resource's e-mail or
                                                                                  mobile)
=====================================  =========================================  ==========================

An announced record's information (``record-announced``, with the provisional code) and the receipt of
an objection (``record-opposed``) are staged by ``carnet.notifications.lifecycle``, called by the
lifecycle service: the first carries a secret, which traces never hold, the second must be staged before
the objection destroys the contacts it goes to.

One unit of work gives one notice per (record, kind, actor): a bundle of three documents is one
"three new documents" notice. A professional's first access that is itself a notified action (opening
the record, a deposit, an emergency access, a declaration) is told by that notice only.

First accesses are remembered in ``professional_accesses`` (written here, ``ON CONFLICT DO NOTHING``:
of two concurrent first accesses, one notifies) and, once committed, in a bounded per-process cache that
lets ``pending`` answer "no" for the reads of professionals already known, without a query.
"""

from __future__ import annotations

import collections
import functools
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from carnet.access.models import AccessGrant, GrantKind
from carnet.accounts.models import Account, Representation
from carnet.audit.trace import Outcome, Trace, TraceAction
from carnet.config import Settings
from carnet.documents.models import DocumentEntry
from carnet.notifications import outbox, preferences
from carnet.notifications.kinds import TOPIC_OF, Channel, Kind, Language, Role
from carnet.notifications.models import NotificationPreference, ProfessionalAccess
from carnet.records.models import Record
from carnet.terminology.valuesets import CONFIDENTIALITY_FLAGS

if TYPE_CHECKING:  # the runtime imports this module
    from carnet.runtime import Work

PROFESSIONAL_ACTORS = frozenset({"professional", "software"})
# Finding out that a record exists (PDQm lookup by INS) is not opening it.
NOT_AN_ACCESS = frozenset({TraceAction.RECORD_LOOKUP})
NOTIFYING = {
    TraceAction.EMERGENCY_ACCESS: Kind.EMERGENCY_ACCESS,
    TraceAction.DOCUMENT_CREATE: Kind.DOCUMENT_ADDED,
    TraceAction.DOCUMENT_REPLACE: Kind.DOCUMENT_REPLACED,
    TraceAction.CONSENT_CREATE: Kind.CONSENT_CHANGED,
    TraceAction.CONSENT_REVOKE: Kind.CONSENT_CHANGED,
    TraceAction.RECORD_CREATE: Kind.RECORD_CREATED,
    TraceAction.RECORD_CLOSE: Kind.RECORD_CLOSED,
    TraceAction.RECORD_OPEN: Kind.RECORD_OPENED,
}
# Notices that go to the Patient resource's contacts while the patient has no account.
TO_PATIENT_CONTACTS = frozenset({Kind.RECORD_CREATED, Kind.RECORD_OPENED})
DOCUMENT_KINDS = frozenset({Kind.DOCUMENT_ADDED, Kind.DOCUMENT_REPLACED})
INVISIBLE_PATIENT = CONFIDENTIALITY_FLAGS["INVISIBLE_PATIENT"]  # DocumentEntry.flags
INVISIBLE_REPRESENTATIVES = CONFIDENTIALITY_FLAGS["INVISIBLE_REPRESENTANTS_LEGAUX"]
# A PATCH that lifts one of these (document.update, detail "-INVISIBLE_PATIENT" …) shows a document to
# people who could not see it: for them, it is new.
LIFTED = ("-INVISIBLE_PATIENT", "-INVISIBLE_REPRESENTANTS_LEGAUX")
CONSENT_KINDS = frozenset(
    {
        "authorization",
        "block",
        "administrator",
        "care-team",
        "medecin-traitant",
        "emergency-regulation",
        "emergency-break-glass",
        "emergency-masked",
        "default-confidentiality",
    }
)
# The directory's practitioners, with the secure e-mail (MSSanté) column this feature's migration adds.
_practitioners = sa.table("practitioners", sa.column("idnat_ps", sa.String()), sa.column("email", sa.String()))
_AFTER_COMMIT = "carnet.notifications.known_after_commit"


# ---------------------------------------------------------------------------------------- known accesses
class KnownAccesses:
    """A bounded, thread-safe LRU set of (record, IdNat_PS) pairs known to have accessed (committed)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(record_id: uuid.UUID, professional: str) -> bytes:
        return record_id.bytes + professional.encode()

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            if key in self._keys:
                self._keys.move_to_end(key)
                return True
            return False

    def add(self, keys: Iterable[bytes]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            for key in keys:
                self._keys[key] = None
                self._keys.move_to_end(key)
            while len(self._keys) > self.size:
                self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)


@sa.event.listens_for(Session, "after_commit")
def _remember_after_commit(session: Session) -> None:
    for cache, keys in session.info.pop(_AFTER_COMMIT, ()):
        cache.add(keys)


@sa.event.listens_for(Session, "after_soft_rollback")
def _forget_after_rollback(session: Session, previous_transaction: object) -> None:
    session.info.pop(_AFTER_COMMIT, None)


# ---------------------------------------------------------------------------------------- events
@dataclass
class _Event:
    record_id: uuid.UUID
    kind: Kind
    at: Any
    actor_kind: str
    actor_key: str
    professional: str | None
    params: dict[str, Any] = field(default_factory=dict)
    # Document ids, each with the invisibility flags a PATCH lifted (none: a new deposit).
    documents: list[tuple[str, frozenset[str]]] = field(default_factory=list)


def _is_professional_access(trace: Trace) -> bool:
    return (
        trace.professional is not None and trace.actor_kind in PROFESSIONAL_ACTORS and trace.action not in NOT_AN_ACCESS
    )


def _counts(trace: Trace) -> bool:
    return trace.outcome is Outcome.SUCCESS and trace.record_id is not None


def _lifted(trace: Trace) -> frozenset[str]:
    """The invisibility flags a document PATCH lifted."""
    if trace.action is not TraceAction.DOCUMENT_UPDATE:
        return frozenset()
    return frozenset(code[1:] for code in (trace.detail or "").split() if code in LIFTED)


def _kind_of(trace: Trace) -> Kind | None:
    if trace.action is TraceAction.DOCUMENT_UPDATE:
        return Kind.DOCUMENT_ADDED if _lifted(trace) else None
    return NOTIFYING.get(trace.action)


def _consent_kind(trace: Trace) -> str | None:
    first = (trace.detail or "").split(" ", 1)[0]
    return first if first in CONSENT_KINDS else None


def _actor_word(actor_kind: str) -> str:
    """Who acted, as the templates say it (never a name)."""
    if actor_kind in PROFESSIONAL_ACTORS:
        return "professional"
    if actor_kind in ("insurer", "patient", "legal-representative"):
        return "representative" if actor_kind == "legal-representative" else actor_kind
    return "operator"


@dataclass(frozen=True, slots=True)
class _Person:
    """An account told about a record's events, with its preferences."""

    account_id: uuid.UUID
    record_id: uuid.UUID
    role: Role
    prefs: preferences.Preferences

    @property
    def key(self) -> str:
        return f"account:{self.account_id}"


class NotificationRules:
    """The notification rules of one process (built once by the runtime)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.known = KnownAccesses(settings.notify_known_access_cache)

    # ------------------------------------------------------------------ the contract
    def remember_access(self, record_id: uuid.UUID, professional: str) -> None:
        """A committed access of ``professional`` to the record was seen (by the statement that loaded it)."""
        self.known.add((KnownAccesses.key(record_id, professional),))

    def pending(self, traces: Sequence[Trace]) -> bool:
        for trace in traces:
            if not _counts(trace):
                continue
            if _kind_of(trace) is not None:
                return True
            if _is_professional_access(trace):
                assert trace.record_id is not None and trace.professional is not None
                if KnownAccesses.key(trace.record_id, trace.professional) not in self.known:
                    return True
        return False

    def apply(self, work: Work, traces: Sequence[Trace]) -> None:
        counted = [t for t in traces if _counts(t)]
        if not counted:
            return
        events = self._events(counted)
        for record_id, professional, trace in self._first_accesses(work, counted):
            told = any(e.record_id == record_id and e.professional == professional for e in events.values())
            if not told:
                events[(record_id, Kind.PROFESSIONAL_FIRST_ACCESS, trace.actor_key)] = _Event(
                    record_id=record_id,
                    kind=Kind.PROFESSIONAL_FIRST_ACCESS,
                    at=trace.at,
                    actor_kind=trace.actor_kind,
                    actor_key=trace.actor_key,
                    professional=professional,
                    params={"actor": _actor_word(trace.actor_kind)},
                )
        if events:
            self._notify(work, list(events.values()))
        work.store.flush()

    # ------------------------------------------------------------------ rules
    def _events(self, traces: Sequence[Trace]) -> dict[tuple[uuid.UUID, Kind, str], _Event]:
        events: dict[tuple[uuid.UUID, Kind, str], _Event] = {}
        for trace in traces:
            kind = _kind_of(trace)
            if kind is None:
                continue
            assert trace.record_id is not None
            group = (trace.record_id, kind, trace.actor_key)
            if kind is Kind.CONSENT_CHANGED:  # one notice per decision: each says what changed
                group = (trace.record_id, kind, f"{trace.actor_key}|{trace.resource_id}|{trace.action}")
            event = events.get(group)
            if event is None:
                event = events[group] = _Event(
                    record_id=trace.record_id,
                    kind=kind,
                    at=trace.at,
                    actor_kind=trace.actor_kind,
                    actor_key=trace.actor_key,
                    professional=trace.professional,
                    params={"actor": _actor_word(trace.actor_kind)},
                )
            if kind is Kind.EMERGENCY_ACCESS:
                event.params["mode"] = trace.access_mode or "break-glass"
            elif kind is Kind.CONSENT_CHANGED:
                event.params["consent"] = _consent_kind(trace)
                event.params["change"] = "revoke" if trace.action is TraceAction.CONSENT_REVOKE else "create"
            elif kind in DOCUMENT_KINDS and trace.resource_id:
                event.documents.append((trace.resource_id, _lifted(trace)))
        return events

    def _first_accesses(self, work: Work, traces: Sequence[Trace]) -> list[tuple[uuid.UUID, str, Trace]]:
        """Write the (record, professional) pairs seen for the first time; return those that were new."""
        candidates: dict[tuple[uuid.UUID, str], Trace] = {}
        for trace in traces:
            if not _is_professional_access(trace):
                continue
            assert trace.record_id is not None and trace.professional is not None
            pair = (trace.record_id, trace.professional)
            if pair not in candidates and KnownAccesses.key(*pair) not in self.known:
                candidates[pair] = trace
        if not candidates:
            return []
        # Sorted: concurrent units insert in the same order, so they wait for each other, never deadlock.
        rows = [
            {
                "record_id": record_id,
                "professional": professional,
                "first_at": trace.at,
                "action": trace.action.value,
                "access_mode": trace.access_mode,
            }
            for (record_id, professional), trace in sorted(
                candidates.items(), key=lambda item: (str(item[0][0]), item[0][1])
            )
        ]
        insert = postgresql.insert if work.session.get_bind().dialect.name == "postgresql" else sqlite.insert
        statement = (
            insert(ProfessionalAccess)
            .values(rows)
            .on_conflict_do_nothing()
            .returning(ProfessionalAccess.record_id, ProfessionalAccess.professional)
        )
        inserted = {(row.record_id, row.professional) for row in work.session.execute(statement)}
        # Pairs already there were committed by an earlier unit: remember them at once. The new ones
        # only once this unit commits (a rollback must not leave them "known").
        self.known.add(KnownAccesses.key(*pair) for pair in candidates.keys() - inserted)
        work.session.info.setdefault(_AFTER_COMMIT, []).append(
            (self.known, [KnownAccesses.key(*pair) for pair in inserted])
        )
        return [(pair[0], pair[1], candidates[pair]) for pair in sorted(inserted, key=lambda p: (str(p[0]), p[1]))]

    # ------------------------------------------------------------------ recipients
    def _notify(self, work: Work, events: list[_Event]) -> None:
        record_ids = sorted({e.record_id for e in events}, key=str)
        people = _people(work, record_ids)
        documents = _document_flags(work, [e for e in events if e.kind in DOCUMENT_KINDS])
        emergencies = sorted({e.record_id for e in events if e.kind is Kind.EMERGENCY_ACCESS}, key=str)
        doctors = _medecins_traitants(work, emergencies) if emergencies else {}
        for event in sorted(events, key=lambda e: (str(e.record_id), e.kind.value, e.actor_key)):
            persons = [p for p in people if p.record_id == event.record_id]
            holder = next((p for p in persons if p.role is Role.HOLDER), None)
            if event.kind in DOCUMENT_KINDS:
                if holder is not None and holder.key == event.actor_key:
                    continue  # the patient's own deposit
                event.params["count"], event.params["count_representative"] = _visible_counts(event, documents)
            if event.params.get("actor") == "patient" and (holder is None or holder.key != event.actor_key):
                event.params["actor"] = "representative"  # a patient's account acting for someone they represent
            recipients = [self._recipient(event, person) for person in persons]
            if event.kind is Kind.EMERGENCY_ACCESS:
                recipients.extend(
                    _doctor(idnat, email, event)
                    for idnat, email in doctors.get(event.record_id, [])
                    if idnat != event.professional and f"pro:{idnat}" != event.actor_key
                )
            if event.kind in TO_PATIENT_CONTACTS and holder is None:
                recipients.append(patient_contacts(work, event.record_id))
            outbox.enqueue(
                work,
                record_id=event.record_id,
                kind=event.kind,
                occurred_at=event.at,
                actor_kind=event.actor_kind,
                professional=event.professional,
                params={k: v for k, v in event.params.items() if v is not None},
                recipients=[r for r in recipients if r is not None],
            )

    def _recipient(self, event: _Event, person: _Person) -> outbox.Recipient | None:
        if person.key == event.actor_key:
            return None  # never told of one's own action
        if event.kind in DOCUMENT_KINDS:
            count_key = "count" if person.role is Role.HOLDER else "count_representative"
            if not event.params.get(count_key):
                return None  # documents this person may not see (yet)
        channels = person.prefs.channels(TOPIC_OF[event.kind])
        if not channels:
            return None
        return outbox.Recipient(
            key=person.key,
            role=person.role,
            language=person.prefs.language,
            in_app=Channel.IN_APP in channels,
            email=person.prefs.email if Channel.EMAIL in channels else None,
            phone=person.prefs.phone if Channel.SMS in channels else None,
        )


def _doctor(idnat: str, email: str | None, event: _Event) -> outbox.Recipient:
    """The médecin traitant, told of an emergency access in their notification centre and, when the
    directory knows their secure (MSSanté) address, by e-mail."""
    return outbox.Recipient(
        key=f"pro:{idnat}", role=Role.MEDECIN_TRAITANT, language=Language.FR, in_app=True, email=email or None
    )


@functools.cache
def _people_statement() -> sa.CompoundSelect[Any]:
    """Built once: the active accounts of some records' patients and legal representatives, with their
    preferences (the records are an expanding parameter, ``record_ids``)."""
    pref = NotificationPreference
    columns = (pref.language, pref.email, pref.phone, pref.email_channel, pref.sms_channel, pref.topics_off)
    record_ids: sa.BindParameter[Any] = sa.bindparam("record_ids", expanding=True)
    holders = (
        sa.select(Account.id, Account.record_id, sa.literal(Role.HOLDER.value).label("role"), *columns)
        .outerjoin(pref, pref.account_id == Account.id)
        .where(Account.record_id.in_(record_ids), Account.active.is_(True))
    )
    representatives = (
        sa.select(Account.id, Representation.record_id, sa.literal(Role.REPRESENTATIVE.value).label("role"), *columns)
        .join(Account, Account.id == Representation.account_id)
        .outerjoin(pref, pref.account_id == Account.id)
        .where(Representation.record_id.in_(record_ids), Account.active.is_(True))
    )
    return sa.union_all(holders, representatives)


def _people(work: Work, record_ids: list[uuid.UUID]) -> list[_Person]:
    """The active accounts of the records' patients and legal representatives, with their preferences."""
    people = []
    rows: Sequence[Any] = work.session.execute(_people_statement(), {"record_ids": record_ids}).all()
    for row in rows:
        prefs = preferences.from_values(
            work.settings,
            row[0],
            language=row.language,
            email=row.email,
            phone=row.phone,
            email_channel=row.email_channel,
            sms_channel=row.sms_channel,
            topics_off=row.topics_off,
        )
        people.append(_Person(account_id=row[0], record_id=row[1], role=Role(row.role), prefs=prefs))
    return sorted(people, key=lambda p: (p.role.value, str(p.account_id)))


def _visible_counts(event: _Event, flags_of: dict[tuple[uuid.UUID, str], int]) -> tuple[int, int]:
    """How many of the event's documents are new to the patient, and to their representatives: visible to
    them now and, for a PATCH, hidden from them before."""
    holder = representatives = 0
    for doc_id, lifted in event.documents:
        flags = flags_of.get((event.record_id, doc_id), 0)
        seen_by_holder = not flags & INVISIBLE_PATIENT
        seen_by_representatives = seen_by_holder and not flags & INVISIBLE_REPRESENTATIVES
        if not lifted:  # a deposit
            holder += seen_by_holder
            representatives += seen_by_representatives
            continue
        holder += seen_by_holder and "INVISIBLE_PATIENT" in lifted
        representatives += seen_by_representatives
    return holder, representatives


def _document_flags(work: Work, events: list[_Event]) -> dict[tuple[uuid.UUID, str], int]:
    wanted = sorted({(e.record_id, d) for e in events for d, _ in e.documents}, key=lambda k: (str(k[0]), k[1]))
    if not wanted:
        return {}
    rows = work.session.execute(_FLAGS_STATEMENT, {"wanted": wanted})
    return {(row.record_id, row.id): int(row.flags) for row in rows}


# Built once: the flags of some documents, named by (record, id) pairs (an expanding parameter).
_FLAGS_STATEMENT = sa.select(DocumentEntry.record_id, DocumentEntry.id, DocumentEntry.flags).where(
    sa.tuple_(DocumentEntry.record_id, DocumentEntry.id).in_(sa.bindparam("wanted", expanding=True))
)


def _medecins_traitants(work: Work, record_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[tuple[str, str | None]]]:
    """The active médecin traitant of each record (IdNat_PS) and their directory e-mail, if any."""
    now = work.now
    rows = work.session.execute(
        sa.select(AccessGrant.record_id, AccessGrant.subject_value, _practitioners.c.email)
        .outerjoin(_practitioners, _practitioners.c.idnat_ps == AccessGrant.subject_value)
        .where(
            AccessGrant.record_id.in_(record_ids),
            AccessGrant.kind == GrantKind.MEDECIN_TRAITANT.value,
            AccessGrant.active.is_(True),
            AccessGrant.start <= now,
            sa.or_(AccessGrant.end.is_(None), AccessGrant.end > now),
        )
    )
    found: dict[uuid.UUID, list[tuple[str, str | None]]] = {}
    for row in rows:
        doctors = found.setdefault(row.record_id, [])
        if any(known == row.subject_value for known, _ in doctors):
            continue  # declared more than once: one doctor all the same
        email = preferences.normalise_email(row.email) if row.email else None
        doctors.append((row.subject_value, email))
    return found


def patient_contacts(work: Work, record_id: uuid.UUID) -> outbox.Recipient | None:
    """Before the patient has an account, the record's opening is told to the e-mail address (else the
    mobile number) of the Patient resource, in the language it prefers."""
    record = work.session.get(Record, record_id)
    stored = work.store.current(record, "Patient", str(record_id)) if record is not None else None
    if stored is None:
        return None
    patient = orjson.loads(stored.body)
    email = phone = None
    for telecom in patient.get("telecom") or []:
        system, value = telecom.get("system"), str(telecom.get("value") or "")
        if system == "email" and email is None:
            email = preferences.normalise_email(value)
        elif (system == "sms" or (system == "phone" and telecom.get("use") == "mobile")) and phone is None:
            phone = preferences.normalise_phone(value)
    if email is None and phone is None:
        return None
    language = Language.FR
    for communication in patient.get("communication") or []:
        codes = [str(c.get("code", "")) for c in (communication.get("language") or {}).get("coding") or []]
        if communication.get("preferred") and any(code.lower().startswith("en") for code in codes):
            language = Language.EN
    return outbox.Recipient(
        key=f"patient:{record_id}",
        role=Role.HOLDER,
        language=language,
        in_app=False,
        email=email,
        phone=None if email else phone,
    )
