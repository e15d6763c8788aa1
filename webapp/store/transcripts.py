"""A conversation as its owner's chat page shows it, read without building an ORM object per message.

Opening a long chat is the store's hottest read. It costs two queries: the scoped conversation lookup,
then one select of the visible messages with the acting user's votes joined in. Only the rail
``checks`` of each verdict leave the database: the blocked text and the rail prompts stay there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from webapp.store.conversations import require_conversation
from webapp.store.models import Conversation, Feedback, Message, User


class TranscriptMessage(NamedTuple):
    """One visible message, with what the chat page renders of it."""

    id: int
    role: str
    content: str
    status: str
    checks: Any  # the verdict's "checks" as stored (a list of dicts); None when there is no verdict
    vote: int | None  # the acting user's +1 / -1 on this message; None when they gave none


@dataclass(frozen=True)
class Transcript:
    conversation: Conversation
    messages: tuple[TranscriptMessage, ...]  # in conversation order


def read_transcript(session: Session, *, user: User, conversation_id: int) -> Transcript:
    """``user``'s conversation and its visible messages; NotFoundError for anyone else's, as for a missing id."""
    conversation = require_conversation(session, user=user, conversation_id=conversation_id)
    rows = session.execute(
        select(Message.id, Message.role, Message.content, Message.status, Message.verdict["checks"], Feedback.value)
        .outerjoin(Feedback, (Feedback.message_id == Message.id) & (Feedback.user_id == user.id))
        # seq > 0, as in list_messages: messages taken out by regenerate / edit are hidden from the owner.
        .where(Message.conversation_id == conversation.id, Message.seq > 0)
        .order_by(Message.seq)
    )
    return Transcript(conversation, tuple(TranscriptMessage(*row) for row in rows))
