"""Alembic environment: the URL comes from the Settings passed in by ``carnet db upgrade``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from carnet.models import metadata

config = context.config


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - `alembic` CLI use during development
    from carnet.config import get_settings
    from carnet.db import create_engine

    engine = create_engine(get_settings())
    with engine.connect() as conn:
        run(conn)
    engine.dispose()
else:
    run(connection)
