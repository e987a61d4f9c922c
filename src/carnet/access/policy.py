"""Access decisions: ``decide(work, actor, action, record, doc) → Decision``. The one gate to patient data.

Services call ``require`` (which raises) or ``decide``; searches call ``document_visibility`` so the
same rules filter *inside* SQL and a hidden document never shows in results, totals or paging. The
facts a decision needs about the caller's relationship to the record (authorizations, blocks,
care-team and médecin traitant declarations, emergency accesses) are loaded once per unit of work by
``context_for`` (``access/context.py``).

Reading document D of record R by professional P (reference/dmp.md §3.6):

1. R closed → nothing (the patient keeps their archive rights).
2. P blocked by the patient → nothing but what P deposited.
3. P needs a relationship: médecin traitant or administrator, an authorization (of P or P's
   organisation, not expired), a care-team declaration, or an active emergency access (break-glass or
   regulation, read-only, time-limited, allowed only if the patient did not oppose).
4. Unless médecin traitant or administrator, the habilitation matrix must allow D's type for P's
   profession and specialty (``access/matrix.py``).
5. ``MASQUE_PS`` documents: only their author and the author's organisation, the médecin traitant and
   administrators, and emergency accesses if the patient allowed masked documents in emergencies.
6. The author of a document always keeps access to it (R1111-49). Feeding needs no authorization.

Patients see their record except ``INVISIBLE_PATIENT`` documents; legal representatives also not
``INVISIBLE_REPRESENTANTS_LEGAUX``. The insurer's feed writes reimbursement data and reads nothing;
operators manage records and never read clinical content. Software acting for a professional has the
professional's rights, narrowed to its SMART scopes.

Reading the audit trail (``AUDIT_READ``, R1111-43 CSP): the patient and their legal representatives
read their record's traces (except those of documents hidden from them); the médecin traitant reads
the record's traces; a professional reads the traces of their own actions; the auditor reads every
trace (and no clinical content); nobody else reads any. ``audit_visibility`` is the same rule as a SQL
condition on ``audit_entries``.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement

from carnet import audit
from carnet.access.context import AccessContext, context_for
from carnet.access.matrix import TypeFilter, matrix
from carnet.access.models import GrantKind
from carnet.audit.models import AuditEntry
from carnet.audit.trace import TraceAction
from carnet.auth.actor import AccessMode, Actor, ActorKind
from carnet.documents.models import BinaryEntry, DocumentEntry
from carnet.errors import Forbidden, NotFound
from carnet.records.models import Record
from carnet.runtime import Work
from carnet.terminology.valuesets import CONFIDENTIALITY_FLAGS

MASQUE_PS = CONFIDENTIALITY_FLAGS["MASQUE_PS"]
INVISIBLE_PATIENT = CONFIDENTIALITY_FLAGS["INVISIBLE_PATIENT"]
INVISIBLE_REPRESENTANTS = CONFIDENTIALITY_FLAGS["INVISIBLE_REPRESENTANTS_LEGAUX"]
DELETED = "entered-in-error"

PATIENT_TYPE_PREFIXES = ("DOCPAT", "EXPPAT_")
PATIENT_TYPES = frozenset({"74465-6"})
INSURER_TYPES = frozenset({"REMB"})


class Action(enum.StrEnum):
    RECORD_CREATE = "record.create"
    RECORD_LOOKUP = "record.lookup"  # does a record exist for this INS, and its status (PDSm TD0.2)
    RECORD_READ = "record.read"  # the Patient resource with identity traits
    RECORD_CLOSE = "record.close"
    RECORD_REOPEN = "record.reopen"
    RECORD_ANNOUNCE = "record.announce"  # open a record after an opposition window (the operator, the insurer)
    DOCUMENT_SEARCH = "document.search"
    DOCUMENT_READ = "document.read"
    DOCUMENT_RETRIEVE = "document.retrieve"
    DOCUMENT_CREATE = "document.create"
    DOCUMENT_REPLACE = "document.replace"
    DOCUMENT_MASK = "document.mask"  # add/remove MASQUE_PS
    DOCUMENT_REVEAL = "document.reveal"  # lift INVISIBLE_PATIENT after the announcement
    DOCUMENT_RESTRICT = "document.restrict"  # set INVISIBLE_PATIENT / INVISIBLE_REPRESENTANTS_LEGAUX
    DOCUMENT_DELETE = "document.delete"
    DOCUMENT_ARCHIVE = "document.archive"
    CONSENT_READ = "consent.read"  # see who may access the record, and the patient's preferences
    CONSENT_CHANGE = "consent.change"  # authorize, revoke, block, unblock, emergency and default preferences
    BLOCK_OTHERS = "consent.block"  # block a professional (the patient, or an administrator professional)
    DECLARE = "consent.declare"  # a professional declares consent collected / care team / médecin traitant
    EMERGENCY = "record.emergency"  # a professional opens an emergency access
    DIRECTORY_READ = "directory.read"
    AUDIT_READ = "audit.read"  # read traces: FHIR AuditEvent, the patient's history


# Actions that only read: the only ones an emergency access permits.
READS = frozenset({Action.DOCUMENT_SEARCH, Action.DOCUMENT_READ, Action.DOCUMENT_RETRIEVE, Action.RECORD_READ})
# SMART scope (resource type, permission) each action needs from scope-limited software.
SCOPES: dict[Action, tuple[str, str]] = {
    Action.RECORD_CREATE: ("Patient", "c"),
    Action.RECORD_LOOKUP: ("Patient", "s"),
    Action.RECORD_READ: ("Patient", "r"),
    Action.RECORD_CLOSE: ("Patient", "u"),
    Action.RECORD_REOPEN: ("Patient", "u"),
    Action.RECORD_ANNOUNCE: ("Patient", "c"),
    Action.DOCUMENT_SEARCH: ("DocumentReference", "s"),
    Action.DOCUMENT_READ: ("DocumentReference", "r"),
    Action.DOCUMENT_RETRIEVE: ("Binary", "r"),
    Action.DOCUMENT_CREATE: ("DocumentReference", "c"),
    Action.DOCUMENT_REPLACE: ("DocumentReference", "c"),
    Action.DOCUMENT_MASK: ("DocumentReference", "u"),
    Action.DOCUMENT_REVEAL: ("DocumentReference", "u"),
    Action.DOCUMENT_RESTRICT: ("DocumentReference", "u"),
    Action.DOCUMENT_DELETE: ("DocumentReference", "d"),
    Action.DOCUMENT_ARCHIVE: ("DocumentReference", "u"),
    Action.CONSENT_READ: ("Consent", "r"),
    Action.CONSENT_CHANGE: ("Consent", "u"),
    Action.BLOCK_OTHERS: ("Consent", "c"),
    Action.DECLARE: ("Consent", "c"),
    Action.EMERGENCY: ("Patient", "u"),
    Action.AUDIT_READ: ("AuditEvent", "r"),
}


# The trace of a refused action.
REFUSED_AS: dict[Action, TraceAction] = {
    Action.RECORD_CREATE: TraceAction.RECORD_CREATE,
    Action.RECORD_LOOKUP: TraceAction.RECORD_LOOKUP,
    Action.RECORD_READ: TraceAction.RECORD_READ,
    Action.RECORD_CLOSE: TraceAction.RECORD_CLOSE,
    Action.RECORD_REOPEN: TraceAction.RECORD_REOPEN,
    Action.RECORD_ANNOUNCE: TraceAction.RECORD_ANNOUNCE,
    Action.DOCUMENT_SEARCH: TraceAction.DOCUMENT_SEARCH,
    Action.DOCUMENT_READ: TraceAction.DOCUMENT_READ,
    Action.DOCUMENT_RETRIEVE: TraceAction.DOCUMENT_RETRIEVE,
    Action.DOCUMENT_CREATE: TraceAction.DOCUMENT_CREATE,
    Action.DOCUMENT_REPLACE: TraceAction.DOCUMENT_REPLACE,
    Action.DOCUMENT_MASK: TraceAction.DOCUMENT_UPDATE,
    Action.DOCUMENT_REVEAL: TraceAction.DOCUMENT_UPDATE,
    Action.DOCUMENT_RESTRICT: TraceAction.DOCUMENT_UPDATE,
    Action.DOCUMENT_DELETE: TraceAction.DOCUMENT_DELETE,
    Action.DOCUMENT_ARCHIVE: TraceAction.DOCUMENT_UPDATE,
    Action.CONSENT_READ: TraceAction.CONSENT_READ,
    Action.CONSENT_CHANGE: TraceAction.CONSENT_CREATE,
    Action.BLOCK_OTHERS: TraceAction.CONSENT_CREATE,
    Action.DECLARE: TraceAction.CONSENT_CREATE,
    Action.EMERGENCY: TraceAction.EMERGENCY_ACCESS,
    Action.DIRECTORY_READ: TraceAction.ADMIN,
    Action.AUDIT_READ: TraceAction.AUDIT_READ,
}


@dataclass(frozen=True, slots=True)
class DocumentFacts:
    """What the policy needs to know about a document (from its index entry or its metadata)."""

    type_code: str
    flags: int = 0
    status: str = "current"
    author_key: str = ""
    author_org: str | None = None

    @classmethod
    def of(cls, entry: DocumentEntry) -> DocumentFacts:
        return cls(
            type_code=entry.type_code,
            flags=entry.flags,
            status=entry.status,
            author_key=entry.author_key,
            author_org=entry.author_org,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    permit: bool
    reasons: tuple[str, ...] = ()
    # What a permitted access entails: "audit" always; the access mode of emergencies (carried into
    # traces); "notify-emergency" for emergency reads (the patient and the médecin traitant are told).
    obligations: tuple[str, ...] = ()
    mode: AccessMode = AccessMode.NORMAL
    basis: str = ""

    def __bool__(self) -> bool:
        return self.permit


def _deny(reason: str) -> Decision:
    return Decision(False, (reason,))


def _permit(reason: str, *, basis: str, mode: AccessMode = AccessMode.NORMAL) -> Decision:
    """A permit: ``reason`` in words (for people), ``basis`` as a code (for the audit trail, docs/audit.md)."""
    obligations = ("audit",) if mode is AccessMode.NORMAL else ("audit", f"mode:{mode.value}", "notify-emergency")
    return Decision(True, (reason,), obligations, mode, basis)


def is_patient_document_type(type_code: str) -> bool:
    return type_code in PATIENT_TYPES or type_code.startswith(PATIENT_TYPE_PREFIXES)


def has_scope(actor: Actor, action: Action) -> bool:
    """Whether scope-limited software was granted what ``action`` needs (SMART v1 and v2 scopes)."""
    if actor.scopes is None:
        return True
    needed = SCOPES.get(action)
    if needed is None:
        return True
    resource, permission = needed
    for scope in actor.scopes:
        context, _, rest = scope.partition("/")
        if context not in ("system", "user"):
            continue
        kind, _, perms = rest.partition(".")
        if kind not in (resource, "*"):
            continue
        if perms in ("*", "write" if permission in "cud" else "read") or (
            perms and set(perms) <= set("cruds") and permission in perms
        ):
            return True
    return False


def _hidden_from(actor: Actor, record: Record) -> int:
    """The confidentiality bits that hide a document of ``record`` from this person.

    The same account is the patient for their own record and a legal representative for a child's.
    """
    if record.id == actor.own_record:
        return INVISIBLE_PATIENT
    return INVISIBLE_PATIENT | INVISIBLE_REPRESENTANTS


def _person(actor: Actor, action: Action, record: Record, doc: DocumentFacts | None) -> Decision:
    """Patient or legal representative acting on a record they hold."""
    if not actor.may_act_for(record.id):
        return _deny("not the patient of this record nor a legal representative")
    if action in (Action.RECORD_LOOKUP, Action.RECORD_READ, Action.CONSENT_READ):
        return _permit("own record", basis="own-record")
    if action in (Action.RECORD_CLOSE, Action.RECORD_REOPEN):
        return _permit("holder decides on their record", basis="own-record")
    if not record.is_active and action not in (Action.DOCUMENT_SEARCH, Action.DOCUMENT_READ, Action.DOCUMENT_RETRIEVE):
        return _deny("the record is closed")
    if action in (Action.CONSENT_CHANGE, Action.BLOCK_OTHERS):
        return _permit("holder decides who accesses their record", basis="own-record")
    if action is Action.DOCUMENT_SEARCH:
        return _permit("own record", basis="own-record")
    if doc is None:
        return _deny(f"{action.value} is not open to patients")
    if doc.flags & _hidden_from(actor, record):
        return _deny("document not visible to the patient side")
    if action in (Action.DOCUMENT_READ, Action.DOCUMENT_RETRIEVE, Action.DOCUMENT_MASK):
        return _permit("own record", basis="own-record")
    if action is Action.DOCUMENT_CREATE:
        if is_patient_document_type(doc.type_code):
            return _permit("patient document", basis="own-record")
        return _deny("patients deposit patient-expression documents (DOCPAT*, EXPPAT_*) only")
    if action in (Action.DOCUMENT_DELETE, Action.DOCUMENT_REPLACE):
        if actor.author_key == doc.author_key:
            return _permit("own upload", basis="author")
        return _deny("only the author of a document may delete or replace it")
    return _deny(f"{action.value} is not open to patients")


def _can_read_document(actor: Actor, ctx: AccessContext, doc: DocumentFacts) -> Decision:
    assert actor.professional is not None
    is_author = actor.author_key == doc.author_key
    same_org = actor.organization_idnat is not None and actor.organization_idnat == doc.author_org
    if is_author:
        return _permit("author of the document", basis="author")
    if ctx.blocked:
        return _deny("blocked by the patient")
    if not ctx.has_relationship:
        return _deny("no authorization, care-team consent or emergency access for this record")
    if not ctx.privileged and not matrix(ctx.matrix_path).allows(
        actor.professional.profession, actor.professional.specialty, doc.type_code
    ):
        return _deny("the habilitation matrix does not open this document type to this profession")
    if doc.flags & MASQUE_PS and not (same_org or ctx.privileged):
        if ctx.emergency is None or not ctx.record.emergency_masked:
            return _deny("document masked from professionals")
        # Only the emergency access opens a masked document: the access is in its mode (traced, read-only),
        # even for a professional the patient authorized for the rest of the record.
        return _permit(ctx.emergency.value, mode=AccessMode(ctx.emergency.value), basis=ctx.emergency.value)
    return _permit(ctx.basis, mode=ctx.mode, basis=ctx.basis)


def _professional(actor: Actor, action: Action, ctx: AccessContext, doc: DocumentFacts | None) -> Decision:
    record = ctx.record
    if action is Action.RECORD_CREATE:
        return _permit("professional attesting the patient's consent", basis="consent-attestation")
    if action is Action.RECORD_LOOKUP:
        return _permit("professional (record status)", basis="record-status")
    if action in (Action.RECORD_CLOSE, Action.RECORD_REOPEN, Action.CONSENT_CHANGE):
        return _deny("only the patient (or the operator) decides this")
    if not record.is_active:
        return _deny("the record is closed")
    if action is Action.EMERGENCY:
        return (
            _deny("blocked by the patient")
            if ctx.blocked
            else _permit("emergency requested", basis="emergency-request")
        )
    if action is Action.DECLARE:
        return (
            _deny("blocked by the patient") if ctx.blocked else _permit("professional declaration", basis="declaration")
        )
    if action is Action.BLOCK_OTHERS:
        return (
            _permit("administrator professional", basis="administrator")
            if ctx.administrator
            else _deny("only the patient or an administrator blocks")
        )
    if action is Action.CONSENT_READ:
        if ctx.blocked or not ctx.has_relationship:
            return _deny("no relationship with this record")
        return _permit(ctx.basis, mode=ctx.mode, basis=ctx.basis)
    if action in (Action.RECORD_READ, Action.DOCUMENT_SEARCH):
        if ctx.has_relationship and not ctx.blocked:
            return _permit(ctx.basis, mode=ctx.mode, basis=ctx.basis)
        # Without a relationship (or blocked), a professional still finds what they deposited themselves.
        return (
            _permit("own deposits only", basis="author")
            if action is Action.DOCUMENT_SEARCH
            else _deny("no relationship")
        )
    if doc is None:
        return _deny("no document")
    if action is Action.DOCUMENT_CREATE:
        return _deny("blocked by the patient") if ctx.blocked else _permit("feeding the record", basis="deposit")
    read = _can_read_document(actor, ctx, doc)
    if action in (Action.DOCUMENT_READ, Action.DOCUMENT_RETRIEVE):
        return read
    if not read.permit:
        return read
    if read.mode is not AccessMode.NORMAL and actor.author_key != doc.author_key:
        return _deny("emergency access is read-only")
    is_author = actor.author_key == doc.author_key
    same_org = actor.organization_idnat is not None and actor.organization_idnat == doc.author_org
    if action in (Action.DOCUMENT_REPLACE, Action.DOCUMENT_ARCHIVE):
        if is_author or same_org:
            return _permit("author or author's organisation", basis="author-organisation")
        return _deny("only the author or the author's organisation may do this")
    if action in (Action.DOCUMENT_DELETE, Action.DOCUMENT_REVEAL, Action.DOCUMENT_RESTRICT, Action.DOCUMENT_MASK):
        if is_author:
            return _permit("author", basis="author")
        return _deny("only the author of a document may do this")
    return _deny(f"{action.value} is not open to professionals")


def decide(
    work: Work, actor: Actor, action: Action, record: Record | None, doc: DocumentFacts | None = None
) -> Decision:
    """Decide whether ``actor`` may perform ``action`` on ``record`` (and ``doc``)."""
    if action is Action.DIRECTORY_READ:
        return _permit("directory is public to authenticated callers", basis="directory")
    if actor.kind is ActorKind.SYSTEM:
        return _permit("system", basis="system")
    if not has_scope(actor, action):
        return _deny(f"the software was not granted the scope {action.value} needs")
    if action is Action.AUDIT_READ:
        return _audit_reader(work, actor, record)
    if record is None:
        creators = (ActorKind.PROFESSIONAL, ActorKind.SOFTWARE, ActorKind.OPERATOR)
        if action is Action.RECORD_CREATE and actor.kind in creators:
            return _permit("record creation", basis="record-creation")
        if action is Action.RECORD_ANNOUNCE and actor.kind in (ActorKind.OPERATOR, ActorKind.INSURER):
            return _permit("the operator or the insurer announces a record", basis="announcement")
        return _deny("no record")
    if doc is not None and doc.status == DELETED:
        return _deny("deleted document")
    # An announced record is only a status until it opens: nobody reads or feeds it; its holder (or the
    # operator for them) may object, which closes it (RECORD_CLOSE). A destroyed one is only a status.
    if (record.is_announced and action not in (Action.RECORD_LOOKUP, Action.RECORD_CLOSE)) or (
        record.is_destroyed and action is not Action.RECORD_LOOKUP
    ):
        return _deny("the record is not open yet" if record.is_announced else "the record's content was destroyed")
    if actor.kind is ActorKind.OPERATOR:
        if action in (Action.RECORD_CREATE, Action.RECORD_LOOKUP, Action.RECORD_CLOSE, Action.RECORD_REOPEN):
            return _permit("operator manages records", basis="operator")
        return _deny("operators never read or write clinical content")
    if actor.kind is ActorKind.INSURER:
        if action is Action.RECORD_LOOKUP:
            return _permit("the insurer's feed checks that a record exists before feeding it", basis="insurer-feed")
        if action is Action.DOCUMENT_CREATE and record.is_active and doc is not None and doc.type_code in INSURER_TYPES:
            return _permit("insurer feed", basis="insurer-feed")
        return _deny("the insurer's feed deposits reimbursement data only and reads nothing")
    if actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
        return _person(actor, action, record, doc)
    if actor.acts_as_professional:
        return _professional(actor, action, context_for(work, actor, record), doc)
    return _deny("unknown actor")


def require(
    work: Work,
    actor: Actor,
    action: Action,
    record: Record | None,
    doc: DocumentFacts | None = None,
    *,
    visible: bool = False,
) -> Decision:
    """``decide`` or raise. ``visible`` says the caller already knows the resource exists.

    A caller who may not know the resource exists gets ``NotFound``, exactly as if it did not;
    one who can see it but may not act on it gets ``Forbidden`` with the reason.
    """
    decision = decide(work, actor, action, record, doc)
    if decision.permit:
        return decision
    if record is not None:
        # A refusal about an existing record is traced (written after the unit rolls back).
        audit.trace(
            work,
            REFUSED_AS[action],
            actor,
            record=record,
            outcome=audit.Outcome.DENIED,
            detail=(decision.reasons[0] if decision.reasons else "denied")[:200],
        )
    if visible:
        raise Forbidden(decision.reasons[0] if decision.reasons else "forbidden")
    raise NotFound()


def _type_among(postgresql: bool, codes: tuple[str, ...]) -> ColumnElement[bool]:
    """``type_code IN codes``; on PostgreSQL one array parameter, so the statement text stays the same
    whatever the number of codes and the driver prepares it once."""
    if postgresql:
        return DocumentEntry.type_code == sa.any_(sa.bindparam("matrix_types", list(codes), type_=ARRAY(sa.String)))
    return DocumentEntry.type_code.in_(codes)


@functools.lru_cache(maxsize=4096)
def _professional_visibility(
    postgresql: bool,
    author_key: str,
    types: TypeFilter | None,
    organization: str | None,
    masked_hidden: bool,
) -> ColumnElement[bool]:
    """The SQL filter of a professional with a relationship to the record. Expressions are immutable and
    cost more to build than to run, so each combination is built once per process (the values are
    bound parameters: statements stay cached by SQLAlchemy and prepared by the driver)."""
    own = DocumentEntry.author_key == author_key
    conditions: list[ColumnElement[bool]] = []
    if types is not None:
        if types.include:
            conditions.append(_type_among(postgresql, types.codes) if types.codes else sa.false())
        elif types.codes:
            conditions.append(sa.not_(_type_among(postgresql, types.codes)))
    if masked_hidden:
        unmasked = [DocumentEntry.flags.op("&")(MASQUE_PS) == 0]
        if organization:
            unmasked.append(DocumentEntry.author_org == organization)
        conditions.append(sa.or_(*unmasked))
    return sa.and_(_NOT_DELETED, sa.or_(own, sa.and_(*conditions) if conditions else sa.true()))


@functools.lru_cache(maxsize=4096)
def _own_only(author_key: str) -> ColumnElement[bool]:
    return sa.and_(_NOT_DELETED, DocumentEntry.author_key == author_key)


@functools.lru_cache(maxsize=8)
def _person_visibility(hidden_flags: int) -> ColumnElement[bool]:
    return sa.and_(_NOT_DELETED, DocumentEntry.flags.op("&")(hidden_flags) == 0)


_NOT_DELETED = DocumentEntry.status != DELETED


def document_visibility(work: Work, actor: Actor, record: Record) -> ColumnElement[bool]:
    """SQL condition on ``DocumentEntry`` selecting exactly the documents ``actor`` may read.

    Agrees with ``decide(work, actor, DOCUMENT_READ, record, doc)`` for every document; a property
    test checks that it does.
    """
    if actor.kind is ActorKind.SYSTEM:
        return _NOT_DELETED
    if not has_scope(actor, Action.DOCUMENT_READ) or record.is_announced or record.is_destroyed:
        return sa.false()
    if actor.kind in (ActorKind.OPERATOR, ActorKind.INSURER):
        return sa.false()
    if actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
        if not actor.may_act_for(record.id):
            return sa.false()
        return _person_visibility(_hidden_from(actor, record))
    if not actor.acts_as_professional or actor.professional is None:
        return sa.false()
    ctx = context_for(work, actor, record)
    if not record.is_active:
        return sa.false()
    if ctx.blocked or not ctx.has_relationship:
        return _own_only(actor.author_key)
    types = (
        None
        if ctx.privileged
        else matrix(ctx.matrix_path).type_filter(actor.professional.profession, actor.professional.specialty)
    )
    return _professional_visibility(
        work.session.get_bind().dialect.name == "postgresql",
        actor.author_key,
        types,
        actor.organization_idnat,
        not (ctx.privileged or (ctx.emergency is not None and record.emergency_masked)),
    )


# --------------------------------------------------------------------------------------- the audit trail

AUDITOR_BASIS = "auditor"
OWN_ACTIONS_BASIS = "own-actions"


def _audit_reader(work: Work, actor: Actor, record: Record | None) -> Decision:
    """Who reads traces (R1111-43): of ``record``, or (``record`` None) across the records they may read.

    The basis says how much: ``auditor`` (everything), ``own-record`` / ``legal-representative`` (the
    record, except traces of documents hidden from them), ``medecin-traitant`` (the record), ``own-actions``
    (only the traces of what this professional did).
    """
    if actor.kind is ActorKind.AUDITOR:
        return _permit("auditor", basis=AUDITOR_BASIS)
    if actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
        if record is None:
            if actor.own_record is None and not actor.represented_records:
                return _deny("no record to read traces of")
            return _permit("own records", basis="own-record")
        if not actor.may_act_for(record.id):
            return _deny("not the patient of this record nor a legal representative")
        basis = "own-record" if record.id == actor.own_record else "legal-representative"
        return _permit(basis, basis=basis)
    if actor.acts_as_professional:
        if record is not None and record.is_active:
            ctx = context_for(work, actor, record)
            if not ctx.blocked and GrantKind.MEDECIN_TRAITANT.value in ctx.kinds:
                return _permit("médecin traitant", basis=GrantKind.MEDECIN_TRAITANT.value)
        return _permit("traces of the professional's own actions", basis=OWN_ACTIONS_BASIS)
    return _deny("operators, insurers and software without a professional read no traces")


def _hidden_person_bits(actor: Actor, record_id: object) -> int:
    return INVISIBLE_PATIENT if record_id == actor.own_record else INVISIBLE_PATIENT | INVISIBLE_REPRESENTANTS


def _traces_of_hidden_documents(record_id: object, hidden: int) -> ColumnElement[bool]:
    """Traces of the record's documents (and their bytes) that carry one of the ``hidden`` flags."""
    documents = sa.select(DocumentEntry.id).where(
        DocumentEntry.record_id == record_id, DocumentEntry.flags.op("&")(hidden) != 0
    )
    binaries = (
        sa.select(BinaryEntry.id)
        .join(
            DocumentEntry,
            sa.and_(DocumentEntry.record_id == BinaryEntry.record_id, DocumentEntry.id == BinaryEntry.document_id),
        )
        .where(BinaryEntry.record_id == record_id, DocumentEntry.flags.op("&")(hidden) != 0)
    )
    kind = sa.func.coalesce(AuditEntry.resource_type, "")
    ident = sa.func.coalesce(AuditEntry.resource_id, "")
    return sa.or_(
        sa.and_(kind == "DocumentReference", ident.in_(documents)),
        sa.and_(kind == "Binary", ident.in_(binaries)),
    )


def audit_visibility(work: Work, actor: Actor, record: Record | None) -> ColumnElement[bool]:
    """SQL condition on ``AuditEntry`` selecting exactly the traces ``actor`` may read (of ``record``, or of
    everything they may read when ``record`` is None). Agrees with ``decide(…, AUDIT_READ, …)``."""
    scope: ColumnElement[bool] = AuditEntry.chain == record.id if record is not None else sa.true()
    if actor.kind is ActorKind.SYSTEM:
        return scope
    decision = decide(work, actor, Action.AUDIT_READ, record)
    if not decision.permit:
        return sa.false()
    if decision.basis in (AUDITOR_BASIS, GrantKind.MEDECIN_TRAITANT.value):
        return scope
    if actor.kind in (ActorKind.PATIENT, ActorKind.REPRESENTATIVE):
        records = (
            [record.id]
            if record is not None
            else sorted({*actor.represented_records, *([actor.own_record] if actor.own_record else [])}, key=str)
        )
        return sa.or_(
            *(
                sa.and_(
                    AuditEntry.chain == rid,
                    sa.not_(_traces_of_hidden_documents(rid, _hidden_person_bits(actor, rid))),
                )
                for rid in records
            )
        )
    assert actor.professional is not None
    return sa.and_(scope, AuditEntry.professional == actor.professional.idnat)
