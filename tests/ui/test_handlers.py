"""The chat page's handlers called directly, as Gradio calls them, on the real ChatService, rails and SQLite.

The chat model is the scripted one registered through the production seam (tests/support/ui/page_model.py).
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pytest
from sqlalchemy import select
from starlette.requests import Request

from tests.support.ui.chat_app import ui_settings
from tests.support.ui.page_model import PAGE_MODEL
from webapp.chat.service import ChatService
from webapp.context import AppContext
from webapp.guard.turn import TurnGuard
from webapp.llm.errors import TritonUnavailableError
from webapp.services.accounts import SESSION_USER_KEY
from webapp.settings import Settings
from webapp.store import conversations as conv
from webapp.store import users
from webapp.store.engine import Database
from webapp.store.migrate import upgrade
from webapp.store.models import Conversation, Feedback, Flag, Message, User
from webapp.ui.chat import (
    CHECKING_STATUS,
    EVENT_HANDLERS,
    REPORTED_STATUS,
    STOPPED_STATUS,
    UNAVAILABLE_STATUS,
    ChatPage,
    build_chat_page,
)
from webapp.ui.rendering import CHECKING_TITLE, FAILED_NOTE, FLAGGED_NOTE, INTERRUPTED_NOTE
from webapp.ui.session import SignedOutError

ABUSE = "you are a worthless idiot, fuck you"
Updates = dict[Any, Any]


@dataclass
class Harness:
    page: ChatPage
    db: Database
    settings: Settings
    alice: User
    bob: User


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    settings = ui_settings(
        tmp_path_factory.mktemp("ui-handlers"), llm_backend="ui-scripted", output_chunk_size=4, output_context_size=8
    )
    upgrade(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    TurnGuard.clear_cache()

    async def ready() -> bool:
        return True

    chat = ChatService(database=db, guard=TurnGuard.load(settings), settings=settings)
    page, _demo = build_chat_page(AppContext(settings=settings, db=db, chat=chat, model_ready=ready))
    with db.write() as s:
        alice = users.create_user(s, username="alice", password="password123")
        bob = users.create_user(s, username="bob", password="password123")
    yield Harness(page, db, settings, alice, bob)
    TurnGuard.clear_cache()
    db.dispose()


@pytest.fixture(autouse=True)
def fresh_model() -> Iterator[None]:
    PAGE_MODEL.reset()
    yield
    PAGE_MODEL.reset()


def request_as(user: User | None, *, with_session: bool = True) -> gr.Request:
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "headers": []}
    if with_session:
        scope["session"] = {SESSION_USER_KEY: user.id} if user else {}
    return gr.Request(request=Request(scope))


def defaults(h: Harness) -> list[Any]:
    """system prompt, temperature, top_p, top_k, max new tokens as the settings panel starts."""
    return ["", h.settings.temperature, h.settings.top_p, h.settings.top_k, 64]


async def collect(updates: AsyncIterator[Updates]) -> list[Updates]:
    return [u async for u in updates]


async def send(h: Harness, user: User, text: str, cid: int | None = None, **panel: Any) -> list[Updates]:
    settings = dict(zip(["system_prompt", "temperature", "top_p", "top_k", "max_new_tokens"], defaults(h), strict=True))
    settings.update(panel)
    return await collect(h.page.send_message(text, cid, *settings.values(), request=request_as(user)))


def chat_of(updates: Updates, h: Harness) -> list[dict[str, Any]] | None:
    value = updates.get(h.page.chatbot)
    if isinstance(value, dict) and value.get("__type__") == "update":
        value = value.get("value")
    return value


def texts(chat: list[dict[str, Any]]) -> list[str]:
    return [str(m["content"]) for m in chat]


def visible(update: Any) -> bool | None:
    return update.get("visible") if isinstance(update, dict) else None


def last_conversation(h: Harness, user: User) -> Conversation:
    with h.db.read() as s:
        return conv.list_conversations(s, user=user)[0]


def stored(h: Harness, user: User, cid: int) -> list[tuple[str, str, str]]:
    with h.db.read() as s:
        return [(m.role, m.status, m.content) for m in conv.list_messages(s, user=user, conversation_id=cid)]


def count_conversations(h: Harness, user: User) -> int:
    with h.db.read() as s:
        return len(conv.list_conversations(s, user=user))


# --- who is acting -----------------------------------------------------------------------------------


def _placeholder_args(method: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(method)
    args: dict[str, Any] = {}
    for name in inspect.signature(method).parameters:
        if name == "request":
            continue
        hint = hints.get(name)
        if hint is gr.LikeData:
            args[name] = gr.LikeData(None, {"index": 1, "value": "x", "liked": True})
        elif hint is gr.EditData:
            args[name] = gr.EditData(None, {"index": 0, "value": "x", "previous_value": "y"})
        else:
            args[name] = 1
    return args


async def call_handler(h: Harness, name: str, request: gr.Request) -> Any:
    method = getattr(h.page, name)
    result = method(**_placeholder_args(method), request=request)
    if inspect.isasyncgen(result):
        return await anext(result)
    return await result


@pytest.mark.parametrize("name", EVENT_HANDLERS)
async def test_every_handler_refuses_a_request_without_a_session(harness: Harness, name: str) -> None:
    with pytest.raises(SignedOutError):
        await call_handler(harness, name, request_as(None, with_session=False))
    with pytest.raises(SignedOutError):
        await call_handler(harness, name, request_as(None))  # a session without a user


async def test_a_banned_user_is_refused_and_the_session_cleared(harness: Harness) -> None:
    with harness.db.write() as s:
        carol = users.create_user(s, username="carol", password="password123")
    request = request_as(carol)
    await harness.page.new_chat(request=request)
    with harness.db.write() as s:
        users.ban_user(s, user=s.get(User, carol.id))  # type: ignore[arg-type]
    with pytest.raises(SignedOutError):
        await harness.page.new_chat(request=request)
    assert request.request.scope["session"] == {}  # type: ignore[union-attr]


# --- one turn ------------------------------------------------------------------------------------------


async def test_a_turn_shows_the_rails_checking_then_streams_then_the_stored_reply(harness: Harness) -> None:
    h = harness
    PAGE_MODEL.reply = lambda text: "Tea is a drink made by steeping leaves in hot water, enjoyed all over the world."
    PAGE_MODEL.token_delay_s = 0.02  # tokens arrive over time, as from a real model, so chunks reach the page apart
    updates = await send(h, h.alice, "Tell me about tea")
    first, final = updates[0], updates[-1]

    checking = chat_of(first, h)
    assert checking is not None and checking[-1]["metadata"]["title"] == CHECKING_TITLE
    assert first[h.page.status] == CHECKING_STATUS and first[h.page.textbox] == ""
    assert visible(first[h.page.stop_button]) is True and visible(first[h.page.send_button]) is False

    reply = "Tea is a drink made by steeping leaves in hot water, enjoyed all over the world."
    partials = [texts(c)[-1] for u in updates[1:-1] if (c := chat_of(u, h))]
    assert any(p and p != reply and reply.startswith(p) for p in partials), f"not streamed: {partials}"

    shown = chat_of(final, h)
    assert shown is not None
    assert [m["role"] for m in shown] == ["user", "assistant", "assistant"]
    assert shown[0]["content"] == "Tell me about tea" and shown[1]["content"] == reply
    assert shown[2]["metadata"]["title"].startswith("Checked by ")
    assert final[h.page.status] == ""
    assert visible(final[h.page.stop_button]) is False and visible(final[h.page.send_button]) is True
    cid = final[h.page.conversation_id]
    assert stored(h, h.alice, cid) == [("user", "complete", "Tell me about tea"), ("assistant", "complete", reply)]


@pytest.mark.parametrize(
    ("text", "panel", "expected"),
    [
        ("x" * 9000, {}, "GUARDCHAT_MAX_MESSAGE_CHARS"),
        ("   ", {}, "empty"),
        ("hello", {"temperature": 5}, "temperature"),
        ("hello", {"top_k": 2.5}, "whole number"),
        ("hello", {"max_new_tokens": 2000}, "above the limit 1024"),
        ("hello", {"system_prompt": "s" * 5000}, "system prompt"),
    ],
)
async def test_refused_turns_say_why_and_save_nothing(
    harness: Harness, text: str, panel: dict[str, Any], expected: str
) -> None:
    before = count_conversations(harness, harness.bob)
    with pytest.raises(gr.Error) as refused:
        await send(harness, harness.bob, text, **panel)
    assert expected in str(refused.value)
    assert count_conversations(harness, harness.bob) == before


async def test_model_unavailable_is_shown_as_a_clear_error(harness: Harness) -> None:
    h = harness
    PAGE_MODEL.error = TritonUnavailableError("Triton at 127.0.0.1:1 is unreachable. Start it.")
    final = (await send(h, h.alice, "Are you there?"))[-1]
    assert "unreachable" in final[h.page.status] and "Error" in final[h.page.status]
    shown = chat_of(final, h)
    assert shown is not None and FAILED_NOTE in texts(shown)[-1]


async def test_an_output_block_shows_the_refusal_and_flag_note_never_the_text(harness: Harness) -> None:
    h = harness
    # Short enough that every chunk holding the insult, with its context, reads as abuse to the reply rail
    # (0.64 or more): read inside 40 words of calm text it scored 0.08, so under load a grown chunk let it pass.
    PAGE_MODEL.reply = lambda _: "Sure. " + "Here is a calm answer. " * 4 + "You are a fucking worthless idiot."
    updates = await send(h, h.alice, "hello")
    assert "fucking" not in repr(updates) and "idiot" not in repr(updates)
    shown = chat_of(updates[-1], h)
    assert shown is not None
    reply = texts(shown)[1]
    assert h.settings.refusal_output in reply and FLAGGED_NOTE in reply
    assert "blocked" in texts(shown)[2]  # the details name the rail that blocked it
    with h.db.read() as s:
        flag = s.scalars(select(Flag).order_by(Flag.id.desc())).first()
    assert flag is not None and flag.source == "output_rail" and "fucking" in flag.excerpt


async def test_an_input_block_never_reaches_the_model(harness: Harness) -> None:
    h = harness
    updates = await send(h, h.alice, ABUSE)
    shown = chat_of(updates[-1], h)
    assert shown is not None
    assert h.settings.refusal_input in texts(shown)[1] and FLAGGED_NOTE in texts(shown)[1]
    assert PAGE_MODEL.prompts == []
    with h.db.read() as s:
        flag = s.scalars(select(Flag).order_by(Flag.id.desc())).first()
    assert flag is not None and flag.source == "input_rail"


async def test_details_show_rails_and_timings_but_never_blocked_text_or_rail_prompts(harness: Harness) -> None:
    h = harness
    verdict = {
        "allowed": False,
        "stage": "output",
        "rail": "check abuse output",
        "reason": "toxicity 0.97",
        "checks": [
            {"name": "check abuse input", "stage": "input", "duration_ms": 3.2, "blocked": False, "reason": None},
            {"name": "check abuse output", "stage": "output", "duration_ms": 41.0, "blocked": True, "reason": "tox"},
        ],
        "model_calls": [{"task": "self_check_output", "prompt": "SECRET RAIL PROMPT", "completion": "Yes"}],
        "blocked_text": "THE BLOCKED TEXT",
    }
    with h.db.write() as s:
        c = conv.create_conversation(s, user=h.alice, title="stored verdict")
        conv.append_message(s, user=h.alice, conversation_id=c.id, role="user", content="hi")
        conv.append_message(
            s,
            user=h.alice,
            conversation_id=c.id,
            role="assistant",
            content="I can't share that.",
            status="blocked",
            verdict=verdict,
        )
        cid = c.id
    opened = await h.page.open_conversation(cid, request=request_as(h.alice))
    shown = chat_of(opened, h)
    assert shown is not None
    details = shown[2]
    assert details["metadata"]["title"] == "Checked by 2 rails · 44 ms"
    assert "check abuse input" in details["content"] and "3 ms" in details["content"]
    assert "blocked: tox" in details["content"]
    assert "THE BLOCKED TEXT" not in repr(opened) and "SECRET RAIL PROMPT" not in repr(opened)


# --- message actions ---------------------------------------------------------------------------------------


async def test_only_the_last_message_can_be_edited_and_the_edit_is_resent(harness: Harness) -> None:
    h = harness
    first = await send(h, h.alice, "first question")
    cid = first[-1][h.page.conversation_id]
    await send(h, h.alice, "second question", cid)
    request = request_as(h.alice)

    earlier = gr.EditData(None, {"index": 0, "value": "changed", "previous_value": "first question"})
    with pytest.raises(gr.Error, match="only your last message"):
        await collect(h.page.edit_last_message(cid, *defaults(h), earlier, request=request))

    shown = chat_of((await h.page.open_conversation(cid, request=request)), h)
    assert shown is not None
    last_user = max(i for i, m in enumerate(shown) if m["role"] == "user")
    edit = gr.EditData(None, {"index": last_user, "value": "second, better question", "previous_value": "x"})
    await collect(h.page.edit_last_message(cid, *defaults(h), edit, request=request))
    assert [text for role, _, text in stored(h, h.alice, cid) if role == "user"] == [
        "first question",
        "second, better question",
    ]


async def test_regenerate_replaces_the_last_reply(harness: Harness) -> None:
    h = harness
    PAGE_MODEL.reply = lambda _: "first answer"
    cid = (await send(h, h.alice, "question"))[-1][h.page.conversation_id]
    PAGE_MODEL.reply = lambda _: "second answer"
    await collect(h.page.regenerate_reply(cid, *defaults(h), request=request_as(h.alice)))
    assert stored(h, h.alice, cid) == [("user", "complete", "question"), ("assistant", "complete", "second answer")]


async def test_stop_keeps_the_partial_reply_as_interrupted(harness: Harness) -> None:
    h = harness
    PAGE_MODEL.reply = lambda _: " ".join(f"word{i}" for i in range(400))
    PAGE_MODEL.token_delay_s = 0.01
    shown_before_stop: list[str] = []
    started = asyncio.Event()

    async def run() -> None:
        async for update in h.page.send_message("go on and on", None, *defaults(h), request=request_as(h.bob)):
            chat = chat_of(update, h)
            if chat and texts(chat)[-1].startswith("word0"):
                shown_before_stop.append(texts(chat)[-1])
                started.set()

    task = asyncio.create_task(run())
    await asyncio.wait_for(started.wait(), timeout=60)
    task.cancel()  # what Gradio does for the Stop button
    with pytest.raises(asyncio.CancelledError):
        await task
    cid = last_conversation(h, h.bob).id
    after = await h.page.after_stop(cid, request=request_as(h.bob))
    (_, _, question), (role, status, partial) = stored(h, h.bob, cid)
    assert (question, role, status) == ("go on and on", "assistant", "interrupted")
    assert partial.startswith(shown_before_stop[0]) and "word399" not in partial
    shown = chat_of(after, h)
    assert shown is not None and INTERRUPTED_NOTE in texts(shown)[-1] and partial in texts(shown)[-1]
    assert after[h.page.status] == STOPPED_STATUS


async def test_closing_the_stream_between_updates_also_keeps_the_partial_reply(harness: Harness) -> None:
    """Gradio's /cancel also closes the event's iterator when the task was not inside it."""
    h = harness
    PAGE_MODEL.reply = lambda _: " ".join(f"token{i}" for i in range(400))
    PAGE_MODEL.token_delay_s = 0.01
    updates = h.page.send_message("keep going", None, *defaults(h), request=request_as(h.bob))
    async for update in updates:
        chat = chat_of(update, h)
        if chat and texts(chat)[-1].startswith("token0"):
            break
    await updates.aclose()
    cid = last_conversation(h, h.bob).id
    after = await h.page.after_stop(cid, request=request_as(h.bob))
    (_, _, _), (_, status, partial) = stored(h, h.bob, cid)
    assert status == "interrupted" and partial.startswith("token0") and "token399" not in partial
    shown = chat_of(after, h)
    assert shown is not None and INTERRUPTED_NOTE in texts(shown)[-1]


async def test_feedback_and_report_land_on_the_reply(harness: Harness) -> None:
    h = harness
    cid = (await send(h, h.alice, "rate me"))[-1][h.page.conversation_id]
    request = request_as(h.alice)
    with h.db.read() as s:
        reply_id = s.scalars(
            select(Message.id).where(Message.conversation_id == cid, Message.role == "assistant")
        ).one()

    await h.page.give_feedback(cid, gr.LikeData(None, {"index": 1, "value": [], "liked": True}), request=request)
    await h.page.give_feedback(cid, gr.LikeData(None, {"index": 2, "value": [], "liked": False}), request=request)
    with h.db.read() as s:
        votes = s.scalars(select(Feedback.value).where(Feedback.message_id == reply_id)).all()
    assert votes == [-1]  # the details entry belongs to the same reply; the second vote replaced the first
    with pytest.raises(gr.Error, match="only replies"):
        await h.page.give_feedback(cid, gr.LikeData(None, {"index": 0, "value": [], "liked": True}), request=request)

    opened = await h.page.give_feedback(
        cid, gr.LikeData(None, {"index": 1, "value": [], "liked": "Report"}), request=request
    )
    assert visible(opened[h.page.report_panel]) is True and opened[h.page.report_message_id] == reply_id
    with pytest.raises(gr.Error, match="needs a reason"):
        await h.page.report_reply(reply_id, "  ", request=request)
    done = await h.page.report_reply(reply_id, "It made things up", request=request)
    assert done[h.page.status] == REPORTED_STATUS and visible(done[h.page.report_panel]) is False
    with h.db.read() as s:
        flag = s.scalars(select(Flag).where(Flag.message_id == reply_id)).one()
    assert flag.source == "user_report" and flag.reason == "It made things up"


async def test_reopening_a_chat_shows_its_replies_and_the_users_votes(harness: Harness) -> None:
    h = harness
    PAGE_MODEL.reply = lambda text: f"answer to {text}"
    cid = (await send(h, h.alice, "one"))[-1][h.page.conversation_id]
    await send(h, h.alice, "two", cid)
    await send(h, h.alice, "three", cid)
    request = request_as(h.alice)

    def reply_indices(updates: Updates) -> list[int]:
        shown = chat_of(updates, h)
        assert shown is not None
        return [i for i, m in enumerate(shown) if m["role"] == "assistant" and "metadata" not in m]

    first, second, third = reply_indices(await h.page.open_conversation(cid, request=request))
    for index, liked in ((first, True), (second, False), (third, True)):
        await h.page.give_feedback(
            cid, gr.LikeData(None, {"index": index, "value": [], "liked": liked}), request=request
        )
    PAGE_MODEL.reply = lambda text: f"a better answer to {text}"
    await collect(h.page.regenerate_reply(cid, *defaults(h), request=request))  # the voted third reply is replaced

    await h.page.new_chat(request=request)
    opened = await h.page.open_conversation(cid, request=request)
    shown = chat_of(opened, h)
    assert shown is not None
    assert [shown[i]["content"] for i in reply_indices(opened)] == [
        "answer to one",
        "answer to two",
        "a better answer to three",
    ]
    assert [m["content"] for m in shown if m["role"] == "user"] == ["one", "two", "three"]
    assert opened[h.page.chatbot]["feedback_value"] == ["Like", "Dislike", None]


# --- conversations -----------------------------------------------------------------------------------------


async def test_settings_are_kept_per_conversation(harness: Harness) -> None:
    h = harness
    final = (await send(h, h.alice, "with settings", system_prompt="Be brief.", temperature=0.3, top_k=5))[-1]
    cid = final[h.page.conversation_id]
    with h.db.read() as s:
        conversation = s.get(Conversation, cid)
        assert conversation is not None
        assert conversation.system_prompt == "Be brief."
        assert conversation.sampling["temperature"] == 0.3 and conversation.sampling["top_k"] == 5
    fresh = await h.page.new_chat(request=request_as(h.alice))
    assert fresh[h.page.temperature] == h.settings.temperature and fresh[h.page.system_prompt] == ""
    opened = await h.page.open_conversation(cid, request=request_as(h.alice))
    assert opened[h.page.temperature] == 0.3 and opened[h.page.top_k] == 5
    assert opened[h.page.system_prompt] == "Be brief."


async def test_rename_search_and_delete(harness: Harness) -> None:
    h = harness
    PAGE_MODEL.reply = lambda _: "Rooibos is a herbal infusion."
    cid = (await send(h, h.bob, "Tell me about rooibos"))[-1][h.page.conversation_id]
    request = request_as(h.bob)

    renamed = await h.page.rename_conversation(cid, "  Red bush  ", "", request=request)
    assert renamed[h.page.title_box] == "Red bush"
    found = await h.page.search_conversations("herbal infusion", None, request=request)
    assert [title for title, _ in found[h.page.conversation_list]["choices"]] == ["Red bush"]
    with pytest.raises(gr.Error, match="title must not be empty"):
        await h.page.rename_conversation(cid, "   ", "", request=request)

    await h.page.delete_conversation(None, request=request)  # the browser's confirm was cancelled
    assert any(
        c == cid
        for _, c in (await h.page.search_conversations("", None, request=request))[h.page.conversation_list]["choices"]
    )
    deleted = await h.page.delete_conversation(cid, request=request)
    assert cid not in [c for _, c in deleted[h.page.conversation_list]["choices"]]
    assert deleted[h.page.conversation_id] is None
    with pytest.raises(gr.Error, match="not found"):
        await h.page.open_conversation(cid, request=request)


async def test_a_link_to_someone_elses_conversation_opens_an_empty_chat(harness: Harness) -> None:
    h = harness
    cid = (await send(h, h.alice, "alice only"))[-1][h.page.conversation_id]
    loaded = await h.page.load_page(cid, request=request_as(h.bob))
    assert loaded[h.page.conversation_id] is None and chat_of(loaded, h) == []
    assert loaded[h.page.status] == UNAVAILABLE_STATUS
    assert "alice only" not in repr(loaded)
    mine = await h.page.load_page(cid, request=request_as(h.alice))
    shown = chat_of(mine, h)
    assert shown is not None and shown[0]["content"] == "alice only"
