"""At most one training run queued or running, as a rule of the database.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

- ``uq_training_runs_one_active``: a unique partial index over an expression that is true for
  every queued or running run, so a second active row is a duplicate. ``create_run`` checked this
  in Python only; two web replicas whose retrain policies decided at the same moment could both
  queue a run. A database written before this revision could hold such a pair: every active run
  but the newest is marked interrupted first (with a message saying why), so the index can be built.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ACTIVE = "(status IN ('queued', 'running'))"


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE training_runs SET status = 'interrupted', "
            "message = 'interrupted: a second run was queued or running beside this one; start a new run to retry' "
            f"WHERE {ACTIVE} AND id < (SELECT MAX(id) FROM training_runs WHERE {ACTIVE})"
        )
    )
    op.create_index(
        "uq_training_runs_one_active",
        "training_runs",
        [sa.text(ACTIVE)],
        unique=True,
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_training_runs_one_active", table_name="training_runs")
