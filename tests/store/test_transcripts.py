"""``read_transcript``: what the chat page shows of a conversation, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from webapp.store import conversations as conv
from webapp.store import users
from webapp.store.engine import Database
from webapp.store.errors import NotFoundError
from webapp.store.feedback import get_feedback, set_feedback
from webapp.store.models import Feedback, User
from webapp.store.transcripts import read_transcript

CHECKS = [
    {"name": "check abuse input", "stage": "input", "duration_ms": 3.2, "blocked": False, "reason": None},
    {"name": "check abuse output", "stage": "output", "duration_ms": 41.0, "blocked": True, "reason": "tox"},
]
BLOCKED_VERDICT = {
    "allowed": False,
    "checks": CHECKS,
    "model_calls": [{"task": "self_check_output", "prompt": "SECRET RAIL PROMPT", "completion": "Yes"}],
    "blocked_text": "THE BLOCKED TEXT",
}


def _user(db: Database, name: str) -> User:
    with db.write() as s:
        return users.create_user(s, username=name, password="password123")


def _chat(db: Database, user: User) -> int:
    """A conversation with every reply status, verdicts with and without checks, and a regenerated reply."""
    with db.write() as s:
        cid = conv.create_conversation(s, user=user, title="long chat").id
        turns: list[tuple[str, str, dict[str, Any] | None]] = [
            ("Héllo 👋", "complete", {"allowed": True, "checks": CHECKS[:1]}),
            ("say something rude", "blocked", BLOCKED_VERDICT),
            ("tell me a story", "interrupted", None),
            ("and another", "error", {"allowed": True}),
            ("still there?", "streaming", None),
        ]
        for text, status, verdict in turns:
            conv.append_message(s, user=user, conversation_id=cid, role="user", content=text)
            conv.append_message(
                s,
                user=user,
                conversation_id=cid,
                role="assistant",
                content=f"re: {text}",
                status=status,
                verdict=verdict,
            )
    return cid


def _one_by_one(db: Database, user: User, cid: int) -> list[tuple[Any, ...]]:
    """The same facts through the ORM store functions: list_messages, then each message's vote."""
    with db.read() as s:
        rows = []
        for m in conv.list_messages(s, user=user, conversation_id=cid):
            vote = get_feedback(s, user=user, message_id=m.id)
            rows.append((m.id, m.role, m.content, m.status, (m.verdict or {}).get("checks"), vote and vote.value))
        return rows


def test_transcript_is_what_the_orm_store_functions_read(database: Database) -> None:
    alice, bob = _user(database, "alice"), _user(database, "bob")
    cid = _chat(database, alice)
    with database.read() as s:
        replies = [m.id for m in conv.list_messages(s, user=alice, conversation_id=cid) if m.role == "assistant"]
    with database.write() as s:
        set_feedback(s, user=alice, message_id=replies[0], value=1)
        set_feedback(s, user=alice, message_id=replies[1], value=-1)
        set_feedback(s, user=alice, message_id=replies[2], value=1)
        set_feedback(s, user=alice, message_id=replies[2], value=-1)  # a second vote replaces the first
        # Another user's vote on the same reply must not show up (nor duplicate the row) in alice's view.
        s.add(Feedback(message_id=replies[0], user_id=bob.id, value=-1))
        other = conv.create_conversation(s, user=alice).id
        conv.append_message(s, user=alice, conversation_id=other, role="user", content="elsewhere")
        elsewhere = conv.append_message(s, user=alice, conversation_id=other, role="assistant", content="x")
        set_feedback(s, user=alice, message_id=elsewhere.id, value=1)

    with database.read() as s:
        transcript = read_transcript(s, user=alice, conversation_id=cid)

    assert transcript.conversation.id == cid and transcript.conversation.title == "long chat"
    assert [tuple(m) for m in transcript.messages] == _one_by_one(database, alice, cid)
    assert [(m.role, m.content, m.status, m.vote) for m in transcript.messages] == [
        ("user", "Héllo 👋", "complete", None),
        ("assistant", "re: Héllo 👋", "complete", 1),
        ("user", "say something rude", "complete", None),
        ("assistant", "re: say something rude", "blocked", -1),
        ("user", "tell me a story", "complete", None),
        ("assistant", "re: tell me a story", "interrupted", -1),
        ("user", "and another", "complete", None),
        ("assistant", "re: and another", "error", None),
        ("user", "still there?", "complete", None),
        ("assistant", "re: still there?", "streaming", None),
    ]
    assert [m.checks for m in transcript.messages if m.role == "assistant"] == [CHECKS[:1], CHECKS, None, None, None]


def test_blocked_text_and_rail_prompts_stay_in_the_database(database: Database) -> None:
    alice = _user(database, "alice")
    cid = _chat(database, alice)
    with database.read() as s:
        transcript = read_transcript(s, user=alice, conversation_id=cid)
    assert "THE BLOCKED TEXT" not in repr(transcript) and "SECRET RAIL PROMPT" not in repr(transcript)


def test_messages_taken_out_by_regenerate_and_their_votes_are_hidden(database: Database) -> None:
    alice = _user(database, "alice")
    with database.write() as s:
        cid = conv.create_conversation(s, user=alice).id
        conv.append_message(s, user=alice, conversation_id=cid, role="user", content="question")
        first = conv.append_message(s, user=alice, conversation_id=cid, role="assistant", content="first answer")
        set_feedback(s, user=alice, message_id=first.id, value=-1)
    with database.write() as s:
        conv.remove_messages_from(s, user=alice, conversation_id=cid, seq=2)
        conv.append_message(s, user=alice, conversation_id=cid, role="assistant", content="second answer")

    with database.read() as s:
        transcript = read_transcript(s, user=alice, conversation_id=cid)
    assert [(m.content, m.vote) for m in transcript.messages] == [("question", None), ("second answer", None)]
    assert [tuple(m) for m in transcript.messages] == _one_by_one(database, alice, cid)


def test_an_empty_conversation_has_no_messages(database: Database) -> None:
    alice = _user(database, "alice")
    with database.write() as s:
        cid = conv.create_conversation(s, user=alice).id
    with database.read() as s:
        assert read_transcript(s, user=alice, conversation_id=cid).messages == ()


def test_another_users_or_a_deleted_conversation_is_not_found_like_a_missing_one(database: Database) -> None:
    alice, bob = _user(database, "alice"), _user(database, "bob")
    cid = _chat(database, alice)
    with database.write() as s:
        deleted = conv.create_conversation(s, user=alice, title="gone").id
    with database.write() as s:
        conv.delete_conversation(s, user=alice, conversation_id=deleted)

    errors = []
    for user, conversation_id in ((bob, cid), (alice, deleted), (alice, cid + 1000)):
        with database.read() as s, pytest.raises(NotFoundError) as caught:
            read_transcript(s, user=user, conversation_id=conversation_id)
        errors.append(str(caught.value))
    assert errors == ["conversation not found"] * 3
