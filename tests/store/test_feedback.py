from __future__ import annotations

import pytest

from webapp.store import conversations as conv
from webapp.store import users
from webapp.store.engine import Database
from webapp.store.errors import NotFoundError
from webapp.store.feedback import feedback_by_message, set_feedback
from webapp.store.models import User


def _user(db: Database, name: str) -> User:
    with db.write() as s:
        return users.create_user(s, username=name, password="correct horse battery")


def test_feedback_by_message_has_the_users_votes_on_this_conversation_only(database: Database) -> None:
    alice, bob = _user(database, "alice"), _user(database, "bob")
    with database.write() as s:
        chat = conv.create_conversation(s, user=alice)
        other = conv.create_conversation(s, user=alice)
        replies = []
        for text in ("one", "two", "three"):
            conv.append_message(s, user=alice, conversation_id=chat.id, role="user", content=text)
            replies.append(conv.append_message(s, user=alice, conversation_id=chat.id, role="assistant", content=text))
        conv.append_message(s, user=alice, conversation_id=other.id, role="user", content="elsewhere")
        elsewhere = conv.append_message(s, user=alice, conversation_id=other.id, role="assistant", content="x")
        set_feedback(s, user=alice, message_id=replies[0].id, value=1)
        set_feedback(s, user=alice, message_id=replies[2].id, value=-1)
        set_feedback(s, user=alice, message_id=elsewhere.id, value=1)

    with database.read() as s:
        votes = feedback_by_message(s, user=alice, conversation_id=chat.id)
    assert votes == {replies[0].id: 1, replies[2].id: -1}

    with database.read() as s, pytest.raises(NotFoundError):
        feedback_by_message(s, user=bob, conversation_id=chat.id)
