"""The review queue: filtered, sorted and keyset-paged flags.

Every sort pages on a key an index already holds in order, so page 2,000 costs what page 1 costs:
newest/oldest walk ``(status, created_at, id)`` (or ``(created_at, id)`` for every status), and "most
flags in the conversation" walks conversations by ``(flag_count, id)`` and each one's flags by
``(conversation_id, created_at, id)``. The cursor is the last row's sort key, opaque to the page.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Select, Table, and_, func, or_, select, tuple_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import Join

from webapp.store import users
from webapp.store.errors import InvalidInputError
from webapp.store.models import FLAG_SOURCES, FLAG_STATUSES, Conversation, Flag, User
from webapp.store.permissions import require_staff

AnySelect = Select[*tuple[Any, ...]]
QUEUE_SORTS: tuple[str, ...] = ("newest", "oldest", "most_flagged")
Assignment = Literal["anyone", "me", "unassigned"]
ASSIGNMENTS: tuple[str, ...] = ("anyone", "me", "unassigned")
MAX_SEARCH_CHARS = 200
MAX_PAGE_SIZE = 200


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything GuardChat stores is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class QueueFilter:
    status: str | None = "open"  # None: every status
    source: str | None = None
    rail: str | None = None
    username: str = ""
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    text: str = ""
    assignment: Assignment = "anyone"

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in FLAG_STATUSES:
            raise InvalidInputError(f"unknown status {self.status!r}; expected one of: {', '.join(FLAG_STATUSES)}")
        if self.source is not None and self.source not in FLAG_SOURCES:
            raise InvalidInputError(f"unknown source {self.source!r}; expected one of: {', '.join(FLAG_SOURCES)}")
        if self.assignment not in ASSIGNMENTS:
            raise InvalidInputError(f"unknown assignment filter {self.assignment!r}")
        if len(self.text) > MAX_SEARCH_CHARS:
            raise InvalidInputError(f"the search text is {len(self.text)} characters; the limit is {MAX_SEARCH_CHARS}")
        if self.since and self.until and as_utc(self.since) >= as_utc(self.until):
            raise InvalidInputError("the date range ends before it starts")

    def describe(self) -> dict[str, Any]:
        """The filter as plain JSON (for the audit row of an export)."""
        return {
            "status": self.status,
            "source": self.source,
            "rail": self.rail,
            "username": self.username,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "text": self.text,
            "assignment": self.assignment,
        }


@dataclass(frozen=True)
class QueueItem:
    id: int
    version: int
    created_at: datetime
    status: str
    source: str
    rail: str | None
    reason: str
    excerpt: str
    user_id: int
    username: str
    conversation_id: int
    message_id: int | None
    conversation_flags: int
    assignee: str | None


@dataclass(frozen=True)
class QueuePage:
    items: list[QueueItem]
    next_cursor: str | None


# --- cursors -------------------------------------------------------------------------------------


def _encode(sort: str, item: QueueItem) -> str:
    key: list[Any] = [as_utc(item.created_at).isoformat(), item.id]
    if sort == "most_flagged":
        key = [item.conversation_flags, item.conversation_id, *key]
    raw = json.dumps([sort, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(sort: str, cursor: str) -> list[Any]:
    malformed = InvalidInputError("the page cursor is malformed; start again from the first page")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
        if not isinstance(parts, list) or parts[0] != sort:
            raise malformed
        key = parts[1:]
        *counts, created, flag_id = key
        if len(counts) != (2 if sort == "most_flagged" else 0):
            raise malformed
        if not all(isinstance(n, int) for n in (*counts, flag_id)):
            raise malformed
        return [*counts, as_utc(datetime.fromisoformat(created)), flag_id]
    except InvalidInputError:
        raise
    except (ValueError, TypeError, IndexError, json.JSONDecodeError):
        raise malformed from None


# --- the query ------------------------------------------------------------------------------------


class ConversationsFirst(Join):
    """conversations JOIN flags, with conversations as the outer loop.

    Without statistics SQLite's planner starts from the flags index on ``status`` and then sorts every
    open flag by conversation (a temp B-tree over 50k rows); ``CROSS JOIN`` is SQLite's documented way
    to fix the join order, so it walks ``ix_conversations_flag_count`` in order and stops after a page.
    """

    inherit_cache = True


@compiles(ConversationsFirst)
def _join(join: ConversationsFirst, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.visit_join(join, **kw)


@compiles(ConversationsFirst, "sqlite")
def _sqlite_cross_join(join: ConversationsFirst, compiler: SQLCompiler, **kw: Any) -> str:
    assert isinstance(join.left, Table), "the outer side must be a plain table"
    return compiler.visit_join(join, **kw).replace(" JOIN ", " CROSS JOIN ", 1)


# --- filters ------------------------------------------------------------------------------------


def _filtered(session: Session, stmt: AnySelect, filters: QueueFilter, staff: User) -> AnySelect | None:
    """``stmt`` narrowed by the filters, or None when they can match nothing (an unknown user)."""
    if filters.status:
        stmt = stmt.where(Flag.status == filters.status)
    if filters.source:
        stmt = stmt.where(Flag.source == filters.source)
    if filters.rail:
        stmt = stmt.where(Flag.rail == filters.rail)
    if filters.username.strip():
        owner = users.get_user_by_name(session, username=filters.username)
        if owner is None:
            return None
        stmt = stmt.where(Flag.user_id == owner.id)
    if filters.since:
        stmt = stmt.where(Flag.created_at >= as_utc(filters.since))
    if filters.until:
        stmt = stmt.where(Flag.created_at < as_utc(filters.until))
    if filters.text.strip():
        stmt = _containing(stmt, filters.text.strip())
    return _assigned(stmt, filters.assignment, staff)


def _containing(stmt: AnySelect, needle: str) -> AnySelect:
    """Flags whose excerpt or reason contains ``needle`` (case-insensitive, taken literally: no wildcards)."""
    return stmt.where(
        or_(Flag.excerpt.icontains(needle, autoescape=True), Flag.reason.icontains(needle, autoescape=True))
    )


def _assigned(stmt: AnySelect, assignment: Assignment, staff: User) -> AnySelect:
    """Flags assigned to ``staff`` ("me"), to no one ("unassigned"), or to anyone."""
    if assignment == "me":
        return stmt.where(Flag.assignee_id == staff.id)
    if assignment == "unassigned":
        return stmt.where(Flag.assignee_id.is_(None))
    return stmt


def _queue_statement(
    session: Session, *, staff: User, filters: QueueFilter, sort: str, after: str | None, limit: int
) -> AnySelect | None:
    if sort not in QUEUE_SORTS:
        raise InvalidInputError(f"unknown sort {sort!r}; expected one of: {', '.join(QUEUE_SORTS)}")
    assignee = aliased(User)
    columns = (Flag, User.username, Conversation.flag_count, assignee.username)
    if sort == "most_flagged" and not filters.username.strip():
        join = ConversationsFirst(Conversation.__table__, Flag.__table__, Flag.conversation_id == Conversation.id)
        stmt: AnySelect = select(*columns).select_from(join)
    else:
        # Flags first; for "most flagged" this is only used for one user, whose few flags are cheap to sort.
        stmt = select(*columns).join(Conversation, Conversation.id == Flag.conversation_id)
    stmt = stmt.join(User, User.id == Flag.user_id).outerjoin(assignee, assignee.id == Flag.assignee_id)
    filtered = _filtered(session, stmt, filters, staff)
    if filtered is None:
        return None
    stmt = filtered
    key = _decode(sort, after) if after else None
    if sort == "most_flagged":
        stmt = stmt.order_by(
            Conversation.flag_count.desc(), Conversation.id.desc(), Flag.created_at.desc(), Flag.id.desc()
        )
        if key is not None:
            count, conversation_id, created, flag_id = key
            stmt = stmt.where(
                tuple_(Conversation.flag_count, Conversation.id) <= tuple_(count, conversation_id),
                or_(
                    tuple_(Conversation.flag_count, Conversation.id) < tuple_(count, conversation_id),
                    and_(
                        Conversation.id == conversation_id,
                        tuple_(Flag.created_at, Flag.id) < tuple_(created, flag_id),
                    ),
                ),
            )
    elif sort == "newest":
        stmt = stmt.order_by(Flag.created_at.desc(), Flag.id.desc())
        if key is not None:
            stmt = stmt.where(tuple_(Flag.created_at, Flag.id) < tuple_(*key))
    else:
        stmt = stmt.order_by(Flag.created_at.asc(), Flag.id.asc())
        if key is not None:
            stmt = stmt.where(tuple_(Flag.created_at, Flag.id) > tuple_(*key))
    return stmt.limit(limit + 1)


def list_queue(
    session: Session,
    *,
    actor: User,
    filters: QueueFilter = QueueFilter(),
    sort: str = "newest",
    after: str | None = None,
    limit: int = 50,
) -> QueuePage:
    """One page of the queue; pass ``next_cursor`` back as ``after`` for the next one."""
    staff = require_staff(session, actor)
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInputError(f"page size must be between 1 and {MAX_PAGE_SIZE}")
    stmt = _queue_statement(session, staff=staff, filters=filters, sort=sort, after=after, limit=limit)
    if stmt is None:
        return QueuePage([], None)
    rows = session.execute(stmt).all()
    items = [
        QueueItem(
            id=flag.id,
            version=flag.version,
            created_at=as_utc(flag.created_at),
            status=flag.status,
            source=flag.source,
            rail=flag.rail,
            reason=flag.reason,
            excerpt=flag.excerpt,
            user_id=flag.user_id,
            username=username,
            conversation_id=flag.conversation_id,
            message_id=flag.message_id,
            conversation_flags=flag_count,
            assignee=assignee,
        )
        for flag, username, flag_count, assignee in rows[:limit]
    ]
    more = len(rows) > limit
    return QueuePage(items, _encode(sort, items[-1]) if more and items else None)


def count_queue(session: Session, *, actor: User, filters: QueueFilter = QueueFilter()) -> int:
    staff = require_staff(session, actor)
    stmt = _filtered(session, select(func.count(Flag.id)), filters, staff)
    return 0 if stmt is None else int(session.scalar(stmt) or 0)


def known_rails(session: Session, *, actor: User) -> list[str]:
    """Rail names that have raised a flag, for the filter's choices (an index-only scan)."""
    require_staff(session, actor)
    rails = session.scalars(select(Flag.rail).where(Flag.rail.is_not(None)).distinct().order_by(Flag.rail))
    return [r for r in rails if r is not None]
