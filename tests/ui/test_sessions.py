"""Signing out ends the session everywhere: a copied cookie, another device, and after a new password or ban."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.app_server import RunningApp
from tests.support.ui.chat_app import create_user, signed_in, ui_settings
from webapp.store import accounts, users
from webapp.store.models import User


@pytest.fixture(scope="module")
def app(running_app_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = running_app_factory(ui_settings(tmp_path_factory.mktemp("ui-sessions")))
    for name in ("alice", "bob", "carol", "dave"):
        create_user(app=running, username=name)
    create_user(running, "mod", role="moderator")
    yield running


def page_for(client: httpx.Client) -> str:
    """Where the chat page sends this client: "" (it is signed in) or the sign-in page."""
    response = client.get("/", follow_redirects=False)
    return response.headers.get("location", "") if response.status_code in (302, 303, 307) else ""


def copy_of(client: httpx.Client, app: RunningApp) -> httpx.Client:
    copied = httpx.Client(base_url=app.url, timeout=60)
    copied.cookies.update(client.cookies)
    return copied


def user(app: RunningApp, name: str) -> User:
    with app.ctx.db.read() as s:
        return users.require_user_by_name(s, username=name)


def test_sign_out_ends_the_copied_cookie_and_the_other_device(app: RunningApp) -> None:
    with signed_in(app, "alice") as laptop, signed_in(app, "alice") as phone, copy_of(laptop, app) as stolen:
        assert page_for(laptop) == page_for(phone) == page_for(stolen) == ""
        assert laptop.get("/logout", follow_redirects=False).headers["location"] == "/login"
        assert page_for(stolen).endswith("/login")  # the cookie as it was before signing out
        assert page_for(phone).endswith("/login")
    with signed_in(app, "alice") as again:
        assert page_for(again) == ""  # signing in again works


def test_an_old_cookie_cannot_sign_out_the_new_session(app: RunningApp) -> None:
    with signed_in(app, "bob") as first, copy_of(first, app) as old:
        first.get("/logout")
        with signed_in(app, "bob") as current:
            old.get("/logout")
            assert page_for(current) == ""


def test_a_cross_site_sign_out_link_signs_out_only_that_browser(app: RunningApp) -> None:
    with signed_in(app, "carol") as browser, signed_in(app, "carol") as other:
        browser.get("/logout", headers={"Sec-Fetch-Site": "cross-site"})
        assert page_for(browser).endswith("/login")
        assert page_for(other) == ""


def test_a_new_password_or_a_ban_ends_existing_sessions(app: RunningApp) -> None:
    with signed_in(app, "dave") as session:
        with app.ctx.db.write() as s:
            users.set_password(s, user=users.require_user_by_name(s, username="dave"), password="another-password")
        assert page_for(session).endswith("/login")
    with signed_in(app, "alice") as session:
        with app.ctx.db.write() as s:
            staff = users.require_user_by_name(s, username="mod")
            accounts.ban_user(s, actor=staff, user_id=user(app, "alice").id, note="spam")
            accounts.unban_user(s, actor=staff, user_id=user(app, "alice").id, note="appeal granted")
        assert page_for(session).endswith("/login")  # unbanning does not revive the session
