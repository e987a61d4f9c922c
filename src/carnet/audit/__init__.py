"""The audit trail: every access and change is traced, chained per record, before anything is returned.

Services call ``trace(work, action, actor, ...)``; the unit of work (``carnet.runtime``) writes the
traces with ``writer.write`` in the same transaction as a change, or right after a read and before its
content leaves the unit ("no audit, no access"). Refusals by the access policy are traced too
(``access.require``), in their own transaction since the refused unit rolls back.
"""

from __future__ import annotations

import getpass
import os
import uuid
from typing import TYPE_CHECKING

from carnet.audit.trace import CURRENT_REQUEST, Interface, Outcome, RequestInfo, Trace, TraceAction
from carnet.auth.actor import Actor, ActorKind

if TYPE_CHECKING:
    from carnet.access.policy import Decision
    from carnet.records.models import Record
    from carnet.runtime import Work

__all__ = [
    "CURRENT_REQUEST",
    "Interface",
    "Outcome",
    "RequestInfo",
    "Trace",
    "TraceAction",
    "administrative",
    "operator",
    "trace",
]


def _on_behalf_of(actor: Actor, record_id: uuid.UUID | None) -> str | None:
    if actor.kind is ActorKind.SOFTWARE and actor.professional is not None:
        return f"pro:{actor.professional.idnat}"
    if actor.kind is ActorKind.REPRESENTATIVE and record_id is not None:
        return f"record:{record_id}"
    return None


def make(
    work: Work,
    action: TraceAction,
    actor: Actor,
    *,
    record: Record | uuid.UUID | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    version: int | None = None,
    decision: Decision | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    reason: str | None = None,
    query: str | None = None,
    detail: str | None = None,
    access_mode: str | None = None,
) -> Trace:
    """A trace of ``action`` by ``actor``, stamped with the unit's time and the current request."""
    record_id = record if isinstance(record, uuid.UUID) or record is None else record.id
    professional = actor.professional
    request = CURRENT_REQUEST.get()
    return Trace(
        action=action,
        at=work.now,
        actor_kind=actor.kind.value,
        actor_key=actor.key,
        outcome=outcome,
        record_id=record_id,
        resource_type=resource_type,
        resource_id=resource_id,
        resource_version=version,
        professional=professional.idnat if professional else None,
        profession=professional.profession if professional else None,
        specialty=professional.specialty if professional else None,
        organization=professional.organization_idnat if professional else None,
        client_id=actor.client_id,
        on_behalf_of=_on_behalf_of(actor, record_id),
        access_mode=access_mode or (decision.mode.value if decision is not None else None),
        basis=(decision.basis or None) if decision is not None else None,
        reason=reason,
        query=query,
        detail=detail,
        interface=request.interface,
        source=request.source,
        request_id=request.request_id,
    )


def trace(
    work: Work,
    action: TraceAction,
    actor: Actor,
    *,
    record: Record | uuid.UUID | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    version: int | None = None,
    decision: Decision | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    reason: str | None = None,
    query: str | None = None,
    detail: str | None = None,
    access_mode: str | None = None,
) -> Trace:
    """Record that ``actor`` did ``action`` (written when the unit of work ends)."""
    entry = make(
        work,
        action,
        actor,
        record=record,
        resource_type=resource_type,
        resource_id=resource_id,
        version=version,
        decision=decision,
        outcome=outcome,
        reason=reason,
        query=query,
        detail=detail,
        access_mode=access_mode,
    )
    work.traces.append(entry)
    return entry


def operator(name: str | None = None) -> Actor:
    """The person at the command line (``carnet …`` on the server), as an operator actor."""
    if name is None:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no user name for this uid (containers)
            name = f"uid-{os.getuid()}"
    return Actor(kind=ActorKind.OPERATOR, key=f"cli:{name}"[:120], display="")


def administrative(
    work: Work, what: str, *, record: Record | uuid.UUID | None = None, actor: Actor | None = None
) -> Trace:
    """Trace an administrative action (registration of a client, a code issued, an import …)."""
    return trace(work, TraceAction.ADMIN, actor or operator(), record=record, reason=what[:300])
