"""ChatService with the real rails and a scripted chat model registered through the production seam."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterator, Sequence
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from sqlalchemy import select

from tests.support.guard.scripted_model import SCRIPT, ScriptedChatModel
from tests.support.settings import SettingsFactory
from webapp.chat.events import ChatEvent, InputChecked, ReplyDelta, TurnEnded, TurnStarted
from webapp.chat.limits import LimitError
from webapp.chat.service import ChatService
from webapp.guard.turn import TurnGuard
from webapp.llm.errors import TritonUnavailableError
from webapp.llm.generation import GenerationOutcome, current_record
from webapp.llm.registry import register_chat_model, unregister_chat_model
from webapp.llm.templates import ChatTurn, get_template
from webapp.store import conversations as conv
from webapp.store import users
from webapp.store.engine import Database
from webapp.store.errors import NotFoundError
from webapp.store.models import Flag, Message, User


@pytest.fixture
def service(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch, settings_factory: SettingsFactory
) -> Iterator[ChatService]:
    monkeypatch.setenv("GUARDCHAT_LLM_BACKEND", "scripted")
    monkeypatch.setenv("GUARDCHAT_SELF_CHECK_RAILS", "false")
    monkeypatch.setenv("GUARDCHAT_RATE_LIMIT_PER_MINUTE", "5")
    settings = settings_factory()
    SCRIPT.reset()
    TurnGuard.clear_cache()
    yield ChatService(database=sqlite_database, guard=TurnGuard.load(settings), settings=settings)
    TurnGuard.clear_cache()
    SCRIPT.reset()


def make_user(db: Database, name: str) -> User:
    with db.write() as s:
        return users.create_user(s, username=name, password="password123")


async def collect(service: ChatService, user: User, text: str, conversation_id: int | None = None) -> list[ChatEvent]:
    return [e async for e in service.send(user=user, text=text, conversation_id=conversation_id)]


def stored(db: Database, user: User, conversation_id: int) -> list[tuple[str, str, str]]:
    with db.read() as s:
        return [
            (m.role, m.status, m.content) for m in conv.list_messages(s, user=user, conversation_id=conversation_id)
        ]


async def test_a_turn_streams_and_persists_both_messages(service: ChatService) -> None:
    alice = make_user(service.db, "alice")
    events = await collect(service, alice, "Tell me about tea")
    started, ended = events[0], events[-1]
    assert isinstance(started, TurnStarted) and isinstance(ended, TurnEnded)
    assert any(isinstance(e, InputChecked) for e in events)
    streamed = "".join(e.text for e in events if isinstance(e, ReplyDelta))
    assert ended.status == "complete" and ended.reply == streamed
    assert "tea" in streamed
    assert stored(service.db, alice, started.conversation_id) == [
        ("user", "complete", "Tell me about tea"),
        ("assistant", "complete", streamed),
    ]


async def test_history_reaches_the_model_and_blocked_turns_are_left_out(service: ChatService) -> None:
    alice = make_user(service.db, "alice")
    first = await collect(service, alice, "My name is Ada")
    cid = first[0].conversation_id  # type: ignore[union-attr]
    blocked = await collect(service, alice, "you are a worthless idiot, fuck you", cid)
    assert blocked[-1].status == "blocked"  # type: ignore[union-attr]
    await collect(service, alice, "What is my name?", cid)
    sent = SCRIPT.generation_calls[-1].messages
    texts = [str(m.content) for m in sent]
    assert "My name is Ada" in texts[0] or "My name is Ada" in texts
    assert not any("idiot" in t for t in texts)
    assert texts[-1] == "What is my name?"


async def test_input_block_is_flagged_with_the_rail_and_never_shown(service: ChatService) -> None:
    alice = make_user(service.db, "alice")
    events = await collect(service, alice, "you are a worthless idiot, fuck you")
    ended = events[-1]
    assert isinstance(ended, TurnEnded) and ended.status == "blocked" and ended.flagged
    assert not any(isinstance(e, ReplyDelta) for e in events)
    assert "idiot" not in ended.reply
    assert SCRIPT.generation_calls == []  # the model never saw it
    with service.db.read() as s:
        flag = s.scalars(select(Flag)).one()
        user_msg = s.scalars(select(Message).where(Message.role == "user")).one()
    assert flag.source == "input_rail" and flag.rail and flag.user_id == alice.id
    assert "idiot" in flag.excerpt
    assert user_msg.status == "blocked"
    assert ended.verdict is not None and "blocked_text" not in ended.verdict


async def test_output_block_retracts_and_flags(service: ChatService) -> None:
    alice = make_user(service.db, "alice")
    # Short enough that every chunk holding the insult, with its context, reads as abuse to the reply rail
    # (0.64 or more): read inside 40 words of calm text it scored 0.08, so under load a grown chunk let it pass.
    SCRIPT.reply = lambda _: "Sure. " + "Here is a calm answer. " * 4 + "You are a fucking worthless idiot."
    events = await collect(service, alice, "hello")
    ended = events[-1]
    assert isinstance(ended, TurnEnded) and ended.status == "blocked"
    shown = "".join(e.text for e in events if isinstance(e, ReplyDelta))
    assert "idiot" not in shown
    with service.db.read() as s:
        flag = s.scalars(select(Flag)).one()
    assert flag.source == "output_rail" and "idiot" in flag.excerpt


async def test_model_down_is_an_error_and_history_is_kept(service: ChatService) -> None:
    alice = make_user(service.db, "alice")
    ok = await collect(service, alice, "first")
    cid = ok[0].conversation_id  # type: ignore[union-attr]
    SCRIPT.main_error = TritonUnavailableError("Triton at 127.0.0.1:1 is unreachable")
    events = await collect(service, alice, "second", cid)
    ended = events[-1]
    assert isinstance(ended, TurnEnded) and ended.status == "error"
    assert ended.error and "unreachable" in ended.error
    rows = stored(service.db, alice, cid)
    assert rows[:2] == [("user", "complete", "first"), ("assistant", "complete", ok[-1].reply)]  # type: ignore[union-attr]
    assert [r[:2] for r in rows[2:]] == [("user", "error"), ("assistant", "error")]


async def test_cancelling_keeps_the_partial_reply_as_interrupted(service: ChatService) -> None:
    alice = make_user(service.db, "alice")
    SCRIPT.reply = lambda _: " ".join(f"word{i}" for i in range(400))
    SCRIPT.token_delay_s = 0.01
    seen: list[str] = []
    started: list[TurnStarted] = []

    async def consume() -> None:
        async for event in service.send(user=alice, text="long please"):
            if isinstance(event, TurnStarted):
                started.append(event)
            if isinstance(event, ReplyDelta):
                seen.append(event.text)

    task = asyncio.create_task(consume())
    for _ in range(1000):  # until the first checked token is on screen
        if seen:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = stored(service.db, alice, started[0].conversation_id)
    assert rows[1][:2] == ("assistant", "interrupted")
    assert rows[1][2].startswith("".join(seen)[:20]) and len(rows[1][2]) < len(SCRIPT.reply(""))


async def test_limits_refuse_before_anything_is_saved(service: ChatService) -> None:
    alice = make_user(service.db, "alice")
    with pytest.raises(LimitError, match="the limit is 8000"):
        await collect(service, alice, "x" * 8001)
    with pytest.raises(LimitError, match="NUL"):
        await collect(service, alice, "a\x00b")
    for i in range(5):
        await collect(service, alice, f"msg {i}")
    with pytest.raises(LimitError) as exc:
        await collect(service, alice, "one too many")
    assert exc.value.status == 429 and exc.value.retry_after_s
    with service.db.read() as s:
        assert s.scalar(select(Message.id).where(Message.content == "one too many")) is None


async def test_another_users_conversation_is_not_found(service: ChatService) -> None:
    alice, bob = make_user(service.db, "alice"), make_user(service.db, "bob")
    events = await collect(service, alice, "private")
    cid = events[0].conversation_id  # type: ignore[union-attr]
    with pytest.raises(NotFoundError):
        await collect(service, bob, "let me in", cid)
    assert len(stored(service.db, alice, cid)) == 2


async def test_regenerate_replaces_the_last_reply(service: ChatService) -> None:
    alice = make_user(service.db, "alice")
    first = await collect(service, alice, "hi there")
    cid = first[0].conversation_id  # type: ignore[union-attr]
    SCRIPT.reply = lambda text: f"second take on {text}"
    again = [e async for e in service.regenerate(user=alice, conversation_id=cid)]
    assert again[-1].reply == "second take on hi there"  # type: ignore[union-attr]
    assert stored(service.db, alice, cid) == [
        ("user", "complete", "hi there"),
        ("assistant", "complete", "second take on hi there"),
    ]


async def test_usage_counts_the_prompt_the_model_was_given_and_nothing_for_a_refused_one(
    service: ChatService,
) -> None:
    alice = make_user(service.db, "alice")
    ended = (await collect(service, alice, "Tell me about tea"))[-1]
    assert isinstance(ended, TurnEnded) and ended.status == "complete"
    # The scripted model reports nothing, so the service counts the prompt as the template renders it.
    rendered = get_template(service.settings.prompt_template).render([ChatTurn("user", "Tell me about tea")])
    assert ended.tokens_in == service.tokens.count(rendered) > service.tokens.count("Tell me about tea")
    assert ended.tokens_out == service.tokens.count(ended.reply)
    assert ended.finish_reason == "stop"

    refused = (await collect(service, alice, "you are a worthless idiot, fuck you"))[-1]
    assert isinstance(refused, TurnEnded) and refused.status == "blocked"
    assert (refused.tokens_in, refused.tokens_out, refused.finish_reason) == (0, 0, None)


class ReportingChatModel(ScriptedChatModel):
    """Streams like the scripted model through ``stream_text`` and reports an outcome, as the Triton one does:
    the newest message's length as its prompt tokens, so each turn's numbers are its own."""

    async def stream_text(self, messages: Sequence[BaseMessage], **kwargs: Any) -> AsyncGenerator[str, None]:
        text = str(messages[-1].content)
        for word in text.split():
            await asyncio.sleep(0.001)  # let concurrent turns interleave
            yield word + " "
        record = current_record()
        assert record is not None, "the turn's generation is observed"
        record.outcome = GenerationOutcome("length", len(text), len(text.split()))


@pytest.fixture
def reporting_service(
    sqlite_database: Database, monkeypatch: pytest.MonkeyPatch, settings_factory: SettingsFactory
) -> Iterator[ChatService]:
    register_chat_model("reporting", lambda settings, name: ReportingChatModel(model_name=name))
    monkeypatch.setenv("GUARDCHAT_LLM_BACKEND", "reporting")
    monkeypatch.setenv("GUARDCHAT_SELF_CHECK_RAILS", "false")
    settings = settings_factory()
    TurnGuard.clear_cache()
    yield ChatService(database=sqlite_database, guard=TurnGuard.load(settings), settings=settings)
    TurnGuard.clear_cache()
    unregister_chat_model("reporting")


async def test_each_turn_gets_the_outcome_its_own_generation_reported(reporting_service: ChatService) -> None:
    alice = make_user(reporting_service.db, "alice")
    texts = ["one two", "one two three four five", "a b c d e f g h"]
    turns = await asyncio.gather(*(collect(reporting_service, alice, text) for text in texts))
    for text, events in zip(texts, turns, strict=True):
        ended = events[-1]
        assert isinstance(ended, TurnEnded) and ended.status == "complete"
        assert (ended.finish_reason, ended.tokens_in, ended.tokens_out) == ("length", len(text), len(text.split()))
        with reporting_service.db.read() as s:
            saved = s.get(Message, ended.assistant_message_id)
        assert saved is not None and (saved.tokens_in, saved.tokens_out) == (len(text), len(text.split()))
