"""notifications: transactional outbox (events, deliveries), notification centre, preferences, first accesses;
practitioners' e-mail (MSSanté) address

Revision ID: 7f4e2b9c1a30
Revises: 3c1a9e5b7d20
Create Date: 2026-11-23 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7f4e2b9c1a30"
down_revision: str | None = "3c1a9e5b7d20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_events",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(length=24), nullable=False),
        sa.Column("professional", sa.String(length=40), nullable=True),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_notification_events_record_id_records")),
        sa.PrimaryKeyConstraint("record_id", "id", name=op.f("pk_notification_events")),
    )

    op.create_table(
        "notification_deliveries",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("recipient", sa.String(length=80), nullable=False),
        sa.Column("role", sa.String(length=24), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("destination", sa.LargeBinary(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name=op.f("fk_notification_deliveries_record_id_records")
        ),
        sa.PrimaryKeyConstraint("record_id", "id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint(
            "event_id", "recipient", "channel", name=op.f("uq_notification_deliveries_event_id_recipient_channel")
        ),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_notification_deliveries_idempotency_key")),
    )
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_notification_deliveries_status_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "notification_inbox",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("recipient", sa.String(length=80), nullable=False),
        sa.Column("role", sa.String(length=24), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_notification_inbox_record_id_records")),
        sa.PrimaryKeyConstraint("record_id", "id", name=op.f("pk_notification_inbox")),
        sa.UniqueConstraint("event_id", "recipient", name=op.f("uq_notification_inbox_event_id_recipient")),
    )
    with op.batch_alter_table("notification_inbox", schema=None) as batch_op:
        batch_op.create_index("ix_notification_inbox_recipient_created", ["recipient", "created_at"], unique=False)

    op.create_table(
        "notification_preferences",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("email", sa.LargeBinary(), nullable=True),
        sa.Column("phone", sa.LargeBinary(), nullable=True),
        sa.Column("email_channel", sa.Boolean(), nullable=False),
        sa.Column("sms_channel", sa.Boolean(), nullable=False),
        sa.Column("topics_off", sa.String(length=400), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_notification_preferences_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_notification_preferences")),
    )

    op.create_table(
        "professional_accesses",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("professional", sa.String(length=40), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("access_mode", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_professional_accesses_record_id_records")),
        sa.PrimaryKeyConstraint("record_id", "professional", name=op.f("pk_professional_accesses")),
    )

    # The practitioner's secure e-mail (MSSanté) address, public directory data: where the médecin
    # traitant is told of emergency accesses to their patients' records.
    with op.batch_alter_table("practitioners", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=254), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("practitioners", schema=None) as batch_op:
        batch_op.drop_column("email")
    op.drop_table("professional_accesses")
    op.drop_table("notification_preferences")
    with op.batch_alter_table("notification_inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_inbox_recipient_created")
    op.drop_table("notification_inbox")
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_deliveries_status_due")
    op.drop_table("notification_deliveries")
    op.drop_table("notification_events")
