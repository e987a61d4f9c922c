"""record lifecycle: announcement and opposition window, opening, destruction (info_sent_at, opened_at,
key_destroyed_at), status values up to 24 characters, indexes for the lifecycle jobs

Revision ID: 5b8d2f4a9c61
Revises: 7f4e2b9c1a30
Create Date: 2026-11-24 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b8d2f4a9c61"
down_revision: str | None = "7f4e2b9c1a30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("info_sent_at", "opened_at", "key_destroyed_at")
INDEXES = {
    "ix_records_status_info_sent_at": ["status", "info_sent_at"],
    "ix_records_status_closed_at": ["status", "closed_at"],
}


def upgrade() -> None:
    # Adding nullable columns and indexes: SQLite does it in place (no copy of the table, which every
    # patient table references).
    with op.batch_alter_table("records", schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        for index, columns in INDEXES.items():
            batch_op.create_index(index, columns, unique=False)
    # "opposition_pending" has 18 characters. PostgreSQL enforces VARCHAR lengths: widen the column.
    # SQLite does not (a VARCHAR is TEXT there), and widening would mean copying the table: left as is.
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "records", "status", type_=sa.String(length=24), existing_type=sa.String(length=16), existing_nullable=False
        )
    # Records that exist were opened when they were created.
    op.execute(sa.text("UPDATE records SET opened_at = created_at WHERE opened_at IS NULL AND status <> 'deleted'"))


def downgrade() -> None:
    bind = op.get_bind()
    # The previous schema knows open and closed records only: refuse to lose announced or destroyed ones.
    left = bind.execute(
        sa.text("SELECT count(*) FROM records WHERE status NOT IN ('active', 'closed') OR key_destroyed_at IS NOT NULL")
    ).scalar()
    if left:
        raise RuntimeError(
            f"{left} records are announced or destroyed: the schema before the record lifecycle cannot hold them"
        )
    for index in INDEXES:
        op.drop_index(index, table_name="records")
    for name in COLUMNS:
        op.drop_column("records", name)  # ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35): no copy
    if bind.dialect.name == "postgresql":
        op.alter_column(
            "records", "status", type_=sa.String(length=16), existing_type=sa.String(length=24), existing_nullable=False
        )
