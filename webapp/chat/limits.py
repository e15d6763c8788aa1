"""Per-user limits, counted from the database so they hold across several app processes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webapp.settings import Settings
from webapp.store.models import Conversation, Message, User, utcnow


class LimitError(Exception):
    """A request broke a limit; ``status`` is the HTTP status that fits, ``limit`` names the setting."""

    def __init__(self, message: str, *, status: int, limit: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.limit = limit
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class TurnLimits:
    max_message_chars: int
    rate_limit_per_minute: int
    max_concurrent_streams: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TurnLimits:
        return cls(
            max_message_chars=settings.max_message_chars,
            rate_limit_per_minute=settings.rate_limit_per_minute,
            max_concurrent_streams=settings.max_concurrent_streams,
        )


def clean_message(text: str, *, max_chars: int) -> str:
    """Validate a user message: no NUL bytes or lone surrogates, not empty, not too long."""
    if "\x00" in text:
        raise LimitError("message contains a NUL byte", status=400, limit="encoding")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise LimitError("message is not valid UTF-8 text", status=400, limit="encoding") from None
    stripped = text.strip()
    if not stripped:
        raise LimitError("message is empty", status=400, limit="empty")
    if len(stripped) > max_chars:
        raise LimitError(
            f"message is {len(stripped)} characters; the limit is {max_chars} (GUARDCHAT_MAX_MESSAGE_CHARS)",
            status=413,
            limit="max_message_chars",
        )
    return stripped


def check_turn_allowed(session: Session, *, user: User, limits: TurnLimits) -> None:
    """Raise LimitError if ``user`` may not start a turn now. Call inside the write transaction."""
    since = utcnow() - timedelta(minutes=1)
    # A message sent in the last minute updated its conversation then too (the margin covers the moment
    # between the two timestamps), so only the conversations touched lately are searched.
    touched = select(Conversation.id).where(
        Conversation.owner_id == user.id, Conversation.updated_at >= since - timedelta(seconds=5)
    )
    recent = session.scalar(
        select(func.count(Message.id)).where(
            Message.conversation_id.in_(touched.scalar_subquery()),
            Message.role == "user",
            Message.created_at >= since,
        )
    )
    if (recent or 0) >= limits.rate_limit_per_minute:
        raise LimitError(
            f"rate limit: {limits.rate_limit_per_minute} messages per minute (GUARDCHAT_RATE_LIMIT_PER_MINUTE)",
            status=429,
            limit="rate_limit_per_minute",
            retry_after_s=60,
        )
    owned = select(Conversation.id).where(Conversation.owner_id == user.id)
    streaming = session.scalar(
        select(func.count(Message.id)).where(
            Message.status == "streaming", Message.conversation_id.in_(owned.scalar_subquery())
        )
    )
    if (streaming or 0) >= limits.max_concurrent_streams:
        raise LimitError(
            f"too many replies at once: {limits.max_concurrent_streams} (GUARDCHAT_MAX_CONCURRENT_STREAMS)",
            status=429,
            limit="max_concurrent_streams",
            retry_after_s=5,
        )
