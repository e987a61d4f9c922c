"""What the audit trail records: one ``Trace`` per traced action, built by services, written by the unit of work.

A ``Trace`` holds identifiers and codes only (no names, no medical content): who (the actor's kind and
key, their IdNat_PS, profession, specialty and organisation, the software's client id), on whose behalf,
what (record, resource, version), how (interface, access mode and basis), when, from where (the
request's address and id) and the outcome. Names are resolved when traces are displayed.

Services add traces with ``carnet.audit.trace(work, ...)``; ``Runtime`` writes them, chained per record,
in the same transaction as the change, and before a read's content leaves the unit of work ("no audit,
no access"). The notification rules (``carnet.notifications``) read the same traces.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import enum
import uuid
from dataclasses import dataclass, field


class TraceAction(enum.StrEnum):
    """What happened (the code stored in the trail; French labels live in ``carnet.audit.labels``)."""

    RECORD_CREATE = "record.create"
    RECORD_LOOKUP = "record.lookup"
    RECORD_READ = "record.read"
    RECORD_CLOSE = "record.close"
    RECORD_REOPEN = "record.reopen"
    # The record's lifecycle (carnet.records.lifecycle): announced (the opposition window opens), opened
    # (window elapsed, or the patient activated their account), objected to (closed, content destroyed),
    # destroyed (end of retention, or an express request).
    RECORD_ANNOUNCE = "record.announce"
    RECORD_OPEN = "record.open"
    RECORD_OPPOSE = "record.oppose"
    RECORD_PURGE = "record.purge"
    DOCUMENT_SEARCH = "document.search"  # the query itself
    DOCUMENT_READ = "document.read"  # one per DocumentReference returned (by a read or a search)
    DOCUMENT_RETRIEVE = "document.retrieve"  # the bytes (ITI-68)
    DOCUMENT_CREATE = "document.create"
    DOCUMENT_REPLACE = "document.replace"
    DOCUMENT_UPDATE = "document.update"  # PATCH: status, masking, visibility, archiving
    DOCUMENT_DELETE = "document.delete"
    LIST_SEARCH = "list.search"
    LIST_READ = "list.read"
    CONSENT_CREATE = "consent.create"
    CONSENT_REVOKE = "consent.revoke"
    CONSENT_READ = "consent.read"
    EMERGENCY_ACCESS = "emergency.access"  # a break-glass or regulation access opened, with its reason
    AUDIT_READ = "audit.read"  # someone read traces
    LOGIN = "auth.login"
    LOGIN_FAILURE = "auth.login-failure"
    LOGOUT = "auth.logout"
    ACCOUNT_ACTIVATION = "auth.activation"
    PASSWORD_RESET = "auth.password-reset"  # noqa: S105 - an action code
    TOKEN_ISSUED = "auth.token"  # noqa: S105 - software (SMART) or a professional (OIDC) obtained a token
    EXPORT = "record.export"
    ADMIN = "admin"  # operator and command-line actions (directory import, client registration, codes …)


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    DENIED = "denied"  # refused by the access policy (stored; the caller saw "not found" or "forbidden")
    FAILURE = "failure"  # failed authentication


class Interface(enum.StrEnum):
    FHIR = "fhir"
    PORTAL = "portal"
    AUTH = "auth"
    CLI = "cli"
    WORKER = "worker"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """Where a unit of work comes from; set per request by the app's middleware."""

    interface: Interface = Interface.INTERNAL
    source: str | None = None  # the client's address (behind a trusted proxy: the forwarded one)
    request_id: str | None = None


NO_REQUEST = RequestInfo()
CURRENT_REQUEST: contextvars.ContextVar[RequestInfo] = contextvars.ContextVar("carnet_request", default=NO_REQUEST)


@dataclass(frozen=True, slots=True)
class Trace:
    action: TraceAction
    at: dt.datetime
    actor_kind: str  # ActorKind value
    actor_key: str  # pro:<IdNat_PS>, account:<uuid>, client:<id>, system, or a hash for an unknown login
    outcome: Outcome = Outcome.SUCCESS
    record_id: uuid.UUID | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    resource_version: int | None = None
    # The professional behind the action (their own, or the one software acts for).
    professional: str | None = None  # IdNat_PS
    profession: str | None = None  # TRE_G15
    specialty: str | None = None  # TRE_R01
    organization: str | None = None  # IdNat_Struct
    client_id: str | None = None  # the software
    on_behalf_of: str | None = None  # account:<uuid> of the represented patient, pro:<IdNat> for software
    access_mode: str | None = None  # normal | break-glass | regulation
    basis: str | None = None  # medecin-traitant, authorization, care-team, own-record, author …
    # An emergency's reason, as the digest of its ciphertext (the text may be medical: it stays encrypted
    # in the record, in ``emergency_accesses``); an administrative action's description.
    reason: str | None = None
    query: str | None = None  # a search's parameters (codes and ids only)
    detail: str | None = None  # a short machine code: the change made, the refusal reason
    interface: Interface = Interface.INTERNAL
    source: str | None = None
    request_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
