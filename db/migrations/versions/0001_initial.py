"""Initial schema: users, products, label events, predictions, model versions, training runs.

Revision ID: 0001
Revises:
Create Date: 2024-11-27

Written by hand to match db/tables.py; tests/db/test_migrations.py checks that it does.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the value lists as they were at this revision (tables.py may grow later).
ROLES = "role IN ('seller', 'admin')"
PRODUCT_SOURCES = "source IN ('upload', 'import')"
LABEL_SOURCES = "source IN ('import', 'seller', 'model_accepted', 'model_edited')"
VERSION_STATUSES = "status IN ('candidate', 'active', 'retired')"
VERSION_KINDS = "kind IN ('heads', 'full')"
RUN_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'interrupted', 'rejected')"


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("activated_at", nullable=True),
        sa.Column("taxonomy_fingerprint", sa.String(64), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.CheckConstraint(VERSION_STATUSES, name="ck_model_versions_status"),
        sa.CheckConstraint(VERSION_KINDS, name="ck_model_versions_kind"),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["model_versions.id"], name="fk_model_versions_parent_id_model_versions"
        ),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.CheckConstraint(ROLES, name="ck_users_role"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("image_ext", sa.String(8), nullable=True),
        sa.Column("image_size", sa.Integer(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
        sa.UniqueConstraint("owner_id", "image_sha256", name="uq_products_owner_id_image_sha256"),
        sa.UniqueConstraint("owner_id", "external_id", name="uq_products_owner_id_external_id"),
        sa.CheckConstraint(PRODUCT_SOURCES, name="ck_products_source"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name="fk_products_owner_id_users"),
    )
    op.create_index("ix_products_owner_id_category", "products", ["owner_id", "category"])
    op.create_table(
        "training_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result_version_id", sa.String(64), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        _ts("created_at"),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_training_runs"),
        sa.CheckConstraint(RUN_STATUSES, name="ck_training_runs_status"),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name="ck_training_runs_progress"),
        sa.ForeignKeyConstraint(
            ["result_version_id"], ["model_versions.id"], name="fk_training_runs_result_version_id_model_versions"
        ),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_training_runs_created_by_users"),
    )
    op.create_table(
        "label_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("attribute", sa.String(100), nullable=False),
        sa.Column("value", sa.String(200), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("model_version_id", sa.String(64), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_label_events"),
        sa.CheckConstraint(LABEL_SOURCES, name="ck_label_events_source"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name="fk_label_events_product_id_products"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_label_events_user_id_users"),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_versions.id"], name="fk_label_events_model_version_id_model_versions"
        ),
    )
    op.create_index("ix_label_events_product_id_attribute_id", "label_events", ["product_id", "attribute", "id"])
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.String(32), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.String(64), nullable=False),
        sa.Column("attribute", sa.String(100), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("top_k", sa.JSON(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_predictions"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name="fk_predictions_product_id_products"),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_versions.id"], name="fk_predictions_model_version_id_model_versions"
        ),
    )
    op.create_index("ix_predictions_product_id_id", "predictions", ["product_id", "id"])
    op.create_index("ix_predictions_group_id", "predictions", ["group_id"])


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("label_events")
    op.drop_table("training_runs")
    op.drop_table("products")
    op.drop_table("users")
    op.drop_table("model_versions")
