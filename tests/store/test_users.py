from __future__ import annotations

import pytest
from sqlalchemy import select

from webapp.store import users
from webapp.store.engine import Database
from webapp.store.errors import DuplicateError, InvalidInputError
from webapp.store.models import User


def test_password_is_stored_as_argon2_and_verifies(sqlite_database: Database) -> None:
    with sqlite_database.write() as s:
        users.create_user(s, username="alice", password="correct horse", role="user")
    with sqlite_database.read() as s:
        stored = s.scalar(select(User.password_hash).where(User.username == "alice"))
    assert stored is not None and stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    with sqlite_database.write() as s:
        assert users.authenticate(s, username="alice", password="correct horse") is not None
        assert users.authenticate(s, username="alice", password="wrong horse!") is None
        assert users.authenticate(s, username="nobody", password="correct horse") is None


def test_banned_user_cannot_sign_in(sqlite_database: Database) -> None:
    with sqlite_database.write() as s:
        user = users.create_user(s, username="mallory", password="password123")
        users.ban_user(s, user=user)
    with sqlite_database.write() as s:
        assert users.authenticate(s, username="mallory", password="password123") is None


@pytest.mark.parametrize(
    ("username", "role", "message"),
    [
        ("bob", "superuser", "unknown role 'superuser'"),
        ("b" * 65, "user", "the limit is 64"),
        ("", "user", "must not be empty"),
        ("bad name<script>", "user", "may only contain"),
    ],
)
def test_bad_account_input_names_the_problem(sqlite_database: Database, username: str, role: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message), sqlite_database.write() as s:
        users.create_user(s, username=username, password="password123", role=role)


def test_duplicate_username_is_refused_case_insensitively(sqlite_database: Database) -> None:
    with sqlite_database.write() as s:
        users.create_user(s, username="Carol", password="password123")
    with pytest.raises(DuplicateError, match="'carol' is already taken"), sqlite_database.write() as s:
        users.create_user(s, username="carol", password="password123")
    with sqlite_database.read() as s:
        assert len(users.list_users(s)) == 1


def test_short_password_is_refused(sqlite_database: Database) -> None:
    with pytest.raises(InvalidInputError, match="at least 8"), sqlite_database.write() as s:
        users.create_user(s, username="dave", password="short")
