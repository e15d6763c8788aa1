"""A rail that raises or hangs blocks the turn (fail closed), and the turn is recorded with a `rail_error` flag.

The real app and real rails, with the LLM self-check rails on; the guard model behind them is the scripted
model registered through the production seam, told to raise or to hang. The main model is never asked.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

import tests.support.guard.scripted_model  # noqa: F401 - registers the "scripted" backend
from tests.support.app_server import RunningApp, run_app
from tests.support.guard.scripted_model import SCRIPT
from tests.support.paths import PROJECT_ROOT
from tests.support.resilience.chat_api import complete, create_user_with_key, stream
from tests.support.resilience.chat_page import send_message, signed_in
from tests.support.settings import SettingsFactory
from webapp.guard.turn import TurnGuard
from webapp.store.migrate import upgrade
from webapp.store.models import Flag, Message

RAIL_TIMEOUT_S = 3.0  # the hanging rail's deadline; the other rails must finish well within it on a loaded CI machine


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, settings_factory: SettingsFactory) -> Iterator[RunningApp]:
    settings = settings_factory(
        data_dir=tmp_path_factory.mktemp("rail-failure"),
        rails_dir=PROJECT_ROOT / "rails",
        llm_backend="scripted",
        self_check_rails=True,
        rail_timeout_s=RAIL_TIMEOUT_S,
        output_chunk_size=4,
        output_context_size=1,
        rate_limit_per_minute=1000,
    )
    upgrade(settings.resolved_database_url)
    TurnGuard.clear_cache()
    with run_app(settings) as running:
        yield running
    TurnGuard.clear_cache()


@pytest.fixture(autouse=True)
def script() -> Iterator[None]:
    SCRIPT.reset()
    yield
    SCRIPT.reset()


def _raise(error: Exception, when: str = ""):  # type: ignore[no-untyped-def]
    def answer(prompt: str) -> str:
        if when in prompt:
            raise error
        return "No"

    return answer


def record_of(app: RunningApp, message_id: int) -> tuple[Message, Message, list[Flag]]:
    """The reply, the user message before it, and the flags raised on either."""
    with app.ctx.db.read() as s:
        reply = s.get(Message, message_id)
        assert reply is not None
        user_msg = s.scalars(
            select(Message).where(Message.conversation_id == reply.conversation_id, Message.seq == reply.seq - 1)
        ).one()
        flags = list(s.scalars(select(Flag).where(Flag.message_id.in_((reply.id, user_msg.id)))))
        return reply, user_msg, flags


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("raises", "self_check_input failed: RuntimeError: guard model exploded"),
        ("hangs", f"self_check_input did not finish within {RAIL_TIMEOUT_S:g} s"),
    ],
)
def test_an_input_rail_that_fails_blocks_the_turn_and_flags_it(app: RunningApp, failure: str, reason: str) -> None:
    if failure == "raises":
        SCRIPT.rail_answer = _raise(RuntimeError("guard model exploded"))
    else:
        SCRIPT.rail_delay_s = 60 * RAIL_TIMEOUT_S
    _, key = create_user_with_key(app.ctx.db, f"user-{failure}")

    turn = complete(app.url, key, "What is the capital of France?")

    assert turn.status_code == 200, turn.body
    assert turn.body["choices"][0]["finish_reason"] == "content_filter"
    assert turn.reply == app.settings.refusal_error
    assert turn.guardchat | {"message_id": 0, "conversation_id": 0} == {
        "status": "blocked", "stage": "error", "rail": "self check input", "flagged": True, "error": None,
        "message_id": 0, "conversation_id": 0,
    }  # fmt: skip
    assert SCRIPT.generation_calls == []  # the main model never saw the message
    reply, user_msg, flags = record_of(app, turn.guardchat["message_id"])
    assert (user_msg.status, reply.status, reply.content) == ("error", "blocked", app.settings.refusal_error)
    assert reply.verdict is not None and reply.verdict["reason"] == reason
    assert [(f.source, f.rail, f.reason, f.status) for f in flags] == [
        ("rail_error", "self check input", reason, "open")
    ]


def test_an_output_rail_that_fails_mid_stream_withdraws_the_reply_and_flags_it(app: RunningApp) -> None:
    SCRIPT.rail_answer = _raise(RuntimeError("output guard exploded"), when="Must the reply be blocked?")
    SCRIPT.reply = lambda user: "Paris is the capital of France, and it is a lovely city to visit in spring."
    _, key = create_user_with_key(app.ctx.db, "output-failure")

    with stream(app.url, key, "What is the capital of France?") as reply_stream:
        reply_stream.read_all()

    assert reply_stream.final is not None and reply_stream.final["choices"][0]["finish_reason"] == "content_filter"
    outcome = reply_stream.final["guardchat"]
    assert (outcome["status"], outcome["stage"], outcome["rail"]) == ("blocked", "error", "self check output")
    assert "Paris" not in reply_stream.text  # no unchecked text reached the client
    reply, user_msg, flags = record_of(app, outcome["message_id"])
    assert (user_msg.status, reply.status, reply.content) == ("error", "blocked", app.settings.refusal_error)
    assert [(f.source, f.rail, f.message_id) for f in flags] == [("rail_error", "self check output", reply.id)]
    assert reply.verdict is not None and "Paris" in reply.verdict["blocked_text"]  # kept for moderators


def test_the_chat_page_shows_the_refusal_for_a_failed_rail(app: RunningApp) -> None:
    SCRIPT.rail_answer = _raise(RuntimeError("guard model exploded"))
    user, _ = create_user_with_key(app.ctx.db, "page-user")
    with signed_in(app.url, "page-user") as browser:
        outcome = send_message(browser, "What is the capital of France?")
    assert outcome.success, outcome.error
    assert app.settings.refusal_error in outcome.text and "flagged for review" in outcome.text
    assert SCRIPT.generation_calls == []
    with app.ctx.db.read() as s:
        flags = list(s.scalars(select(Flag).where(Flag.user_id == user.id)))
    assert [(f.source, f.rail) for f in flags] == [("rail_error", "self check input")]
