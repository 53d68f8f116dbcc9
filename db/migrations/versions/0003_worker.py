"""Which worker holds a training run.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08

- ``training_runs.worker``: ``host:pid`` of the ``python app.py worker`` process (or the web
  process, for an in-process run) that claimed the run; with ``heartbeat_at`` it tells a run
  whose worker died from one that is still going.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.add_column(sa.Column("worker", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("worker")
