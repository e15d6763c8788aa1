"""SQLAlchemy 2.0 models: the conversation store and the moderation records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

Role = Literal["user", "moderator", "admin"]
MessageRole = Literal["system", "user", "assistant"]
MessageStatus = Literal["pending", "streaming", "complete", "blocked", "error", "interrupted"]
FlagSource = Literal["input_rail", "output_rail", "rail_error", "user_report"]
FlagStatus = Literal["open", "dismissed", "confirmed", "escalated"]

ROLES: tuple[str, ...] = ("user", "moderator", "admin")
MESSAGE_ROLES: tuple[str, ...] = ("system", "user", "assistant")
MESSAGE_STATUSES: tuple[str, ...] = ("pending", "streaming", "complete", "blocked", "error", "interrupted")
FLAG_SOURCES: tuple[str, ...] = ("input_rail", "output_rail", "rail_error", "user_report")
FLAG_STATUSES: tuple[str, ...] = ("open", "dismissed", "confirmed", "escalated")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    banned_at: Mapped[datetime | None] = mapped_column(default=None)
    # Written into each session cookie at sign-in; raising it (sign-out, new password, ban) ends every
    # session signed in before, on every device, although the signed cookies themselves stay valid.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def is_banned(self) -> bool:
        return self.banned_at is not None

    @property
    def is_moderator(self) -> bool:
        return self.role in ("moderator", "admin")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    user: Mapped[User] = relationship()


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_owner_recent", "owner_id", "deleted_at", "updated_at"),
        Index("ix_conversations_flag_count", "flag_count", "id"),
        # The per-minute turn limit reads only the conversations a user touched in the last minute.
        Index("ix_conversations_owner_updated", "owner_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200), default="New chat")
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    sampling: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    # Kept by a database trigger on INSERT INTO flags (migration 0002), so every path that raises a flag
    # counts; the moderation queue sorts "most flags in the conversation" on it through an index.
    flag_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    owner: Mapped[User] = relationship()


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
        CheckConstraint(_in("role", MESSAGE_ROLES), name="role"),
        CheckConstraint(_in("status", MESSAGE_STATUSES), name="status"),
        # Replies streaming right now: a handful of rows, read by the concurrent-streams limit on every turn
        # and by start-up recovery.
        Index(
            "ix_messages_streaming",
            "conversation_id",
            sqlite_where=text("status = 'streaming'"),
            postgresql_where=text("status = 'streaming'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="complete")
    verdict: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    tokens_in: Mapped[int | None] = mapped_column(default=None)
    tokens_out: Mapped[int | None] = mapped_column(default=None)
    latency_ms: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    conversation: Mapped[Conversation] = relationship()


class Flag(Base):
    __tablename__ = "flags"
    __table_args__ = (
        CheckConstraint(_in("source", FLAG_SOURCES), name="source"),
        CheckConstraint(_in("status", FLAG_STATUSES), name="status"),
        Index("ix_flags_status_created", "status", "created_at", "id"),
        Index("ix_flags_rail_created", "rail", "created_at"),
        Index("ix_flags_user_created", "user_id", "created_at"),
        Index("ix_flags_created", "created_at", "id"),
        Index("ix_flags_conversation_created", "conversation_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    rail: Mapped[str | None] = mapped_column(String(100), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    excerpt: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class ModerationEvent(Base):
    """Append-only audit trail; the app never updates or deletes these rows.

    ``actor_id`` is NULL for an action taken at the command line (shown as "cli"; migration 0005).
    """

    __tablename__ = "moderation_events"
    __table_args__ = (
        Index("ix_moderation_events_actor_created", "actor_id", "created_at"),
        Index("ix_moderation_events_action_created", "action", "created_at"),
        Index("ix_moderation_events_created", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))
    flag_id: Mapped[int | None] = mapped_column(ForeignKey("flags.id", ondelete="SET NULL"), default=None)
    target_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    note: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("message_id", "user_id", name="uq_feedback_message_user"),
        CheckConstraint("value IN (-1, 1)", name="value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    value: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
