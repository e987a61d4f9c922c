"""audit trail: hash-chained entries (partitioned by month on PostgreSQL), chain heads, signed checkpoints

Revision ID: 3c1a9e5b7d20
Revises: d2ee4ab16f1f
Create Date: 2026-11-23 18:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3c1a9e5b7d20"
down_revision: str | None = "d2ee4ab16f1f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Appends a chain's entries in one call (one round trip), holding the chain head's row lock:
#   hash(n) = sha256(hash(n-1) || chain || seq as 8 bytes big-endian || payload).
# carnet.audit.writer implements the same computation in Python (SQLite) and the verifier checks both.
APPEND_FUNCTION = r"""
CREATE OR REPLACE FUNCTION carnet_audit_append(p_chain uuid, p_payloads bytea[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_seq bigint;
    v_hash bytea;
    v_payload bytea;
    v_doc jsonb;
BEGIN
    INSERT INTO audit_heads (chain, seq, hash, updated_at)
    VALUES (p_chain, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, now())
    ON CONFLICT (chain) DO NOTHING;
    SELECT seq, hash INTO v_seq, v_hash FROM audit_heads WHERE chain = p_chain FOR UPDATE;
    FOREACH v_payload IN ARRAY p_payloads LOOP
        v_seq := v_seq + 1;
        v_hash := sha256(v_hash || uuid_send(p_chain) || int8send(v_seq) || v_payload);
        v_doc := convert_from(v_payload, 'UTF8')::jsonb;
        INSERT INTO audit_entries (chain, seq, at, record_id, action, outcome, actor_kind, actor_key,
                                   professional, resource_type, resource_id, access_mode, payload, hash)
        VALUES (p_chain, v_seq, (v_doc->>'at')::timestamptz, (v_doc->>'record_id')::uuid, v_doc->>'action',
                v_doc->>'outcome', v_doc->>'actor_kind', v_doc->>'actor_key', v_doc->>'professional',
                v_doc->>'resource_type', v_doc->>'resource_id', v_doc->>'access_mode', v_payload, v_hash);
    END LOOP;
    UPDATE audit_heads SET seq = v_seq, hash = v_hash, updated_at = now() WHERE chain = p_chain;
    RETURN v_seq;
END
$$;
"""


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "audit_entries",
        sa.Column("chain", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("actor_kind", sa.String(length=20), nullable=False),
        sa.Column("actor_key", sa.String(length=120), nullable=False),
        sa.Column("professional", sa.String(length=40), nullable=True),
        sa.Column("resource_type", sa.String(length=40), nullable=True),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("access_mode", sa.String(length=20), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("chain", "seq", "at", name=op.f("pk_audit_entries")),
        postgresql_partition_by="RANGE (at)",
    )
    op.create_index("ix_audit_entries_professional_at", "audit_entries", ["professional", "at"])
    op.create_index("ix_audit_entries_at", "audit_entries", ["at"])
    if postgresql:
        # Monthly partitions are created ahead by `carnet audit partitions` (the worker runs it daily);
        # the default partition takes anything outside them, so an append never fails for want of one.
        op.execute("CREATE TABLE audit_entries_default PARTITION OF audit_entries DEFAULT")

    op.create_table(
        "audit_heads",
        sa.Column("chain", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_audit_heads")),
    )
    op.create_index("ix_audit_heads_updated_at", "audit_heads", ["updated_at"])

    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("covers_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("previous", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("heads", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    op.create_table(
        "audit_checkpoint_heads",
        sa.Column("checkpoint_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("chain", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["audit_checkpoints.id"],
            name=op.f("fk_audit_checkpoint_heads_checkpoint_id_audit_checkpoints"),
        ),
        sa.PrimaryKeyConstraint("checkpoint_id", "chain", name=op.f("pk_audit_checkpoint_heads")),
    )
    op.create_index("ix_audit_checkpoint_heads_chain", "audit_checkpoint_heads", ["chain", "checkpoint_id"])
    if postgresql:
        op.execute(APPEND_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS carnet_audit_append(uuid, bytea[])")
    op.drop_index("ix_audit_checkpoint_heads_chain", table_name="audit_checkpoint_heads")
    op.drop_table("audit_checkpoint_heads")
    op.drop_table("audit_checkpoints")
    op.drop_index("ix_audit_heads_updated_at", table_name="audit_heads")
    op.drop_table("audit_heads")
    op.drop_table("audit_entries")
