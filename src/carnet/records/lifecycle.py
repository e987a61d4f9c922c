"""A record's life (reference/dmp.md §1, §5; docs/records.md): announcement and opposition window,
opening, objection, closure and archive, destruction.

::

     announce (operator, insurer: CLI, POST /fhir/Patient/$announce)
        │ info_sent_at; the patient is told how to object, with a provisional code
        ▼
     opposition_pending ── objection (code, or signed in, or the operator) ──► closed, OPPOSITION,
        │                                                                    content destroyed
        │ window elapsed (the worker's job) · the patient activates their space · a professional
        ▼ attests their consent
     active ──── close ────► closed (archived) ── retention elapsed (the worker's job, or
        ▲                        │                 `carnet record purge-due --apply`) ──► deleted
        └── reopen (within ──────┘                 (and an express request: `carnet record purge`)
            the retention)

* **Nobody reads or feeds an announced record** (the policy, ``access/policy.py``): the record is
  created "at the end of the window" (R1111-28), so until then professionals, the insurer's feed and
  the patient see only its status; a deposit is refused like one on a closed record.
* **Objection** closes the record with reason ``OPPOSITION`` and destroys its content at once: every
  patient-owned row (resources, documents, lists, blobs, search tokens, grants, emergency accesses,
  notifications, codes) and the wrapped data key (crypto-shredding: ``wrapped_key`` becomes empty,
  ``key_destroyed_at`` says when). What proves the objection stays: this row (the keyed hash of the INS,
  so the operator cannot announce the person again, ``info_sent_at``, ``closed_at``, the reason) and the
  audit trail (the announcement and the objection, which hold no content). A professional attesting the
  patient's consent later opens a new, empty record on the same row (a new data key).
* **Retention**: a closed record is kept ``CARNET_RECORD_RETENTION_YEARS`` from its closure and may be
  reopened until then; after, a job destroys it the same way and marks it ``deleted``, the keyed hash of
  the INS replaced by random bytes (the person may have a record again). The audit trail is not touched:
  its entries hold identifiers and codes only, and a chain that loses entries fails ``carnet audit
  verify`` by design — the destruction is itself an entry of the chain.

The jobs (``run_due_jobs``) are idempotent and safe with several workers: each record is opened or
destroyed in its own transaction, with its row locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite
has one writer) and its state checked again.
"""

from __future__ import annotations

import copy
import datetime as dt
import secrets
import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from carnet import audit
from carnet.access import Action, require
from carnet.access.models import AccessGrant, EmergencyAccess
from carnet.accounts.models import Account, Credential, LoginSession, OneTimeCode, Representation
from carnet.audit.trace import TraceAction
from carnet.auth import patients
from carnet.auth.actor import SYSTEM_ACTOR, Actor, ActorKind
from carnet.config import Settings
from carnet.consents import service as consents
from carnet.db import Base, utcnow
from carnet.documents.models import BinaryEntry, DocumentEntry, ListEntry, ListMember
from carnet.errors import Conflict, NotFound
from carnet.fhirtypes import EXT_CONSENT_ATTESTED, JSON, remove_extension
from carnet.identifiers import IdentityStatus
from carnet.logging import log
from carnet.notifications import lifecycle as notices
from carnet.notifications.models import (
    DeliveryStatus,
    InboxNotification,
    NotificationDelivery,
    NotificationEvent,
    NotificationPreference,
    ProfessionalAccess,
)
from carnet.records import periods
from carnet.records.lookup import get_record
from carnet.records.models import ClosureReason, Record, RecordStatus
from carnet.records.service import PATIENT, _rewrite_status, _stamp, validated_identity
from carnet.runtime import Runtime, Work
from carnet.storage.blobs import FilesystemBlobStore
from carnet.storage.models import ResourceLocator, ResourceVersion, SearchToken

# Every table holding a record's own rows (the patient partition), children first. The audit trail is
# not among them (see the module docstring), nor ``records`` itself.
CONTENT_TABLES: tuple[type[Base], ...] = (
    SearchToken,
    ListMember,
    ListEntry,
    BinaryEntry,
    DocumentEntry,
    ResourceVersion,
    ResourceLocator,
    AccessGrant,
    EmergencyAccess,
    ProfessionalAccess,
    InboxNotification,
    NotificationDelivery,
    NotificationEvent,
    OneTimeCode,
)
# How long after an objection its receipt's delivery rows (a sealed address) are kept, at most.
RECEIPT_DAYS = 30
# Consenting actors: a professional (or their software) attesting the patient's consent.
CONSENTING = (ActorKind.PROFESSIONAL, ActorKind.SOFTWARE)


@dataclass(frozen=True, slots=True)
class Announcement:
    record: Record
    code: str  # the provisional code as the patient types it (ABCDE-FGHJK)
    code_expires_at: dt.datetime
    opens_at: dt.datetime
    notified: bool  # an e-mail or SMS carrying the code was staged (else: send a letter)


@dataclass(frozen=True, slots=True)
class Due:
    """A record a job would open or destroy."""

    record_id: uuid.UUID
    since: dt.datetime  # info_sent_at (to open) or closed_at (to destroy)
    due_at: dt.datetime
    reason: str | None = None


@dataclass
class JobReport:
    opened: list[uuid.UUID] = field(default_factory=list)
    purged: list[uuid.UUID] = field(default_factory=list)
    failed: int = 0
    receipts_tidied: int = 0


# ---------------------------------------------------------------------------------------- status
def describe(settings: Settings, record: Record) -> dict[str, object]:
    """A record's lifecycle as the operator sees it (no identity, no content)."""

    def iso(value: dt.datetime | None) -> str | None:
        return value.isoformat(timespec="seconds") if value is not None else None

    return {
        "record": str(record.id),
        "status": record.status,
        "created": iso(record.created_at),
        "infoSent": iso(record.info_sent_at),
        "opensAt": iso(periods.opens_at(settings, record)),
        "opened": iso(record.opened_at),
        "closed": iso(record.closed_at),
        "closureReason": record.closure_reason,
        "retentionEnds": iso(periods.retention_ends(settings, record))
        if record.status == RecordStatus.CLOSED.value
        else None,
        "keyDestroyed": iso(record.key_destroyed_at),
    }


def _existing(record: Record, settings: Settings) -> str:
    """Why a record cannot be announced (or opened) again for an INS that has one."""
    if record.is_announced:
        opens = periods.opens_at(settings, record)
        return f"a record is already announced for this INS: it opens on {opens.date() if opens else '?'}"
    if record.closure_reason == ClosureReason.OPPOSITION.value and record.is_destroyed:
        closed = record.closed_at.date() if record.closed_at else "?"
        return (
            f"the patient objected to their record on {closed}: a record opens again only with their consent, "
            "attested by a professional"
        )
    return "a record already exists for this INS"


# ---------------------------------------------------------------------------------------- announce
def announce_record(work: Work, *, actor: Actor, patient: JSON) -> Announcement:
    """Announce a record for the patient ``patient`` describes: it opens when the opposition window ends
    (``CARNET_RECORD_OPPOSITION_DAYS`` after now), unless the patient objects.

    The Patient resource is stored (encrypted, as for an open record: it proves the identity of whoever
    objects and gives the addresses to inform). The patient is sent the information with a provisional
    code (one-time, valid through the window and ``CARNET_ACTIVATION_CODE_DAYS`` more) to object with, or
    to activate their space; the code is also returned, for a letter when the resource gives no address.
    """
    require(work, actor, Action.RECORD_ANNOUNCE, None)
    ins, status = validated_identity(work, patient)
    ins_hash = work.store.indexer.ins(ins.value)
    existing = work.session.scalar(sa.select(Record).where(Record.ins_hash == ins_hash))
    if existing is not None:
        raise Conflict(_existing(existing, work.settings))
    record_id = uuid.uuid4()
    wrapped = work.store.new_record_key(record_id)
    record = Record(
        id=record_id,
        ins_hash=ins_hash,
        ins_kind=ins.kind.value,
        identity_status=status.value,
        status=RecordStatus.OPPOSITION_PENDING.value,
        created_at=work.now,
        updated_at=work.now,
        info_sent_at=work.now,
        kek_id=wrapped.kek_id,
        wrapped_key=wrapped.wrapped,
        patient_version=1,
    )
    work.session.add(record)
    work.store.flush()
    resource = copy.deepcopy(patient)
    remove_extension(resource, EXT_CONSENT_ATTESTED)
    resource.pop("text", None)
    work.store.put(record, PATIENT, str(record.id), 1, _stamp(resource, record, 1, work), work.now)
    work.store.flush()
    days = work.settings.record_opposition_days
    audit.trace(
        work,
        TraceAction.RECORD_ANNOUNCE,
        actor,
        record=record,
        resource_type=PATIENT,
        resource_id=str(record.id),
        version=1,
        detail=f"window:{days}d",
    )
    opens = periods.opens_at(work.settings, record)
    assert opens is not None
    issued = patients.issue_activation_code(
        work, record_id=record.id, ttl=dt.timedelta(days=days + work.settings.activation_code_days)
    )
    code = patients.format_code(issued.code)
    event = notices.announce(work, record=record, code=code, opens_at=opens, actor_kind=actor.kind.value)
    return Announcement(record, code, issued.expires_at, opens, notified=event is not None)


# ---------------------------------------------------------------------------------------- open
def open_record(work: Work, *, actor: Actor, record: Record, detail: str) -> Record:
    """Open an announced record now (``detail``: window-elapsed, activation, consent). The patient is told
    (``record-opened``), unless they opened it themselves."""
    if not record.is_announced:
        raise Conflict("the record is not in its opposition window")
    record.status = RecordStatus.ACTIVE.value
    record.opened_at = work.now
    _rewrite_status(work, record)
    audit.trace(
        work,
        TraceAction.RECORD_OPEN,
        actor,
        record=record,
        resource_type=PATIENT,
        resource_id=str(record.id),
        version=record.patient_version,
        detail=detail,
    )
    return record


def open_existing(work: Work, *, actor: Actor, record: Record, patient: JSON, status: IdentityStatus) -> Record:
    """``POST /fhir/Patient`` for an INS that has a record (``records.service.create_record``).

    A professional attesting the patient's consent opens an announced record at once, and starts a record
    the patient objected to again (empty, with a new data key); anyone else is told the record exists.
    """
    if actor.kind not in CONSENTING:
        raise Conflict(_existing(record, work.settings))
    if record.is_announced:
        open_record(work, actor=actor, record=record, detail="consent")
    elif record.status == RecordStatus.CLOSED.value and record.closure_reason == ClosureReason.OPPOSITION.value:
        if not record.is_destroyed:  # pragma: no cover - an objection always destroys the content
            raise Conflict(_existing(record, work.settings))
        _refound(work, actor=actor, record=record, patient=patient, status=status)
    else:
        raise Conflict(_existing(record, work.settings))
    if actor.professional is not None:
        # As for a new record: the professional who opens it with the patient's consent joins the care team.
        consents.create(
            work,
            actor=actor,
            resource=consents.declaration(consents.Kind.CARE_TEAM, str(record.id), actor.professional.idnat),
        )
    return record


def _refound(work: Work, *, actor: Actor, record: Record, patient: JSON, status: IdentityStatus) -> None:
    """A new record on the row of one the patient objected to: new data key, the Patient as given now."""
    wrapped = work.store.new_record_key(record.id)
    record.kek_id, record.wrapped_key = wrapped.kek_id, wrapped.wrapped
    record.key_destroyed_at = None
    record.status = RecordStatus.ACTIVE.value
    record.identity_status = status.value
    record.closed_at = record.closure_reason = record.info_sent_at = None
    record.opened_at = record.updated_at = work.now
    record.emergency_regulation = record.emergency_break_glass = True
    record.emergency_masked = record.default_masked = False
    record.patient_version += 1  # FHIR versions go on: the earlier ones were destroyed with the key
    resource = copy.deepcopy(patient)
    remove_extension(resource, EXT_CONSENT_ATTESTED)
    resource.pop("text", None)
    version = record.patient_version
    work.store.put(record, PATIENT, str(record.id), version, _stamp(resource, record, version, work), work.now)
    work.store.flush()
    audit.trace(
        work,
        TraceAction.RECORD_CREATE,
        actor,
        record=record,
        resource_type=PATIENT,
        resource_id=str(record.id),
        version=version,
        detail="after-opposition",
    )


# ---------------------------------------------------------------------------------------- object
def object_to_record(work: Work, *, actor: Actor, patient_id: str) -> Record:
    """Object to an announced record (the signed-in holder or a legal representative, or the operator
    recording an objection received otherwise, e.g. by phone). See ``oppose``."""
    record = get_record(work, patient_id)
    if record is None:
        raise NotFound()
    require(work, actor, Action.RECORD_LOOKUP, record)
    if record.closure_reason == ClosureReason.OPPOSITION.value and record.is_destroyed:
        raise Conflict("the objection to this record is already recorded")
    require(work, actor, Action.RECORD_CLOSE, record, visible=True)
    return oppose(work, actor=actor, record=record)


def oppose(work: Work, *, actor: Actor, record: Record) -> Record:
    """Close an announced record with reason OPPOSITION and destroy its content and data key; send the
    receipt to the patient's addresses (read before they are destroyed)."""
    work.session.refresh(record, with_for_update=True)
    if not record.is_announced:
        raise Conflict("the opposition window has ended: the record is open, its holder may close it ($close)")
    recipients = notices.opposition_recipients(work, record)
    record.status = RecordStatus.CLOSED.value
    record.closed_at = record.updated_at = work.now
    record.closure_reason = ClosureReason.OPPOSITION.value
    destroy_content(work, record)
    audit.trace(
        work,
        TraceAction.RECORD_OPPOSE,
        actor,
        record=record,
        resource_type=PATIENT,
        resource_id=str(record.id),
        detail=ClosureReason.OPPOSITION.value,
    )
    notices.stage_opposition(work, record=record, recipients=recipients, actor_kind=actor.kind.value)
    log.info("record_opposed", record=str(record.id))
    return record


# ---------------------------------------------------------------------------------------- destroy
def destroy_content(work: Work, record: Record) -> None:
    """Crypto-shredding: delete every row the record owns and its blobs, and destroy its data key.

    The ``records`` row and the audit trail remain. Accounts lose their link to the record (a holder's
    account with nothing else to represent is disabled, its credentials, sessions and preferences deleted).
    """
    work.store.flush()  # pending changes first: the deletes below must see (and win over) them
    session = work.session
    for model in CONTENT_TABLES:
        column = model.record_id  # type: ignore[attr-defined]
        session.execute(sa.delete(model).where(column == record.id))
    _delete_blobs(work, record.id)
    _release_accounts(session, record.id)
    record.wrapped_key = b""
    if record.key_destroyed_at is None:
        record.key_destroyed_at = work.now
    record.updated_at = work.now
    session.flush()


def _delete_blobs(work: Work, record_id: uuid.UUID) -> None:
    """Database blobs go with the transaction; files only once it committed (a rollback keeps them)."""
    blobs = work.store.blobs
    session = work.session
    if not isinstance(blobs, FilesystemBlobStore):
        blobs.delete_record(session, record_id)
        return

    def after_commit(committed: Session) -> None:
        try:
            blobs.delete_record(committed, record_id)
        except OSError:  # the key is gone: the files are unreadable anyway; logged for the operator
            log.warning("record_blobs_not_deleted", record=str(record_id))

    sa.event.listen(session, "after_commit", after_commit, once=True)


def _release_accounts(session: Session, record_id: uuid.UUID) -> None:
    session.execute(sa.delete(Representation).where(Representation.record_id == record_id))
    holder = session.scalar(sa.select(Account).where(Account.record_id == record_id))
    if holder is None:
        return
    holder.record_id = None
    session.flush()
    if session.scalar(sa.select(Representation.record_id).where(Representation.account_id == holder.id).limit(1)):
        return  # they still represent someone: the account stays theirs
    holder.active = False
    for model in (Credential, LoginSession, NotificationPreference, OneTimeCode):
        session.execute(sa.delete(model).where(model.account_id == holder.id))


def purge_record(work: Work, *, actor: Actor, record: Record, detail: str) -> Record:
    """Destroy a closed record (its retention ended: ``detail`` retention; or an express request of its
    holder: request). Only the row, marked ``deleted``, and the audit trail remain."""
    work.session.refresh(record, with_for_update=True)
    if record.status == RecordStatus.DELETED.value:
        raise Conflict("the record is already destroyed")
    if record.status != RecordStatus.CLOSED.value:
        raise Conflict("only a closed record is destroyed: close it first")
    destroy_content(work, record)
    record.status = RecordStatus.DELETED.value
    record.ins_hash = secrets.token_bytes(32)  # unlinkable: the INS may key a new record
    audit.trace(
        work,
        TraceAction.RECORD_PURGE,
        actor,
        record=record,
        resource_type=PATIENT,
        resource_id=str(record.id),
        detail=detail,
    )
    log.info("record_purged", record=str(record.id), detail=detail)
    return record


# ---------------------------------------------------------------------------------------- jobs
def due_to_open(runtime: Runtime, *, now: dt.datetime, limit: int) -> list[Due]:
    cutoff = periods.window_cutoff(runtime.settings, now)
    days = dt.timedelta(days=runtime.settings.record_opposition_days)
    with runtime.read_sessions() as session:
        rows = session.execute(
            sa.select(Record.id, Record.info_sent_at)
            .where(Record.status == RecordStatus.OPPOSITION_PENDING.value, Record.info_sent_at <= cutoff)
            .order_by(Record.info_sent_at, Record.id)
            .limit(limit)
        ).all()
    return [Due(row.id, row.info_sent_at, row.info_sent_at + days) for row in rows]


def due_to_purge(runtime: Runtime, *, now: dt.datetime, limit: int) -> list[Due]:
    cutoff = periods.retention_cutoff(runtime.settings, now)
    years = runtime.settings.record_retention_years
    with runtime.read_sessions() as session:
        rows = session.execute(
            sa.select(Record.id, Record.closed_at, Record.closure_reason)
            .where(Record.status == RecordStatus.CLOSED.value, Record.closed_at <= cutoff)
            .order_by(Record.closed_at, Record.id)
            .limit(limit)
        ).all()
    return [Due(row.id, row.closed_at, periods.add_years(row.closed_at, years), row.closure_reason) for row in rows]


def due_counts(runtime: Runtime, *, now: dt.datetime) -> tuple[int, int]:
    """How many records are due to open, and to be destroyed, at ``now``."""
    settings = runtime.settings
    with runtime.read_sessions() as session:
        to_open = session.scalar(
            sa.select(sa.func.count())
            .select_from(Record)
            .where(
                Record.status == RecordStatus.OPPOSITION_PENDING.value,
                Record.info_sent_at <= periods.window_cutoff(settings, now),
            )
        )
        to_purge = session.scalar(
            sa.select(sa.func.count())
            .select_from(Record)
            .where(
                Record.status == RecordStatus.CLOSED.value,
                Record.closed_at <= periods.retention_cutoff(settings, now),
            )
        )
    return int(to_open or 0), int(to_purge or 0)


def _locked(work: Work, record_id: uuid.UUID, status: RecordStatus) -> Record | None:
    return work.session.scalar(
        sa.select(Record).where(Record.id == record_id, Record.status == status.value).with_for_update(skip_locked=True)
    )


def open_due(runtime: Runtime, *, now: dt.datetime, limit: int | None = None) -> JobReport:
    """Open every announced record whose window ended by ``now`` (up to ``limit``, default
    ``CARNET_RECORD_JOBS_BATCH``), each in its own transaction, traced and told to the patient."""
    report = JobReport()
    for due in due_to_open(runtime, now=now, limit=limit or runtime.settings.record_jobs_batch):
        try:
            with runtime.work() as work:
                work.now = now
                record = _locked(work, due.record_id, RecordStatus.OPPOSITION_PENDING)
                opens = periods.opens_at(work.settings, record) if record is not None else None
                if record is None or opens is None or opens > now:
                    continue  # objected to, opened or taken by another worker meanwhile
                open_record(work, actor=SYSTEM_ACTOR, record=record, detail="window-elapsed")
            report.opened.append(due.record_id)
        except Exception as exc:  # one record's failure must not stop the others
            report.failed += 1
            log.error("record_open_failed", record=str(due.record_id), error=type(exc).__name__)
    return report


def purge_due(
    runtime: Runtime, *, now: dt.datetime, limit: int | None = None, actor: Actor = SYSTEM_ACTOR
) -> JobReport:
    """Destroy every closed record whose retention ended by ``now`` (up to ``limit``), each in its own
    transaction, traced."""
    report = JobReport()
    for due in due_to_purge(runtime, now=now, limit=limit or runtime.settings.record_jobs_batch):
        try:
            with runtime.work() as work:
                work.now = now
                record = _locked(work, due.record_id, RecordStatus.CLOSED)
                ends = periods.retention_ends(work.settings, record) if record is not None else None
                if record is None or ends is None or ends > now:
                    continue  # reopened or taken by another worker meanwhile
                purge_record(work, actor=actor, record=record, detail="retention")
            report.purged.append(due.record_id)
        except Exception as exc:
            report.failed += 1
            log.error("record_purge_failed", record=str(due.record_id), error=type(exc).__name__)
    return report


def tidy_receipts(runtime: Runtime, *, now: dt.datetime) -> int:
    """Delete what is left of recent objections' receipts once sent (or dead-lettered): their delivery rows
    hold a sealed address, which proves nothing the record's row and trail do not."""
    recent = sa.select(Record.id).where(
        Record.status == RecordStatus.CLOSED.value,
        Record.closed_at >= now - dt.timedelta(days=RECEIPT_DAYS),
        Record.closure_reason == ClosureReason.OPPOSITION.value,
        Record.key_destroyed_at.is_not(None),
    )
    done = (DeliveryStatus.DELIVERED.value, DeliveryStatus.DEAD.value)
    with runtime.work() as work:
        session = work.session
        result = session.execute(
            sa.delete(NotificationDelivery).where(
                NotificationDelivery.record_id.in_(recent), NotificationDelivery.status.in_(done)
            )
        )
        undelivered = sa.exists().where(
            NotificationDelivery.record_id == NotificationEvent.record_id,
            NotificationDelivery.event_id == NotificationEvent.id,
        )
        session.execute(
            sa.delete(NotificationEvent).where(NotificationEvent.record_id.in_(recent), ~undelivered),
            execution_options={"synchronize_session": False},
        )
    return int(getattr(result, "rowcount", 0) or 0)


def run_due_jobs(runtime: Runtime, now: dt.datetime | None = None) -> JobReport:
    """The worker's lifecycle pass: open what is due, destroy what is due (``CARNET_RECORD_AUTO_PURGE``),
    tidy recent objections' receipts. Each part's failure is logged and the next part still runs."""
    now = now or utcnow()
    report = open_due(runtime, now=now)
    if runtime.settings.record_auto_purge:
        purged = purge_due(runtime, now=now)
        report.purged, report.failed = purged.purged, report.failed + purged.failed
    try:
        report.receipts_tidied = tidy_receipts(runtime, now=now)
    except Exception as exc:
        log.error("record_receipts_not_tidied", error=type(exc).__name__)
    if report.opened or report.purged or report.failed:
        log.info("record_jobs", opened=len(report.opened), purged=len(report.purged), failed=report.failed)
    return report
