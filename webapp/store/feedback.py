from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.store.conversations import require_message
from webapp.store.errors import InvalidInputError
from webapp.store.models import Feedback, User, utcnow


def set_feedback(session: Session, *, user: User, message_id: int, value: int, comment: str = "") -> Feedback:
    """Thumbs up (+1) or down (-1) on a reply in the user's own conversation; a second vote replaces the first."""
    if value not in (-1, 1):
        raise InvalidInputError("feedback value must be +1 or -1")
    message = require_message(session, user=user, message_id=message_id)
    if message.role != "assistant":
        raise InvalidInputError("only assistant replies take feedback")
    row = session.scalar(select(Feedback).where(Feedback.message_id == message.id, Feedback.user_id == user.id))
    if row is None:
        row = Feedback(message_id=message.id, user_id=user.id, value=value, comment=comment[:2000])
        session.add(row)
    else:
        row.value, row.comment, row.created_at = value, comment[:2000], utcnow()
    session.flush()
    return row


def get_feedback(session: Session, *, user: User, message_id: int) -> Feedback | None:
    message = require_message(session, user=user, message_id=message_id)
    return session.scalar(select(Feedback).where(Feedback.message_id == message.id, Feedback.user_id == user.id))
