"""One flag as a moderator reviews it: the whole transcript, the guard's verdict, and the user's record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webapp.guard.verdict import Verdict, VerdictFormatError
from webapp.moderation.queue import as_utc
from webapp.store.audit import AuditEntry, actor_label
from webapp.store.errors import NotFoundError
from webapp.store.models import FLAG_STATUSES, Conversation, Flag, Message, ModerationEvent, User
from webapp.store.permissions import require_staff


@dataclass(frozen=True)
class TranscriptTurn:
    id: int
    role: str
    status: str
    content: str
    created_at: datetime
    withdrawn: bool  # taken out of the owner's history by regenerate / edit-and-resend
    flagged: bool  # the turn this flag is about


@dataclass(frozen=True)
class FlagHistory:
    """How often this user has been flagged, by outcome."""

    total: int
    by_status: dict[str, int]

    @property
    def confirmed(self) -> int:
        return self.by_status.get("confirmed", 0)


@dataclass(frozen=True)
class FlagDetail:
    id: int
    version: int
    status: str
    source: str
    rail: str | None
    reason: str
    excerpt: str
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    assignee: str | None
    user_id: int
    username: str
    user_role: str
    user_banned: bool
    conversation_id: int
    conversation_title: str
    conversation_deleted: bool
    conversation_flags: int
    transcript: list[TranscriptTurn]
    verdict: Verdict | None
    verdict_error: str | None  # the stored verdict could not be read (shown raw instead)
    raw_verdict: dict[str, Any] | None
    blocked_text: str | None  # moderator-only: what the rail kept from the user or the model
    history: FlagHistory
    events: list[AuditEntry]


def verdict_holder(transcript: list[Message], flagged_id: int | None) -> Message | None:
    """The message holding the verdict: the flagged one, or for an input block, the reply that follows it."""
    if flagged_id is None:
        return None
    after = False
    for message in transcript:
        if message.id == flagged_id:
            if message.verdict:
                return message
            after = True
        elif after and message.role == "assistant" and message.verdict:
            return message
    return None


def _history(session: Session, user_id: int) -> FlagHistory:
    rows = session.execute(select(Flag.status, func.count()).where(Flag.user_id == user_id).group_by(Flag.status)).all()
    by_status = {status: 0 for status in FLAG_STATUSES} | {status: int(n) for status, n in rows}
    return FlagHistory(total=sum(by_status.values()), by_status=by_status)


def _events(session: Session, flag_id: int) -> list[AuditEntry]:
    rows = session.execute(
        select(ModerationEvent, User.username)
        .outerjoin(User, User.id == ModerationEvent.actor_id)
        .where(ModerationEvent.flag_id == flag_id)
        .order_by(ModerationEvent.created_at, ModerationEvent.id)
    ).all()
    return [
        AuditEntry(
            e.id, as_utc(e.created_at), actor_label(name), e.action, e.flag_id, None, e.note, dict(e.details or {})
        )
        for e, name in rows
    ]


def _name(session: Session, user_id: int | None) -> str | None:
    return None if user_id is None else session.scalar(select(User.username).where(User.id == user_id))


def load_flag_detail(session: Session, *, actor: User, flag_id: int) -> FlagDetail:
    require_staff(session, actor)
    flag = session.get(Flag, flag_id)
    if flag is None:
        raise NotFoundError(f"flag #{flag_id} does not exist")
    owner = session.get(User, flag.user_id)
    conversation = session.get(Conversation, flag.conversation_id)
    if owner is None or conversation is None:
        raise NotFoundError(f"flag #{flag_id} points at a user or conversation that no longer exists")
    # Insertion order, with withdrawn turns (negative seq) in place: the moderator sees what happened.
    messages = list(
        session.scalars(select(Message).where(Message.conversation_id == conversation.id).order_by(Message.id))
    )
    holder = verdict_holder(messages, flag.message_id)
    raw = dict(holder.verdict) if holder is not None and holder.verdict else None
    verdict: Verdict | None = None
    verdict_error: str | None = None
    if raw is not None:
        try:
            verdict = Verdict.from_json(raw)
        except VerdictFormatError as exc:
            verdict_error = str(exc)
    blocked = raw.get("blocked_text") if raw else None
    return FlagDetail(
        id=flag.id,
        version=flag.version,
        status=flag.status,
        source=flag.source,
        rail=flag.rail,
        reason=flag.reason,
        excerpt=flag.excerpt,
        created_at=as_utc(flag.created_at),
        resolved_at=as_utc(flag.resolved_at) if flag.resolved_at else None,
        resolved_by=_name(session, flag.resolved_by_id),
        assignee=_name(session, flag.assignee_id),
        user_id=owner.id,
        username=owner.username,
        user_role=owner.role,
        user_banned=owner.is_banned,
        conversation_id=conversation.id,
        conversation_title=conversation.title,
        conversation_deleted=conversation.deleted_at is not None,
        conversation_flags=conversation.flag_count,
        transcript=[
            TranscriptTurn(
                id=m.id,
                role=m.role,
                status=m.status,
                content=m.content,
                created_at=as_utc(m.created_at),
                withdrawn=m.seq < 0,
                flagged=m.id == flag.message_id,
            )
            for m in messages
        ],
        verdict=verdict,
        verdict_error=verdict_error,
        raw_verdict=raw,
        blocked_text=blocked if isinstance(blocked, str) else None,
        history=_history(session, owner.id),
        events=_events(session, flag.id),
    )
