"""What moderators and admins may do, and the append-only audit trail of everything they did.

Every function takes the acting user and re-reads their role from the database in the same transaction,
so a role taken away a second ago no longer works, whatever page or API call the request came from.
Flag changes are conditional UPDATEs (``WHERE status IN (...) AND version = ...``): when two moderators
act on one flag, the second UPDATE matches no row and its author is told who got there first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.orm import Session, aliased

from webapp.store import users
from webapp.store.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
)
from webapp.store.models import Flag, ModerationEvent, User, utcnow

FLAG_ACTIONS: tuple[str, ...] = ("dismiss", "confirm", "escalate", "assign", "unassign")
ACCOUNT_ACTIONS: tuple[str, ...] = ("ban", "unban", "set_role", "create_user")
AUDIT_ACTIONS: tuple[str, ...] = (*FLAG_ACTIONS, *ACCOUNT_ACTIONS, "export")

# Which statuses each action may leave; "confirmed" and "dismissed" are final.
_TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "dismiss": (("open", "escalated"), "dismissed"),
    "confirm": (("open", "escalated"), "confirmed"),
    "escalate": (("open",), "escalated"),
}
_ACTIVE = ("open", "escalated")
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
MAX_BULK_FLAGS = 200
STAFF_ONLY = "moderators only: your account is not a moderator"
ADMINS_ONLY = "admins only: only an admin can do this"


# --- who may act ------------------------------------------------------------------------------------


def _current(session: Session, actor: User | None) -> User | None:
    if actor is None:
        return None
    user = session.get(User, actor.id)
    return None if user is None or user.is_banned else user


def require_staff(session: Session, actor: User | None) -> User:
    """The acting moderator or admin, as the database knows them now, or PermissionDeniedError."""
    user = _current(session, actor)
    if user is None or not user.is_moderator:
        raise PermissionDeniedError(STAFF_ONLY)
    return user


def require_admin(session: Session, actor: User | None) -> User:
    user = _current(session, actor)
    if user is None or user.role != "admin":
        raise PermissionDeniedError(ADMINS_ONLY)
    return user


def _note(note: str) -> str:
    cleaned = note.strip()
    if len(cleaned) > MAX_NOTE_CHARS:
        raise InvalidInputError(f"the note is {len(cleaned)} characters; the limit is {MAX_NOTE_CHARS}")
    return cleaned


# --- the audit trail --------------------------------------------------------------------------------


def record_event(
    session: Session,
    *,
    actor: User,
    action: str,
    note: str = "",
    flag_id: int | None = None,
    target_user_id: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> ModerationEvent:
    """Append one audit row. There is deliberately no function that changes or removes one."""
    actor = require_staff(session, actor)
    if action not in AUDIT_ACTIONS:
        raise InvalidInputError(f"unknown audit action {action!r}")
    event = ModerationEvent(
        actor_id=actor.id,
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
    moderator: str = ""  # username of the acting moderator; empty: everyone
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
        .join(acting, acting.id == ModerationEvent.actor_id)
        .outerjoin(target, target.id == ModerationEvent.target_user_id)
        .order_by(ModerationEvent.created_at.desc(), ModerationEvent.id.desc())
        .limit(limit + 1)
    )
    if filters.moderator.strip():
        who = users.get_user_by_name(session, username=filters.moderator)
        if who is None:
            return AuditPage([], None)
        stmt = stmt.where(ModerationEvent.actor_id == who.id)
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
            actor=actor_name,
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


# --- flags ------------------------------------------------------------------------------------------


def _username(session: Session, user_id: int | None) -> str:
    if user_id is None:
        return "someone"
    return session.scalar(select(User.username).where(User.id == user_id)) or f"user #{user_id}"


def _conflict(session: Session, flag_id: int, action: str) -> StoreError:
    """Why a conditional update matched nothing: who got there first, in words for the moderator."""
    session.expire_all()
    flag = session.get(Flag, flag_id)
    if flag is None:
        return NotFoundError(f"flag #{flag_id} does not exist")
    if flag.status in ("dismissed", "confirmed"):
        when = flag.resolved_at.strftime("%Y-%m-%d %H:%M UTC") if flag.resolved_at else ""
        return ConflictError(
            f"Flag #{flag_id} was already {flag.status} by {_username(session, flag.resolved_by_id)}"
            + (f" at {when}" if when else "")
            + "."
        )
    last = session.scalar(
        select(ModerationEvent)
        .where(ModerationEvent.flag_id == flag_id)
        .order_by(ModerationEvent.created_at.desc(), ModerationEvent.id.desc())
        .limit(1)
    )
    if action == "assign" and flag.assignee_id is not None:
        return ConflictError(f"Flag #{flag_id} is already assigned to {_username(session, flag.assignee_id)}.")
    if action == "unassign" and flag.assignee_id is None:
        return ConflictError(f"Flag #{flag_id} is not assigned to anyone.")
    if action == "escalate" and flag.status == "escalated":
        by = _username(session, last.actor_id) if last else "someone"
        return ConflictError(f"Flag #{flag_id} was already escalated by {by}.")
    if last is not None:
        return ConflictError(
            f"Flag #{flag_id} changed since you loaded it: {PAST_TENSE.get(last.action, last.action)} by "
            f"{_username(session, last.actor_id)}. Reload it and try again."
        )
    return ConflictError(f"Flag #{flag_id} changed since you loaded it. Reload it and try again.")


def act_on_flag(
    session: Session,
    *,
    actor: User,
    flag_id: int,
    action: str,
    note: str = "",
    expected_version: int | None = None,
) -> ModerationEvent:
    """Dismiss, confirm, escalate, assign to the actor, or unassign one flag; returns the audit row.

    ``expected_version`` is the flag version the moderator was looking at: any change since then
    (another moderator's action) makes this a ConflictError instead of a silent overwrite.
    """
    staff = require_staff(session, actor)
    if action not in FLAG_ACTIONS:
        raise InvalidInputError(f"unknown flag action {action!r}; expected one of: {', '.join(FLAG_ACTIONS)}")
    text = _note(note)
    before = session.execute(select(Flag.status, Flag.assignee_id).where(Flag.id == flag_id)).first()
    if before is None:
        raise NotFoundError(f"flag #{flag_id} does not exist")

    stmt = update(Flag).where(Flag.id == flag_id)
    values: dict[str, Any] = {"version": Flag.version + 1}
    details: dict[str, Any] = {}
    if action in _TRANSITIONS:
        sources, target = _TRANSITIONS[action]
        stmt = stmt.where(Flag.status.in_(sources))
        final = target in ("dismissed", "confirmed")
        values.update(
            status=target, resolved_at=utcnow() if final else None, resolved_by_id=staff.id if final else None
        )
        details = {"from": before.status, "to": target}
    elif action == "assign":
        if before.assignee_id == staff.id:
            raise ConflictError(f"Flag #{flag_id} is already assigned to you.")
        stmt = stmt.where(Flag.status.in_(_ACTIVE), Flag.assignee_id.is_(None))
        values["assignee_id"] = staff.id
        details = {"assignee": staff.username}
    else:
        stmt = stmt.where(Flag.assignee_id.is_not(None))
        values["assignee_id"] = None
        details = {"previous_assignee": _username(session, before.assignee_id)}
    if expected_version is not None:
        stmt = stmt.where(Flag.version == expected_version)

    result = session.execute(stmt.values(**values).execution_options(synchronize_session=False))
    if result.rowcount != 1:  # type: ignore[attr-defined]
        if action == "assign" and before.status not in _ACTIVE:
            raise ConflictError(f"Flag #{flag_id} is already {before.status}; there is nothing left to assign.")
        raise _conflict(session, flag_id, action)
    owner_id = session.scalar(select(Flag.user_id).where(Flag.id == flag_id))
    return record_event(
        session, actor=staff, action=action, note=text, flag_id=flag_id, target_user_id=owner_id, details=details
    )


@dataclass
class BulkOutcome:
    done: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)  # flag id → why (conflict, not found)


def act_on_flags(
    session: Session,
    *,
    actor: User,
    flag_ids: Sequence[int],
    action: str,
    note: str = "",
    expected_versions: Mapping[int, int] | None = None,
) -> BulkOutcome:
    """The same action on a selection; each flag succeeds or is refused on its own, with the reason."""
    require_staff(session, actor)
    ids = list(dict.fromkeys(flag_ids))
    if not ids:
        raise InvalidInputError("select at least one flag")
    if len(ids) > MAX_BULK_FLAGS:
        raise InvalidInputError(f"{len(ids)} flags selected; a bulk action takes at most {MAX_BULK_FLAGS}")
    outcome = BulkOutcome()
    for flag_id in ids:
        expected = (expected_versions or {}).get(flag_id)
        try:
            act_on_flag(session, actor=actor, flag_id=flag_id, action=action, note=note, expected_version=expected)
        except (ConflictError, NotFoundError) as exc:
            outcome.refused[flag_id] = str(exc)
        else:
            outcome.done.append(flag_id)
    return outcome


# --- accounts ---------------------------------------------------------------------------------------


def _target(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"user #{user_id} does not exist")
    return user


def _may_moderate(staff: User, target: User) -> None:
    if target.id == staff.id:
        raise PermissionDeniedError("you cannot ban or unban your own account")
    if target.role != "user" and staff.role != "admin":
        raise PermissionDeniedError(f"{target.username} is a {target.role}: only an admin can ban or unban them")


def ban_user(
    session: Session, *, actor: User, user_id: int, note: str = "", flag_id: int | None = None
) -> ModerationEvent:
    """Suspend an account: its sessions and API keys stop working on their next request."""
    return _set_banned(session, actor=actor, user_id=user_id, note=note, flag_id=flag_id, banned=True)


def unban_user(
    session: Session, *, actor: User, user_id: int, note: str = "", flag_id: int | None = None
) -> ModerationEvent:
    return _set_banned(session, actor=actor, user_id=user_id, note=note, flag_id=flag_id, banned=False)


def _set_banned(
    session: Session, *, actor: User, user_id: int, note: str, flag_id: int | None, banned: bool
) -> ModerationEvent:
    """Ban or unban with a conditional UPDATE: of two moderators doing the same, the second is told who was first."""
    staff = require_staff(session, actor)
    text = _note(note)
    target = _target(session, user_id)
    _may_moderate(staff, target)
    action = "ban" if banned else "unban"
    not_yet = User.banned_at.is_(None) if banned else User.banned_at.is_not(None)
    result = session.execute(
        update(User)
        .where(User.id == target.id, not_yet)
        .values(
            banned_at=utcnow() if banned else None,
            # A ban ends the user's sessions for good: unbanning does not revive them.
            session_epoch=User.session_epoch + (1 if banned else 0),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        state = "already banned" if banned else "not banned"
        raise ConflictError(f"{target.username} is {state}{_last_by(session, target.id, action)}.")
    return record_event(session, actor=staff, action=action, note=text, flag_id=flag_id, target_user_id=target.id)


def _last_by(session: Session, target_user_id: int, action: str) -> str:
    actor_id = session.scalar(
        select(ModerationEvent.actor_id)
        .where(ModerationEvent.target_user_id == target_user_id, ModerationEvent.action == action)
        .order_by(ModerationEvent.created_at.desc(), ModerationEvent.id.desc())
        .limit(1)
    )
    return f" (by {_username(session, actor_id)})" if actor_id is not None else ""


@dataclass(frozen=True)
class AccountRow:
    id: int
    username: str
    role: str
    created_at: datetime
    banned_at: datetime | None
    flags: int
    confirmed: int


def list_accounts(session: Session, *, actor: User, query: str = "", limit: int = 200) -> list[AccountRow]:
    """Accounts with their flag counts, for the admin page."""
    require_admin(session, actor)
    counts = (
        select(
            Flag.user_id.label("user_id"),
            func.count().label("flags"),
            func.count().filter(Flag.status == "confirmed").label("confirmed"),
        )
        .group_by(Flag.user_id)
        .subquery()
    )
    stmt = (
        select(User, counts.c.flags, counts.c.confirmed)
        .outerjoin(counts, counts.c.user_id == User.id)
        .order_by(User.username)
        .limit(limit)
    )
    if query.strip():
        stmt = stmt.where(User.username.icontains(query.strip()[:64], autoescape=True))
    return [
        AccountRow(u.id, u.username, u.role, u.created_at, u.banned_at, flags or 0, confirmed or 0)
        for u, flags, confirmed in session.execute(stmt).all()
    ]


def create_account(
    session: Session, *, actor: User, username: str, password: str, role: str = "user", note: str = ""
) -> User:
    admin = require_admin(session, actor)
    text = _note(note)
    user = users.create_user(session, username=username, password=password, role=role)
    record_event(session, actor=admin, action="create_user", note=text, target_user_id=user.id, details={"role": role})
    return user


def set_account_role(session: Session, *, actor: User, user_id: int, role: str, note: str = "") -> ModerationEvent:
    """Only admins change roles, and never their own (so nobody promotes themselves or locks the last admin out)."""
    admin = require_admin(session, actor)
    text = _note(note)
    users.validate_role(role)
    target = _target(session, user_id)
    if target.id == admin.id:
        raise PermissionDeniedError("you cannot change your own role; ask another admin")
    previous = target.role
    if previous == role:
        raise ConflictError(f"{target.username} is already a {role}.")
    users.set_role(session, user=target, role=role)
    session.flush()
    details = {"from": previous, "to": role}
    return record_event(session, actor=admin, action="set_role", note=text, target_user_id=target.id, details=details)
