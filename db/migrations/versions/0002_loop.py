"""One active version enforced by the database; cancelled runs, run triggers and heartbeats; app settings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

- ``uq_model_versions_one_active``: a partial unique index, so two concurrent activations can
  never leave two active versions (SQLite and PostgreSQL both support ``WHERE`` on an index).
- ``training_runs``: status ``cancelled`` (an admin stopped it), ``trigger`` (what started it:
  ``admin`` or ``policy``) and ``heartbeat_at`` (when its worker last said it was alive).
- ``app_settings``: small JSON values the app keeps in its database rather than in a file
  (the taxonomy the app adopted from a dataset), so every process on the database sees the same.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD_RUN_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'interrupted', 'rejected')"
RUN_STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'interrupted', 'rejected', 'cancelled')"
RUN_TRIGGERS = "\"trigger\" IN ('admin', 'policy')"


def upgrade() -> None:
    op.create_index(
        "uq_model_versions_one_active",
        "model_versions",
        ["status"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_constraint("ck_training_runs_status", type_="check")
        batch.create_check_constraint("ck_training_runs_status", sa.text(RUN_STATUSES))
        batch.add_column(sa.Column("trigger", sa.String(16), nullable=False, server_default="admin"))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint("ck_training_runs_trigger", sa.text(RUN_TRIGGERS))
    op.create_table(
        "app_settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_app_settings"),
    )


def downgrade() -> None:
    op.drop_table("app_settings")
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_constraint("ck_training_runs_trigger", type_="check")
        batch.drop_column("heartbeat_at")
        batch.drop_column("trigger")
        batch.drop_constraint("ck_training_runs_status", type_="check")
        batch.create_check_constraint("ck_training_runs_status", sa.text(OLD_RUN_STATUSES))
    op.drop_index("uq_model_versions_one_active", table_name="model_versions")
