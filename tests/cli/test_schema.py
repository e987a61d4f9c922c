"""The schema: patient-owned tables are keyed by record first (docs/architecture.md, "Data model"), and
what ``carnet db upgrade`` builds is what the SQLAlchemy models describe, table by table, on SQLite and
PostgreSQL (Alembic's autogenerate comparison)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from carnet.db import create_engine
from carnet.models import metadata
from tests.cli.support import carnet_env, run_carnet
from tests.conftest import BACKENDS, drop_pg_database, fresh_database, make_settings

# Global tables that carry a record_id without being partitioned by it (docs/architecture.md).
GLOBAL_WITH_RECORD_ID = {
    "accounts": "a sign-in account, looked up by login; record_id names the record its holder owns",
    "one_time_codes": "activation and reset codes, looked up by code",
    "resource_locator": "routing: resource id → record, since FHIR URLs carry no patient",
    "audit_entries": "the audit trail, chained per chain and partitioned by month",
}
# The patient-owned tables the architecture names: they must be among those the metadata finds.
DOCUMENTED_PATIENT_TABLES = {
    "resource_versions",
    "document_entries",
    "list_entries",
    "list_members",
    "binary_entries",
    "blobs",
    "search_tokens",
    "access_grants",
    "emergency_accesses",
}
# Indexes of patient-owned tables that deliberately span records, and why.
CROSS_RECORD_INDEXES = {
    "ix_search_tokens_lookup": "conditional PATCH DocumentReference?identifier=… finds a document without a patient",
    "ix_notification_deliveries_status_due": "the worker claims due deliveries of every record",
    "ix_notification_inbox_recipient_created": "a recipient's notification centre spans records",
    "ix_representations_account_id": "a legal representative's account lists the records it represents",
}

# Differences between the migrated schema and the models that are known, with why; anything else fails,
# and so does an entry here that no longer differs (remove it once the schema and the models agree).
KNOWN_DRIFT: dict[tuple[str, str, str, str | None], str] = {
    ("*", "remove_column", "practitioners", "email"): (
        "migration 7f4e2b9c1a30 adds practitioners.email (the MSSanté address notifications.rules reads "
        "through a lightweight table) but the Practitioner model has no such column"
    ),
    ("sqlite", "modify_type", "records", "status"): (
        "migration 5b8d2f4a9c61 widens records.status to VARCHAR(24) on PostgreSQL only: SQLite does not "
        "enforce VARCHAR lengths, and widening there would copy the table"
    ),
}

Drift = tuple[str, str, str | None]  # (operation, table, column / index / constraint name)


def _name(item: Any) -> str | None:
    name = getattr(item, "name", None)
    return None if name is None else str(name)


def _normalise(diff: list[Any]) -> set[Drift]:
    """Alembic's diff entries as (operation, table, element)."""
    out: set[Drift] = set()
    for entry in diff:
        for op in entry if isinstance(entry, list) else [entry]:
            kind = op[0]
            if kind in ("add_table", "remove_table"):
                out.add((kind, op[1].name, None))
            elif kind in ("add_column", "remove_column"):
                out.add((kind, op[2], op[3].name))
            elif kind.startswith("modify_"):
                out.add((kind, op[2], op[3]))
            elif kind in ("add_index", "remove_index"):
                out.add((kind, op[1].table.name, _name(op[1])))
            elif kind in ("add_fk", "remove_fk"):
                out.add((kind, op[1].parent.name, _name(op[1])))
            else:  # add_constraint, remove_constraint and whatever a later Alembic reports
                table = getattr(op[1], "table", None)
                out.add((kind, getattr(table, "name", "?"), _name(op[1])))
    return out


def _known(dialect: str) -> set[Drift]:
    return {(op, table, element) for (where, op, table, element) in KNOWN_DRIFT if where in ("*", dialect)}


# ------------------------------------------------------------------------------------- partitioning


def _patient_owned() -> list[sa.Table]:
    return [t for t in metadata.sorted_tables if "record_id" in t.c and t.name not in GLOBAL_WITH_RECORD_ID]


def test_record_id_leads_the_primary_key_of_every_patient_owned_table() -> None:
    owned = _patient_owned()
    assert {t.name for t in owned} >= DOCUMENTED_PATIENT_TABLES
    assert set(GLOBAL_WITH_RECORD_ID) <= set(metadata.tables), "a documented global table no longer exists"
    wrong = {
        t.name: [c.name for c in t.primary_key.columns] for t in owned if t.primary_key.columns[0].name != "record_id"
    }
    assert wrong == {}, f"primary keys not led by record_id: {wrong}"
    for table in owned:
        assert table.c.record_id.foreign_keys, f"{table.name}.record_id references no record"


def test_record_id_leads_the_indexes_of_patient_owned_tables() -> None:
    wrong = []
    for table in _patient_owned():
        for index in table.indexes:
            if index.name in CROSS_RECORD_INDEXES:
                continue
            first = next(iter(index.columns)).name
            if first != "record_id":
                wrong.append(f"{table.name}.{index.name} ({first} first)")
    assert wrong == []
    names = {i.name for t in _patient_owned() for i in t.indexes}
    assert set(CROSS_RECORD_INDEXES) <= names, "a documented cross-record index no longer exists"


# ------------------------------------------------------------------------------------- migrations


@pytest.fixture(params=BACKENDS)
def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A fresh database brought to head by ``carnet db upgrade``, as an operator would."""
    url, pg_name = fresh_database(str(request.param), tmp_path, "schema")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    result = run_carnet("db", "upgrade", env=carnet_env(url), cwd=workdir)
    assert result.code == 0, result.describe()
    engine = create_engine(make_settings(url))
    try:
        yield engine
    finally:
        engine.dispose()
        if pg_name:
            drop_pg_database(pg_name)


def _partitions(connection: sa.Connection) -> set[str]:
    """PostgreSQL partitions (of audit_entries): created by the migrations and the partition job, not models."""
    if connection.dialect.name != "postgresql":
        return set()
    rows = connection.execute(
        sa.text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid")
    ).scalars()
    return set(rows)


def test_the_migrated_schema_matches_the_models(migrated: sa.Engine) -> None:
    dialect = migrated.dialect.name
    with migrated.connect() as connection:
        partitions = _partitions(connection)
        if dialect == "postgresql":
            assert "audit_entries_default" in partitions  # the exclusion below excludes something real

        def include(obj: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
            table = name if kind == "table" else getattr(getattr(obj, "table", None), "name", None)
            return table not in partitions

        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                # PostgreSQL reflects server defaults faithfully; SQLite only as text, quoted differently.
                "compare_server_default": dialect == "postgresql",
                "include_object": include,
            },
        )
        found = _normalise(compare_metadata(context, metadata))
    known = _known(dialect)
    assert found - known == set(), f"the migrated schema differs from the models on {dialect}"
    assert known - found == set(), f"known drift that is gone on {dialect}: remove it from KNOWN_DRIFT"
    # The comparison covers every table of the models.
    with migrated.connect() as connection:
        present = set(sa.inspect(connection).get_table_names())
    assert set(metadata.tables) <= present
