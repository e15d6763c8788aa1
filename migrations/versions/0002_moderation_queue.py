"""moderation queue: per-conversation flag counter and the indexes the queue pages on

Revision ID: 0002_moderation_queue
Revises: 0001_initial
Create Date: 2026-11-27 04:00:00

``conversations.flag_count`` is kept by an AFTER INSERT trigger on ``flags`` (both dialects), so the
"most flags in the conversation" sort walks an index instead of counting 100k flags per page, and no
code path that raises a flag can forget to count it. SQLite drops a table's triggers when a batch
migration recreates it: a later migration that rebuilds ``flags`` must create the trigger again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_moderation_queue"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

SQLITE_TRIGGER = """
CREATE TRIGGER trg_flags_count_conversation AFTER INSERT ON flags
BEGIN
    UPDATE conversations SET flag_count = flag_count + 1 WHERE id = NEW.conversation_id;
END
"""

POSTGRES_FUNCTION = """
CREATE FUNCTION guardchat_count_conversation_flag() RETURNS trigger AS $$
BEGIN
    UPDATE conversations SET flag_count = flag_count + 1 WHERE id = NEW.conversation_id;
    RETURN NEW;
END
$$ LANGUAGE plpgsql
"""

POSTGRES_TRIGGER = """
CREATE TRIGGER trg_flags_count_conversation AFTER INSERT ON flags
FOR EACH ROW EXECUTE FUNCTION guardchat_count_conversation_flag()
"""


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flag_count", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("ix_conversations_flag_count", ["flag_count", "id"], unique=False)

    with op.batch_alter_table("flags", schema=None) as batch_op:
        batch_op.drop_index("ix_flags_conversation")
        batch_op.create_index("ix_flags_conversation_created", ["conversation_id", "created_at", "id"], unique=False)
        batch_op.create_index("ix_flags_created", ["created_at", "id"], unique=False)

    with op.batch_alter_table("moderation_events", schema=None) as batch_op:
        batch_op.create_index("ix_moderation_events_created", ["created_at", "id"], unique=False)

    op.execute(
        "UPDATE conversations SET flag_count = "
        "(SELECT COUNT(*) FROM flags WHERE flags.conversation_id = conversations.id)"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        op.execute(POSTGRES_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    raise NotImplementedError("GuardChat migrations are forward-only")
