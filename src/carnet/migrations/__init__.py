"""Alembic migrations (run with ``carnet db upgrade``); the same revisions run on SQLite and PostgreSQL."""
