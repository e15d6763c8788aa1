"""Accounts: who a session belongs to, signing in, up and out, and the admin's audited account changes.

The session cookie only holds a user id and the user's session epoch at sign-in; every request re-reads the
user, so a ban or a role change takes effect on the next click in every app process, and signing out (or a
new password, or a ban) raises the epoch, which ends every session the user had, including cookie copies.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from webapp.settings import Settings
from webapp.store import users
from webapp.store.accounts import AccountRow, ban_user, create_account, list_accounts, set_account_role, unban_user
from webapp.store.engine import Database
from webapp.store.errors import DuplicateError, NotFoundError
from webapp.store.models import ROLES, User
from webapp.store.permissions import ADMINS_ONLY, STAFF_ONLY

__all__ = ["ADMINS_ONLY", "ROLES", "STAFF_ONLY", "AccountRow", "Accounts", "User"]

SESSION_USER_KEY = "uid"
SESSION_EPOCH_KEY = "epoch"
INITIAL_ADMIN_FILE = "initial-admin-password.txt"
Cookie = dict[str, Any]


def _session_user(session: Session, cookie: Cookie) -> User | None:
    user = users.get_user(session, user_id=cookie[SESSION_USER_KEY])
    if user is None or user.is_banned or cookie.get(SESSION_EPOCH_KEY, 0) != user.session_epoch:
        return None
    return user


def _end_sessions(session: Session, user_id: int, epoch: Any) -> None:
    user = users.get_user(session, user_id=user_id)
    if user is not None and user.session_epoch == epoch:
        users.end_sessions(session, user=user)


def _target(session: Session, username: str) -> User:
    if not username:
        raise NotFoundError("type a username (or click an account in the list)")
    return users.require_user_by_name(session, username=username)


def sign_in(cookie: Cookie, user: User) -> None:
    """Start a fresh session for ``user`` (never reuse the previous one's contents)."""
    cookie.clear()
    cookie[SESSION_USER_KEY] = user.id
    cookie[SESSION_EPOCH_KEY] = user.session_epoch


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- sessions ---------------------------------------------------------------------------------------

    async def session_user(self, cookie: Cookie) -> User | None:
        """The signed-in, not banned user of a session cookie, or None (and the cookie is cleared)."""
        if not isinstance(cookie.get(SESSION_USER_KEY), int):
            return None
        user = await self.db.run_read(_session_user, cookie)
        if user is None:
            cookie.clear()
        return user

    async def authenticate(self, *, username: str, password: str) -> User | None:
        return await self.db.run_write(lambda s: users.authenticate(s, username=username, password=password))

    async def sign_up(self, *, username: str, password: str) -> User:
        return await self.db.run_write(
            lambda s: users.create_user(s, username=username, password=password, role="user")
        )

    async def sign_out(self, cookie: Cookie) -> None:
        """Sign out: this session and every other session of its user, on every device. A session that had
        already ended (an old copy of a cookie) ends nothing else."""
        user_id, epoch = cookie.get(SESSION_USER_KEY), cookie.get(SESSION_EPOCH_KEY, 0)
        cookie.clear()
        if isinstance(user_id, int):
            await self.db.run_write(_end_sessions, user_id, epoch)

    # --- the admin page (each store call checks the actor's role again) ----------------------------------

    async def find(self, actor: User, *, query: str = "") -> list[AccountRow]:
        return await self.db.run_read(lambda s: list_accounts(s, actor=actor, query=query))

    async def create(self, actor: User, *, username: str, password: str, role: str, note: str) -> None:
        await self.db.run_write(
            lambda s: create_account(s, actor=actor, username=username, password=password, role=role, note=note)
        )

    async def set_role(self, actor: User, *, username: str, role: str, note: str) -> None:
        await self.db.run_write(
            lambda s: set_account_role(s, actor=actor, user_id=_target(s, username).id, role=role, note=note)
        )

    async def ban(self, actor: User, *, username: str, note: str) -> None:
        await self.db.run_write(lambda s: ban_user(s, actor=actor, user_id=_target(s, username).id, note=note))

    async def unban(self, actor: User, *, username: str, note: str) -> None:
        await self.db.run_write(lambda s: unban_user(s, actor=actor, user_id=_target(s, username).id, note=note))


def ensure_initial_admin(db: Database, settings: Settings) -> str | None:
    """On the very first start, create `admin` with a random password; print it once and save it."""
    password = secrets.token_urlsafe(18)
    try:
        with db.write() as s:
            if users.count_users(s) > 0:
                return None
            users.create_user(s, username="admin", password=password, role="admin")
    except (DuplicateError, IntegrityError):
        # Another process sharing a fresh PostgreSQL database created the first account at the same moment.
        return None
    path = Path(settings.data_dir) / INITIAL_ADMIN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"username: admin\npassword: {password}\n", encoding="utf-8")
    path.chmod(0o600)
    print(f"\n  GuardChat created the first account: admin / {password}\n  (also saved in {path})\n", flush=True)
    return password
