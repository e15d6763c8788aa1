from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.store.conversations import require_conversation, require_message
from webapp.store.errors import InvalidInputError
from webapp.store.models import Feedback, Message, User, utcnow


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


def feedback_by_message(session: Session, *, user: User, conversation_id: int) -> dict[int, int]:
    """``user``'s vote (+1 or -1) on each reply of their conversation that has one, by message id.

    One query for the whole conversation: opening a long chat must not cost a query per reply.
    """
    require_conversation(session, user=user, conversation_id=conversation_id)
    rows = session.execute(
        select(Feedback.message_id, Feedback.value)
        .join(Message, Message.id == Feedback.message_id)
        .where(Message.conversation_id == conversation_id, Feedback.user_id == user.id)
    )
    return {message_id: value for message_id, value in rows.tuples()}
