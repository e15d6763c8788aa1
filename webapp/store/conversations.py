"""Conversations and their messages, always scoped to the acting user.

Another user's conversation id behaves exactly like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from webapp.store.errors import InvalidInputError, NotFoundError
from webapp.store.models import MESSAGE_ROLES, MESSAGE_STATUSES, Conversation, Message, User, utcnow

MAX_TITLE_CHARS = 200
NOT_FOUND = "conversation not found"


def _title(title: str) -> str:
    cleaned = " ".join(title.split())
    if not cleaned:
        raise InvalidInputError("title must not be empty")
    if len(cleaned) > MAX_TITLE_CHARS:
        raise InvalidInputError(f"title is {len(cleaned)} characters; the limit is {MAX_TITLE_CHARS}")
    return cleaned


def _owned(user: User) -> Any:
    return select(Conversation).where(Conversation.owner_id == user.id, Conversation.deleted_at.is_(None))


def create_conversation(
    session: Session,
    *,
    user: User,
    title: str = "New chat",
    system_prompt: str = "",
    sampling: dict[str, Any] | None = None,
) -> Conversation:
    conversation = Conversation(
        owner_id=user.id, title=_title(title), system_prompt=system_prompt, sampling=dict(sampling or {})
    )
    session.add(conversation)
    session.flush()
    return conversation


def list_conversations(session: Session, *, user: User, search: str = "", limit: int = 100) -> list[Conversation]:
    """The user's conversations, newest activity first; ``search`` matches titles and message text."""
    stmt = _owned(user).order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit)
    if search.strip():
        pattern = f"%{search.strip()}%"
        # seq > 0: messages taken out by regenerate / edit are no longer part of what the owner sees.
        in_messages = exists().where(
            Message.conversation_id == Conversation.id, Message.seq > 0, Message.content.ilike(pattern)
        )
        stmt = stmt.where(Conversation.title.ilike(pattern) | in_messages)
    return list(session.scalars(stmt))


def get_conversation(
    session: Session, *, user: User, conversation_id: int, for_update: bool = False
) -> Conversation | None:
    stmt = _owned(user).where(Conversation.id == conversation_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def require_conversation(
    session: Session, *, user: User, conversation_id: int, for_update: bool = False
) -> Conversation:
    conversation = get_conversation(session, user=user, conversation_id=conversation_id, for_update=for_update)
    if conversation is None:
        raise NotFoundError(NOT_FOUND)
    return conversation


def rename_conversation(session: Session, *, user: User, conversation_id: int, title: str) -> Conversation:
    conversation = require_conversation(session, user=user, conversation_id=conversation_id)
    conversation.title = _title(title)
    return conversation


def delete_conversation(session: Session, *, user: User, conversation_id: int) -> None:
    """Soft delete: hidden from the owner, kept for moderators and flags."""
    conversation = require_conversation(session, user=user, conversation_id=conversation_id)
    conversation.deleted_at = utcnow()


def update_conversation_settings(
    session: Session,
    *,
    user: User,
    conversation_id: int,
    system_prompt: str | None = None,
    sampling: dict[str, Any] | None = None,
) -> Conversation:
    conversation = require_conversation(session, user=user, conversation_id=conversation_id)
    if system_prompt is not None:
        conversation.system_prompt = system_prompt
    if sampling is not None:
        conversation.sampling = dict(sampling)
    return conversation


def list_messages(session: Session, *, user: User, conversation_id: int) -> list[Message]:
    require_conversation(session, user=user, conversation_id=conversation_id)
    stmt = select(Message).where(Message.conversation_id == conversation_id, Message.seq > 0).order_by(Message.seq)
    return list(session.scalars(stmt))


def recent_user_messages(session: Session, *, user: User, conversation_id: int, limit: int) -> list[Message]:
    """The last ``limit`` user messages the model saw (passed and answered), oldest first."""
    if limit <= 0:
        return []
    stmt = (
        select(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Conversation.owner_id == user.id,
            Conversation.deleted_at.is_(None),
            Message.conversation_id == conversation_id,
            Message.role == "user",
            Message.status.in_(("complete", "interrupted")),
        )
        .order_by(Message.seq.desc())
        .limit(limit)
    )
    return list(reversed(list(session.scalars(stmt))))


def get_message(session: Session, *, user: User, message_id: int) -> Message | None:
    stmt = (
        select(Message)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(
            Message.id == message_id,
            Conversation.owner_id == user.id,
            Conversation.deleted_at.is_(None),
        )
    )
    return session.scalar(stmt)


def require_message(session: Session, *, user: User, message_id: int) -> Message:
    message = get_message(session, user=user, message_id=message_id)
    if message is None:
        raise NotFoundError("message not found")
    return message


@dataclass(frozen=True)
class NewMessage:
    """A message to append: ``append_messages`` gives it the next sequence number."""

    role: str
    content: str
    status: str = "complete"
    verdict: dict[str, Any] | None = None
    tokens_in: int | None = None


def _check_new(messages: Sequence[NewMessage]) -> None:
    for new in messages:
        if new.role not in MESSAGE_ROLES:
            raise InvalidInputError(f"unknown message role {new.role!r}; expected one of: {', '.join(MESSAGE_ROLES)}")
        if new.status not in MESSAGE_STATUSES:
            raise InvalidInputError(f"unknown message status {new.status!r}")


def _rows(messages: Sequence[NewMessage], *, after_seq: int, **conversation: Any) -> list[Message]:
    """Message rows numbered after ``after_seq``; ``conversation`` links them (its id or its object)."""
    return [
        Message(
            seq=after_seq + offset,
            role=new.role,
            content=new.content,
            status=new.status,
            verdict=new.verdict,
            tokens_in=new.tokens_in,
            **conversation,
        )
        for offset, new in enumerate(messages, start=1)
    ]


def append_messages(
    session: Session, *, user: User, conversation_id: int, messages: Sequence[NewMessage]
) -> list[Message]:
    """Append ``messages`` in order, with consecutive sequence numbers, in one flush."""
    _check_new(messages)
    # Row lock on PostgreSQL so two processes appending to one conversation get distinct seq numbers;
    # SQLite's BEGIN IMMEDIATE already serialises writers.
    conversation = require_conversation(session, user=user, conversation_id=conversation_id, for_update=True)
    last = session.scalar(
        select(func.max(Message.seq)).where(Message.conversation_id == conversation_id, Message.seq > 0)
    )
    rows = _rows(messages, after_seq=last or 0, conversation_id=conversation_id)
    session.add_all(rows)
    conversation.updated_at = utcnow()
    session.flush()
    return rows


def start_conversation(
    session: Session,
    *,
    user: User,
    title: str,
    system_prompt: str,
    sampling: dict[str, Any],
    messages: Sequence[NewMessage],
) -> tuple[Conversation, list[Message]]:
    """A new conversation of ``user`` holding ``messages`` (seq 1, 2, …), written in one flush: nothing else
    can see it yet, so it needs no lock and no sequence lookup."""
    _check_new(messages)
    conversation = Conversation(
        owner_id=user.id, title=_title(title), system_prompt=system_prompt, sampling=dict(sampling)
    )
    rows = _rows(messages, after_seq=0, conversation=conversation)
    session.add_all([conversation, *rows])
    session.flush()
    return conversation, rows


def append_message(
    session: Session,
    *,
    user: User,
    conversation_id: int,
    role: str,
    content: str,
    status: str = "complete",
    verdict: dict[str, Any] | None = None,
    tokens_in: int | None = None,
) -> Message:
    new = NewMessage(role=role, content=content, status=status, verdict=verdict, tokens_in=tokens_in)
    [message] = append_messages(session, user=user, conversation_id=conversation_id, messages=[new])
    return message


def finish_message(
    session: Session,
    *,
    user: User,
    message_id: int,
    status: str,
    content: str | None = None,
    verdict: dict[str, Any] | None = None,
    tokens_in: int | None = None,
    tokens_out: int | None = None,
    latency_ms: int | None = None,
) -> Message:
    if status not in MESSAGE_STATUSES:
        raise InvalidInputError(f"unknown message status {status!r}")
    message = require_message(session, user=user, message_id=message_id)
    message.status = status
    if content is not None:
        message.content = content
    if verdict is not None:
        message.verdict = verdict
    if tokens_in is not None:
        message.tokens_in = tokens_in
    if tokens_out is not None:
        message.tokens_out = tokens_out
    if latency_ms is not None:
        message.latency_ms = latency_ms
    return message


def update_message(session: Session, *, user: User, message_id: int, status: str, **values: Any) -> None:
    """``finish_message`` in one UPDATE, for a caller that needs no Message object back: ``values`` are columns
    to set (content, verdict, tokens_in, tokens_out, latency_ms); a None value is left as it is, as there."""
    if status not in MESSAGE_STATUSES:
        raise InvalidInputError(f"unknown message status {status!r}")
    unknown = set(values) - _FINISH_COLUMNS
    if unknown:
        raise InvalidInputError(f"not a column finish_message sets: {', '.join(sorted(unknown))}")
    visible = select(Conversation.id).where(Conversation.owner_id == user.id, Conversation.deleted_at.is_(None))
    result = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.conversation_id.in_(visible))
        .values(status=status, **{k: v for k, v in values.items() if v is not None})
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFoundError("message not found")


_FINISH_COLUMNS = frozenset({"content", "verdict", "tokens_in", "tokens_out", "latency_ms"})


def save_streamed_text(session: Session, *, user: User, message_id: int, content: str) -> bool:
    """Checkpoint the text shown so far of a reply that is still streaming; False once it has a final status.

    One conditional UPDATE, so a checkpoint that lands after the turn ended cannot overwrite the final reply.
    """
    owned = select(Conversation.id).where(Conversation.owner_id == user.id)
    result = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == "streaming", Message.conversation_id.in_(owned))
        .values(content=content)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def remove_messages_from(session: Session, *, user: User, conversation_id: int, seq: int) -> list[Message]:
    """Take messages with ``seq`` >= the given one out of the conversation (regenerate, edit-and-resend).

    Nothing is deleted: flags and moderators may still need them, so they move to a hidden negative
    sequence number that the owner's history never shows.
    """
    require_conversation(session, user=user, conversation_id=conversation_id, for_update=True)
    stmt = select(Message).where(Message.conversation_id == conversation_id, Message.seq >= seq)
    removed = list(session.scalars(stmt.order_by(Message.seq)))
    for message in removed:
        message.seq = -message.id
    session.flush()
    return removed


def interrupt_streaming_messages(session: Session, *, is_alive: Callable[[int], bool] = lambda _: False) -> int:
    """Mark replies left `streaming` by a dead process, and their `pending` user messages, as `interrupted`.

    A streaming reply carries its process's lease id (``verdict.stream_owner``); replies of live processes
    sharing the database are left alone.
    """
    rows = list(session.scalars(select(Message).where(Message.status.in_(("streaming", "pending")))))
    interrupted = 0
    for message in rows:
        if message.status != "streaming":
            continue
        owner = (message.verdict or {}).get("stream_owner")
        if isinstance(owner, int) and is_alive(owner):
            continue
        message.status = "interrupted"
        interrupted += 1
    live = {m.conversation_id for m in rows if m.status == "streaming"}
    for message in rows:
        if message.status == "pending" and message.conversation_id not in live:
            message.status = "interrupted"
    session.flush()
    return interrupted
