"""Stream checkpoints on real SQLite and PostgreSQL: many streams' shown text lands in few transactions."""

from __future__ import annotations

import asyncio

from webapp.chat.checkpoints import StreamCheckpoints
from webapp.store import conversations as conv
from webapp.store import users
from webapp.store.engine import Database
from webapp.store.models import Message, User


def _streaming_replies(db: Database, count: int) -> tuple[User, list[int]]:
    with db.write() as s:
        user = users.create_user(s, username="alice", password="password123")
        ids = []
        for i in range(count):
            _, rows = conv.start_conversation(
                s,
                user=user,
                title=f"chat {i}",
                system_prompt="",
                sampling={},
                messages=[
                    conv.NewMessage(role="user", content=f"question {i}", status="pending"),
                    conv.NewMessage(role="assistant", content="", status="streaming"),
                ],
            )
            ids.append(rows[-1].id)
        return user, ids


def _saved(db: Database, message_id: int) -> str:
    with db.read() as s:
        message = s.get(Message, message_id)
        assert message is not None
        return message.content


async def test_many_streams_are_checkpointed_together(database: Database) -> None:
    user, ids = _streaming_replies(database, 20)
    checkpoints = StreamCheckpoints(database, interval_s=0.2, tick_s=0.05)
    shown: dict[int, list[str]] = {i: [] for i in ids}
    for i in ids:
        checkpoints.begin(user, i)
    for step in range(12):  # 0.6 s of tokens: every stream is due about three times
        for i in ids:
            shown[i].append(f"w{step} ")
            checkpoints.offer(i, shown[i])
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    for i in ids:
        saved = _saved(database, i)
        assert saved and "".join(shown[i]).startswith(saved)
    # One stream at a time would have taken 20 streams x ~3 checkpoints = ~60 transactions.
    assert 1 <= checkpoints.transactions <= 8, checkpoints.transactions


async def test_an_urgent_checkpoint_does_not_wait_for_the_interval(database: Database) -> None:
    """The service saves a retraction this way, so retracted text does not survive a crash in the store."""
    user, [reply] = _streaming_replies(database, 1)
    checkpoints = StreamCheckpoints(database, interval_s=3600.0, tick_s=0.02)
    checkpoints.begin(user, reply)
    shown = ["Hello "]
    checkpoints.offer(reply, shown)
    await asyncio.sleep(0.1)
    assert _saved(database, reply) == ""  # not due for an hour
    shown.append("there")
    checkpoints.offer(reply, shown, now=True)
    await asyncio.sleep(0.1)
    assert _saved(database, reply) == "Hello there"


async def test_a_checkpoint_never_overwrites_a_finished_reply(database: Database) -> None:
    user, [reply] = _streaming_replies(database, 1)
    checkpoints = StreamCheckpoints(database, interval_s=0.05, tick_s=0.02)
    checkpoints.begin(user, reply)
    with database.write() as s:
        conv.finish_message(s, user=user, message_id=reply, status="complete", content="The final reply.")
    await asyncio.sleep(0.06)
    checkpoints.offer(reply, ["The final"])
    await asyncio.sleep(0.1)
    assert checkpoints.transactions == 1
    assert _saved(database, reply) == "The final reply."


async def test_another_users_stream_is_not_written(database: Database) -> None:
    _, [reply] = _streaming_replies(database, 1)
    with database.write() as s:
        mallory = users.create_user(s, username="mallory", password="password123")
    checkpoints = StreamCheckpoints(database, interval_s=0.05, tick_s=0.02)
    checkpoints.begin(mallory, reply)
    await asyncio.sleep(0.06)
    checkpoints.offer(reply, ["mallory was here"])
    await asyncio.sleep(0.1)
    assert _saved(database, reply) == ""


async def test_an_ended_stream_is_not_checkpointed(database: Database) -> None:
    user, [reply] = _streaming_replies(database, 1)
    checkpoints = StreamCheckpoints(database, interval_s=0.05, tick_s=0.02)
    checkpoints.begin(user, reply)
    checkpoints.end(reply)
    await asyncio.sleep(0.06)
    checkpoints.offer(reply, ["late"])
    await asyncio.sleep(0.1)
    assert checkpoints.transactions == 0 and _saved(database, reply) == ""
