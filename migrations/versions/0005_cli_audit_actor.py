"""moderation_events.actor_id nullable: bans, unbans and role changes from the command line are audited

Revision ID: 0005_cli_audit_actor
Revises: 0004_session_epoch
Create Date: 2026-11-28 09:00:00

`guardchat users ban | unban | set-role` used to change the account without an audit row. They now write
one through the same store functions as the staff pages, but the operator at the command line has no
account to name in ``actor_id``.

Decision: a NULL ``actor_id`` is the marker for "the command line", shown as "cli" in the audit log. No
second column (an ``actor_kind``) is added, because NULL cannot mean anything else: the foreign key to
``users`` has no ON DELETE, so a user with audit rows cannot be deleted from under them, and the only
writer, ``webapp.store.audit.record_event``, writes NULL only when handed ``Operator.CLI``. A marker
column would have needed a CHECK to stay consistent with ``actor_id``; if a second kind of actor without
an account ever appears, that migration adds the column and fills it from this NULL.

Downgrade makes the column NOT NULL again, but only while no command-line row exists: the audit trail
is never rewritten or pruned, so with such rows it stops and says so instead of deleting them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_cli_audit_actor"
down_revision = "0004_session_epoch"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("moderation_events", schema=None) as batch_op:
        batch_op.alter_column("actor_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    cli_rows = op.get_bind().scalar(sa.text("SELECT COUNT(*) FROM moderation_events WHERE actor_id IS NULL"))
    if cli_rows:
        raise RuntimeError(
            f"moderation_events holds {cli_rows} audit row(s) written at the command line (actor_id NULL), "
            "which revision 0004 cannot hold; the audit trail is never rewritten, so this downgrade stops here"
        )
    with op.batch_alter_table("moderation_events", schema=None) as batch_op:
        batch_op.alter_column("actor_id", existing_type=sa.Integer(), nullable=False)
