"""Who may act: the acting user's role is re-read from the database in the caller's own transaction.

A role taken away, or a ban, a second ago therefore no longer works, whatever page or API call the
request came from and however old the ``User`` object the request loaded is.

The one actor without an account is the operator at the command line (``Operator.CLI``): they got past
the database host's access control, not ours, so no role applies to them, but what they do is audited.
"""

from __future__ import annotations

from enum import Enum

from sqlalchemy.orm import Session

from webapp.store.errors import PermissionDeniedError
from webapp.store.models import User

STAFF_ONLY = "moderators only: your account is not a moderator"
ADMINS_ONLY = "admins only: only an admin can do this"


class Operator(Enum):
    """An actor with no account; the value is how the audit log names them."""

    CLI = "cli"  # whoever runs `guardchat users ...` on the database host


Actor = User | Operator


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
    """The acting admin, as the database knows them now, or PermissionDeniedError."""
    user = _current(session, actor)
    if user is None or user.role != "admin":
        raise PermissionDeniedError(ADMINS_ONLY)
    return user
