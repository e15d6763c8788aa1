"""The append-only audit trail of everything moderators and admins did, and the words it is read in.

Rows are only ever inserted: there is deliberately no function that changes or removes one. The action
vocabulary lives here, not with the flag or account code, because the log is what every action shares.
A row without an acting user (``actor_id`` NULL, migration 0005) was written by the command line and is
shown as "cli".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session, aliased

from webapp.store import users
from webapp.store.errors import InvalidInputError
from webapp.store.models import ModerationEvent, User
from webapp.store.permissions import Actor, Operator, require_staff

FLAG_ACTIONS: tuple[str, ...] = ("dismiss", "confirm", "escalate", "assign", "unassign")
ACCOUNT_ACTIONS: tuple[str, ...] = ("ban", "unban", "set_role", "create_user")
AUDIT_ACTIONS: tuple[str, ...] = (*FLAG_ACTIONS, *ACCOUNT_ACTIONS, "export")
PAST_TENSE = {
    "dismiss": "dismissed",
    "confirm": "confirmed",
    "escalate": "escalated",
    "assign": "assigned",
    "unassign": "unassigned",
    "ban": "banned",
    "unban": "unbanned",
}
MAX_NOTE_CHARS = 2000


def clean_note(note: str) -> str:
    """The moderator's note as it will be kept, or InvalidInputError before anything is changed."""
    cleaned = note.strip()
    if len(cleaned) > MAX_NOTE_CHARS:
        raise InvalidInputError(f"the note is {len(cleaned)} characters; the limit is {MAX_NOTE_CHARS}")
    return cleaned


def name_of(session: Session, user_id: int | None) -> str:
    """A user as a conflict message names them: the username, or words for a missing one."""
    if user_id is None:
        return "someone"
    return session.scalar(select(User.username).where(User.id == user_id)) or f"user #{user_id}"


def actor_label(username: str | None) -> str:
    """The acting user's name as the log shows it, given the username joined to the row (None: no user)."""
    return Operator.CLI.value if username is None else username


def event_actor(session: Session, event: ModerationEvent) -> str:
    """Who wrote ``event``, for a message that says who got there first."""
    return Operator.CLI.value if event.actor_id is None else name_of(session, event.actor_id)


def record_event(
    session: Session,
    *,
    actor: Actor,
    action: str,
    note: str = "",
    flag_id: int | None = None,
    target_user_id: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> ModerationEvent:
    """Append one audit row. There is deliberately no function that changes or removes one.

    A staff actor is checked again here, so no caller can write a row in the name of someone who is
    no longer staff; the command-line operator is written as a NULL ``actor_id``.
    """
    actor_id = None if isinstance(actor, Operator) else require_staff(session, actor).id
    if action not in AUDIT_ACTIONS:
        raise InvalidInputError(f"unknown audit action {action!r}")
    event = ModerationEvent(
        actor_id=actor_id,
        action=action,
        flag_id=flag_id,
        target_user_id=target_user_id,
        note=note,
        details=dict(details or {}),
    )
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class AuditFilter:
    moderator: str = ""  # username of the acting moderator, or "cli" for the command line; empty: everyone
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None  # exclusive

    def __post_init__(self) -> None:
        if self.action is not None and self.action not in AUDIT_ACTIONS:
            raise InvalidInputError(f"unknown action {self.action!r}; expected one of: {', '.join(AUDIT_ACTIONS)}")
        if self.since and self.until and self.since >= self.until:
            raise InvalidInputError("the audit date range ends before it starts")


@dataclass(frozen=True)
class AuditEntry:
    id: int
    created_at: datetime
    actor: str
    action: str
    flag_id: int | None
    target_user: str | None
    note: str
    details: dict[str, Any]


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_before: tuple[datetime, int] | None  # pass back as ``before`` for the next (older) page


def list_audit(
    session: Session,
    *,
    actor: User,
    filters: AuditFilter = AuditFilter(),
    before: tuple[datetime, int] | None = None,
    limit: int = 100,
) -> AuditPage:
    """Newest first, keyset-paged on (created_at, id)."""
    require_staff(session, actor)
    acting, target = aliased(User), aliased(User)
    stmt = (
        select(ModerationEvent, acting.username, target.username)
        .outerjoin(acting, acting.id == ModerationEvent.actor_id)
        .outerjoin(target, target.id == ModerationEvent.target_user_id)
        .order_by(ModerationEvent.created_at.desc(), ModerationEvent.id.desc())
        .limit(limit + 1)
    )
    if filters.moderator.strip():
        who = users.get_user_by_name(session, username=filters.moderator)
        if who is not None:
            stmt = stmt.where(ModerationEvent.actor_id == who.id)
        elif filters.moderator.strip().lower() == Operator.CLI.value:
            stmt = stmt.where(ModerationEvent.actor_id.is_(None))
        else:
            return AuditPage([], None)
    if filters.action:
        stmt = stmt.where(ModerationEvent.action == filters.action)
    if filters.since:
        stmt = stmt.where(ModerationEvent.created_at >= filters.since)
    if filters.until:
        stmt = stmt.where(ModerationEvent.created_at < filters.until)
    if before is not None:
        stmt = stmt.where(tuple_(ModerationEvent.created_at, ModerationEvent.id) < tuple_(*before))
    rows = session.execute(stmt).all()
    entries = [
        AuditEntry(
            id=e.id,
            created_at=e.created_at,
            actor=actor_label(actor_name),
            action=e.action,
            flag_id=e.flag_id,
            target_user=target_name,
            note=e.note,
            details=dict(e.details or {}),
        )
        for e, actor_name, target_name in rows[:limit]
    ]
    more = len(rows) > limit
    return AuditPage(entries, (entries[-1].created_at, entries[-1].id) if more and entries else None)
