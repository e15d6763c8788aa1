from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from webapp.store import conversations as conv
from webapp.store import feedback, flags, transcripts, users
from webapp.store.engine import Database
from webapp.store.errors import InvalidInputError, NotFoundError
from webapp.store.liveness import ProcessLease
from webapp.store.models import Message, User


def _user(db: Database, name: str) -> User:
    with db.write() as s:
        return users.create_user(s, username=name, password="password123")


def test_conversation_round_trips_and_survives_reopen(database: Database) -> None:
    alice = _user(database, "alice")
    with database.write() as s:
        c = conv.create_conversation(
            s, user=alice, title="Trip ideas", system_prompt="Be brief.", sampling={"temperature": 0.2}
        )
        conv.append_message(s, user=alice, conversation_id=c.id, role="user", content="Héllo 👋")
        conv.append_message(
            s, user=alice, conversation_id=c.id, role="assistant", content="Hi!", verdict={"allowed": True}
        )
        cid = c.id
    url = database.url
    database.dispose()

    reopened = Database(url)
    try:
        with reopened.read() as s:
            alice2 = users.require_user_by_name(s, username="alice")
            c2 = conv.require_conversation(s, user=alice2, conversation_id=cid)
            msgs = conv.list_messages(s, user=alice2, conversation_id=cid)
        assert (c2.title, c2.system_prompt, c2.sampling) == ("Trip ideas", "Be brief.", {"temperature": 0.2})
        assert [(m.seq, m.role, m.content, m.status) for m in msgs] == [
            (1, "user", "Héllo 👋", "complete"),
            (2, "assistant", "Hi!", "complete"),
        ]
        assert msgs[1].verdict == {"allowed": True}
    finally:
        reopened.dispose()


def test_list_is_by_recency_and_search_matches_title_and_content(database: Database) -> None:
    alice = _user(database, "alice")
    with database.write() as s:
        a = conv.create_conversation(s, user=alice, title="Gardening")
        b = conv.create_conversation(s, user=alice, title="Taxes")
        conv.append_message(s, user=alice, conversation_id=a.id, role="user", content="tomatoes in pots")
    with database.read() as s:
        assert [c.id for c in conv.list_conversations(s, user=alice)] == [a.id, b.id]
        assert [c.id for c in conv.list_conversations(s, user=alice, search="TOMATO")] == [a.id]
        assert [c.id for c in conv.list_conversations(s, user=alice, search="tax")] == [b.id]


def test_deleted_conversation_is_hidden_from_owner(database: Database) -> None:
    alice = _user(database, "alice")
    with database.write() as s:
        c = conv.create_conversation(s, user=alice)
    with database.write() as s:
        conv.delete_conversation(s, user=alice, conversation_id=c.id)
    with database.read() as s:
        assert conv.list_conversations(s, user=alice) == []
        assert conv.get_conversation(s, user=alice, conversation_id=c.id) is None


def test_removed_messages_are_hidden_not_lost(database: Database) -> None:
    alice = _user(database, "alice")
    with database.write() as s:
        c = conv.create_conversation(s, user=alice)
        for i in range(4):
            conv.append_message(s, user=alice, conversation_id=c.id, role="user", content=f"m{i}")
    with database.write() as s:
        conv.remove_messages_from(s, user=alice, conversation_id=c.id, seq=3)
        conv.append_message(s, user=alice, conversation_id=c.id, role="user", content="again")
    with database.read() as s:
        visible = conv.list_messages(s, user=alice, conversation_id=c.id)
        total = s.scalar(select(func.count(Message.id)).where(Message.conversation_id == c.id))
    assert [(m.seq, m.content) for m in visible] == [(1, "m0"), (2, "m1"), (3, "again")]
    assert total == 5


def test_recovery_interrupts_only_dead_processes_streams(database: Database) -> None:
    alice = _user(database, "alice")
    live, dead = ProcessLease(database), ProcessLease(database)
    live.acquire()
    dead.acquire()
    with database.write() as s:
        ids = {}
        for name, owner in (("live", live.instance_id), ("dead", dead.instance_id), ("unowned", None)):
            c = conv.create_conversation(s, user=alice, title=name)
            u = conv.append_message(s, user=alice, conversation_id=c.id, role="user", content="hi", status="pending")
            a = conv.append_message(
                s,
                user=alice,
                conversation_id=c.id,
                role="assistant",
                content="",
                status="streaming",
                verdict={"stream_owner": owner} if owner else None,
            )
            ids[name] = (u.id, a.id)
    dead.release()  # as if the process had died

    checker = ProcessLease(database)
    checker.acquire()
    try:
        with database.write() as s:
            assert conv.interrupt_streaming_messages(s, is_alive=checker.is_alive) == 2
        with database.read() as s:
            status = {
                name: tuple(conv.require_message(s, user=alice, message_id=i).status for i in pair)
                for name, pair in ids.items()
            }
    finally:
        checker.release()
        live.release()
    assert status == {
        "live": ("pending", "streaming"),
        "dead": ("interrupted", "interrupted"),
        "unowned": ("interrupted", "interrupted"),
    }


# --- scoping: every query that takes a user refuses another user's ids -------------------------

Scenario = Callable[[Any, User, int, int], Any]

SCOPED_QUERIES: dict[str, Scenario] = {
    "get_conversation": lambda s, u, c, m: conv.get_conversation(s, user=u, conversation_id=c),
    "require_conversation": lambda s, u, c, m: conv.require_conversation(s, user=u, conversation_id=c),
    "rename_conversation": lambda s, u, c, m: conv.rename_conversation(s, user=u, conversation_id=c, title="x"),
    "delete_conversation": lambda s, u, c, m: conv.delete_conversation(s, user=u, conversation_id=c),
    "update_conversation_settings": lambda s, u, c, m: conv.update_conversation_settings(
        s, user=u, conversation_id=c, system_prompt="pwned"
    ),
    "list_messages": lambda s, u, c, m: conv.list_messages(s, user=u, conversation_id=c),
    "read_transcript": lambda s, u, c, m: transcripts.read_transcript(s, user=u, conversation_id=c),
    "get_message": lambda s, u, c, m: conv.get_message(s, user=u, message_id=m),
    "require_message": lambda s, u, c, m: conv.require_message(s, user=u, message_id=m),
    "append_message": lambda s, u, c, m: conv.append_message(s, user=u, conversation_id=c, role="user", content="x"),
    "finish_message": lambda s, u, c, m: conv.finish_message(s, user=u, message_id=m, status="complete"),
    "update_message": lambda s, u, c, m: conv.update_message(s, user=u, message_id=m, status="complete"),
    "remove_messages_from": lambda s, u, c, m: conv.remove_messages_from(s, user=u, conversation_id=c, seq=1),
    "list_conversations": lambda s, u, c, m: conv.list_conversations(s, user=u),
    "report_message": lambda s, u, c, m: flags.report_message(s, user=u, message_id=m, reason="bad"),
    "set_feedback": lambda s, u, c, m: feedback.set_feedback(s, user=u, message_id=m, value=1),
    "get_feedback": lambda s, u, c, m: feedback.get_feedback(s, user=u, message_id=m),
}


@pytest.mark.parametrize("query", sorted(SCOPED_QUERIES))
def test_another_user_gets_nothing(database: Database, query: str) -> None:
    alice, bob = _user(database, "alice"), _user(database, "bob")
    with database.write() as s:
        c = conv.create_conversation(s, user=alice, title="secret plans")
        conv.append_message(s, user=alice, conversation_id=c.id, role="user", content="the secret")
        m = conv.append_message(s, user=alice, conversation_id=c.id, role="assistant", content="reply")
        cid, mid = c.id, m.id

    try:
        with database.write() as s:
            result = SCOPED_QUERIES[query](s, bob, cid, mid)
    except NotFoundError as exc:
        assert "secret" not in str(exc)
    else:
        assert result in (None, [])

    with database.read() as s:  # alice's data is untouched
        c2 = conv.require_conversation(s, user=alice, conversation_id=cid)
        assert (c2.title, c2.system_prompt) == ("secret plans", "")
        assert [m.content for m in conv.list_messages(s, user=alice, conversation_id=cid)] == ["the secret", "reply"]


def test_not_found_is_the_same_for_missing_and_foreign(database: Database) -> None:
    alice, bob = _user(database, "alice"), _user(database, "bob")
    with database.write() as s:
        cid = conv.create_conversation(s, user=alice).id
    with database.read() as s:
        with pytest.raises(NotFoundError) as foreign:
            conv.require_conversation(s, user=bob, conversation_id=cid)
        with pytest.raises(NotFoundError) as missing:
            conv.require_conversation(s, user=bob, conversation_id=cid + 1000)
    assert str(foreign.value) == str(missing.value)


def test_sixteen_concurrent_writers_lose_nothing(sqlite_database: Database) -> None:
    db = sqlite_database
    alice = _user(db, "alice")
    with db.write() as s:
        cids = [conv.create_conversation(s, user=alice, title=f"c{i}").id for i in range(4)]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(50):
                with db.write() as s:
                    conv.append_message(s, user=alice, conversation_id=cids[n % 4], role="user", content=f"t{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    with db.read() as s:
        total = s.scalar(select(func.count(Message.id)))
        for cid in cids:
            seqs = [m.seq for m in conv.list_messages(s, user=alice, conversation_id=cid)]
            assert seqs == list(range(1, 201))  # 4 threads x 50 each, no gaps, no duplicates
    assert total == 16 * 50


def test_streamed_text_is_saved_only_by_the_owner_and_only_while_streaming(database: Database) -> None:
    alice, bob = _user(database, "alice"), _user(database, "bob")
    with database.write() as s:
        c = conv.create_conversation(s, user=alice, title="Story")
        conv.append_message(s, user=alice, conversation_id=c.id, role="user", content="Tell me a story")
        reply = conv.append_message(
            s, user=alice, conversation_id=c.id, role="assistant", content="", status="streaming"
        )
    with database.write() as s:
        assert conv.save_streamed_text(s, user=alice, message_id=reply.id, content="Once upon")
        assert not conv.save_streamed_text(s, user=bob, message_id=reply.id, content="bob was here")
    with database.write() as s:
        conv.finish_message(s, user=alice, message_id=reply.id, status="complete", content="Once upon a time.")
    with database.write() as s:  # a late checkpoint cannot overwrite the final reply
        assert not conv.save_streamed_text(s, user=alice, message_id=reply.id, content="Once upon a")
    with database.read() as s:
        final = s.get(Message, reply.id)
        assert final is not None and (final.status, final.content) == ("complete", "Once upon a time.")


def test_update_message_sets_what_finish_message_sets(database: Database) -> None:
    alice = _user(database, "alice")
    with database.write() as s:
        c = conv.create_conversation(s, user=alice, title="Story")
        a = conv.append_message(s, user=alice, conversation_id=c.id, role="assistant", content="x", status="streaming")
        b = conv.append_message(s, user=alice, conversation_id=c.id, role="assistant", content="x", status="streaming")
    fields = {"content": "Done.", "verdict": {"allowed": True}, "tokens_in": 3, "tokens_out": None, "latency_ms": 9}
    with database.write() as s:
        conv.finish_message(s, user=alice, message_id=a.id, status="complete", **fields)  # type: ignore[arg-type]
        conv.update_message(s, user=alice, message_id=b.id, status="complete", **fields)
    columns = ("status", "content", "verdict", "tokens_in", "tokens_out", "latency_ms")
    with database.read() as s:
        rows = [s.get(Message, i) for i in (a.id, b.id)]
        assert rows[0] is not None and rows[1] is not None
        assert [getattr(rows[0], k) for k in columns] == [getattr(rows[1], k) for k in columns]
    with pytest.raises(InvalidInputError), database.write() as s:
        conv.update_message(s, user=alice, message_id=b.id, status="done")
    with pytest.raises(InvalidInputError), database.write() as s:
        conv.update_message(s, user=alice, message_id=b.id, status="complete", role="system")
    with database.write() as s:
        conv.delete_conversation(s, user=alice, conversation_id=c.id)
    with pytest.raises(NotFoundError), database.write() as s:  # as require_message: a deleted conversation
        conv.update_message(s, user=alice, message_id=b.id, status="complete")


def test_an_exchange_is_appended_in_order_or_not_at_all(database: Database) -> None:
    alice = _user(database, "alice")
    with database.write() as s:
        c = conv.create_conversation(s, user=alice, title="Batch")
        conv.append_message(s, user=alice, conversation_id=c.id, role="user", content="first")
        cid = c.id
    with database.write() as s:
        asked, reply = conv.append_messages(
            s,
            user=alice,
            conversation_id=cid,
            messages=[
                conv.NewMessage(role="user", content="second", status="pending"),
                conv.NewMessage(role="assistant", content="", status="streaming"),
            ],
        )
        assert (asked.seq, reply.seq) == (2, 3)
    with pytest.raises(ValueError, match="unknown message role 'robot'"), database.write() as s:
        conv.append_messages(
            s,
            user=alice,
            conversation_id=cid,
            messages=[conv.NewMessage(role="user", content="ok"), conv.NewMessage(role="robot", content="no")],
        )
    with database.read() as s:
        saved = conv.list_messages(s, user=alice, conversation_id=cid)
        assert [(m.seq, m.role, m.content, m.status) for m in saved] == [
            (1, "user", "first", "complete"),
            (2, "user", "second", "pending"),
            (3, "assistant", "", "streaming"),
        ]


def test_a_conversation_started_with_its_first_exchange_belongs_to_its_owner_only(database: Database) -> None:
    alice, bob = _user(database, "alice"), _user(database, "bob")
    with database.write() as s:
        c, rows = conv.start_conversation(
            s,
            user=alice,
            title="  Fresh   start ",
            system_prompt="Be kind.",
            sampling={"temperature": 0.1},
            messages=[
                conv.NewMessage(role="user", content="hi", status="pending"),
                conv.NewMessage(role="assistant", content="", status="streaming"),
            ],
        )
        cid = c.id
        assert [m.seq for m in rows] == [1, 2]
    with database.read() as s:
        saved = conv.require_conversation(s, user=alice, conversation_id=cid)
        assert (saved.title, saved.system_prompt, saved.sampling) == ("Fresh start", "Be kind.", {"temperature": 0.1})
        assert [(m.role, m.status) for m in conv.list_messages(s, user=alice, conversation_id=cid)] == [
            ("user", "pending"),
            ("assistant", "streaming"),
        ]
        with pytest.raises(NotFoundError, match="conversation not found"):
            conv.list_messages(s, user=bob, conversation_id=cid)
