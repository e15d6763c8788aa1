"""turn limit indexes: conversations by owner and last update, replies still streaming

Revision ID: 0003_turn_limit_indexes
Revises: 0002_moderation_queue
Create Date: 2026-11-27 07:30:00

Every turn counts the user's messages of the last minute and their replies still streaming. Without
these indexes both counts walked every message of every conversation the user ever had.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_turn_limit_indexes"
down_revision = "0002_moderation_queue"
branch_labels = None
depends_on = None

STREAMING = sa.text("status = 'streaming'")


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.create_index("ix_conversations_owner_updated", ["owner_id", "updated_at"], unique=False)
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_streaming",
            ["conversation_id"],
            unique=False,
            sqlite_where=STREAMING,
            postgresql_where=STREAMING,
        )


def downgrade() -> None:
    raise NotImplementedError("GuardChat migrations are forward-only")
