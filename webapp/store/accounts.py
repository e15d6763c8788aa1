"""Accounts as moderators and admins manage them: bans, roles, new accounts, and the list with flag counts.

Each change checks the actor's permission in the same transaction and writes its audit row there too,
so an account change without a trace cannot be committed. The moderation page, the admin page and the
command line all ban, unban and change roles through here; the command line as ``Operator.CLI``, which
no permission rule stops (it runs on the database host) but which is audited like anyone else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from webapp.store import users
from webapp.store.audit import clean_note, event_actor, record_event
from webapp.store.errors import ConflictError, NotFoundError, PermissionDeniedError
from webapp.store.models import Flag, ModerationEvent, User, utcnow
from webapp.store.permissions import Actor, Operator, require_admin, require_staff


def _target(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"user #{user_id} does not exist")
    return user


def _acting(session: Session, actor: Actor, *, admins_only: bool) -> User | Operator:
    """The operator as given (there is no account to check), else the staff member as the database knows them."""
    if isinstance(actor, Operator):
        return actor
    return require_admin(session, actor) if admins_only else require_staff(session, actor)


def _not_an_admin(target: User) -> None:
    """No staff member acts on an admin, so no admin can lock the others out; the command line still can."""
    if target.role == "admin":
        raise PermissionDeniedError(
            f"{target.username} is an admin: an admin account is changed only with `guardchat users` on the server"
        )


def _may_moderate(staff: User, target: User) -> None:
    if target.id == staff.id:
        raise PermissionDeniedError("you cannot ban or unban your own account")
    _not_an_admin(target)
    if target.role != "user" and staff.role != "admin":
        raise PermissionDeniedError(f"{target.username} is a {target.role}: only an admin can ban or unban them")


def ban_user(
    session: Session, *, actor: Actor, user_id: int, note: str = "", flag_id: int | None = None
) -> ModerationEvent:
    """Suspend an account: its sessions and API keys stop working on their next request."""
    return _set_banned(session, actor=actor, user_id=user_id, note=note, flag_id=flag_id, banned=True)


def unban_user(
    session: Session, *, actor: Actor, user_id: int, note: str = "", flag_id: int | None = None
) -> ModerationEvent:
    """Let a banned account sign in again; the sessions the ban ended stay ended."""
    return _set_banned(session, actor=actor, user_id=user_id, note=note, flag_id=flag_id, banned=False)


def _set_banned(
    session: Session, *, actor: Actor, user_id: int, note: str, flag_id: int | None, banned: bool
) -> ModerationEvent:
    """Ban or unban with a conditional UPDATE: of two moderators doing the same, the second is told who was first."""
    acting = _acting(session, actor, admins_only=False)
    text = clean_note(note)
    target = _target(session, user_id)
    if isinstance(acting, User):
        _may_moderate(acting, target)
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
    return record_event(session, actor=acting, action=action, note=text, flag_id=flag_id, target_user_id=target.id)


def _last_by(session: Session, target_user_id: int, action: str) -> str:
    last = session.scalar(
        select(ModerationEvent)
        .where(ModerationEvent.target_user_id == target_user_id, ModerationEvent.action == action)
        .order_by(ModerationEvent.created_at.desc(), ModerationEvent.id.desc())
        .limit(1)
    )
    return f" (by {event_actor(session, last)})" if last is not None else ""


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
    session: Session, *, actor: Actor, username: str, password: str, role: str = "user", note: str = ""
) -> User:
    """An admin (or the command line) creates an account; the audit row records the role it started with."""
    acting = _acting(session, actor, admins_only=True)
    text = clean_note(note)
    user = users.create_user(session, username=username, password=password, role=role)
    record_event(session, actor=acting, action="create_user", note=text, target_user_id=user.id, details={"role": role})
    return user


def set_account_role(session: Session, *, actor: Actor, user_id: int, role: str, note: str = "") -> ModerationEvent:
    """Only admins change roles: never their own, nor another admin's (demoting an admin is for the command line).

    So nobody promotes themselves, and no admin locks the others out.
    """
    acting = _acting(session, actor, admins_only=True)
    text = clean_note(note)
    users.validate_role(role)
    target = _target(session, user_id)
    if isinstance(acting, User):
        if target.id == acting.id:
            raise PermissionDeniedError("you cannot change your own role; ask another admin")
        _not_an_admin(target)
    previous = target.role
    if previous == role:
        raise ConflictError(f"{target.username} is already a {role}.")
    target.role = role
    session.flush()
    details = {"from": previous, "to": role}
    return record_event(session, actor=acting, action="set_role", note=text, target_user_id=target.id, details=details)
