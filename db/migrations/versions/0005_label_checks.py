"""Second looks at suspicious saves.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10

- ``label_checks``: append-only rows of the question asked when a saved value contradicts a
  confident model and the confirmed similar products ("asked"), and the seller's answer ("keep"
  or "model"), so that the same product, attribute and value are never asked about twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("attribute", sa.String(100), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("model_value", sa.String(200), nullable=False),
        sa.Column("model_confidence", sa.Float(), nullable=False),
        sa.Column("model_version_id", sa.String(64), nullable=True),
        sa.Column("similar", sa.Integer(), nullable=False),
        sa.Column("agreeing", sa.Integer(), nullable=False),
        sa.Column("answer", sa.String(16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("answer IN ('asked', 'keep', 'model')", name=op.f("ck_label_checks_answer")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_label_checks_product_id_products")),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_versions.id"], name=op.f("fk_label_checks_model_version_id_model_versions")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_label_checks_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_checks")),
    )
    op.create_index("ix_label_checks_product_id_attribute", "label_checks", ["product_id", "attribute"])


def downgrade() -> None:
    op.drop_index("ix_label_checks_product_id_attribute", table_name="label_checks")
    op.drop_table("label_checks")
