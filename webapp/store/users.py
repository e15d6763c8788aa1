"""Accounts as rows: creation, validation, sign-in, passwords and sessions (moderation of them: accounts.py)."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from webapp.store.errors import DuplicateError, InvalidInputError, NotFoundError
from webapp.store.models import ROLES, User, utcnow
from webapp.store.passwords import hash_password, needs_rehash, verify_password

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]+$")
MAX_USERNAME_CHARS = 64
MIN_PASSWORD_CHARS = 8
# Verifying against a dummy hash keeps sign-in time the same whether or not the username exists.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def validate_username(username: str, *, max_chars: int = MAX_USERNAME_CHARS) -> str:
    name = username.strip()
    if not name:
        raise InvalidInputError("username must not be empty")
    if len(name) > max_chars:
        raise InvalidInputError(f"username is {len(name)} characters; the limit is {max_chars}")
    if not USERNAME_RE.match(name):
        raise InvalidInputError("username may only contain letters, digits and . _ @ -")
    return name


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInputError(f"unknown role {role!r}; expected one of: {', '.join(ROLES)}")
    return role


def validate_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInputError(f"password must be at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > 1024:
        raise InvalidInputError("password is longer than 1024 characters")
    return password


def create_user(session: Session, *, username: str, password: str, role: str = "user") -> User:
    name = validate_username(username)
    validate_role(role)
    validate_password(password)
    if session.scalar(select(User.id).where(func.lower(User.username) == name.lower())) is not None:
        raise DuplicateError(f"username {name!r} is already taken")
    user = User(username=name, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    return user


def count_users(session: Session) -> int:
    return session.scalar(select(func.count(User.id))) or 0


def get_user(session: Session, *, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_user_by_name(session: Session, *, username: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))


def require_user_by_name(session: Session, *, username: str) -> User:
    user = get_user_by_name(session, username=username)
    if user is None:
        raise NotFoundError(f"no user named {username!r}")
    return user


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    """The user if the password matches and the account is not banned, else None."""
    user = get_user_by_name(session, username=username)
    if user is None:
        verify_password(_DUMMY_HASH, password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return None if user.is_banned else user


def list_users(session: Session, *, query: str = "", limit: int = 500) -> list[User]:
    stmt = select(User).order_by(User.username).limit(limit)
    if query:
        stmt = stmt.where(User.username.ilike(f"%{query}%"))
    return list(session.scalars(stmt))


def end_sessions(session: Session, *, user: User) -> User:
    """End every browser session ``user`` has signed in (webapp.api.auth checks the epoch on each request)."""
    user.session_epoch = (user.session_epoch or 0) + 1
    return user


def ban_user(session: Session, *, user: User) -> User:
    """Test set-up only: writes no audit row. The app bans through ``webapp.store.accounts.ban_user``."""
    if user.banned_at is None:
        user.banned_at = utcnow()
    return end_sessions(session, user=user)


def unban_user(session: Session, *, user: User) -> User:
    """Test set-up only: writes no audit row. The app unbans through ``webapp.store.accounts.unban_user``."""
    user.banned_at = None
    return user


def set_password(session: Session, *, user: User, password: str) -> User:
    user.password_hash = hash_password(validate_password(password))
    return end_sessions(session, user=user)
