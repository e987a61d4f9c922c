"""initial schema: records, encrypted resources, documents, directory, accounts

Revision ID: dd40b17ac412
Revises:
Create Date: 2026-11-23 16:05:17.241814
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dd40b17ac412"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("idnat_struct", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("facility_type", sa.String(length=40), nullable=True),
        sa.Column("practice_setting", sa.String(length=40), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("idnat_struct", name=op.f("uq_organizations_idnat_struct")),
    )
    op.create_table(
        "practitioners",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("idnat_ps", sa.String(length=40), nullable=False),
        sa.Column("rpps", sa.String(length=11), nullable=True),
        sa.Column("family", sa.String(length=120), nullable=False),
        sa.Column("given", sa.String(length=120), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_practitioners")),
        sa.UniqueConstraint("idnat_ps", name=op.f("uq_practitioners_idnat_ps")),
    )
    with op.batch_alter_table("practitioners", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_practitioners_rpps"), ["rpps"], unique=False)

    op.create_table(
        "records",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("ins_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("ins_kind", sa.String(length=8), nullable=False),
        sa.Column("identity_status", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closure_reason", sa.String(length=32), nullable=True),
        sa.Column("kek_id", sa.String(length=32), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("patient_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
        sa.UniqueConstraint("ins_hash", name=op.f("uq_records_ins_hash")),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=True),
        sa.Column("label", sa.String(length=120), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_accounts_record_id_records")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("record_id", name=op.f("uq_accounts_record_id")),
    )
    op.create_table(
        "binary_entries",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("document_id", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("blob_address", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_binary_entries_record_id_records")),
        sa.PrimaryKeyConstraint("record_id", "id", name=op.f("pk_binary_entries")),
    )
    op.create_table(
        "blobs",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_blobs_record_id_records")),
        sa.PrimaryKeyConstraint("record_id", "address", name=op.f("pk_blobs")),
    )
    op.create_table(
        "clients",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"], name=op.f("fk_clients_organization_id_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
    )
    op.create_table(
        "document_entries",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("is_archived", sa.Boolean(), nullable=False),
        sa.Column("type_code", sa.String(length=40), nullable=False),
        sa.Column("class_code", sa.String(length=64), nullable=False),
        sa.Column("format_code", sa.String(length=96), nullable=True),
        sa.Column("facility_code", sa.String(length=40), nullable=True),
        sa.Column("setting_code", sa.String(length=40), nullable=True),
        sa.Column("confidentiality", sa.String(length=1), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("binary_id", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("author_key", sa.String(length=80), nullable=False),
        sa.Column("author_org", sa.String(length=40), nullable=True),
        sa.Column("submission_set_id", sa.String(length=64), nullable=True),
        sa.Column("replaces_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_document_entries_record_id_records")),
        sa.PrimaryKeyConstraint("record_id", "id", name=op.f("pk_document_entries")),
    )
    with op.batch_alter_table("document_entries", schema=None) as batch_op:
        batch_op.create_index("ix_document_entries_record_period", ["record_id", "period_start"], unique=False)
        batch_op.create_index("ix_document_entries_record_status_date", ["record_id", "status", "date"], unique=False)
        batch_op.create_index("ix_document_entries_record_type", ["record_id", "type_code"], unique=False)

    op.create_table(
        "list_entries",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("designation_code", sa.String(length=64), nullable=True),
        sa.Column("author_key", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_list_entries_record_id_records")),
        sa.PrimaryKeyConstraint("record_id", "id", name=op.f("pk_list_entries")),
    )
    with op.batch_alter_table("list_entries", schema=None) as batch_op:
        batch_op.create_index("ix_list_entries_record_code_date", ["record_id", "code", "date"], unique=False)

    op.create_table(
        "list_members",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("list_id", sa.String(length=64), nullable=False),
        sa.Column("document_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_list_members_record_id_records")),
        sa.PrimaryKeyConstraint("record_id", "list_id", "document_id", name=op.f("pk_list_members")),
    )
    with op.batch_alter_table("list_members", schema=None) as batch_op:
        batch_op.create_index("ix_list_members_record_document", ["record_id", "document_id"], unique=False)

    op.create_table(
        "practitioner_roles",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("practitioner_id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=True),
        sa.Column("profession_code", sa.String(length=8), nullable=False),
        sa.Column("specialty_code", sa.String(length=16), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_practitioner_roles_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["practitioner_id"],
            ["practitioners.id"],
            name=op.f("fk_practitioner_roles_practitioner_id_practitioners"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_practitioner_roles")),
    )
    with op.batch_alter_table("practitioner_roles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_practitioner_roles_organization_id"), ["organization_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_practitioner_roles_practitioner_id"), ["practitioner_id"], unique=False)

    op.create_table(
        "resource_locator",
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_resource_locator_record_id_records")),
        sa.PrimaryKeyConstraint("resource_type", "resource_id", name=op.f("pk_resource_locator")),
    )
    with op.batch_alter_table("resource_locator", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resource_locator_record_id"), ["record_id"], unique=False)

    op.create_table(
        "resource_versions",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_resource_versions_record_id_records")),
        sa.PrimaryKeyConstraint(
            "record_id", "resource_type", "resource_id", "version", name=op.f("pk_resource_versions")
        ),
    )
    op.create_table(
        "search_tokens",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("param", sa.String(length=32), nullable=False),
        sa.Column("value_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_search_tokens_record_id_records")),
        sa.PrimaryKeyConstraint(
            "record_id", "resource_type", "param", "value_hash", "resource_id", name=op.f("pk_search_tokens")
        ),
    )
    with op.batch_alter_table("search_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_search_tokens_lookup", ["resource_type", "param", "value_hash"], unique=False)
        batch_op.create_index(
            "uq_search_tokens_master",
            ["record_id", "resource_type", "value_hash"],
            unique=True,
            postgresql_where=sa.text("param = 'master'"),
            sqlite_where=sa.text("param = 'master'"),
        )

    op.create_table(
        "representations",
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("relationship", sa.String(length=16), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_representations_account_id_accounts")),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name=op.f("fk_representations_record_id_records")),
        sa.PrimaryKeyConstraint("record_id", "account_id", name=op.f("pk_representations")),
    )
    with op.batch_alter_table("representations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_representations_account_id"), ["account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("representations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_representations_account_id"))

    op.drop_table("representations")
    with op.batch_alter_table("search_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_search_tokens_lookup")

    op.drop_table("search_tokens")
    op.drop_table("resource_versions")
    with op.batch_alter_table("resource_locator", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_locator_record_id"))

    op.drop_table("resource_locator")
    with op.batch_alter_table("practitioner_roles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_practitioner_roles_practitioner_id"))
        batch_op.drop_index(batch_op.f("ix_practitioner_roles_organization_id"))

    op.drop_table("practitioner_roles")
    with op.batch_alter_table("list_members", schema=None) as batch_op:
        batch_op.drop_index("ix_list_members_record_document")

    op.drop_table("list_members")
    with op.batch_alter_table("list_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_list_entries_record_code_date")

    op.drop_table("list_entries")
    with op.batch_alter_table("document_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_document_entries_record_type")
        batch_op.drop_index("ix_document_entries_record_status_date")
        batch_op.drop_index("ix_document_entries_record_period")

    op.drop_table("document_entries")
    op.drop_table("clients")
    op.drop_table("blobs")
    op.drop_table("binary_entries")
    op.drop_table("accounts")
    op.drop_table("records")
    with op.batch_alter_table("practitioners", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_practitioners_rpps"))

    op.drop_table("practitioners")
    op.drop_table("organizations")
