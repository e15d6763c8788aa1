"""Triton goes away and comes back while the app keeps running: a real Triton (pytriton) on fixed ports,
the real app (API and chat page), real rails and SQLite. The tests run in order, one outage story:

down at start-up → back → killed mid-stream (API) → back → stopped mid-stream (chat page) → back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.support.app_server import RunningApp, run_app
from tests.support.paths import PROJECT_ROOT
from tests.support.resilience.chat_api import complete, create_user_with_key, stream
from tests.support.resilience.chat_page import send_message, signed_in
from tests.support.resilience.crash import LONG_REPLY, MODEL, rows
from tests.support.settings import SettingsFactory
from tests.support.triton_fixtures import TritonServer
from webapp.guard.turn import TurnGuard
from webapp.store.migrate import upgrade
from webapp.store.models import Conversation, Message

pytestmark = pytest.mark.integration


@dataclass
class Outage:
    app: RunningApp
    triton: TritonServer
    key: str
    conversation_id: int = 0  # the API conversation the story continues


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory, settings_factory: SettingsFactory) -> Iterator[Outage]:
    run_dir = tmp_path_factory.mktemp("triton-outage")
    triton = TritonServer(models=(MODEL,), state_dir=run_dir / "state", run_dir=run_dir)  # not started yet
    settings = settings_factory(
        data_dir=run_dir / "data",
        rails_dir=PROJECT_ROOT / "rails",
        triton_url=triton.grpc_url,
        triton_model=MODEL,
        prompt_template="nemo-chat",
        self_check_rails=False,
        output_chunk_size=8,
        output_context_size=2,
        rate_limit_per_minute=1000,
    )
    upgrade(settings.resolved_database_url)
    TurnGuard.clear_cache()
    try:
        with run_app(settings) as app:
            _, key = create_user_with_key(app.ctx.db, "alice")
            yield Outage(app, triton, key)
    finally:
        triton.kill()
        TurnGuard.clear_cache()


def user_messages(app: RunningApp) -> list[tuple[str, str, str]]:
    with app.ctx.db.read() as s:
        found = s.execute(
            select(Message.role, Message.status, Message.content)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .order_by(Message.id)
        ).all()
    return [tuple(row) for row in found]  # type: ignore[misc]


def test_the_app_starts_without_triton_and_says_why(outage: Outage) -> None:
    app = outage.app
    assert httpx.get(f"{app.url}/healthz").status_code == 200
    ready = httpx.get(f"{app.url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["model"] == f"Triton model '{MODEL}' at {outage.triton.grpc_url} is not ready"

    turn = complete(app.url, outage.key, "Are you there? {{reply:yes}}")
    assert turn.status_code == 503 and turn.error["code"] == "model_unavailable", turn.body
    assert turn.error["message"].startswith("Model unavailable")
    outage.conversation_id = turn.conversation_id or 0
    assert rows(app.ctx.db, outage.conversation_id)[0][2:] == ("user", "error", "Are you there? {{reply:yes}}")

    with signed_in(app.url, "alice") as browser:
        page = send_message(browser, "Hello from the page {{reply:hi}}")
    assert page.success, page.error
    assert "Model unavailable" in page.text  # the status line under the chat
    assert ("user", "error", "Hello from the page {{reply:hi}}") in user_messages(app)


def test_triton_comes_back_and_the_next_turn_works_without_a_restart(outage: Outage) -> None:
    outage.triton.start()
    # The app's gRPC channel reconnects within its capped backoff (2 s), not at once.
    assert wait_ready(outage.app.url, timeout_s=15) == 200
    turn = complete(outage.app.url, outage.key, "Back? {{reply:Back again.}}", conversation_id=outage.conversation_id)
    assert turn.status_code == 200 and turn.reply == "Back again.", turn.body


def wait_ready(url: str, *, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        status = httpx.get(f"{url}/readyz").status_code
        if status == 200 or time.monotonic() > deadline:
            return status
        time.sleep(0.25)


def test_triton_killed_mid_stream_gives_the_api_client_a_clear_error(outage: Outage) -> None:
    before = rows(outage.app.ctx.db, outage.conversation_id)
    with stream(outage.app.url, outage.key, LONG_REPLY, conversation_id=outage.conversation_id) as reply:
        reply.read_until(20)
        outage.triton.kill()
        reply.read_all()
    assert [e["code"] for e in reply.errors] == ["model_unavailable"], reply.errors
    assert reply.errors[0]["message"].startswith("Model unavailable")
    assert reply.final is not None and reply.final["guardchat"]["status"] == "error"
    after = rows(outage.app.ctx.db, outage.conversation_id)
    assert after[: len(before)] == before  # the history is intact
    user_msg, failed = after[len(before) :]
    assert (user_msg[2:4], failed[2:4]) == (("user", "error"), ("assistant", "error"))
    assert failed[4] and reply.text.startswith(failed[4])  # what was shown is kept with the failed reply


def test_triton_stopped_mid_stream_shows_a_clear_error_on_the_chat_page(outage: Outage) -> None:
    outage.triton.start()
    outcome: list[Any] = []
    with signed_in(outage.app.url, "alice") as browser:
        sender = threading.Thread(target=lambda: outcome.append(send_message(browser, f"Page story. {LONG_REPLY}")))
        sender.start()
        outage.triton.find_request(MODEL, "Page story.", until=lambda r: r.produced >= 20, timeout_s=120)
        outage.triton.stop()
        sender.join(timeout=300)
    (page,) = outcome
    assert page.success, page.error
    assert "The model failed" in page.text and "shutting down" in page.text
    assert ("user", "error", f"Page story. {LONG_REPLY}") in user_messages(outage.app)


def test_after_the_outage_the_conversation_goes_on(outage: Outage) -> None:
    outage.triton.start()
    cid = outage.conversation_id
    turn = complete(outage.app.url, outage.key, "Still here? {{reply:Still here.}}", conversation_id=cid)
    assert turn.status_code == 200 and turn.reply == "Still here.", turn.body
    prompt = outage.triton.find_request(MODEL, "Still here?").prompt
    assert "Back again." in prompt  # earlier successful turns are still part of the conversation
    with signed_in(outage.app.url, "alice") as browser:
        page = send_message(browser, "And the page? {{reply:Page works.}}")
    assert page.success and "Page works." in page.text, page.error
