"""Undo of a save: the ``undo`` label source and what an undo needs to know.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10

- ``label_events.source``: ``undo`` (a person undid a save; the values it replaced come back as
  new events, nothing is deleted).
- ``label_events.restores_id``: for an ``undo`` event, the event whose value it puts back (None:
  back to empty), so an undone value counts as confirmed exactly when the restored one did.
- ``label_events.replaced``: for a category change, the category it replaced (a product's first
  category has no event, so without it an undo could not know where to go back to).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_SOURCES = "source IN ('import', 'seller', 'model_accepted', 'model_edited')"
SOURCES = "source IN ('import', 'seller', 'model_accepted', 'model_edited', 'undo')"


def upgrade() -> None:
    with op.batch_alter_table("label_events") as batch:
        batch.drop_constraint("ck_label_events_source", type_="check")
        batch.create_check_constraint("ck_label_events_source", sa.text(SOURCES))
        batch.add_column(sa.Column("restores_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("replaced", sa.String(200), nullable=True))
        batch.create_foreign_key("fk_label_events_restores_id_label_events", "label_events", ["restores_id"], ["id"])


def downgrade() -> None:
    # History is never deleted: an older app knows no 'undo', so its events stay as the seller's
    # (a person made them), with the values they put back.
    op.execute("UPDATE label_events SET source = 'seller' WHERE source = 'undo'")
    with op.batch_alter_table("label_events") as batch:
        batch.drop_constraint("fk_label_events_restores_id_label_events", type_="foreignkey")
        batch.drop_column("replaced")
        batch.drop_column("restores_id")
        batch.drop_constraint("ck_label_events_source", type_="check")
        batch.create_check_constraint("ck_label_events_source", sa.text(OLD_SOURCES))
