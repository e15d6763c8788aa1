"""The chat page in a real headless Chromium, against the real app, rails, SQLite and the local Triton model
(SmolLM2 behind pytriton, fixture ``triton_server``). One app and one browser for the whole module.

Waits are on conditions (database state, then the page), never on durations: the machine may be slow.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.app_server import RunningApp
from tests.support.triton_fixtures import TritonServer
from tests.support.ui.chat_app import create_user, sign_in, ui_settings
from webapp.store import users
from webapp.store.models import Conversation, Flag, Message
from webapp.ui.rendering import FLAGGED_NOTE, INTERRUPTED_NOTE

pytestmark = pytest.mark.integration

ABUSE = "you are a worthless idiot, fuck you"
TURN_TIMEOUT_S = 600.0  # a CPU model on a busy machine; the wait ends as soon as the turn does
PAGE_TIMEOUT_MS = 180_000  # likewise for page updates: generous limits, never a fixed sleep
SCREENSHOT_ENV = "UI_SCREENSHOT_PATH"  # set to keep the page screenshot, e.g. docs/chat.png

WATCH_CHAT_JS = """
() => {
  const chat = document.querySelector('#gc-chat');
  window.__gc = {checking: false, replies: []};
  const record = () => {
    if (chat.innerText.includes('Checking your message')) window.__gc.checking = true;
    const bots = chat.querySelectorAll('[data-testid=bot]');
    if (bots.length) window.__gc.replies.push(bots[bots.length - 1].innerText);
  };
  new MutationObserver(record).observe(chat, {subtree: true, childList: true, characterData: true});
}
"""


@dataclass
class Live:
    app: RunningApp
    browser: Any


@pytest.fixture(scope="module")
def live(
    triton_server: TritonServer, running_app_factory: Any, tmp_path_factory: pytest.TempPathFactory, browser: Any
) -> Iterator[Live]:
    settings = ui_settings(
        tmp_path_factory.mktemp("ui-browser"),
        triton_url=triton_server.grpc_url,
        triton_model="smollm2_stream",
        prompt_template="chatml",
        max_output_tokens=40,  # short replies keep the module fast; the stop test asks for more
        temperature=0.0,  # greedy: the same reply on every run, so a rail's verdict on it cannot flake
        output_chunk_size=8,
        output_context_size=4,
    )
    app = running_app_factory(settings)
    for name in ("alice", "bob"):
        create_user(app, name)
    yield Live(app, browser)


@pytest.fixture
def new_page(live: Live) -> Iterator[Callable[[str], Any]]:
    contexts: list[Any] = []

    def open_as(username: str) -> Any:
        context = live.browser.new_context(viewport={"width": 1280, "height": 860})
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        sign_in(page, live.app.url, username)
        return page

    yield open_as
    for context in contexts:
        context.close()


# --- helpers ---------------------------------------------------------------------------------------------


def replies_of(app: RunningApp, username: str) -> list[Message]:
    """The user's assistant messages that are part of their history, oldest first."""
    with app.ctx.db.read() as s:
        user = users.require_user_by_name(s, username=username)
        owned = select(Conversation.id).where(Conversation.owner_id == user.id).scalar_subquery()
        return list(
            s.scalars(
                select(Message)
                .where(Message.conversation_id.in_(owned), Message.role == "assistant", Message.seq > 0)
                .order_by(Message.id)
            )
        )


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = TURN_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def finished_reply(app: RunningApp, username: str, count: int) -> Message:
    """Wait until the user's ``count``-th reply is stored in a final state."""

    def done() -> Message | None:
        replies = replies_of(app, username)
        if len(replies) >= count and replies[count - 1].status not in ("pending", "streaming"):
            return replies[count - 1]
        return None

    return wait_until(done, f"reply #{count} of {username}")


def settle(page: Any) -> None:
    """The page has applied the turn's last update (Send is back, Stop gone)."""
    page.wait_for_selector("#gc-stop", state="hidden")
    page.wait_for_selector("#gc-send", state="visible")


def send(page: Any, text: str) -> None:
    page.locator("#gc-input textarea").fill(text)
    page.locator("#gc-input textarea").press("Enter")


def words(text: str, n: int = 6) -> list[str]:
    return re.findall(r"[A-Za-z]{3,}", text)[:n]


def bot_text(page: Any) -> str:
    return page.locator("#gc-chat [data-testid=bot]").first.inner_text()


def sidebar_titles(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#gc-conversations label").all_inner_texts()]


# --- tests ------------------------------------------------------------------------------------------------


def test_sign_in_send_watch_it_stream_and_reload_the_history(live: Live, new_page: Any) -> None:
    page = new_page("alice")
    page.evaluate(WATCH_CHAT_JS)
    send(page, "What is green tea? Answer in two sentences.")
    reply = finished_reply(live.app, "alice", 1)
    settle(page)

    assert reply.status == "complete" and reply.content.strip(), (reply.content, reply.verdict)
    shown = bot_text(page)
    assert all(word in shown for word in words(reply.content)), (shown, reply.content)
    seen = page.evaluate("() => window.__gc")
    assert seen["checking"], "the 'checking…' state was never shown while the input rails ran"
    final_words = words(shown, 1000)
    partials = [
        r for r in seen["replies"] if "Checking your message" not in r and 0 < len(words(r, 1000)) < len(final_words)
    ]
    assert any(words(p, 1000) == final_words[: len(words(p, 1000))] for p in partials), "no partial reply shown"
    assert page.locator("#gc-chat").get_by_text(re.compile(r"Checked by \d+ rails?")).count() == 1

    page.reload(wait_until="load")
    assert f"c={reply.conversation_id}" in page.url
    page.wait_for_selector("#gc-chat [data-testid=user]")
    assert page.locator("#gc-chat [data-testid=user]").first.inner_text().startswith("What is green tea?")
    assert all(word in bot_text(page) for word in words(reply.content))
    assert sidebar_titles(page)[0].startswith("What is green tea?")


def answer_delete_dialog(page: Any, *, accept: bool) -> None:
    """Click Delete and answer its confirm dialog, waiting until it was answered: the dialog opens from the
    page's script after the click returns, and a second handler registered before the first dialog came would
    answer that one too (on a loaded machine the test then timed out waiting for a deletion)."""
    answered: list[str] = []

    def on_dialog(dialog: Any) -> None:
        answered.append(dialog.message)
        if accept:
            dialog.accept()
        else:
            dialog.dismiss()

    page.once("dialog", on_dialog)
    page.locator("#gc-delete").click()
    for _ in range(600):
        if answered:
            return
        page.wait_for_timeout(50)
    raise AssertionError("the Delete button opened no confirm dialog within 30 s")


def test_rename_search_and_delete_in_the_sidebar(live: Live, new_page: Any) -> None:
    page = new_page("bob")
    send(page, "Tell me about the moon.")
    first = finished_reply(live.app, "bob", 1)
    settle(page)
    page.locator("#gc-new-chat").click()
    page.wait_for_function("() => !new URLSearchParams(location.search).get('c')")
    send(page, "Name a famous volcano.")
    finished_reply(live.app, "bob", 2)
    settle(page)
    assert len(sidebar_titles(page)) == 2

    page.locator("#gc-conversations label", has_text="Tell me about the moon.").click()
    page.wait_for_function(f"() => location.search.includes('c={first.conversation_id}')")
    page.locator("#gc-title input").fill("Lunar notes")
    page.locator("#gc-rename").click()
    page.wait_for_selector("#gc-conversations label:has-text('Lunar notes')")

    page.locator("#gc-search input").press_sequentially("volcano")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gc-conversations label')].map(l => l.innerText.trim())"
        ".join('|') === 'Name a famous volcano.'"
    )
    page.locator("#gc-search input").fill("")
    page.locator("#gc-search input").press_sequentially("Lunar")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gc-conversations label')].map(l => l.innerText.trim())"
        ".join('|') === 'Lunar notes'"
    )

    for button, suffix in (("#gc-export-md", ".md"), ("#gc-export-json", ".json")):
        with page.expect_download() as download:
            page.locator(button).click()
        assert download.value.suggested_filename.endswith(f"-Lunar-notes{suffix}")
        assert "moon" in Path(download.value.path()).read_text(encoding="utf-8").lower()

    answer_delete_dialog(page, accept=False)
    with live.app.ctx.db.read() as s:
        assert s.get(Conversation, first.conversation_id).deleted_at is None  # type: ignore[union-attr]
    answer_delete_dialog(page, accept=True)
    page.wait_for_selector("#gc-conversations label:has-text('Lunar notes')", state="detached")
    with live.app.ctx.db.read() as s:
        assert s.get(Conversation, first.conversation_id).deleted_at is not None  # type: ignore[union-attr]
    page.locator("#gc-search input").fill("")
    page.locator("#gc-search input").press_sequentially(" ")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gc-conversations label')].map(l => l.innerText.trim())"
        ".join('|') === 'Name a famous volcano.'"
    )


def test_stop_during_a_long_reply_keeps_the_partial_reply_as_interrupted(live: Live, new_page: Any) -> None:
    page = new_page("alice")
    before = len(replies_of(live.app, "alice"))
    page.locator("#gc-open-settings").click()
    page.locator("#gc-max-new-tokens input[type=number]").fill("400")
    page.locator("#gc-max-new-tokens input[type=number]").press("Enter")
    send(page, "Write a very long story about a dragon who learns to bake bread.")
    page.wait_for_function(
        "() => { const b = [...document.querySelectorAll('#gc-chat [data-testid=bot]')].pop();"
        " return b && /[A-Za-z]{3,}.*[A-Za-z]{3,}/.test(b.innerText) && !b.innerText.includes('Checking'); }",
        timeout=TURN_TIMEOUT_S * 1000,
    )
    page.locator("#gc-stop").click()
    reply = finished_reply(live.app, "alice", before + 1)
    assert reply.status == "interrupted", f"the reply ended as {reply.status} before Stop took effect"
    assert reply.content.strip()
    page.wait_for_selector(f"#gc-chat :text('{INTERRUPTED_NOTE}')")
    settle(page)
    assert all(word in bot_text(page) for word in words(reply.content))
    with live.app.ctx.db.read() as s:
        conversation = s.get(Conversation, reply.conversation_id)
        assert conversation is not None and conversation.sampling["max_new_tokens"] == 400


def test_an_abusive_message_is_refused_and_flagged(live: Live, new_page: Any) -> None:
    page = new_page("bob")
    before = len(replies_of(live.app, "bob"))
    send(page, ABUSE)
    reply = finished_reply(live.app, "bob", before + 1)
    settle(page)
    assert reply.status == "blocked"
    shown = bot_text(page)
    assert live.app.settings.refusal_input in shown and FLAGGED_NOTE in shown
    with live.app.ctx.db.read() as s:
        flag = s.scalars(select(Flag).where(Flag.conversation_id == reply.conversation_id)).one()
    assert flag.source == "input_rail" and flag.rail


def test_a_second_user_sees_nothing_of_the_first(live: Live, new_page: Any) -> None:
    alice_page = new_page("alice")
    before = len(replies_of(live.app, "alice"))
    send(alice_page, "My secret recipe is KUMQUAT-42 pie.")
    cid = finished_reply(live.app, "alice", before + 1).conversation_id
    settle(alice_page)

    bob_page = new_page("bob")
    assert not any("KUMQUAT" in t for t in sidebar_titles(bob_page))
    bob_page.goto(f"{live.app.url}/?c={cid}", wait_until="load")
    bob_page.wait_for_selector("#gc-account strong")
    bob_page.wait_for_function("() => !new URLSearchParams(location.search).get('c')")
    assert "KUMQUAT" not in bob_page.locator("body").inner_text()
    assert "not available" in bob_page.locator("#gc-status").inner_text()
    bob_page.locator("#gc-search input").press_sequentially("KUMQUAT")
    bob_page.wait_for_function("() => document.querySelectorAll('#gc-conversations label').length === 0")
    assert bob_page.request.get(f"{live.app.url}/export/{cid}.md").status == 404


def test_the_chat_page_as_a_user_sees_it(live: Live, new_page: Any, tmp_path: Path) -> None:
    """Last on purpose: the sidebar then holds several chats. Keeps the screenshot (see SCREENSHOT_ENV)."""
    page = new_page("alice")
    before = len(replies_of(live.app, "alice"))
    page.locator("#gc-open-settings").click()
    page.locator("#gc-max-new-tokens input[type=number]").fill("160")
    page.locator("#gc-max-new-tokens input[type=number]").press("Enter")
    page.locator("#gc-open-settings").click()
    send(page, "Give me three tips for brewing green tea, as a short list.")
    finished_reply(live.app, "alice", before + 1)
    settle(page)
    page.locator("#gc-chat").get_by_text(re.compile(r"Checked by \d+ rails?")).click()
    table = page.locator("#gc-chat table")
    table.wait_for()
    assert table.locator("td", has_text="check abuse input").count() == 1
    assert re.search(r"\d+ ms", table.inner_text())
    page.wait_for_timeout(600)  # let the details finish opening before the picture (cosmetic only)
    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "chat.png")
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000
