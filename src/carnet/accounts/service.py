"""Accounts (patients, legal representatives, operators) and registered software clients."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from carnet.accounts.models import Account, AccountKind, Client, ClientKind, Representation
from carnet.errors import Conflict
from carnet.runtime import Work


def create_account(
    work: Work,
    *,
    kind: AccountKind,
    label: str,
    record_id: uuid.UUID | None = None,
    account_id: uuid.UUID | None = None,
) -> Account:
    """Create an account; a patient account is tied to the patient's own record."""
    if kind is AccountKind.PATIENT and record_id is None:
        raise ValueError("a patient account belongs to a record")
    if record_id is not None and work.session.scalar(sa.select(Account.id).where(Account.record_id == record_id)):
        raise Conflict("this record already has a patient account")
    account = Account(
        id=account_id or uuid.uuid4(),
        kind=kind.value,
        record_id=record_id,
        label=label,
        active=True,
        created_at=work.now,
    )
    work.session.add(account)
    work.session.flush()
    return account


def add_representation(work: Work, *, account_id: uuid.UUID, record_id: uuid.UUID, relationship: str) -> None:
    """Record that an account's holder is a legal representative of the record's patient."""
    if work.session.get(Representation, (record_id, account_id)) is None:
        work.session.add(
            Representation(record_id=record_id, account_id=account_id, relationship=relationship, since=work.now)
        )
        work.session.flush()


def represented_records(work: Work, account_id: uuid.UUID) -> frozenset[uuid.UUID]:
    return frozenset(
        work.session.scalars(sa.select(Representation.record_id).where(Representation.account_id == account_id))
    )


def create_client(
    work: Work, *, client_id: str, kind: ClientKind, name: str, organization_id: str | None = None
) -> Client:
    if work.session.get(Client, client_id) is not None:
        raise Conflict(f"client {client_id} already exists")
    client = Client(
        id=client_id, kind=kind.value, name=name, organization_id=organization_id, active=True, created_at=work.now
    )
    work.session.add(client)
    work.session.flush()
    return client
