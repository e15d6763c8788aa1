"""users.session_epoch: sign-out, a new password or a ban ends every session signed in before

Revision ID: 0004_session_epoch
Revises: 0003_turn_limit_indexes
Create Date: 2026-11-27 08:00:00

Session cookies are signed, not stored, so clearing one in the browser left a copied cookie valid until it
expired. Each cookie now carries the user's epoch from sign-in; raising the epoch invalidates them all.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_session_epoch"
down_revision = "0003_turn_limit_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    raise NotImplementedError("GuardChat migrations are forward-only")
