"""Helpers for the record-lifecycle tests: a database of their own (the jobs open and destroy *every* due
record, and ``carnet audit verify`` checks the whole trail), announcing patients, reading what was written."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from starlette.testclient import TestClient

from carnet import dbadmin
from carnet.app import create_app
from carnet.db import utcnow
from carnet.demo.loader import load_demo_directory_and_people
from carnet.notifications.models import NotificationDelivery, NotificationEvent
from carnet.records.models import Record
from carnet.records.periods import add_years
from carnet.runtime import Runtime
from tests import factories
from tests.conftest import Api, drop_pg_database, fresh_database, make_settings

INS_SYSTEM_TEST = "urn:oid:1.2.250.1.213.1.4.10"
BIRTH_DATE = "1980-06-15"  # factories.patient_resource's default


@contextmanager
def lifecycle_database(backend: str, tmp_path: Path, label: str, **settings: Any) -> Iterator[Api]:
    """A fresh database, migrated, with the demo directory and people, and the app on it."""
    url, pg_name = fresh_database(backend, tmp_path, label)
    runtime = Runtime(make_settings(url, **settings))
    try:
        dbadmin.upgrade(runtime.engine)
        load_demo_directory_and_people(runtime)
        with TestClient(create_app(runtime.settings, runtime), base_url="http://testserver") as client:
            yield Api(client, runtime)
    finally:
        runtime.dispose()
        if pg_name:
            drop_pg_database(pg_name)


@dataclass(frozen=True)
class Announced:
    patient_id: str
    ins: str
    system: str
    code: str
    opens_at: dt.datetime
    info_sent_at: dt.datetime
    notified: bool
    email: str | None

    @property
    def record_id(self) -> uuid.UUID:
        return uuid.UUID(self.patient_id)

    @property
    def identifier(self) -> str:
        return f"{self.system}|{self.ins}"


def announced_patient(
    *, email: str | None = None, mobile: str | None = None, language: str | None = None, **kwargs: Any
) -> tuple[dict[str, Any], str, str]:
    """A Patient for an announcement (no consent attestation: nobody consents to an announcement)."""
    ins, system = factories.random_ins()
    resource = factories.patient_resource(ins, system, attest=False, **kwargs)
    telecom = []
    if email:
        telecom.append({"system": "email", "value": email})
    if mobile:
        telecom.append({"system": "phone", "use": "mobile", "value": mobile})
    if telecom:
        resource["telecom"] = telecom
    if language:
        resource["communication"] = [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": language}]}, "preferred": True}
        ]
    return resource, ins, system


def parameters(body: dict[str, Any]) -> dict[str, Any]:
    """A Parameters resource as {name: value}."""
    found: dict[str, Any] = {}
    for parameter in body["parameter"]:
        value = next(v for k, v in parameter.items() if k.startswith("value"))
        found[parameter["name"]] = value
    return found


def announce(api: Api, persona: str = "ops_admin", **kwargs: Any) -> Announced:
    resource, ins, system = announced_patient(**kwargs)
    response = api.post("/fhir/Patient/$announce", persona, resource)
    assert response.status_code == 201, response.text
    values = parameters(response.json())
    patient_id = values["patient"]["reference"].split("/", 1)[1]
    assert response.headers["Location"].endswith(f"/Patient/{patient_id}")
    return Announced(
        patient_id=patient_id,
        ins=ins,
        system=system,
        code=values["activationCode"],
        opens_at=dt.datetime.fromisoformat(values["opensAt"].replace("Z", "+00:00")),
        info_sent_at=dt.datetime.fromisoformat(values["infoSentAt"].replace("Z", "+00:00")),
        notified=values["notified"],
        email=kwargs.get("email"),
    )


def record_row(runtime: Runtime, record_id: uuid.UUID | str) -> Record:
    with runtime.read_sessions() as session:
        record = session.get(Record, uuid.UUID(str(record_id)))
        assert record is not None
        session.expunge(record)
        return record


def rows_of(runtime: Runtime, record_id: uuid.UUID | str) -> dict[str, int]:
    """How many rows each table holds for this record (every table with a record_id column)."""
    counts: dict[str, int] = {}
    inspector = sa.inspect(runtime.engine)
    with runtime.engine.connect() as connection:
        for table in sorted(inspector.get_table_names()):
            if table in ("records", "alembic_version") or table.startswith("audit_entries"):
                continue  # the audit trail (and its PostgreSQL partitions) is kept by design
            if "record_id" not in {c["name"] for c in inspector.get_columns(table)}:
                continue
            meta = sa.Table(table, sa.MetaData(), sa.Column("record_id", sa.Uuid()))
            count = connection.execute(
                sa.select(sa.func.count()).select_from(meta).where(meta.c.record_id == uuid.UUID(str(record_id)))
            ).scalar()
            counts[table] = int(count or 0)
    return counts


def notices(runtime: Runtime, record_id: uuid.UUID | str) -> list[tuple[str, str, str]]:
    """(kind, recipient, channel) of every delivery staged for the record."""
    with runtime.read_sessions() as session:
        rows = session.execute(
            sa.select(NotificationEvent.kind, NotificationDelivery.recipient, NotificationDelivery.channel)
            .join(
                NotificationDelivery,
                sa.and_(
                    NotificationDelivery.record_id == NotificationEvent.record_id,
                    NotificationDelivery.event_id == NotificationEvent.id,
                ),
            )
            .where(NotificationEvent.record_id == uuid.UUID(str(record_id)))
        ).all()
    return sorted((r.kind, r.recipient, r.channel) for r in rows)


def later(days: float = 0, years: int = 0) -> Any:
    """A worker clock this far in the future."""
    moment = add_years(utcnow(), years) + dt.timedelta(days=days)
    return lambda: moment
