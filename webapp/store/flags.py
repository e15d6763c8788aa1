"""Raising flags: rail blocks, rail errors and user reports all land in the moderators' queue."""

from __future__ import annotations

from sqlalchemy.orm import Session

from webapp.store.conversations import require_message
from webapp.store.errors import InvalidInputError
from webapp.store.models import FLAG_SOURCES, Flag, Message, User

EXCERPT_CHARS = 500
MAX_REPORT_REASON_CHARS = 1000


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def raise_flag(
    session: Session,
    *,
    message: Message,
    owner_id: int,
    source: str,
    rail: str | None,
    reason: str,
    text: str,
) -> Flag:
    """Flag ``message`` (owned by ``owner_id``); ``text`` is what the moderator needs to see."""
    if source not in FLAG_SOURCES:
        raise InvalidInputError(f"unknown flag source {source!r}")
    flag = Flag(
        message_id=message.id,
        conversation_id=message.conversation_id,
        user_id=owner_id,
        source=source,
        rail=rail,
        reason=reason[:2000],
        excerpt=excerpt(text),
    )
    session.add(flag)
    session.flush()
    return flag


def report_message(session: Session, *, user: User, message_id: int, reason: str) -> Flag:
    """A user reports a reply in one of their own conversations."""
    reason = reason.strip()
    if not reason:
        raise InvalidInputError("a report needs a reason")
    if len(reason) > MAX_REPORT_REASON_CHARS:
        raise InvalidInputError(f"report reason is {len(reason)} characters; the limit is {MAX_REPORT_REASON_CHARS}")
    message = require_message(session, user=user, message_id=message_id)
    if message.role != "assistant":
        raise InvalidInputError("only assistant replies can be reported")
    return raise_flag(
        session,
        message=message,
        owner_id=user.id,
        source="user_report",
        rail=None,
        reason=reason,
        text=message.content,
    )
