"""Hostile input gets a clear 4xx (API) or a clear error on the page, the server stays healthy, and nothing is
saved half-way. The real app, rails and SQLite; the model is the `nemo2` stand-in on the session's real
Triton, so the prompt really goes through the token budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select

from tests.support.app_server import RunningApp, run_app
from tests.support.paths import PROJECT_ROOT
from tests.support.resilience.chat_api import complete, create_user_with_key
from tests.support.resilience.chat_page import page_inputs, run_raw_event, send_message, signed_in
from tests.support.resilience.crash import MODEL
from tests.support.settings import SettingsFactory
from tests.support.triton_fixtures import TritonServer
from tests.support.ui.gradio_http import backend_dependencies, run_event
from webapp.guard.turn import TurnGuard
from webapp.store import conversations as conv
from webapp.store.migrate import upgrade
from webapp.store.models import Conversation, Message, User, utcnow

pytestmark = pytest.mark.integration

MAX_CHARS = 2000
MAX_BODY = 1_000_000
HISTORY = 10_000


@pytest.fixture(scope="module")
def app(
    triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory, settings_factory: SettingsFactory
) -> Iterator[RunningApp]:
    settings = settings_factory(
        data_dir=tmp_path_factory.mktemp("input-abuse"),
        rails_dir=PROJECT_ROOT / "rails",
        triton_url=triton_server.grpc_url,
        triton_model=MODEL,
        prompt_template="nemo-chat",
        self_check_rails=False,
        max_message_chars=MAX_CHARS,
        max_body_bytes=MAX_BODY,
        rate_limit_per_minute=1000,
    )
    upgrade(settings.resolved_database_url)
    TurnGuard.clear_cache()
    with run_app(settings) as running:
        create_user_with_key(running.ctx.db, "alice")
        yield running
    TurnGuard.clear_cache()


@pytest.fixture(scope="module")
def key(app: RunningApp) -> str:
    return create_user_with_key(app.ctx.db, "mallory")[1]


def counts(app: RunningApp) -> tuple[int, int]:
    with app.ctx.db.read() as s:
        return s.scalar(select(func.count(Conversation.id))) or 0, s.scalar(select(func.count(Message.id))) or 0


def post(app: RunningApp, key: str, content: bytes | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **kwargs.pop("headers", {})}
    return httpx.post(f"{app.url}/v1/chat/completions", headers=headers, content=content, timeout=60, **kwargs)


def chat(*messages: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"model": "m", "messages": list(messages), **extra}).encode()


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def chunked(total: int, piece: int = 16_384) -> Iterator[bytes]:
    """A body sent without Content-Length, as a client streaming an endless upload would."""
    for _ in range(total // piece):
        yield b" " * piece


API_CASES: dict[str, tuple[Any, int, str]] = {
    # name: (body, status, what the error message names)
    "over-long message": (chat(user("x" * (MAX_CHARS + 1))), 413, "GUARDCHAT_MAX_MESSAGE_CHARS"),
    "10,000-message history": (chat(*[user("hi")] * HISTORY), 413, "GUARDCHAT_MAX_MESSAGES"),
    "invalid UTF-8": (b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400, "not valid JSON"),
    "lone surrogate": (b'{"model": "m", "messages": [{"role": "user", "content": "a\\ud800b"}]}', 400, "UTF-8"),
    "null byte": (chat(user("a\u0000b")), 400, "NUL"),
    "null byte in history": (chat(user("a\u0000b"), {"role": "assistant", "content": "x"}, user("hi")), 400, "NUL"),
    "huge body": (chat(user("x" * MAX_BODY)), 413, "GUARDCHAT_MAX_BODY_BYTES"),
    "huge body, no length": (chunked(4 * MAX_BODY), 413, "GUARDCHAT_MAX_BODY_BYTES"),
    "deeply nested JSON": (b"[" * 50_000 + b"]" * 50_000, 400, "nested too deeply"),
    "unknown field": (chat(user("hi"), frobnicate=True), 400, "frobnicate"),
    "unknown message field": (chat({"role": "user", "content": "hi", "mood": "angry"}), 400, "mood"),
    "wrong type": (json.dumps({"model": "m", "messages": "hi"}).encode(), 400, "messages"),
    "empty message": (chat(user("   ")), 400, "empty"),
    "no messages": (chat(), 400, "messages"),
    "not JSON": (b"model=m&messages=hi", 400, "not valid JSON"),
}


@pytest.mark.parametrize("case", API_CASES)
def test_the_api_refuses_abuse_clearly_and_saves_nothing(app: RunningApp, key: str, case: str) -> None:
    body, status, named = API_CASES[case]
    before = counts(app)
    response = post(app, key, body)
    assert response.status_code == status, response.text
    assert named in response.json()["error"]["message"]
    assert counts(app) == before
    assert httpx.get(f"{app.url}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("text", "named"),
    [("x" * (MAX_CHARS + 1), f"the limit is {MAX_CHARS}"), ("a\u0000b", "NUL"), ("   ", "empty")],
    ids=["over-long message", "null byte", "empty message"],
)
def test_the_chat_page_refuses_abuse_clearly_and_saves_nothing(app: RunningApp, text: str, named: str) -> None:
    before = counts(app)
    with signed_in(app.url, "alice") as browser:
        outcome = send_message(browser, text)
    assert outcome.success is False and named in (outcome.error or ""), outcome.messages[-1:]
    assert counts(app) == before
    assert httpx.get(f"{app.url}/healthz").status_code == 200


def test_the_chat_page_refuses_broken_requests(app: RunningApp) -> None:
    before = counts(app)
    with signed_in(app.url, "alice") as browser:
        dependency = backend_dependencies(browser)["send_message"]
        join = "/gradio_api/queue/join"
        bad_utf8 = browser.post(join, headers={"Content-Type": "application/json"}, content=b'{"data": ["\xff"]}')
        nested = browser.post(join, headers={"Content-Type": "application/json"}, content=b"[" * 50_000)
        huge = browser.post(join, headers={"Content-Type": "application/json"}, content=chunked(4 * MAX_BODY))
        inputs = page_inputs(browser, "send_message", {"gc-input": "a\ud800b"})
        surrogate = run_raw_event(browser, dependency, inputs)
    assert (bad_utf8.status_code, nested.status_code, huge.status_code) == (400, 400, 413)
    assert "GUARDCHAT_MAX_BODY_BYTES" in huge.text
    assert surrogate.success is False and "not valid UTF-8" in (surrogate.error or "")
    assert counts(app) == before
    assert httpx.get(f"{app.url}/healthz").status_code == 200


def test_a_10000_message_conversation_still_opens_and_continues(
    app: RunningApp, key: str, triton_server: TritonServer
) -> None:
    with app.ctx.db.write() as s:
        mallory = s.scalars(select(User).where(User.username == "mallory")).one()
        conversation = conv.create_conversation(s, user=mallory, title="A very long chat")
        last_week = utcnow() - timedelta(days=7)  # old messages: the rate limit counts the last minute only
        s.execute(
            insert(Message),
            [
                {"conversation_id": conversation.id, "seq": i + 1, "role": ("user", "assistant")[i % 2],
                 "content": f"message number {i}", "status": "complete", "created_at": last_week}
                for i in range(HISTORY)
            ],
        )  # fmt: skip
        cid = conversation.id
    turn = complete(app.url, key, "And the newest one? {{reply:Still answering.}}", conversation_id=cid)
    assert turn.status_code == 200 and turn.reply == "Still answering.", turn.body
    prompt = triton_server.find_request(MODEL, "And the newest one?").prompt
    # The prompt kept to the token budget: the newest turns, not the first ones.
    assert f"message number {HISTORY - 1}" in prompt and "message number 0\n" not in prompt
    assert len(prompt) < 4 * app.settings.max_input_tokens

    with signed_in(app.url, "mallory") as browser:
        # The page opened on a link to the conversation (?c=<id>), as after a reload.
        load = backend_dependencies(browser)["load_page"]
        opened = run_event(browser, load, page_inputs(browser, "load_page", {"gc-conversation-id": cid}))
    assert opened.success, opened.error
    assert "Still answering." in opened.text and f"message number {HISTORY - 1}" in opened.text
    assert httpx.get(f"{app.url}/healthz").status_code == 200
