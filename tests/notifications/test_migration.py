"""The notifications migration: the schema it creates is the models', on both databases, and it goes
down and up again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from carnet import dbadmin
from carnet.db import create_engine
from carnet.models import metadata
from tests.conftest import drop_pg_database, fresh_database, make_settings

TABLES = {
    "notification_events",
    "notification_deliveries",
    "notification_inbox",
    "notification_preferences",
    "professional_accesses",
}
REVISION = "7f4e2b9c1a30"
PREVIOUS = "3c1a9e5b7d20"


def _mine(diff: Any) -> bool:
    """Whether an autogenerate difference concerns this migration's tables."""
    if isinstance(diff, list):
        return any(_mine(d) for d in diff)
    for item in diff[1:]:
        table = getattr(item, "table", None)
        name = getattr(item, "name", None) if isinstance(item, sa.Table) else getattr(table, "name", None)
        if name in TABLES or (isinstance(item, str) and item in TABLES):
            return True
    return False


def test_upgrade_matches_the_models_and_downgrades(backend: str, tmp_path: Path) -> None:
    url, pg_name = fresh_database(backend, tmp_path, "migr")
    engine = create_engine(make_settings(url))
    try:
        dbadmin.upgrade(engine, REVISION)  # later migrations (the record lifecycle's) come after it
        assert dbadmin.current_revision(engine) == REVISION
        inspector = sa.inspect(engine)
        assert set(inspector.get_table_names()) >= TABLES
        assert "email" in {c["name"] for c in inspector.get_columns("practitioners")}
        indexes = {i["name"] for i in inspector.get_indexes("notification_deliveries")}
        assert "ix_notification_deliveries_status_due" in indexes
        with engine.connect() as connection:
            diffs = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata)
        assert [d for d in diffs if _mine(d)] == []

        _downgrade(engine, PREVIOUS)
        inspector = sa.inspect(engine)
        assert not TABLES & set(inspector.get_table_names())
        assert "email" not in {c["name"] for c in inspector.get_columns("practitioners")}
        dbadmin.upgrade(engine)
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()
        if pg_name:
            drop_pg_database(pg_name)


def _downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    config = dbadmin.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
